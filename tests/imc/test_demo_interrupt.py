"""Ctrl-C in the demo's evaluation lanes and in ``evaluate``: one line naming what stopped and
what is kept, exit 130, no traceback from any process, no process left behind, no half
result file; a finished step is kept (and a re-run reuses it).

For real: a subprocess in its own session runs the lanes runner (``run_evaluations``, two
spawned lane processes or one in-process lane) on digits-tiny and gets SIGINT, to its whole
process group as a terminal's Ctrl-C sends it, or to the demo's process alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# lane 0: a quick step, then a slow one; lane 1: a slow one (40 chips: about a minute)
_DRIVER = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    from imc.demo.pipeline import _Steps, run_evaluations

    SPECS = {
        "quick": ("quick step", ["--process", "tt", "--bits", "6", "--gamma", "1",
                                 "--chips", "3", "--limit", "16"]),
        "slow": ("slow step", ["--process", "tt", "--bits", "6", "--gamma", "1,3"]),
        "other": ("other slow step", ["--process", "ss", "--bits", "6", "--gamma", "1,3"]),
    }

    if __name__ == "__main__":  # spawned lane processes import this file again
        from imc.cli import interrupted

        cfg = json.loads(sys.argv[1])
        try:
            run_evaluations(Path(cfg["out"]), cfg["common"], chips=40, seed=3,
                            workers=cfg["workers"], steps=_Steps(total=3), specs=SPECS,
                            lanes=(("quick", "slow"), ("other",)))
        except KeyboardInterrupt as e:  # as imc.cli.main does for `spicebridge demo`
            sys.exit(interrupted("demo", e))
''')


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "OMP_NUM_THREADS": "1"}


def _live_session_members(sid: int) -> list[str]:
    """Processes of session ``sid`` still alive (zombies are dead: a container's pid 1 may
    never reap the orphans it adopts)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(f"{d.name} {stat[:stat.rindex(')') + 1]} {fields[0]}")
    return out


def _wait_for(path: Path, proc: subprocess.Popen, needles: list[str], timeout_s: float) -> str:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        text = path.read_text() if path.exists() else ""
        if all(n in text for n in needles):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"never saw {needles}; output so far:\n{text}")


def _interrupt(proc: subprocess.Popen, group: bool, tmp_path: Path) -> tuple[int, str]:
    (os.killpg if group else os.kill)(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    # the demo waits for its lanes' processes; a Dask cluster's close at exit is asynchronous:
    # a few seconds' grace, far below a step's run time (an orphan would still be running)
    t_end = time.monotonic() + 10.0
    while (left := _live_session_members(proc.pid)) and time.monotonic() < t_end:
        time.sleep(0.2)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"
    return rc, (tmp_path / "stderr.txt").read_text()


def _no_half_files(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names
    for n in names:
        json.loads((folder / n).read_text())  # every file there is whole
    return names


@pytest.mark.parametrize("workers,group", [(2, True), (2, False), (1, True)],
                         ids=["lanes-ctrl-c", "lanes-sigint-to-demo-only", "in-process"])
def test_ctrl_c_in_the_evaluation_lanes(tiny_digits_model, synthetic_lookups, tmp_path,
                                        workers, group):
    from imc.demo.pipeline import _eval_done

    _, meta = tiny_digits_model
    out = tmp_path / "eval"
    out.mkdir()
    common = ["evaluate", "--model", "digits-tiny", "--cache-dir",
              str(Path(meta["path"]).parent), "--lookup", *map(str, synthetic_lookups),
              "--vdd-v", "1.8", "--temp-c", "27", "--chips", "40", "--seed", "3",
              "--fidelity", "moment", "--kv-range", "calibrated", "--threads", "1", "--quiet"]
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    cfg = json.dumps({"out": str(out), "common": common, "workers": workers})
    stdout = tmp_path / "stdout.txt"
    with open(stdout, "w") as so, open(tmp_path / "stderr.txt", "w") as se:
        proc = subprocess.Popen([sys.executable, str(driver), cfg], stdout=so, stderr=se,
                                env=_env(), cwd=tmp_path, start_new_session=True)
    # the quick step done and the slow steps running (in-process: the lanes one by one)
    running = ["[2/3] slow step ...", "[3/3] other slow step ..."][:workers]
    _wait_for(stdout, proc, ["[1/3] quick step: ", *running], timeout_s=240)
    time.sleep(1.0)  # inside the slow steps' evaluate
    rc, err = _interrupt(proc, group, tmp_path)
    assert rc == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    stopped = "steps 2/3, 3/3" if workers == 2 else "step 2/3 (slow step)"
    assert lines == [f"spicebridge demo: interrupted: {stopped} stopped; the finished steps "
                     f"are kept in {out} and running the same command again resumes them"]
    # the finished step is kept whole (a re-run reuses it); nothing of the stopped ones
    assert _no_half_files(out) == ["quick.json"]
    assert _eval_done(out / "quick.json", chips=3, seed=3, images=16)


def test_ctrl_c_in_evaluate(tiny_digits_model, synthetic_lookups, tmp_path):
    _, meta = tiny_digits_model
    res = tmp_path / "res"
    res.mkdir()
    argv = [sys.executable, "-m", "imc.cli", "evaluate", "--model", "digits-tiny",
            "--cache-dir", str(Path(meta["path"]).parent), "--lookup",
            *map(str, synthetic_lookups), "--process", "tt", "--vdd-v", "1.8", "--temp-c",
            "27", "--bits", "6", "--chips", "40", "--fidelity", "moment", "--threads", "1",
            "--json", str(res / "out.json")]
    stderr = tmp_path / "stderr.txt"
    with open(tmp_path / "stdout.txt", "w") as so, open(stderr, "w") as se:
        proc = subprocess.Popen(argv, stdout=so, stderr=se, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    _wait_for(stderr, proc, ["chip/s"], timeout_s=120)  # the chips' progress bar
    rc, err = _interrupt(proc, True, tmp_path)
    assert rc == 130, err
    assert "Traceback" not in err, err
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert last == (f"spicebridge evaluate: interrupted: no result written to {res / 'out.json'}"
                    " (the JSON is written when every setting is done)")
    assert err.count("interrupted") == 1
    assert _no_half_files(res) == []


@pytest.mark.ngspice
def test_ctrl_c_in_characterize(tmp_path):
    """The SPICE sweep's worker processes ignore Ctrl-C (a KeyboardInterrupt inside
    libngspice's callbacks printed "Exception ignored ... Traceback" and the pool took ~20 s
    to wind down); the sweep kills them and says what is stored."""
    import re

    out = tmp_path / "xb.h5"
    argv = [sys.executable, "-m", "imc.cli", "characterize", "crossbar", "--preset", "quick",
            "--out", str(out), "--jobs", "2"]
    stderr = tmp_path / "stderr.txt"
    with open(tmp_path / "stdout.txt", "w") as so, open(stderr, "w") as se:
        proc = subprocess.Popen(argv, stdout=so, stderr=se, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    _wait_for(stderr, proc, ["sweep crossbar_column:"], timeout_s=120)
    time.sleep(8.0)  # the workers started and inside ngspice
    rc, err = _interrupt(proc, True, tmp_path)
    assert rc == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert re.fullmatch(r"spicebridge characterize: interrupted: sweep 'crossbar_column': "
                        r"\d+ of 18 points are stored; the same command run again resumes "
                        r"from them", last), last
    assert not out.exists()


@pytest.mark.ngspice
def test_ctrl_c_in_the_demo_itself(tmp_path):
    """``spicebridge demo`` for real, stopped in its first step (the crossbar's SPICE sweep on
    two worker processes): the one line names the step and the points it stored."""
    import re

    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "imc.cli", "demo", "--out", str(out), "--quiet"]
    stdout = tmp_path / "stdout.txt"
    with open(stdout, "w") as so, open(tmp_path / "stderr.txt", "w") as se:
        proc = subprocess.Popen(argv, stdout=so, stderr=se, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    _wait_for(stdout, proc, ["] characterize the 1T1R crossbar column"], timeout_s=120)
    time.sleep(8.0)  # the sweep's workers started
    rc, err = _interrupt(proc, True, tmp_path)
    assert rc == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.fullmatch(
        r"spicebridge demo: interrupted: step 1/\d+ \(characterize the 1T1R crossbar column "
        r"\(.*\)\) stopped \(sweep 'crossbar_column': \d+ of \d+ points are stored\); the "
        rf"finished steps are kept in {re.escape(str(out))} and running the same command "
        r"again resumes them", lines[0]), lines
    assert not (out / "crossbar.h5").exists() and not (out / "report.md").exists()

