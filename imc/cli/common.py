"""Plumbing every command shares: exit codes, ``--json [PATH]``, ``--quiet``, the error boundary.

Exit codes (the same for every command):

==  =====================================================================================
0   done
1   the run failed (every point failed, a simulation failed, ``--strict`` and a failure)
2   bad input (a file, key, value or flag is wrong; the message names it)
3   did not converge / not adequate (a fit that ran but cannot be trusted)
130 interrupted (Ctrl-C, SIGINT): one line on stderr saying what was interrupted and what
    was kept, no traceback (``Interrupted``)
==  =====================================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a message saying what was interrupted and what is kept (the command
    line prints ``spicebridge COMMAND: interrupted: MESSAGE`` and exits 130)."""


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every default and keeps the description's paragraphs.

    A default is appended as ``(default: X)`` unless the help already says it (contains
    "default") or there is nothing to show (``None``, ``False``: a flag that is off).
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(argparse.HelpFormatter._fill_text(self, para, width, indent)
                           for para in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        if "default" in h.lower() or any(action.default is x for x in
                                           (None, False, True, argparse.SUPPRESS)) \
                or isinstance(action, argparse._HelpAction | argparse._VersionAction):
            return h
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults (``Formatter``); subcommand parsers
    made from it are ``Parser`` too, so every ``--help`` shows them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)


def add_output_options(p: argparse.ArgumentParser, *, quiet: bool = True) -> None:
    """``--json [PATH]`` (stdout when PATH is omitted or ``-``) and ``--quiet``."""
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="write the result as one JSON object to PATH (stdout if no PATH or "
                   "'-'); stdout then holds only JSON")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_json"):
        return o.to_json()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _finite(o: Any) -> Any:
    """NaN and inf become ``None`` (JSON has neither); containers are walked."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def dumps(obj: Any) -> str:
    """Strict JSON (no NaN/inf) of ``obj``; numpy arrays and paths are converted."""
    return json.dumps(_finite(json.loads(json.dumps(obj, default=_jsonable))), indent=1,
                      allow_nan=False)


def emit(args: argparse.Namespace, obj: Any, human: Callable[[], None] | None = None) -> None:
    """Write ``obj`` as JSON where ``--json`` asked for it, else call ``human`` (unless quiet).

    With ``--json PATH`` the JSON goes to PATH (atomically) and the human summary still
    prints; with ``--json`` alone stdout holds only the JSON.
    """
    target = getattr(args, "json", None)
    if target in ("-", True):
        sys.stdout.write(dumps(obj) + "\n")
        return
    if target:
        from spicebridge.fileio import atomic_write_text

        atomic_write_text(Path(target), dumps(obj) + "\n")
    if human is not None and not getattr(args, "quiet", False):
        human()


def json_to_stdout(args: argparse.Namespace) -> bool:
    """True when ``--json`` sends the JSON to stdout (then nothing else may print there)."""
    return getattr(args, "json", None) in ("-", True)


def quiet_stdout(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """A context in which progress printed to stdout goes to stderr when ``--json`` owns
    stdout, so stdout stays one parseable JSON object."""
    return contextlib.redirect_stdout(sys.stderr) if json_to_stdout(args) \
        else contextlib.nullcontext()


def fail(prog: str, message: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``prog: message`` to stderr and return ``code``."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def exit_code_for(exc: BaseException) -> int | None:
    """The exit status of one of our errors, or ``None`` for an error that is a bug.

    Bad input (a spec, a lookup file, a CSV, a netlist, a value out of range) is 2; a
    simulation or run that failed is 1; a fit that did not converge is 3. An error class can
    say for itself with an ``exit_code`` attribute.
    """
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    from spicebridge.errors import SimulationError, SimulatorUnavailableError, SpiceBridgeError

    if isinstance(exc, SimulationError | SimulatorUnavailableError):
        return EXIT_FAILED
    if isinstance(exc, SpiceBridgeError):
        return EXIT_BAD_INPUT
    from characterization.errors import CharacterizationError, SweepError

    if isinstance(exc, SweepError):
        return EXIT_FAILED
    roots: list[type] = [CharacterizationError]
    nnsim_errors = sys.modules.get("nnsim.errors")
    if nnsim_errors is not None and hasattr(nnsim_errors, "NnsimError"):
        roots.append(nnsim_errors.NnsimError)
    if isinstance(exc, tuple(roots)):
        return EXIT_BAD_INPUT
    return None
