"""run_sweep with point functions: seeding, parallel parity, failures, store, tables."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.errors import SweepError, SweepSpecError
from characterization.lookup import read_lookup
from characterization.sweep import SweepPoint, SweepSpec, point_seed, run_sweep, worker_cache


def noisy_point(p: SweepPoint) -> dict:
    """Analytic point: depends on coords, and on its rng for the Monte-Carlo part."""
    if p.coords["x"] == 3.0 and p.mc == 1:
        raise ValueError("deliberate failure at x=3")
    base = worker_cache(("base", p.context["scale"]), lambda: p.context["scale"] * 2.0)
    r = p.rng()
    return {"y": base * p.coords["x"] + r.normal(), "vec": r.normal(size=3)}


def _spec(**kw) -> SweepSpec:
    args = dict(name="demo", axes={"x": [1.0, 2.0, 3.0], "corner": ["tt", "ss"]}, mc=3,
                seed=42, point_fn=noisy_point, measures={"y": "V", "vec": "A"},
                measure_dims={"vec": {"k": [0, 1, 2]}}, context={"scale": 1.5})
    args.update(kw)
    return SweepSpec(**args)


def test_sweep_tables_dims_nan_and_failures(tmp_path):
    spec = _spec()
    res = run_sweep(spec, tmp_path / "a.h5", quiet=True)
    y = res.tables["y"]
    assert y.dims == ("x", "corner", "mc")
    assert y.shape == (3, 2, 3)
    assert res.tables["vec"].dims == ("x", "corner", "mc", "k")
    assert np.isnan(y.data[2, :, 1]).all()
    assert np.isfinite(y.data).sum() == y.data.size - 2
    assert len(res.failures) == 2
    f = res.failures[0]
    assert f.error_type == "ValueError" and "x=3" in f.message
    assert f.point["x"] == 3.0 and f.point["mc"] == 1 and "seed" in f.point
    lf = read_lookup(res.path)
    np.testing.assert_array_equal(lf["y"].data, y.data)
    assert lf["y"].coord_units["mc"] == "1"
    assert len(lf.failures) == 2
    assert lf.provenance["root_seed"] == 42
    assert lf.provenance["sweep"]["point_fn"].endswith("noisy_point")


def test_sweep_point_reproduces_alone(tmp_path):
    spec = _spec()
    res = run_sweep(spec, tmp_path / "a.h5", quiet=True)
    i = 7
    p = spec.point(i)
    assert p.seed == point_seed(42, i)
    alone = noisy_point(p)
    idx = np.unravel_index(i, spec.shape)
    assert res.tables["y"].data[idx] == alone["y"]
    np.testing.assert_array_equal(res.tables["vec"].data[idx], alone["vec"])


def test_sweep_parallel_matches_serial(tmp_path):
    spec = _spec()
    a = run_sweep(spec, tmp_path / "a.h5", quiet=True)
    b = run_sweep(spec, tmp_path / "b.h5", jobs=2, quiet=True, chunk_size=2)
    for m in spec.measures:
        np.testing.assert_array_equal(a.tables[m].data, b.tables[m].data)
    assert [f.point for f in a.failures] == [f.point for f in b.failures]


def test_sweep_resume_skips_finished(tmp_path):
    spec = _spec()
    out = tmp_path / "a.h5"
    first = run_sweep(spec, out, quiet=True)
    again = run_sweep(spec, out, quiet=True)
    assert again.summary["n_run"] == 0 and again.summary["n_resumed"] == len(spec)
    np.testing.assert_array_equal(first.tables["y"].data, again.tables["y"].data)
    assert len(again.failures) == 2


def test_sweep_store_refuses_other_spec(tmp_path):
    out = tmp_path / "a.h5"
    run_sweep(_spec(), out, quiet=True)
    with pytest.raises(SweepError, match="different sweep"):
        run_sweep(_spec(seed=43), out, quiet=True)


def test_sweep_strict_and_all_failed(tmp_path):
    with pytest.raises(SweepError, match="strict"):
        run_sweep(_spec(), tmp_path / "a.h5", quiet=True, strict=True)
    assert len(read_lookup(tmp_path / "a.h5").failures) == 2
    res = run_sweep(_spec(mc=1), tmp_path / "ok.h5", quiet=True, strict=True)
    assert not res.failures  # x=3 fails only at mc=1


def test_sweep_spec_validation():
    with pytest.raises(SweepSpecError, match="mc"):
        _spec(mc=0)
    with pytest.raises(SweepSpecError, match="repeated"):
        _spec(axes={"x": [1.0, 1.0]})
    with pytest.raises(SweepSpecError, match="reserved"):
        _spec(axes={"mc": [1.0]})


def always_fails(p: SweepPoint) -> dict:
    raise RuntimeError(f"no result at {p.coords}")


def test_sweep_every_point_failed_raises(tmp_path):
    spec = SweepSpec(name="bad", axes={"x": [1.0, 2.0]}, point_fn=always_fails,
                     measures={"y": "1"})
    with pytest.raises(SweepError, match="every point failed"):
        run_sweep(spec, tmp_path / "bad.h5", quiet=True)
    assert len(read_lookup(tmp_path / "bad.h5").failures) == 2


def segfaulting_point(p: SweepPoint) -> dict:
    if p.index == 5:
        import ctypes

        ctypes.string_at(0)  # a real SIGSEGV, as when libngspice crashes
    return {"y": float(p.index)}


def test_sweep_dead_worker_becomes_a_failure_and_the_rest_lands(tmp_path):
    spec = SweepSpec(name="crash", axes={"x": list(range(12))}, point_fn=segfaulting_point,
                     measures={"y": "1"})
    res = run_sweep(spec, tmp_path / "c.h5", jobs=2, quiet=True, chunk_size=4)
    bad = 5
    assert [f.point["index"] for f in res.failures] == [bad]
    f = res.failures[0]
    assert f.error_type == "WorkerCrashed" and f"point {bad}" in f.message
    assert f.point["x"] == bad and "batch" in f.message
    y = res.tables["y"].data[:, 0]
    assert np.isnan(y[bad]) and np.array_equal(np.delete(y, bad), np.delete(np.arange(12.0), bad))
    assert len(read_lookup(res.path).failures) == 1
    # a resume does not run the crashing point again
    again = run_sweep(spec, tmp_path / "c.h5", jobs=2, quiet=True, chunk_size=4)
    assert again.summary["n_run"] == 0 and len(again.failures) == 1


def test_sweep_retry_failed_reruns_only_failures(tmp_path):
    out = tmp_path / "a.h5"
    first = run_sweep(_spec(), out, quiet=True, chunk_size=4)
    again = run_sweep(_spec(), out, quiet=True, retry_failed=True)
    assert again.summary["n_run"] == 2 and again.summary["n_resumed"] == len(_spec()) - 2
    np.testing.assert_array_equal(first.tables["y"].data, again.tables["y"].data)
    assert len(again.failures) == 2  # deterministic failures fail again


def test_auto_chunk_size_gives_fine_progress(tmp_path):
    from characterization.sweep.run import PROGRESS_STEPS, _auto_chunk_size

    for n in (1, 7, 49, 50, 120, 360, 2000, 3200, 100_000):
        for workers in (1, 2, 16):
            size = _auto_chunk_size(n, workers)
            assert 1 <= size <= 64
            assert -(-n // size) >= min(n, PROGRESS_STEPS)  # number of chunks (updates)
    assert _auto_chunk_size(100_000, 2) == 64  # large runs: big chunks, little store work
    spec = SweepSpec(name="fine", axes={"x": [float(x) for x in range(30)]}, mc=4,
                     point_fn=noisy_point, measures={"y": "V", "vec": "A"},
                     measure_dims={"vec": {"k": [0, 1, 2]}}, context={"scale": 1.0})
    run_sweep(spec, tmp_path / "f.h5", quiet=True)
    assert len(list((tmp_path / "f.h5.points").glob("chunk-*.npz"))) >= PROGRESS_STEPS


def pid_point(p: SweepPoint) -> dict:
    import os

    return {"y": float(os.getpid())}


def test_workers_are_recycled_every_n_points(tmp_path):
    import os

    spec = SweepSpec(name="recycle", axes={"x": list(range(4))}, point_fn=pid_point,
                     measures={"y": "1"})
    # a serial run longer than recycle_points goes to one worker process, replaced every 2
    res = run_sweep(spec, tmp_path / "r.h5", jobs=1, quiet=True, chunk_size=2,
                    recycle_points=2)
    pids = res.tables["y"].data.ravel().tolist()
    assert res.summary["backend"] == "loky" and os.getpid() not in pids
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[1] != pids[2]
    with pytest.raises(SweepSpecError, match="chunk size"):
        run_sweep(spec, tmp_path / "r0.h5", chunk_size=0, quiet=True)
    with pytest.raises(SweepSpecError, match="is a folder"):
        run_sweep(spec, tmp_path, quiet=True)


def test_sweep_records_the_commit_it_started_on(tmp_path, monkeypatch):
    """Provenance names the code the sweep ran on: the commit when it started, and the end's
    commit beside it when the tree moved during the run (a commit landing mid-sweep)."""
    import characterization.sweep.run as sweep_run

    seen = iter(["aaaa111", "bbbb222"])
    monkeypatch.setattr(sweep_run, "_git_commit", lambda: next(seen))
    res = run_sweep(_spec(mc=1), tmp_path / "moved.h5", quiet=True)
    prov = read_lookup(res.path).provenance
    assert prov["git_commit"] == "aaaa111"
    assert prov["git_commit_end"] == "bbbb222"
    monkeypatch.setattr(sweep_run, "_git_commit", lambda: "cccc333")
    prov = read_lookup(run_sweep(_spec(mc=1), tmp_path / "still.h5", quiet=True).path).provenance
    assert prov["git_commit"] == "cccc333" and "git_commit_end" not in prov
