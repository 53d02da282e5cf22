"""Issue 16: data is data (included files, names, numbers), alterations checked, timeouts fire,
failing decks private, files readable, one circuit cache per worker, crashes reported."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from spicebridge.errors import SimulationError, SimulationTimeoutError, UnsafeDeckError

pytestmark = pytest.mark.ngspice

DIVIDER = "* divider\nV1 in 0 DC 1\nR1 in out 1k\nR2 out 0 3k\n.op\n.end\n"
LONG_TRAN = "* long\nV1 a 0 SIN(0 1 1meg)\nR1 a b 1k\nC1 b 0 1n\n.tran 1n 100m\n.end\n"


@pytest.fixture(params=["shared", "batch"])
def engine(request, shared_engine, batch_engine):
    return shared_engine if request.param == "shared" else batch_engine


def _evil_lib(tmp_path: Path, marker: Path, how: str = "control") -> Path:
    """A model file that runs ``touch marker`` when ngspice reads it (line 3 is the bad one)."""
    lib = tmp_path / "models.lib"
    if how == "control":
        lib.write_text(f"* a model library\n.model dd d is=1e-14\n.control\nshell touch "
                       f"{marker}\n.endc\n")
    elif how == "sections":
        lib.write_text(f"* a model library\n.lib tt\n.control\nshell touch {marker}\n.endc\n"
                       ".model dd d is=1e-14\n.endl tt\n")
    else:
        lib.write_text(f"* a model library\n.model dd d is=1e-14\nshell touch {marker}\n")
    return lib


@pytest.mark.parametrize("card", ["include", "lib", "nested"])
def test_included_control_block_is_refused_and_never_runs(engine, tmp_path, card):
    marker = tmp_path / "PWNED"
    lib = _evil_lib(tmp_path, marker, "sections" if card == "lib" else "control")
    if card == "include":
        line = f'.include "{lib}"'
    elif card == "lib":
        line = f'.lib "{lib}" tt'
    else:  # an included file that includes the bad one
        outer = tmp_path / "outer.inc"
        outer.write_text(f'* outer\n.include "{lib.name}"\n')
        line = f'.include "{outer}"'
    deck = f"* d\n{line}\n" + DIVIDER.split("\n", 1)[1]
    with pytest.raises(UnsafeDeckError, match=r"models\.lib:3.*control") as ei:
        engine.simulate(deck)
    assert "--allow-control" in str(ei.value)
    assert not marker.exists()
    with pytest.raises(UnsafeDeckError):
        engine.load(deck)
    assert not marker.exists()


def test_shell_line_in_included_file_refused_allow_control_lifts_it(tmp_path):
    from spicebridge.engines import SharedEngine

    marker = tmp_path / "RAN"
    deck = "* d\n.include \"{}\"\n" + DIVIDER.split("\n", 1)[1]
    with pytest.raises(UnsafeDeckError, match=r"models\.lib:3.*'shell'"):
        SharedEngine().simulate(deck.format(_evil_lib(tmp_path, marker, "shell")))
    # the user's explicit choice: the file is trusted, ngspice reads it as it is
    res = SharedEngine(allow_control=True).simulate(
        deck.format(_evil_lib(tmp_path, marker, "control")))
    assert res["op"]["v(out)"][0] == pytest.approx(0.75)
    assert marker.exists()


def test_plain_model_library_still_loads(engine, tmp_path):
    lib = tmp_path / "ok.lib"
    lib.write_text("* ok\n.lib tt\n.model dd d is=1e-14\n.endl tt\n")
    deck = f'* d\n.lib "{lib}" tt\nV1 a 0 1\nR1 a b 1k\nD1 b 0 dd\n.op\n.end\n'
    v = engine.simulate(deck)["op"]["v(b)"][0]
    assert 0.5 < v < 0.8  # a silicon diode's forward drop at ~0.3 mA


def test_alter_of_a_missing_element_or_param_raises_naming_it(engine):
    circ = engine.load(DIVIDER)
    with pytest.raises(SimulationError, match="vdd"):
        circ.alter("vdd", dc=1.8)
        circ.run()
    circ = engine.load(DIVIDER)
    with pytest.raises(SimulationError, match="nope"):
        circ.alterparam("nope", 1.0)
        circ.run()


@pytest.mark.parametrize("bad", ["v1\nshell touch x", "v1; shell", "", "1v"])
def test_element_names_are_names(engine, bad):
    circ = engine.load(DIVIDER)
    with pytest.raises(UnsafeDeckError, match="not an element name"):
        circ.alter(bad, 1.0)


def test_non_finite_values_and_multi_line_analyses_are_refused(engine):
    circ = engine.load(DIVIDER)
    with pytest.raises(UnsafeDeckError, match="finite"):
        circ.alter("v1", float("nan"))
    with pytest.raises(UnsafeDeckError, match="finite"):
        circ.set_temp(float("inf"))
    with pytest.raises(UnsafeDeckError, match="analysis"):
        circ.run("op\nshell touch x")


def test_timeout_fires_for_an_explicit_analysis(shared_engine):
    circ = shared_engine.load(LONG_TRAN)
    with pytest.raises(SimulationTimeoutError):
        circ.run("tran 1n 100m", timeout_s=0.5)
    assert circ.run("op", timeout_s=5.0)["op"]["v(b)"][0] == pytest.approx(0.0, abs=1e-9)


def test_failing_deck_saved_in_a_private_folder(shared_engine):
    with pytest.raises(SimulationError) as ei:
        shared_engine.simulate("* bad\nV1 in 0 1\nM1 in in 0 0 nomodel w=1u l=1u\n.op\n.end\n")
    d = ei.value.deck_path.parent
    st = os.stat(d)
    assert d.name == f"spicebridge-decks-{os.getuid()}" and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o700


def test_batch_work_folder_removed_after_a_failure(batch_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SimulationError) as ei:
        batch_engine.simulate("* bad\nV1 in 0 1\nM1 in in 0 0 nomodel w=1u l=1u\n.op\n.end\n")
    assert not list(tmp_path.glob("sb-batch-*"))
    assert ei.value.deck_path.is_file()  # the failing deck itself is kept, privately
    batch_engine.simulate(DIVIDER)
    assert not list(tmp_path.glob("sb-batch-*"))


def test_atomic_writes_honour_the_umask(tmp_path):
    from spicebridge.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.json", "{}")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        q = atomic_write_text(tmp_path / "b.json", "{}")
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_worker_circuit_is_cached_and_reloaded_when_replaced():
    from spicebridge import worker

    a = worker.circuit(("test", 1), DIVIDER)
    assert worker.circuit(("test", 1), lambda: pytest.fail("must not render again")) is a
    b = worker.circuit(("test", 2), DIVIDER.replace("3k", "1k"))
    assert not a.is_valid() and b.is_valid()
    a2 = worker.circuit(("test", 1), DIVIDER)
    assert a2 is not a and a2.run()["op"]["v(out)"][0] == pytest.approx(0.75)
    assert worker.health()["runs"] >= 1


def test_crash_guard_reports_a_segfault_with_the_remedy():
    import subprocess
    import sys

    # a fresh process, as the command line is: nothing loaded before the guard forks
    code = ("import ctypes, sys\n"
            "from spicebridge.worker import crash_guarded\n"
            "assert crash_guarded(lambda: 3, what='w', remedy='r') == 3\n"
            "sys.exit(crash_guarded(lambda: ctypes.string_at(0) and 0, what='simulate x.cir', "
            "remedy='use --engine batch'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 1, r.stderr
    assert "SIGSEGV" in r.stderr and "simulate x.cir" in r.stderr
    assert "--engine batch" in r.stderr and "Fatal Python error" not in r.stderr


def test_cli_simulate_refuses_included_control_exit_2(tmp_path, capsys):
    from imc.cli import main

    marker = tmp_path / "PWNED"
    lib = _evil_lib(tmp_path, marker)
    deck = tmp_path / "d.cir"
    deck.write_text(f'* d\n.include "{lib}"\n' + DIVIDER.split("\n", 1)[1])
    assert main(["simulate", str(deck)]) == 2
    assert "allow-control" in capsys.readouterr().err and not marker.exists()
    assert main(["simulate", str(deck), "--allow-control"]) == 0
    assert marker.exists()  # the user's explicit choice runs it


def test_crash_reloads_are_capped_then_refused():
    import subprocess
    import sys

    # in a child process: the cap is per process and would outlive this test
    code = (
        "from spicebridge.engines import SharedEngine\n"
        "from spicebridge.engines import shared\n"
        "shared.MAX_CRASH_RELOADS = 1  # the mechanism, not the number: one reload\n"
        "from spicebridge.errors import EngineCrashedError\n"
        "from spicebridge.netlist import sky130_corner_lib\n"
        "lib = sky130_corner_lib(('nfet_01v8',))\n"
        "deck = f'* x\\n.include \"{lib}\"\\nVd d 0 1\\nX1 d d 0 0 sky130_fd_pr__nfet_01v8 "
        "W=1 L=0.15\\n.op\\n.end\\n'\n"
        "e = SharedEngine()\n"
        "msgs = []\n"
        "for _ in range(3):\n"
        "    try:\n"
        "        e.simulate(deck)\n"
        "    except EngineCrashedError as err:\n"
        "        msgs.append(str(err).splitlines()[0])\n"
        "    except Exception as err:\n"
        "        msgs.append(type(err).__name__)\n"
        "print(sum('not reloading' in m or 'more often' in m for m in msgs), len(msgs))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["2", "3"]  # reloaded once, then refused (and refused again)


def test_both_engines_implement_the_whole_loaded_circuit_protocol(engine):
    from spicebridge.engines import LoadedCircuit

    names = {"alter", "alterparam", "alterparams", "reset", "set_temp", "command", "run",
             "is_valid"}
    assert names <= set(dir(LoadedCircuit))
    circ = engine.load(DIVIDER)
    assert isinstance(circ, LoadedCircuit) and circ.is_valid()
    circ.alterparams({})
    circ.command("option temp=27")
    assert circ.run()["op"]["v(out)"][0] == pytest.approx(0.75)
