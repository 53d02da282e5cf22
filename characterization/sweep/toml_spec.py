"""Sweeps of users' own netlists, from a TOML file (the format is documented in docs/sweeps.md).

The point function ``netlist_point`` loads the deck once per worker (and once per distinct
rendered deck, e.g. per process corner), then per point: ``alterparam`` for ``.param`` axes and
Monte-Carlo mismatch, ``reset``, ``alter`` of the supply source, ``option temp``, run (reading
only the vectors the measures name: ``run(vectors=...)``), measure.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from characterization.errors import ConfigError
from spicebridge.errors import UnsafeDeckError
from spicebridge.guard import check_analysis, check_element_name, check_included_files
from spicebridge.netlist import deck_hash, param_names, split_analyses
from spicebridge.units import parse_spice_number

from ..errors import SweepSpecError
from .run import worker_cache
from .spec import SweepPoint, SweepSpec

_FIRST_CLASS = ("process", "vdd_v", "temp_c")
_TOP_KEYS = {"name", "netlist", "analysis", "measure", "measures", "seed", "axes",
             "monte_carlo", "process", "supply", "engine", "timeout_s", "description"}
_REDUCERS = ("max", "min", "mean", "rms", "final", "initial", "pp", "at", "abs")
_CORNERS = ("tt", "ff", "ss", "fs", "sf")
_TABLES = ("measures", "axes", "monte_carlo", "process", "supply")
_TABLE_KEYS = {"process": {"lib", "devices"}, "supply": {"source", "param"},
               "monte_carlo": {"n", "mismatch"}}


def _line_of(text: str, key: str) -> int | None:
    pat = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=", re.MULTILINE)
    m = pat.search(text)
    if not m:
        m = re.search(rf"^\s*\[[^\]]*\b{re.escape(key)}\b[^\]]*\]", text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else None


class _Ctx:
    """Error helper: every message names the file, the key and its line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def err(self, key: str, msg: str) -> SweepSpecError:
        line = _line_of(self.text, key.split(".")[-1])
        where = f"{self.path}:{line}" if line else str(self.path)
        return SweepSpecError(f"{where}: key {key!r}: {msg}")


def _measure_units(expr: str) -> str:
    inner = expr.lower()
    while True:
        m = re.fullmatch(r"(\w+)\((.*)\)", inner.strip())
        if not m or m.group(1) not in _REDUCERS:
            break
        inner = m.group(2).rsplit(",", 1)[0] if m.group(1) == "at" else m.group(2)
    inner = inner.strip()
    if inner.startswith("v(") or inner.endswith("noise_total"):
        return "V"
    if inner.startswith("i(") or inner.endswith("#branch"):
        return "A"
    return ""


def _check_expr(expr: str) -> None:
    """Reject malformed measure expressions early (before any point runs)."""
    e = expr.strip()
    depth = 0
    for ch in e:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            break
    if depth != 0:
        raise ConfigError(f"unbalanced parentheses in {expr!r}")
    m = re.fullmatch(r"(\w+)\((.*)\)", e)
    if m and m.group(1).lower() in _REDUCERS:
        fn, arg = m.group(1).lower(), m.group(2)
        if fn == "at":
            if "," not in arg:
                raise ConfigError(f"at() needs a vector and a scale value: {expr!r}")
            vec, x = arg.rsplit(",", 1)
            parse_spice_number(x)
            _check_expr(vec)
        else:
            _check_expr(arg)
    elif not e or not re.fullmatch(r"[\w#().:\[\]+-]+", e):
        raise ConfigError(f"not a vector name or measure: {expr!r}")


def _elements(deck: str) -> dict[str, str]:
    """Top-level element names of a deck (lower case) -> their line, subcircuits excluded."""
    out: dict[str, str] = {}
    depth = 0
    for raw in deck.splitlines():
        line = raw.strip()
        low = line.lower()
        if low.startswith(".subckt"):
            depth += 1
        elif low.startswith(".ends"):
            depth = max(0, depth - 1)
        elif depth == 0 and line and line[0].isalpha():
            out.setdefault(line.split()[0].lower(), line)
    return out


def _finite(vals: list[Any]) -> bool:
    return all(isinstance(v, str) or (v == v and v not in (float("inf"), float("-inf")))
               for v in vals)


def load_spec(path: str | Path, *, name: str | None = None,
              allow_control: bool = False) -> SweepSpec:
    """Read a TOML sweep spec for a user's netlist.

    Args:
        path: The TOML file; the netlist path in it is relative to this file.
        name: Override the sweep name (default: ``name`` in the file, else the file's stem).
        allow_control: Let the netlist and its included files hold ``.control`` blocks and
            ``shell`` lines (refused by default: the deck is loaded again and again, and
            included model files are data).

    Returns:
        A ``SweepSpec`` whose point function is ``netlist_point``.

    Raises:
        SweepSpecError: Unreadable file, TOML syntax error, unknown or wrong keys; the message
            names the file, the key and its line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SweepSpecError(f"{path}: cannot read the sweep spec: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise SweepSpecError(f"{path}:{line}: not UTF-8 text (byte {e.object[e.start]:#04x} "
                             f"at offset {e.start}); TOML files are UTF-8") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepSpecError(f"{path}: TOML syntax error: {e}") from e
    c = _Ctx(path, text)
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise c.err(k, f"unknown key; known keys: {sorted(_TOP_KEYS)}")
    for t in _TABLES:
        if t in doc and not isinstance(doc[t], dict):
            raise c.err(t, f"must be a table ([{t}] ...), got a {type(doc[t]).__name__}: "
                        f"{doc[t]!r}"[:300])
    for t, known in _TABLE_KEYS.items():
        extra = sorted(set(doc.get(t, {})) - known)
        if extra:
            raise c.err(f"{t}.{extra[0]}", f"unknown key in [{t}]; known: {sorted(known)}")
    for k in ("name", "description"):
        if k in doc and not isinstance(doc[k], str):
            raise c.err(k, f"must be a string, got {doc[k]!r}"[:300])

    if "netlist" not in doc or not isinstance(doc["netlist"], str):
        raise SweepSpecError(f"{path}: key 'netlist' (a path relative to the TOML file) is "
                             "required")
    net = (path.parent / doc["netlist"]).resolve()
    try:
        deck = net.read_text(encoding="latin-1")
    except OSError as e:
        raise c.err("netlist", f"cannot read {net}: {e.strerror or e}") from e
    if not Template(deck).is_valid():
        raise c.err("netlist", f"{net} has a malformed ${{...}} placeholder")
    try:
        deck, included = resolve_includes(deck, net)
    except ValueError as e:
        raise c.err("netlist", str(e)) from e
    if not allow_control:
        m = re.search(r"^\s*\.control\b", deck, re.IGNORECASE | re.MULTILINE)
        if m:
            raise c.err("netlist", f"{net}:{deck.count(chr(10), 0, m.start()) + 1}: a "
                        ".control block (it would run at every load, outside the sweep); "
                        "remove it, or pass --allow-control if you mean it")
        try:
            check_included_files(deck, base_dirs=[net.parent])
        except UnsafeDeckError as e:
            raise c.err("netlist", str(e)) from e
    placeholders = set(Template(deck).get_identifiers())
    body, deck_analyses = split_analyses(deck)

    analysis = doc.get("analysis")
    if analysis is None:
        if not deck_analyses:
            raise c.err("analysis", f"missing, and {net.name} has no analysis line of its own")
        analysis = deck_analyses[-1]
    if not isinstance(analysis, str) or not analysis.split():
        raise c.err("analysis", f"must be a string like 'op' or 'tran 1n 100n', got "
                    f"{analysis!r}")
    analysis = analysis.strip().lstrip(".")
    if analysis.split()[0].lower() not in ("op", "tran", "ac", "dc", "noise", "tf"):
        raise c.err("analysis", f"unsupported analysis {analysis!r}")
    try:
        analysis = check_analysis(analysis)
    except UnsafeDeckError as e:
        raise c.err("analysis", str(e)) from e

    measures: dict[str, str] = {}
    exprs: dict[str, str] = {}
    if "measure" in doc:
        if not isinstance(doc["measure"], list) or not doc["measure"]:
            raise c.err("measure", "must be a non-empty list of vector names or measures")
        for e in doc["measure"]:
            if not isinstance(e, str):
                raise c.err("measure", f"entries must be strings, got {e!r}")
            exprs[e] = e
            measures[e] = _measure_units(e)
    for k, v in doc.get("measures", {}).items():
        if isinstance(v, str):
            v = {"expr": v}
        if not isinstance(v, dict) or not isinstance(v.get("expr"), str):
            raise c.err(f"measures.{k}", "must be a string or {expr = \"...\", units = \"...\"}")
        extra = set(v) - {"expr", "units"}
        if extra:
            raise c.err(f"measures.{k}", f"unknown keys {sorted(extra)}")
        exprs[k] = v["expr"]
        measures[k] = str(v.get("units", _measure_units(v["expr"])))
    if not measures:
        raise SweepSpecError(f"{path}: give 'measure = [...]' or a [measures] table")
    for k, e in exprs.items():
        try:
            _check_expr(e)
        except ValueError as err:
            raise c.err("measure" if k == e else f"measures.{k}", str(err)) from err

    seed = doc.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise c.err("seed", f"must be a non-negative integer, got {seed!r}")

    axes_doc = doc.get("axes", {})
    if not isinstance(axes_doc, dict):
        raise c.err("axes", "must be a table of name = [values]")
    params = param_names(body)
    axes: dict[str, list[Any]] = {}
    kinds: dict[str, str] = {}
    for k, vals in axes_doc.items():
        key = f"axes.{k}"
        if not isinstance(vals, list) or not vals:
            raise c.err(key, f"must be a non-empty list, got {vals!r}")
        if k in placeholders:
            kinds[k] = "template"
        elif k == "process":
            bad = [v for v in vals if str(v).lower() not in _CORNERS]
            if bad:
                raise c.err(key, f"unknown corners {bad}; known: {list(_CORNERS)}")
            vals = [str(v).lower() for v in vals]
            kinds[k] = "process"
        elif k in ("vdd_v", "temp_c"):
            kinds[k] = k
        elif k.lower() in params:
            kinds[k] = "param"
        else:
            raise c.err(key, f"names no .param of {net.name} (has {sorted(params)}), no "
                        f"${{placeholder}} (has {sorted(placeholders)}), and is not one of "
                        f"{list(_FIRST_CLASS)}")
        if kinds[k] != "process" and not all(isinstance(v, (int, float)) and
                                             not isinstance(v, bool) for v in vals):
            raise c.err(key, f"values must be numbers, got {vals!r}"[:300])
        if not _finite(vals):
            raise c.err(key, f"values must be finite numbers, got {vals!r}"[:300])
        axes[k] = vals if kinds[k] == "process" else [float(v) for v in vals]
    missing = placeholders - set(axes)
    if missing:
        raise c.err("axes", f"{net.name} has placeholders {sorted(missing)} with no axis")

    process: dict[str, Any] = {}
    if kinds.get("process") == "process":
        pdoc = doc.get("process", {})
        if "lib" in pdoc:
            if not isinstance(pdoc["lib"], str) or re.search(r"[\x00-\x1f\"]", pdoc["lib"]):
                raise c.err("process.lib", f"must be a file name (no quote, newline or control "
                            f"character), got {pdoc['lib']!r}"[:300])
            lib = (path.parent / str(pdoc["lib"])).resolve()
            if not lib.is_file():
                raise c.err("process.lib", f"no library file at {lib}")
            if not allow_control:
                try:
                    check_included_files(f'.lib "{lib}" tt\n')
                except UnsafeDeckError as e:
                    raise c.err("process.lib", str(e)) from e
            process = {"lib": str(lib)}
        else:
            devices = pdoc.get("devices", ["nfet_01v8", "pfet_01v8"])
            if not isinstance(devices, list) or not all(
                    isinstance(d, str) and re.fullmatch(r"[a-z0-9_]{1,64}", d) for d in devices):
                raise c.err("process.devices", f"must be a list of sky130 device names, got "
                            f"{devices!r}")
            process = {"sky130_devices": devices}
    elif "process" in doc:
        raise c.err("process", "given, but there is no 'process' axis")

    supply: dict[str, str] = {}
    if kinds.get("vdd_v") == "vdd_v":
        sdoc = doc.get("supply", {})
        if "source" in sdoc:
            src = sdoc["source"]
            try:
                check_element_name(src, "[supply] source")
            except UnsafeDeckError as e:
                raise c.err("supply.source", str(e)) from e
            elements = _elements(body)
            if src.lower() not in elements:
                have = sorted(e for e in elements if e[0] in "vi")
                raise c.err("supply.source", f"{src!r} names no element of {net.name} "
                            f"(its voltage/current sources: {have})")
            if src.lower()[0] not in "vi":
                raise c.err("supply.source", f"{src!r} is not a voltage or current source "
                            f"(V... or I...): {elements[src.lower()]!r}")
            supply = {"source": src.lower()}
        elif "param" in sdoc:
            if not isinstance(sdoc["param"], str) or sdoc["param"].lower() not in params:
                raise c.err("supply.param", f"{sdoc['param']!r} is no .param of {net.name}")
            supply = {"param": str(sdoc["param"]).lower()}
        elif "vdd_v" in params:
            supply = {"param": "vdd_v"}
        else:
            raise c.err("axes.vdd_v", "say how to apply it: [supply] source = \"Vdd\" (alter "
                        "that voltage source) or param = \"vdd\" (alterparam)")

    elif "supply" in doc:
        raise c.err("supply", "given, but there is no 'vdd_v' axis")

    mc_doc = doc.get("monte_carlo", {})
    if not isinstance(mc_doc.get("mismatch", {}), dict):
        raise c.err("monte_carlo.mismatch", "must be a table of .param = sigma")
    n_mc = mc_doc.get("n", 1)
    if not isinstance(n_mc, int) or isinstance(n_mc, bool) or n_mc < 1:
        raise c.err("monte_carlo.n", f"must be an integer >= 1, got {n_mc!r}")
    mismatch: dict[str, list[Any]] = {}
    nominal = _param_values(body)
    for k, sigma in mc_doc.get("mismatch", {}).items():
        key = f"monte_carlo.mismatch.{k}"
        if k.lower() not in params:
            raise c.err(key, f"names no .param of {net.name} (has {sorted(params)})")
        if isinstance(sigma, str) and sigma.strip().endswith("%"):
            rel = True
            s = float(sigma.strip()[:-1]) / 100.0
        elif isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            rel, s = False, float(sigma)
        else:
            raise c.err(key, f"sigma must be a number (absolute) or a string like '1%' "
                        f"(relative), got {sigma!r}")
        if not s >= 0 or s == float("inf"):
            raise c.err(key, f"sigma must be a finite number >= 0, got {sigma!r}")
        if k not in axes and k.lower() not in nominal:
            raise c.err(key, f".param {k} of {net.name} has no numeric value to vary")
        mismatch[k.lower()] = [s, rel]
    extra_mc = set(mc_doc) - {"n", "mismatch"}
    if extra_mc:
        raise c.err(f"monte_carlo.{sorted(extra_mc)[0]}", "unknown key; known: n, mismatch")

    engine = doc.get("engine", "shared")
    if engine not in ("shared", "batch"):
        raise c.err("engine", f"must be 'shared' or 'batch', got {engine!r}")
    timeout_s = doc.get("timeout_s")
    if timeout_s is not None and (not isinstance(timeout_s, (int, float))
                                  or isinstance(timeout_s, bool) or not 0 < timeout_s < 1e7):
        raise c.err("timeout_s", f"must be a positive number of seconds, got {timeout_s!r}")

    context = {
        "deck": body, "analysis": analysis, "exprs": exprs, "kinds": kinds,
        "nominal": nominal, "mismatch": mismatch, "process": process, "supply": supply,
        "engine": engine, "timeout_s": timeout_s,
    }
    if allow_control:
        context["allow_control"] = True
    return SweepSpec(
        name=name or str(doc.get("name", path.stem)), axes=axes, mc=n_mc, seed=seed,
        point_fn=netlist_point, measures=measures, context=context,
        provenance={"netlist": str(net), "netlist_sha256": deck_hash(deck),
                    "spec_file": str(path.resolve()), "spec_sha256": deck_hash(text),
                    "spec_toml": text, "description": str(doc.get("description", "")),
                    **_included_provenance(included)},
    )


_INCLUDE_RE = re.compile(r"""^(\s*)(\.include|\.inc|\.lib)(\s+)("[^"]*"|'[^']*'|\S+)(.*)$""",
                         re.IGNORECASE)


def resolve_includes(deck: str, net: Path) -> tuple[str, list[Path]]:
    """Make the deck's relative ``.include`` / ``.lib FILE SECTION`` paths absolute.

    ngspice resolves a relative path against its working directory, not the netlist's folder;
    a sweep runs wherever the user (or a Dask worker) happens to be, so a relative path is
    taken relative to the netlist file (as a user reading the netlist expects). A ``.lib NAME``
    with no section (a section header inside a library) and paths with ``${...}`` placeholders
    are left alone.

    Args:
        deck: The netlist text.
        net: The netlist file (its folder is the base of relative paths).

    Returns:
        The deck with absolute paths, and the included files (absolute, in order).

    Raises:
        ValueError: An included file that does not exist, naming the netlist line.
    """
    out: list[str] = []
    included: list[Path] = []
    for lineno, line in enumerate(deck.splitlines(), 1):
        m = _INCLUDE_RE.match(line)
        if not m:
            out.append(line)
            continue
        lead, card, sp, raw, rest = m.groups()
        if card.lower() == ".lib" and not rest.split():
            out.append(line)  # ".lib tt": a section header, not a file
            continue
        name = raw.strip("\"'")
        if "$" in name:
            out.append(line)
            continue
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = net.parent / path
        if not path.is_file():
            raise ConfigError(f"{net}:{lineno}: {card} file {name!r} not found (looked for "
                             f"{path}; relative paths are relative to the netlist's folder)")
        path = path.resolve()
        included.append(path)
        out.append(f'{lead}{card}{sp}"{path}"{rest}')
    return "\n".join(out) + ("\n" if deck.endswith("\n") else ""), included


def _included_provenance(included: list[Path]) -> dict[str, Any]:
    """Hashes of included files and the fit provenance of fitted models among them."""
    if not included:
        return {}
    prov: dict[str, Any] = {"included_files": {
        str(p): deck_hash(p.read_text(encoding="latin-1")) for p in dict.fromkeys(included)}}
    from ..fitting.memristor import read_fit_provenance  # lazy: fitting imports the sweep

    fitted = {}
    for p in dict.fromkeys(included):
        try:
            fp = read_fit_provenance(p)
        except (OSError, ValueError):  # unreadable, or a header that is not JSON
            fp = None
        if fp is not None:
            fitted[str(p)] = fp
    if fitted:
        prov["fitted_models"] = fitted
    return prov


def _param_values(deck: str) -> dict[str, float]:
    """Numeric ``.param`` values of a deck (expressions are left out)."""
    out: dict[str, float] = {}
    for line in deck.splitlines():
        if re.match(r"^\s*\.param\b", line, re.IGNORECASE):
            body = re.sub(r"^\s*\.param\s+", "", line, flags=re.IGNORECASE)
            for m in re.finditer(r"(\w+)\s*=\s*([^\s{}']+)(?=\s|$)", body):
                try:
                    out[m.group(1).lower()] = parse_spice_number(m.group(2))
                except ValueError:
                    continue
    return out


def _circuit(deck: str, engine_name: str, allow_control: bool = False) -> Any:
    """The loaded circuit for ``deck`` in this worker (one circuit per process)."""
    from spicebridge.worker import circuit

    kw = {"allow_control": True} if allow_control else {}
    return circuit(("toml-sweep", deck_hash(deck)), deck, engine_name=engine_name,
                   remember_parse_errors=True, **kw)


def render_deck(ctx: dict[str, Any], coords: dict[str, Any]) -> str:
    """The deck text of a point before any alteration (placeholders, ``.lib`` corner)."""
    kinds = ctx["kinds"]
    deck = ctx["deck"]
    tvals = {k: v for k, v in coords.items() if kinds[k] == "template"}
    if tvals:
        from spicebridge.netlist import spice_literal

        deck = Template(deck).substitute({k: spice_literal(v) for k, v in tvals.items()})
    if "process" in coords and kinds.get("process") == "process":
        proc = ctx["process"]
        if "lib" in proc:
            lib = proc["lib"]
        else:
            from spicebridge.netlist import sky130_corner_lib

            devs = tuple(proc["sky130_devices"])
            lib = str(worker_cache(("sky130-lib", devs), lambda: sky130_corner_lib(devs)))
        title, _, rest = deck.partition("\n")
        deck = f'{title}\n.lib "{lib}" {coords["process"]}\n{rest}'
    return deck


def netlist_point(point: SweepPoint) -> dict[str, Any]:
    """Run one point of a TOML netlist sweep and return its measures.

    Raises:
        SimulationError: ngspice failed at this point (recorded by the sweep).
        KeyError: A measured vector does not exist.
    """
    ctx = point.context
    kinds = ctx["kinds"]
    coords = point.coords
    circ = _circuit(render_deck(ctx, coords), ctx["engine"], ctx.get("allow_control", False))
    params = {k.lower(): float(v) for k, v in coords.items() if kinds[k] == "param"}
    supply = ctx["supply"]
    if "vdd_v" in coords and "param" in supply:
        params[supply["param"]] = float(coords["vdd_v"])
    if ctx["mismatch"]:
        rng = point.rng()
        for name in sorted(ctx["mismatch"]):
            sigma, rel = ctx["mismatch"][name]
            nom = params.get(name, ctx["nominal"].get(name))
            d = rng.standard_normal()
            params[name] = nom * (1.0 + sigma * d) if rel else nom + sigma * d
    if params:
        # reset re-parses and undoes earlier `alter`s: parameters first, alters after; every
        # alteration checks ngspice's answer and raises naming the parameter or element
        circ.alterparams(params)
    if "vdd_v" in coords and "source" in supply:
        circ.alter(supply["source"], dc=float(coords["vdd_v"]))
    if "temp_c" in coords and kinds.get("temp_c") == "temp_c":
        circ.set_temp(float(coords["temp_c"]))
    wanted = sorted({v for e in ctx["exprs"].values() for v in measure_vectors(e)})
    res = circ.run(ctx["analysis"], timeout_s=ctx["timeout_s"], vectors=wanted)
    try:
        return {k: evaluate_measure(res, e) for k, e in ctx["exprs"].items()}
    except KeyError:
        # a vector that is not there: read them all once, so the error lists what there is
        res = circ.run(ctx["analysis"], timeout_s=ctx["timeout_s"])
        return {k: evaluate_measure(res, e) for k, e in ctx["exprs"].items()}


def measure_vectors(expr: str) -> set[str]:
    """The vector names a measure expression reads, in lower case.

    ``max(v(out))`` -> ``{"v(out)"}``; the point function asks the engine for only these
    vectors (and the plot's scale) instead of every vector of the circuit.
    """
    e = expr.strip()
    m = re.fullmatch(r"(\w+)\((.*)\)", e)
    if m and m.group(1).lower() in _REDUCERS:
        arg = m.group(2).rsplit(",", 1)[0] if m.group(1).lower() == "at" else m.group(2)
        return measure_vectors(arg)
    return {e.lower()}


def evaluate_measure(res: Any, expr: str) -> float:
    """Evaluate a measure expression on a ``SimResult``.

    ``v(out)``: the value (``.op``) or the final value (sweeps); ``max/min/mean/rms/pp/final/
    initial(x)``; ``at(x, 50n)``: linear interpolation on the plot's scale; ``abs(x)``.
    Complex (``.ac``) vectors are reduced by magnitude.

    Raises:
        KeyError: No such vector.
        ValueError: ``at`` outside the scale's range.
    """
    v, _ = _measure_vector(res, expr.strip())
    v = np.ravel(np.asarray(v))
    if np.iscomplexobj(v):
        v = np.abs(v)
    return float(v[-1])


def _measure_vector(res: Any, e: str) -> tuple[Any, Any]:
    m = re.fullmatch(r"(\w+)\((.*)\)", e)
    if m and m.group(1).lower() in _REDUCERS:
        fn, arg = m.group(1).lower(), m.group(2)
        if fn == "at":
            inner, x = arg.rsplit(",", 1)
            v, scale = _measure_vector(res, inner.strip())
            if scale is None:
                raise ConfigError(f"at() needs a swept analysis (tran/ac/dc): {e!r}")
            xv = parse_spice_number(x)
            s = np.real(scale)
            if not s[0] <= xv <= s[-1]:
                raise ConfigError(f"{e}: {xv:g} outside the scale [{s[0]:g}, {s[-1]:g}]")
            v = np.abs(v) if np.iscomplexobj(v) else v
            return np.interp(xv, s, v), None
        v, scale = _measure_vector(res, arg.strip())
        v = np.abs(v) if np.iscomplexobj(v) else np.asarray(v, dtype=float)
        reduced = {"max": np.max, "min": np.min, "mean": np.mean,
                   "rms": lambda a: np.sqrt(np.mean(np.square(a))),
                   "final": lambda a: np.ravel(a)[-1], "initial": lambda a: np.ravel(a)[0],
                   "pp": np.ptp}
        if fn == "abs":
            return np.abs(v), scale
        return reduced[fn](v), None
    plot = res.last
    name = e.lower()
    for p in reversed(list(res.plots.values())):
        if name in p.vectors:
            plot = p
            break
    v = plot[name]
    scale = plot.vectors.get(plot.scale) if plot.scale else None
    return v, scale
