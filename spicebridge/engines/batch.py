"""Batch engine: one ``ngspice -b deck -r out.raw`` process per run, read with ``read_raw``.

It isolates crashes and costs the same as the shared engine for runs over about 50 ms.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import (
    ConvergenceError,
    EngineCrashedError,
    NetlistError,
    SimulationError,
    SimulationTimeoutError,
    SimulatorUnavailableError,
)
from ..guard import (
    check_analysis,
    check_element_name,
    check_included_files,
    check_number,
    check_param_name,
)
from ..netlist import split_analyses
from ..rawfile import read_raw
from ..results import SimResult, number_plots, plot_type
from .base import DEFAULT_REMEDIES, classify_failure, failure_lines, shrink_tran_step

_SPICEINIT = "set num_threads=1\n"  # BSIM4 OpenMP trap: see the shared engine


def find_ngspice() -> str:
    """Path of the ``ngspice`` binary (``NGSPICE_BIN`` overrides).

    Raises:
        SimulatorUnavailableError: Not installed.
    """
    exe = os.environ.get("NGSPICE_BIN") or shutil.which("ngspice")
    if not exe:
        raise SimulatorUnavailableError(
            "ngspice binary not found; install it (Debian/Ubuntu: apt-get install ngspice) "
            "or set NGSPICE_BIN")
    return exe


class BatchEngine:
    """``ngspice -b`` in a fresh process per run.

    Args:
        remedies: Option sets tried in turn after a run fails to converge; ``()`` disables.
        keep_dirs: Keep each run's working folder (deck, raw file, log) for inspection; by
            default it is removed after the run, failed or not (the failing deck is saved in
            the per-user deck folder first).
        allow_control: Let included / ``.lib`` model files hold ``.control`` blocks and
            ``shell`` lines (refused by default: included files are data).
    """

    name = "batch"

    def __init__(self, *, remedies: tuple[tuple[str, ...], ...] = DEFAULT_REMEDIES,
                 keep_dirs: bool = False, allow_control: bool = False) -> None:
        self.exe = find_ngspice()
        self.remedies = remedies
        self.keep_dirs = keep_dirs
        self.allow_control = allow_control

    @property
    def version(self) -> str:
        """ngspice version string, e.g. ``39``."""
        out = subprocess.run([self.exe, "-v"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"ngspice-(\S+)", out)
        return m.group(1) if m else "unknown"

    def simulate(
        self,
        deck: str,
        *,
        corner_key: str | None = None,
        timeout_s: float | None = None,
        rundir: Path | None = None,
    ) -> SimResult:
        """Run ``deck`` as is in ``ngspice -b`` and read its raw file.

        Raises:
            NetlistError: The deck has its own ``.control`` block.
            ParseError: ngspice rejected the deck.
            ConvergenceError: No convergence, also after the remedies.
            SimulationTimeoutError: Ran past ``timeout_s``; the process was killed.
            EngineCrashedError: ngspice died from a signal.
        """
        if re.search(r"^\s*\.control\b", deck, re.IGNORECASE | re.MULTILINE):
            raise NetlistError("the batch engine runs plain decks: remove the .control block "
                               "(use SharedEngine or BatchEngine.load for scripted runs)")
        check_included_files(deck, base_dirs=[rundir] if rundir else None,
                             allow_control=self.allow_control)
        return self._with_remedies(lambda d: self._run_deck(d, corner_key, timeout_s, rundir),
                                   deck)

    def _with_remedies(self, run, deck: str) -> SimResult:
        try:
            return run(deck)
        except ConvergenceError as first:
            err = first
            for level, opts in enumerate(self.remedies, 1):
                try:
                    res = run(_apply_remedy(deck, opts, level))
                    res.meta["remedy"] = level
                    return res
                except ConvergenceError as e:
                    err = e
            if self.remedies:
                err.add_note(f"tried {len(self.remedies)} remedies: {self.remedies}")
            raise err from None if err is first else first

    def load(self, deck: str, *, corner_key: str | None = None) -> _BatchCircuit:
        """Keep ``deck`` and replay alterations in a ``.control`` block at each run.

        Raises:
            UnsafeDeckError: An included file holds ``.control``/``shell`` (not allowed).
        """
        check_included_files(deck, allow_control=self.allow_control)
        return _BatchCircuit(self, deck, corner_key)

    def _run_deck(self, deck: str, corner_key: str | None, timeout_s: float | None,
                  rundir: Path | None, *, scripted: bool = False) -> SimResult:
        own = rundir is None
        work = Path(tempfile.mkdtemp(prefix="sb-batch-")) if own else rundir
        work.mkdir(parents=True, exist_ok=True)
        try:
            return self._run_in(work, deck, corner_key, timeout_s, scripted)
        except SimulationError as e:
            if own and not self.keep_dirs and e.deck_path is not None:
                from .shared import save_failing_deck

                e.deck_path = save_failing_deck(deck)  # the work folder goes away
            raise
        finally:
            if own and not self.keep_dirs:
                shutil.rmtree(work, ignore_errors=True)

    def _run_in(self, work: Path, deck: str, corner_key: str | None, timeout_s: float | None,
                scripted: bool) -> SimResult:
        deck_path = work / "deck.cir"
        deck_path.write_text(deck if deck.rstrip().lower().endswith(".end") else deck + "\n.end\n",
                             encoding="utf-8")
        (work / ".spiceinit").write_text(_SPICEINIT)
        raw = work / "out.raw"
        raw.unlink(missing_ok=True)
        # a .control block writes the raw file itself; -r would then delete it
        cmd = [self.exe, "-b", "deck.cir"] if scripted else [self.exe, "-b", "-r", "out.raw",
                                                             "deck.cir"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            log = _log(out, err)
            raise SimulationTimeoutError(
                f"ngspice -b ran past its timeout of {timeout_s} s and was killed",
                deck_path=deck_path, log=log, corner_key=corner_key) from None
        dt = time.perf_counter() - t0
        log = _log(out, err)
        try:
            if proc.returncode < 0:
                raise EngineCrashedError(
                    f"ngspice -b died from signal {-proc.returncode}", deck_path=deck_path,
                    log=log, corner_key=corner_key)
            parse_fail = re.search(r"error on line|could not find a valid modelname|"
                                   r"unknown subckt|circuit not parsed|no such (vector|device)",
                                   log, re.IGNORECASE)
            if parse_fail:
                raise classify_failure(log, deck, deck_path=deck_path, corner_key=corner_key,
                                       stage="parse")
            # ngspice -b exits 1 after a .control block ("no simulations run"): judge by the log
            bad_rc = proc.returncode != 0 and not scripted
            if bad_rc or failure_lines(log) or not raw.exists():
                raise classify_failure(log, deck, deck_path=deck_path, corner_key=corner_key,
                                       stage="run")
            plots = read_raw(raw)
        except SimulationError:
            raise
        return SimResult(plots=number_plots(plots, deck=deck), engine="batch", log=log,
                         analysis_time_s=float("nan"), meta={"process_time_s": dt})


def _log(out: bytes, err: bytes) -> str:
    lines = [f"stdout {ln}" for ln in out.decode("latin-1").splitlines()]
    lines += [f"stderr {ln}" for ln in err.decode("latin-1").splitlines()]
    return "\n".join(lines)


def _apply_remedy(deck: str, opts: tuple[str, ...], level: int) -> str:
    lines = deck.rstrip().splitlines()
    if lines and lines[-1].strip().lower() == ".end":
        lines = lines[:-1]
    body, analyses = split_analyses("\n".join(lines))
    if level >= 2:
        analyses = [shrink_tran_step(a) for a in analyses]
    return body + f".options {' '.join(opts)}\n" + "".join(f".{a}\n" for a in analyses) + ".end\n"


class _BatchCircuit:
    """A deck re-run by ``ngspice -b`` with alterations replayed in a ``.control`` block."""

    def __init__(self, engine: BatchEngine, deck: str, corner_key: str | None) -> None:
        lines = deck.rstrip().splitlines()
        if lines and lines[-1].strip().lower() == ".end":
            lines = lines[:-1]
        self.engine, self.corner_key = engine, corner_key
        self.body, self.analyses = split_analyses("\n".join(lines))
        self.commands: list[str] = []
        self._what: list[str] = []  # per command: what it changes, for error messages

    def is_valid(self) -> bool:
        """Always True: a batch circuit is a deck text, nothing can replace it."""
        return True

    def _add(self, cmd: str, what: str) -> None:
        self.commands.append(cmd)
        self._what.append(what)

    def alter(self, element: str, value: float | None = None, **params: float) -> None:
        """``alter element = value``, or ``alter element param = value`` per keyword."""
        check_element_name(element)
        if value is not None:
            v = check_number(value, f"alter {element}")
            self._add(f"alter {element} = {v:.12g}", f"element {element}")
        for p, v in params.items():
            check_param_name(p, f"parameter of {element}")
            v = check_number(v, f"alter {element} {p}")
            self._add(f"alter {element} {p} = {v:.12g}", f"element {element}")

    def alterparam(self, name: str, value: float) -> None:
        """Change a ``.param`` (applied with ``reset`` before the run)."""
        self.alterparams({name: value})

    def alterparams(self, values: dict[str, float]) -> None:
        """Change several ``.param``s, then one ``reset``."""
        for name, value in values.items():
            check_param_name(name, ".param")
            v = check_number(value, f"alterparam {name}")
            self._add(f"alterparam {name} = {v:.12g}", f".param {name}")
        self._add("reset", "reset")

    def reset(self) -> None:
        """Re-evaluate parameters (fresh ``agauss`` draws)."""
        self._add("reset", "reset")

    def set_temp(self, temp_c: float) -> None:
        """Circuit temperature, degrees Celsius."""
        t = check_number(temp_c, "temp_c")
        self._add(f"option temp={t:.12g}", "temperature")

    def command(self, cmd: str) -> str:
        """Queue any ngspice command for the next run (the caller's code: not checked).

        Returns ``""``: its messages exist only once the run has happened.
        """
        if "\n" in cmd or "\r" in cmd:
            raise NetlistError(f"one command per call, got {cmd!r}")
        self._add(cmd, f"command {cmd.split()[0] if cmd.split() else cmd!r}")
        return ""

    def run(self, analysis: str | None = None, *, timeout_s: float | None = None,
            vectors: Iterable[str] | None = None) -> SimResult:
        """Run the deck's analyses (or ``analysis``) with every alteration so far.

        ``vectors`` keeps only those vectors (and the scale), as the shared engine does.
        """
        if analysis is not None:
            analysis = check_analysis(analysis)
        try:
            res = self._run(analysis, timeout_s)
        except SimulationError as e:
            self._check_alterations(e.log)  # name the refused alteration, if that was it
            raise
        self._check_alterations(res.log)
        return res if vectors is None else res.keep(vectors)

    def _check_alterations(self, log: str) -> None:
        """Raise when ngspice refused one of the replayed alterations (its log says so)."""
        bad = [ln for ln in log.splitlines()
               if re.search(r"no such device|no such parameter|parameter '.*' not found|"
                            r"command '\w+' skipped", ln, re.IGNORECASE)]
        if bad:
            words = "; ".join(ln.replace("stderr ", "").strip() for ln in bad[:3])
            names = sorted({w for w, c in zip(self._what, self.commands, strict=True)
                            if c.split()[0] in ("alter", "alterparam", "option")
                            and _names_in(c, words)})
            raise SimulationError(
                f"{', '.join(names) or 'an alteration'}: ngspice refused it: {words}",
                deck_path=None, log=log, corner_key=self.corner_key)

    def _run(self, analysis: str | None, timeout_s: float | None) -> SimResult:
        analyses = [analysis] if analysis else self.analyses
        if not analyses:
            raise NetlistError("the deck has no analysis line and no analysis was given")

        def run(extra_opts: str) -> SimResult:
            ctl = [".control", *self.commands]
            if extra_opts:
                ctl.append(f"option {extra_opts}")
            ctl.append("set appendwrite")
            counts: dict[str, int] = {}
            for a in analyses:
                t = plot_type(a.split()[0])
                ctl.append(a)
                n_plots = 2 if t == "noise" else 1
                for _ in range(n_plots):
                    counts[t] = counts.get(t, 0) + 1
                    ctl += [f"setplot {t}{counts[t]}", "write out.raw"]
            ctl += [".endc", ".end"]
            deck = self.body + "\n".join(ctl) + "\n"
            return self.engine._run_deck(deck, self.corner_key, timeout_s, None, scripted=True)

        try:
            return run("")
        except ConvergenceError as first:
            err = first
            for level, opts in enumerate(self.engine.remedies, 1):
                try:
                    res = run(" ".join(opts))
                    res.meta["remedy"] = level
                    return res
                except ConvergenceError as e:
                    err = e
            raise err from None if err is first else first


def _names_in(cmd: str, words: str) -> bool:
    parts = cmd.split()
    name = parts[1].lower() if len(parts) > 1 else ""
    return bool(name) and name in words.lower()
