"""The ``spicebridge`` command line: one entry point, one module per subcommand group.

Each module in ``_COMMANDS`` has ``register(subparsers)``, which adds its subcommands and sets
``func`` on them. Modules are imported only when the command line is built, so ``nnsim``'s
torch import costs nothing to ``spicebridge simulate``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .common import EXIT_INTERRUPTED, Parser, exit_code_for

# (module, what it adds). Imports run one way: this top-level entry point is the only place
# that sees every package.
_COMMANDS: tuple[str, ...] = (
    "imc.cli.simulate",       # simulate
    "imc.cli.sweep",          # sweep, inspect
    "imc.cli.characterize",   # characterize crossbar | adc
    "imc.cli.fit",            # fit memristor
    "imc.cli.evaluate",       # train, evaluate
    "imc.cli.demo",           # demo
    "imc.cli.compare",        # compare
)


def _register(sub: argparse._SubParsersAction, mod: str) -> None:
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as exc:
        # A command group whose package is not installed (nnsim without torch on a SPICE-only
        # node) is left out; any other import error is a bug and propagates.
        if exc.name and (mod == exc.name or mod.startswith(exc.name + ".")
                         or exc.name in {"torch", "timm", "torchvision"}):
            logging.getLogger(__name__).debug("command group %s not available: %s", mod, exc)
            return
        raise
    module.register(sub)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imc-spicebridge")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = Parser(
        prog="spicebridge",
        description="SPICE co-simulation bridge for analog in-memory computing: characterize "
        "crossbars and ADCs in ngspice, store lookup models, evaluate ViT accuracy on them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _COMMANDS:
        _register(sub, mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (130 after Ctrl-C: one line, no
    traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except KeyboardInterrupt as exc:
        return interrupted(args.command, exc)


def run_command(argv: list[str]) -> int:
    """``main`` for a command run inside another one (the demo's steps): the same exit codes,
    except that Ctrl-C propagates (``KeyboardInterrupt``) to the caller, which says what was
    interrupted and what is kept."""
    return _dispatch(build_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the boundary: our errors become a message and an exit code
        code = exit_code_for(exc)
        if code is None:
            raise
        print(f"spicebridge {args.command}: {exc}", file=sys.stderr)
        return code


def interrupted(command: str, exc: BaseException) -> int:
    """Print the one line of a Ctrl-C (``spicebridge COMMAND: interrupted``, and what was
    interrupted and what is kept when ``exc`` says so: ``Interrupted``,
    ``characterization.errors.SweepInterrupted``) to stderr; returns ``EXIT_INTERRUPTED``
    (130 = 128 + SIGINT, the shell's convention)."""
    detail = str(exc) if isinstance(exc, KeyboardInterrupt) else ""
    print(f"spicebridge {command}: interrupted{': ' + detail if detail else ''}",
          file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
