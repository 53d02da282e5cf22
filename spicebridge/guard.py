"""Data is data: what the tool treats as data never executes anything.

A deck the user writes is code: ngspice runs it as written (``spicebridge simulate``). What
the tool reads as *data* must not run commands: model files pulled in by ``.include`` /
``.lib`` (a shared library, a fitted model), spec fields pasted into ngspice commands
(``[supply] source``, ``.param`` names), values. This module holds the two checks:

- ``check_included_files``: follows every ``.include`` / ``.lib`` of a deck, recursively,
  and refuses ``.control`` blocks, ``*ng_script`` files and command words that run programs
  or load code (``shell``, ``exec``, ``source``, ``codemodel`` ...) anywhere in the included
  files, unless the caller allows control explicitly (``--allow-control``);
- the name grammars (``check_element_name``, ``check_param_name``, ``check_analysis``): an
  element name is an element name, one word, no newline, no ``;``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UnsafeDeckError

MAX_INCLUDE_DEPTH = 32
"""Deeper ``.include`` nesting is refused (a loop, or a deck built to exhaust the reader)."""

MAX_INCLUDED_FILES = 2000
"""More included files than this in one deck are refused."""

_INCLUDE_RE = re.compile(r"""^\s*(\.include|\.inc|\.lib)\s+("[^"]*"|'[^']*'|\S+)(.*)$""",
                         re.IGNORECASE)
# lines that execute something when ngspice reads the file
_EXEC_CARD_RE = re.compile(r"^\s*\.(control|endc|exec|pre_\w*|func_exec)\b", re.IGNORECASE)
# command words that run a program or load code (an element may not be named so in data)
_EXEC_WORDS = frozenset({"shell", "exec", "source", "codemodel", "pre_codemodel", "osdi",
                         "pre_osdi", "system", "bg_run", "pre_shell"})
_ELEMENT_RE = re.compile(r"@?[A-Za-z][A-Za-z0-9_.:#\[\]<>-]{0,127}")
_PARAM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ANALYSIS_RE = re.compile(r"(op|tran|ac|dc|noise|tf|sens|pz|disto)"
                          r"([ \t]+[A-Za-z0-9_.+\-()#,:]+)*", re.IGNORECASE)

# (path, mtime_ns, size) -> (refusal or None, files it includes)
_SCAN_CACHE: dict[tuple[str, int, int], tuple[str | None, list[tuple[str, int]]]] = {}


def check_element_name(name: object, what: str = "element") -> str:
    """``name`` if it is one SPICE element name (``Vdd``, ``x1.m3``), else ``UnsafeDeckError``."""
    if not isinstance(name, str) or not _ELEMENT_RE.fullmatch(name):
        raise UnsafeDeckError(f"{what} {name!r} is not an element name (a letter (or @), then "
                              "letters, digits, _ . : # [ ] < > -; one word, at most 128)")
    return name


def check_param_name(name: object, what: str = "parameter") -> str:
    """``name`` if it is one ``.param`` / device-parameter name, else ``UnsafeDeckError``."""
    if not isinstance(name, str) or not _PARAM_RE.fullmatch(name):
        raise UnsafeDeckError(f"{what} {name!r} is not a parameter name (a letter or _, then "
                              "letters, digits or _)")
    return name


def check_analysis(analysis: object) -> str:
    """``analysis`` if it is one analysis command (``tran 1n 1u``), else ``UnsafeDeckError``."""
    if not isinstance(analysis, str) or not _ANALYSIS_RE.fullmatch(analysis.strip()):
        raise UnsafeDeckError(f"analysis {analysis!r} is not one analysis command (op, tran, "
                              "ac, dc, noise, tf ... with numbers and names, one line)")
    return analysis.strip()


def check_number(value: float, what: str) -> float:
    """``value`` as a finite float, else ``UnsafeDeckError`` (NaN/inf never reach ngspice)."""
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise UnsafeDeckError(f"{what} = {value!r} is not a finite number")
    return v


def _refusal(text: str, path: Path) -> str | None:
    lines = text.splitlines()
    if lines and re.match(r"^\s*\*\s*ng_script", lines[0], re.IGNORECASE):
        return f"{path}:1: an *ng_script file is a script, not a model library"
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("*"):
            continue
        if _EXEC_CARD_RE.match(line):
            return f"{path}:{n}: {line[:80]!r} (a .control/.exec block runs ngspice commands)"
        word = re.split(r"[\s=(;]", line, maxsplit=1)[0].lower()
        if word in _EXEC_WORDS:
            return f"{path}:{n}: {line[:80]!r} ({word!r} is a command, not a netlist line)"
        if "\x00" in line:
            return f"{path}:{n}: a NUL byte (not a text netlist)"
    return None


def _includes(text: str) -> list[tuple[str, int]]:
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        m = _INCLUDE_RE.match(raw)
        if not m:
            continue
        card, name, rest = m.groups()
        if card.lower() == ".lib" and not rest.split() and not name.startswith(("'", '"')):
            # ".lib tt": a section header inside a library, unless it names a file
            continue
        out.append((name.strip("\"'"), n))
    return out


def _scan(path: Path) -> tuple[str | None, list[tuple[str, int]]]:
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    hit = _SCAN_CACHE.get(key)
    if hit is None:
        text = path.read_bytes().decode("latin-1")
        hit = (_refusal(text, path), _includes(text))
        if len(_SCAN_CACHE) > 4096:
            _SCAN_CACHE.clear()
        _SCAN_CACHE[key] = hit
    return hit


def _candidates(name: str, dirs: list[Path]) -> list[Path]:
    p = Path(os.path.expanduser(name))
    if p.is_absolute():
        return [p]
    return [d / p for d in dirs]


def check_included_files(deck: str, *, base_dirs: list[Path] | None = None,
                         allow_control: bool = False) -> list[Path]:
    """Follow every ``.include`` / ``.lib`` of ``deck`` and refuse executable content in them.

    Relative names are looked up where ngspice may find them: the working directory, the
    ``base_dirs`` (a deck file's folder) and the folder of the including file; every
    candidate that exists is checked. A name that exists nowhere is left to ngspice (which
    reports it as a parse error).

    Args:
        deck: The deck text (its own lines are the caller's code and are not checked).
        base_dirs: Folders relative names of the top-level deck are relative to.
        allow_control: Check nothing (the user said ``--allow-control``).

    Returns:
        The included files found (resolved), in the order met.

    Raises:
        UnsafeDeckError: An included file holds ``.control``, ``shell`` ... (file:line), the
            nesting is deeper than ``MAX_INCLUDE_DEPTH`` or there are more than
            ``MAX_INCLUDED_FILES`` files.
    """
    if allow_control:
        return []
    top_dirs = [Path.cwd(), *(base_dirs or [])]
    seen: dict[Path, None] = {}
    stack = [(name, line, "<deck>", top_dirs, 1) for name, line in reversed(_includes(deck))]
    while stack:
        name, line, parent, dirs, depth = stack.pop()
        if "$" in name or "{" in name:
            continue  # a placeholder, rendered before loading
        if depth > MAX_INCLUDE_DEPTH:
            raise UnsafeDeckError(f"{parent}:{line}: .include nesting deeper than "
                                  f"{MAX_INCLUDE_DEPTH} (a loop?)")
        for cand in _candidates(name, dirs):
            try:
                if not cand.is_file():
                    continue
                path = cand.resolve()
            except OSError:
                continue
            if path in seen:
                continue
            seen[path] = None
            if len(seen) > MAX_INCLUDED_FILES:
                raise UnsafeDeckError(f"more than {MAX_INCLUDED_FILES} included files")
            try:
                bad, children = _scan(path)
            except OSError as e:
                raise UnsafeDeckError(f"{parent}:{line}: cannot read included file {path}: "
                                      f"{e.strerror or e}") from e
            if bad:
                raise UnsafeDeckError(
                    f"included file refused: {bad}. Included and .lib files are data: they "
                    "may not run commands. If you wrote this file and trust it, pass "
                    "--allow-control (allow_control=True)", path=path)
            sub = [Path.cwd(), path.parent]
            stack += [(n, ln, str(path), sub, depth + 1) for n, ln in reversed(children)]
    return list(seen)
