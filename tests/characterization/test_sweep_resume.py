"""A sweep killed with SIGKILL (whole process group) resumes to the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from characterization.sweep import SweepPoint, SweepSpec, run_sweep
from characterization.sweep._store import read_chunk


def slow_point(p: SweepPoint) -> dict:
    """A few milliseconds per point, seeded Monte-Carlo value, and one failing point."""
    time.sleep(0.003)
    if p.index == 13:
        raise ArithmeticError("point 13 fails on purpose")
    return {"y": p.coords["a"] * 10 + p.rng().normal()}


def _spec() -> SweepSpec:
    return SweepSpec(name="slow", axes={"a": list(range(20))}, mc=20, seed=5,
                     point_fn=slow_point, measures={"y": "1"})


_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from test_sweep_resume import _spec
    from characterization.sweep import run_sweep
    run_sweep(_spec(), {out!r}, jobs=2, quiet=True, chunk_size=4)
""")


def test_sweep_sigkill_resumes_without_duplicates(tmp_path):
    out = tmp_path / "slow.h5"
    store = Path(str(out) + ".points")
    script = _SCRIPT.format(here=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if len(list(store.glob("chunk-*.npz"))) >= 5:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    n_before = sum(len(read_chunk(p).indices) for p in store.glob("chunk-*.npz"))
    assert 0 < n_before < 400

    resumed = run_sweep(_spec(), out, jobs=1, quiet=True)
    assert resumed.summary["n_resumed"] == n_before
    assert resumed.summary["n_run"] == 400 - n_before
    idx = np.concatenate([read_chunk(p).indices
                          for p in store.glob("chunk-*.npz")])
    np.testing.assert_array_equal(np.sort(idx), np.arange(400))  # none missing, none twice

    fresh = run_sweep(_spec(), tmp_path / "fresh.h5", jobs=1, quiet=True)
    np.testing.assert_array_equal(resumed.tables["y"].data, fresh.tables["y"].data)
    assert [f.point for f in resumed.failures] == [f.point for f in fresh.failures]
    assert len(fresh.failures) == 1

    again = run_sweep(_spec(), out, jobs=2, quiet=True)
    assert again.summary["n_run"] == 0 and again.summary["n_resumed"] == 400
