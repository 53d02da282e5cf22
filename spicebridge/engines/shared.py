"""In-process ngspice through a thin ctypes binding of libngspice.

libngspice keeps global state and is not thread-safe: one instance per process, guarded by a
lock. Parallelism is by processes (see ``characterization``). ``set num_threads=1`` is sent
before any circuit is loaded: BSIM3/4's OpenMP made identical transients vary 0.33-8.8 s on
2-core machines (shared/reference/ngspice.md, trap 7).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import glob
import os
import shutil
import stat as _stat
import tempfile
import threading
import time
from collections.abc import Iterable
from ctypes import CFUNCTYPE, POINTER, c_bool, c_char_p, c_double, c_int, c_short, c_void_p
from pathlib import Path

import numpy as np

from ..errors import (
    ConvergenceError,
    EngineCrashedError,
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
from ..netlist import deck_hash
from ..results import Plot, SimResult, number_plots
from .base import DEFAULT_REMEDIES, RESTORE_OPTIONS, classify_failure, failure_lines

_MAX_LOG_LINES = 4000  # bounded message buffer: ngspice can print without end

MAX_CRASH_RELOADS = 4
"""Reloads of libngspice after it gave up, per process; each keeps the dead instance mapped
(5 MB for a small deck, 70 MB with sky130 models parsed: bench/bridge_memory.py).
Past this the engine refuses to reload and says to restart the process (sweeps recycle their
workers)."""

_SV_VOLTAGE = 3
_SV_CURRENT = 4

_TYPE_TITLES = {
    "op": "Operating Point", "tran": "Transient Analysis", "ac": "AC Analysis",
    "dc": "DC transfer characteristic", "tf": "Transfer Function",
    "sens": "Sensitivity Analysis", "pz": "Pole-Zero Analysis", "disto": "Distortion Analysis",
}


class _VecInfo(ctypes.Structure):
    _fields_ = [
        ("v_name", c_char_p),
        ("v_type", c_int),
        ("v_flags", c_short),
        ("v_realdata", POINTER(c_double)),
        ("v_compdata", c_void_p),
        ("v_length", c_int),
    ]


class _VecInfoAll(ctypes.Structure):
    # leading fields of ngspice's vecinfoall; only these are read
    _fields_ = [("name", c_char_p), ("title", c_char_p), ("date", c_char_p), ("type", c_char_p)]


_SendInitData = CFUNCTYPE(c_int, POINTER(_VecInfoAll), c_int, c_void_p)
_SendChar = CFUNCTYPE(c_int, c_char_p, c_int, c_void_p)
_SendStat = CFUNCTYPE(c_int, c_char_p, c_int, c_void_p)
_Exit = CFUNCTYPE(c_int, c_int, c_bool, c_bool, c_int, c_void_p)
_BGRun = CFUNCTYPE(c_int, c_bool, c_int, c_void_p)


def _library_file(name: str) -> str:
    """The file behind a library name (``libngspice.so.0`` -> its path), for copying it."""
    if "/" in name and Path(name).is_file():
        return name
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            for line in maps:
                path = line.split()[-1]
                if Path(path).name.startswith("libngspice") and Path(path).is_file():
                    return path
    except OSError:
        pass
    for pattern in ("/usr/lib/*/libngspice.so*", "/usr/lib/libngspice.so*",
                    "/usr/local/lib/libngspice.so*"):
        for path in sorted(glob.glob(pattern)):
            if Path(path).is_file():
                return path
    raise SimulatorUnavailableError(f"cannot find the file of {name} to reload it")


def find_libngspice() -> str:
    """Path of libngspice without the user setting anything.

    Order: ``NGSPICE_LIBRARY_PATH``, the linker's ``libngspice``, then Debian's multiarch
    ``libngspice.so.0`` (Debian has no ``libngspice.so`` without ``libngspice0-dev``).

    Raises:
        SimulatorUnavailableError: No library found.
    """
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env:
        if not Path(env).is_file():
            raise SimulatorUnavailableError(f"NGSPICE_LIBRARY_PATH={env} is not a file")
        return env
    found = ctypes.util.find_library("ngspice")
    candidates = [found] if found else []
    for pattern in ("/usr/lib/*/libngspice.so*", "/usr/lib/libngspice.so*",
                    "/usr/local/lib/libngspice.so*", "/opt/homebrew/lib/libngspice*.dylib"):
        candidates += sorted(glob.glob(pattern))
    for c in candidates:
        try:
            ctypes.CDLL(c)
            return c
        except OSError:
            continue
    raise SimulatorUnavailableError(
        "libngspice not found; install it (Debian/Ubuntu: apt-get install libngspice0) "
        "or set NGSPICE_LIBRARY_PATH"
    )


class _NgLib:
    """The process's one libngspice instance."""

    def __init__(self) -> None:
        self.path = find_libngspice()
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.log: collections.deque[str] = collections.deque(maxlen=_MAX_LOG_LINES)
        self.exit_status: int | None = None
        self._bg_done = threading.Event()
        self.new_plots: list[tuple[str, str]] = []
        self._reloads = 0
        self.exhausted = False  # too many crash reloads: the process should be restarted
        self.runs = 0  # analyses run by this instance (libngspice grows ~1 KB per run)
        self.circuit: object | None = None  # the circuit loaded now, whichever engine loaded it
        self._dead: list[object] = []
        self._open()

    def _open(self) -> None:
        try:
            self.lib = ctypes.CDLL(self.path)
        except OSError as e:
            raise SimulatorUnavailableError(f"cannot load {self.path}: {e}") from e
        lib = self.lib
        lib.ngSpice_Init.argtypes = [_SendChar, _SendStat, _Exit, c_void_p, _SendInitData,
                                     _BGRun, c_void_p]
        lib.ngSpice_Command.argtypes = [c_char_p]
        lib.ngSpice_Circ.argtypes = [POINTER(c_char_p)]
        lib.ngGet_Vec_Info.argtypes = [c_char_p]
        lib.ngGet_Vec_Info.restype = POINTER(_VecInfo)
        lib.ngSpice_CurPlot.restype = c_char_p
        lib.ngSpice_AllPlots.restype = POINTER(c_char_p)
        lib.ngSpice_AllVecs.argtypes = [c_char_p]
        lib.ngSpice_AllVecs.restype = POINTER(c_char_p)
        lib.ngSpice_running.restype = c_bool
        # keep references: ctypes frees callbacks that are garbage-collected
        self._cbs = (_SendChar(self._on_char), _SendStat(lambda *a: 0), _Exit(self._on_exit),
                     _SendInitData(self._on_init_data), _BGRun(self._on_bg))
        lib.ngSpice_Init(self._cbs[0], self._cbs[1], self._cbs[2], None, self._cbs[3],
                         self._cbs[4], None)
        self.exit_status = None
        self.command("set num_threads=1")
        self.version = self._read_version()

    def _read_version(self) -> str:
        self.log.clear()
        self.command("version -s")
        for line in self.log:
            if "ngspice-" in line:
                return line.split("ngspice-")[-1].split()[0].strip(" ,*")
        return "unknown"

    def reopen(self) -> None:
        """A fresh library instance after ngspice asked to exit.

        ``dlclose`` of libngspice followed by a new ``dlopen`` crashes ngspice 39 (its static
        state and handlers outlive the unload), so the dead instance stays mapped, unused, and
        a private copy of the library file is loaded: a separate instance with its own globals.
        """
        if self._reloads >= MAX_CRASH_RELOADS:
            self.exhausted = True
            raise EngineCrashedError(
                f"ngspice gave up {self._reloads + 1} times in this process; not reloading it "
                f"again (each reload keeps 5-70 MB): restart the process", deck_path=None,
                log="\n".join(self.log))
        self._reloads += 1
        tmpdir = Path(tempfile.mkdtemp(prefix="spicebridge-ngspice-"))
        copy = tmpdir / f"libngspice-reload{self._reloads}.so"
        shutil.copyfile(_library_file(self.path), copy)
        self.path = str(copy)
        self._dead.append(self.lib)  # keep the old instance (and its callbacks) alive
        self._dead.append(self._cbs)
        try:
            self._open()
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)  # a mapped file may be unlinked

    def _on_char(self, msg: bytes, _id: int, _user: int) -> int:
        self.log.append(msg.decode("latin-1", "replace"))
        return 0

    def _on_init_data(self, info, _id: int, _user: int) -> int:
        # called once per new plot, in the order the analyses run: keeps order and titles
        v = info.contents
        # ngspice fills "name" with the title and "type" with the plot name (op1, tran2 ...)
        self.new_plots.append(((v.type or b"").decode(), (v.name or b"").decode()))
        return 0

    def _on_exit(self, status: int, _unload: bool, _quit: bool, _id: int, _user: int) -> int:
        self.exit_status = status
        return 0

    def _on_bg(self, noruns: bool, _id: int, _user: int) -> int:
        if noruns:  # ngspice calls this with True when its background thread ends
            self._bg_done.set()
        return 0

    def command(self, cmd: str) -> int:
        return int(self.lib.ngSpice_Command(cmd.encode("latin-1")))

    def load(self, lines: list[str]) -> int:
        arr = (c_char_p * (len(lines) + 1))(*[ln.encode("latin-1") for ln in lines], None)
        return int(self.lib.ngSpice_Circ(arr))

    def run_in_background(self, timeout_s: float, analysis: str | None = None) -> bool:
        """``bg_run`` (or ``bg_<analysis>``) in ngspice's own thread, halted after
        ``timeout_s``. False on timeout."""
        self._bg_done.clear()
        self.command("bg_" + (analysis or "run"))
        if self._bg_done.wait(timeout_s):
            return True
        self.command("bg_halt")
        self._bg_done.wait(10.0)
        return False

    def plots(self) -> list[str]:
        """Plots made since ``new_plots`` was cleared, in the order the analyses ran."""
        arr = self.lib.ngSpice_AllPlots()
        alive = set()
        i = 0
        while arr[i]:
            alive.add(arr[i].decode())
            i += 1
        return [n for n, _ in self.new_plots if n in alive]

    def read_plot(self, plot: str, only: frozenset[str] | None = None) -> Plot:
        """The vectors of a plot (all, or those named in ``only`` plus the scale)."""
        arr = self.lib.ngSpice_AllVecs(plot.encode())
        vecs: dict[str, np.ndarray] = {}
        scale = None
        i = 0
        names = []
        while arr[i]:
            names.append(arr[i].decode())
            i += 1
        if only is not None:  # skip the C call for vectors nobody asked for
            names = [n for n in names
                     if _canonical_guess(n) & only or any(map(_is_scale, _canonical_guess(n)))]
        for name in names:
            info = self.lib.ngGet_Vec_Info(f"{plot}.{name}".encode())
            if not info:
                continue
            v = info.contents
            n = v.v_length
            if v.v_realdata:
                data = np.ctypeslib.as_array(v.v_realdata, (n,)).copy()
            elif v.v_compdata:
                raw = np.ctypeslib.as_array(ctypes.cast(v.v_compdata, POINTER(c_double)), (2 * n,))
                data = raw.view(np.complex128).copy()
            else:
                data = np.zeros(0)
            key = _canonical_name(name, v.v_type)
            if only is not None and key not in only and not _is_scale(key):
                continue
            vecs[key] = data
            if _is_scale(key):
                scale = key
        ptype = plot.rstrip("0123456789")
        title = dict(self.new_plots).get(plot) or _TYPE_TITLES.get(ptype, plot)
        if ptype == "dc":
            scale = scale or next(iter(vecs), None)
        if ptype == "op":
            scale = None
        if scale == "frequency" and np.iscomplexobj(vecs["frequency"]):
            vecs["frequency"] = vecs["frequency"].real.copy()
        return Plot(name=plot, title=title, vectors=vecs, scale=scale)


_SCALES = frozenset({"time", "frequency", "v-sweep", "i-sweep", "temp-sweep"})


def _is_scale(name: str) -> bool:
    """``time``, ``frequency`` or a DC sweep variable (``v-sweep``, ``res-sweep`` ...)."""
    return name in _SCALES or name.endswith("-sweep")


def _canonical_guess(name: str) -> set[str]:
    """The raw-file names a shared-mode vector name can map to (its type is not read yet)."""
    n = name.lower()
    if n.endswith("#branch"):
        return {f"i({n[:-7]})"}
    return {n, f"v({n})"}


def _canonical_name(name: str, vtype: int) -> str:
    """Shared-mode names (``out``, ``vc#branch``) -> raw-file names (``v(out)``, ``i(vc)``)."""
    n = name.lower()
    if n.endswith("#branch"):
        return f"i({n[: -len('#branch')]})"
    if "(" in n or n.startswith("@"):
        return n
    if vtype == _SV_VOLTAGE and n not in ("v-sweep",):
        return f"v({n})"
    return n


_INSTANCE: _NgLib | None = None
_INSTANCE_LOCK = threading.Lock()


def loaded_version() -> str | None:
    """ngspice's version if this process has loaded libngspice, else None (loads nothing)."""
    inst = _INSTANCE
    return inst.version if inst is not None and inst.pid == os.getpid() else None


def _nglib() -> _NgLib:
    global _INSTANCE
    with _INSTANCE_LOCK:
        if _INSTANCE is None or _INSTANCE.pid != os.getpid():
            _INSTANCE = _NgLib()
        return _INSTANCE


class SharedEngine:
    """In-process libngspice: the fast engine (re-runs of a loaded circuit cost microseconds).

    Every ``SharedEngine`` of a process drives the same library instance under one lock.

    Args:
        remedies: Option sets tried in turn when a run fails to converge; ``()`` disables.
        save_dir: Where failing decks are saved (default: ``deck_dir()``, a per-user 0700
            folder).
        allow_control: Let included / ``.lib`` model files hold ``.control`` blocks and
            ``shell`` lines (refused by default: included files are data).
    """

    name = "shared"

    def __init__(
        self,
        *,
        remedies: tuple[tuple[str, ...], ...] = DEFAULT_REMEDIES,
        save_dir: Path | None = None,
        allow_control: bool = False,
    ) -> None:
        self._ng = _nglib()
        self.remedies = remedies
        self.save_dir = save_dir
        self.allow_control = allow_control

    @property
    def version(self) -> str:
        """ngspice version string, e.g. ``39``."""
        return self._ng.version

    def simulate(
        self,
        deck: str,
        *,
        corner_key: str | None = None,
        timeout_s: float | None = None,
        rundir: Path | None = None,
    ) -> SimResult:
        """Load ``deck``, run its analyses, read every plot.

        Raises:
            ParseError: ngspice rejected the deck.
            ConvergenceError: No convergence, also after the remedies.
            SimulationTimeoutError: Ran past ``timeout_s``.
            EngineCrashedError: ngspice asked to exit during the run.
        """
        circ = self.load(deck, corner_key=corner_key, rundir=rundir)
        return circ.run(timeout_s=timeout_s)

    def load(
        self, deck: str, *, corner_key: str | None = None, rundir: Path | None = None
    ) -> _SharedCircuit:
        """Parse ``deck`` once; the returned circuit re-runs with altered parameters.

        Loading another deck invalidates the previous circuit (one circuit per process).

        Raises:
            ParseError: ngspice rejected the deck.
            UnsafeDeckError: An included file holds ``.control``/``shell`` (not allowed).
        """
        check_included_files(deck, base_dirs=[rundir] if rundir else None,
                             allow_control=self.allow_control)
        with self._ng.lock:
            if self._ng.circuit is not None:
                self._ng.circuit._valid = False
                self._ng.circuit = None
            circ = _SharedCircuit(self, deck, corner_key, rundir)
            self._ng.circuit = circ
        return circ

    def _save_deck(self, deck: str, rundir: Path | None) -> Path:
        return save_failing_deck(deck, rundir or self.save_dir)


def deck_dir() -> Path:
    """This user's folder for failing decks: ``$TMPDIR/spicebridge-decks-<uid>``, mode 0700.

    Raises:
        SimulationError: The folder exists but is not a folder owned by this user.
    """
    d = Path(tempfile.gettempdir()) / f"spicebridge-decks-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        d.mkdir(mode=0o700)
    st = os.lstat(d)
    if not _stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise SimulationError(f"{d} is not a folder of this user; remove it (failing decks "
                              "are saved there)", deck_path=None, log="")
    if st.st_mode & 0o077:
        os.chmod(d, 0o700)
    return d


def save_failing_deck(deck: str, directory: Path | None = None) -> Path:
    """Write a failing deck (once per content) to ``directory`` or ``deck_dir()``."""
    d = directory if directory is not None else deck_dir()
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"deck-{deck_hash(deck)[:12]}.cir"
    if not p.exists():
        from ..fileio import atomic_write_text

        atomic_write_text(p, deck)
    return p


class _SharedCircuit:
    """A deck loaded in the process's libngspice; see ``LoadedCircuit``."""

    def __init__(self, engine: SharedEngine, deck: str, corner_key: str | None,
                 rundir: Path | None) -> None:
        self.engine, self.deck, self.corner_key, self.rundir = engine, deck, corner_key, rundir
        self._valid = True
        self._load()

    def _load(self) -> None:
        self._check()
        ng = self.engine._ng
        lines = self.deck.splitlines()
        if not lines or lines[-1].strip().lower() != ".end":
            lines = [*lines, ".end"]
        with ng.lock:
            ng.command("destroy all")
            ng.command("remcirc")
            ng.log.clear()
            rc = ng.load(lines)
            log = "\n".join(ng.log)
            if ng.exit_status is not None:
                ng.reopen()
                said = "; ".join(failure_lines(log)[:3])
                raise EngineCrashedError(f"ngspice gave up while parsing the deck: {said}",
                                         deck_path=self.engine._save_deck(self.deck, self.rundir),
                                         log=log, corner_key=self.corner_key)
            if rc != 0 or failure_lines(log) or "circuit not parsed" in log.lower():
                raise classify_failure(log, self.deck,
                                       deck_path=self.engine._save_deck(self.deck, self.rundir),
                                       corner_key=self.corner_key, stage="parse")

    def is_valid(self) -> bool:
        """False once a later ``load()`` in this process replaced this circuit, or after
        ngspice gave up during a run (load the deck again)."""
        return self._valid

    def _checked_command(self, cmd: str, what: str) -> None:
        """Send one command and raise when ngspice answered with an error."""
        ng = self.engine._ng
        ng.log.clear()
        ng.command(cmd)
        said = [ln for ln in ng.log if "error" in ln.lower() or "skipped" in ln.lower()]
        if said:
            words = "; ".join(ln.replace("stderr ", "").strip() for ln in said[:3])
            raise SimulationError(f"{what}: ngspice refused {cmd!r}: {words}",
                                  deck_path=None, log="\n".join(ng.log),
                                  corner_key=self.corner_key)

    def _check(self) -> None:
        if self.engine._ng.exhausted:
            raise EngineCrashedError(
                "ngspice gave up more often than it may be reloaded in this process "
                f"({MAX_CRASH_RELOADS}); restart the process", deck_path=None, log="",
                corner_key=self.corner_key)
        if not self._valid:
            raise SimulationError("this circuit was replaced by a later load() in this process "
                                  "(one libngspice, one circuit per process)",
                                  deck_path=None, log="", corner_key=self.corner_key)

    def alter(self, element: str, value: float | None = None, **params: float) -> None:
        """``alter element = value``, or ``alter element param = value`` per keyword."""
        self._check()
        check_element_name(element)
        ng = self.engine._ng
        with ng.lock:
            if value is not None:
                v = check_number(value, f"alter {element}")
                self._checked_command(f"alter {element} = {v:.12g}", f"element {element}")
            for p, v in params.items():
                check_param_name(p, f"parameter of {element}")
                v = check_number(v, f"alter {element} {p}")
                self._checked_command(f"alter {element} {p} = {v:.12g}", f"element {element}")

    def alterparam(self, name: str, value: float) -> None:
        """Change a ``.param``; re-evaluated (``reset``) before the next run."""
        self.alterparams({name: value})

    def alterparams(self, values: dict[str, float]) -> None:
        """Change several ``.param``s, then one ``reset`` (cheaper than one per parameter).

        Raises:
            SimulationError: ngspice has no such ``.param`` (named in the message).
        """
        self._check()
        ng = self.engine._ng
        with ng.lock:
            for name, value in values.items():
                check_param_name(name, ".param")
                v = check_number(value, f"alterparam {name}")
                self._checked_command(f"alterparam {name} = {v:.12g}", f".param {name}")
            ng.command("reset")

    def reset(self) -> None:
        """Re-evaluate the deck's parameters (draws fresh ``agauss`` values)."""
        self._check()
        with self.engine._ng.lock:
            self.engine._ng.command("reset")

    def set_temp(self, temp_c: float) -> None:
        """Circuit temperature in degrees Celsius (``option temp=``)."""
        self._check()
        t = check_number(temp_c, "temp_c")
        with self.engine._ng.lock:
            self._checked_command(f"option temp={t:.12g}", "temperature")

    def command(self, cmd: str) -> str:
        """Send any ngspice command; returns the messages it printed."""
        self._check()
        ng = self.engine._ng
        with ng.lock:
            ng.log.clear()
            ng.command(cmd)
            return "\n".join(ng.log)

    def run(self, analysis: str | None = None, *, timeout_s: float | None = None,
            vectors: Iterable[str] | None = None) -> SimResult:
        """Run the deck's analyses (or ``analysis``) and read every plot.

        Raises:
            ConvergenceError: No convergence, also after the remedies.
            SimulationTimeoutError: Ran past ``timeout_s``; the run was halted.
            EngineCrashedError: ngspice asked to exit.

        Args:
            analysis: An analysis command instead of the deck's own (``"op"``, ``"tran 1n 1u"``).
            timeout_s: Halt the run after this many seconds.
            vectors: Read only these vectors (and the scale) instead of every vector: a large
                circuit has hundreds, and reading them can cost as much as the analysis.
        """
        self._check()
        if analysis is not None:
            analysis = check_analysis(analysis)
        only = None if vectors is None else frozenset(v.lower() for v in vectors)
        try:
            return self._run_once(analysis, timeout_s, only)
        except ConvergenceError as first:
            if not self.engine.remedies:
                raise
            ng = self.engine._ng
            err = first
            for level, opts in enumerate(self.engine.remedies, 1):
                with ng.lock:
                    ng.command("option " + " ".join(opts))
                try:
                    res = self._run_once(analysis, timeout_s, only)
                    res.meta["remedy"] = level
                    return res
                except ConvergenceError as e:
                    err = e
                finally:
                    with ng.lock:
                        ng.command("option " + " ".join(RESTORE_OPTIONS))
            err.add_note(f"tried {len(self.engine.remedies)} remedies: {self.engine.remedies}")
            raise err from first

    def _run_once(self, analysis: str | None, timeout_s: float | None,
                  only: frozenset[str] | None = None) -> SimResult:
        ng = self.engine._ng
        with ng.lock:
            ng.command("destroy all")
            ng.log.clear()
            ng.new_plots.clear()
            t0 = time.perf_counter()
            ng.runs += 1
            if timeout_s is None:
                ng.command(analysis or "run")
                finished = True
            else:  # the deck's analyses or the given one, in ngspice's thread, under a halt
                finished = ng.run_in_background(timeout_s, analysis)
            dt = time.perf_counter() - t0
            log = "\n".join(ng.log)
            deck_path = None
            if ng.exit_status is not None:
                status = ng.exit_status
                ng.reopen()
                self._valid = False
                raise EngineCrashedError(
                    f"ngspice asked to exit (status {status}) during the run; library reloaded",
                    deck_path=self.engine._save_deck(self.deck, self.rundir), log=log,
                    corner_key=self.corner_key)
            if not finished:
                raise SimulationTimeoutError(
                    f"analysis ran past its timeout of {timeout_s} s and was halted",
                    deck_path=self.engine._save_deck(self.deck, self.rundir), log=log,
                    corner_key=self.corner_key)
            names = ng.plots()
            fails = failure_lines(log)
            if fails or not names:
                deck_path = self.engine._save_deck(self.deck, self.rundir)
                raise classify_failure(log, self.deck, deck_path=deck_path,
                                       corner_key=self.corner_key, stage="run")
            plots = [ng.read_plot(n, only) for n in names]
            ng.command("destroy all")
        return SimResult(plots=number_plots(plots, deck=self.deck), engine="shared", log=log,
                         analysis_time_s=dt)
