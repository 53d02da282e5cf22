"""Imports run one way: spicebridge <- characterization <- nnsim <- imc (the application).

Each package is imported module by module in a fresh interpreter with every package above it
blocked in an import hook (an import of a blocked name raises ImportError), so an import
that runs back up, directly or through an ``importlib`` string executed at import time, fails
here. The sources are also searched for import strings naming a package above.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import importlib, importlib.abc, pkgutil, sys
blocked, pkg = sys.argv[1].split(","), sys.argv[2]


class Block(importlib.abc.MetaPathFinder):
    # an import of a blocked name (or of anything below it) raises ImportError
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"blocked: {name}")
        return None


sys.meta_path.insert(0, Block())
root = importlib.import_module(pkg)
names = [pkg] + [m.name for m in pkgutil.walk_packages(root.__path__, pkg + ".")]
for name in names:
    importlib.import_module(name)
leaked = sorted({k.split(".")[0] for k in sys.modules} & set(blocked))
assert not leaked, leaked
print(len(names), "modules")
"""

CASES = {
    "spicebridge": ["characterization", "nnsim", "imc", "torch", "timm"],
    "characterization": ["nnsim", "imc", "torch", "timm", "torchvision"],
    "nnsim": ["imc", "PySpice", "spicebridge"],
}


@pytest.mark.parametrize("pkg", sorted(CASES))
def test_package_imports_with_the_packages_above_it_blocked(pkg):
    r = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(CASES[pkg]), pkg],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split()[0]) >= 3


@pytest.mark.parametrize("pkg", sorted(CASES))
def test_no_import_string_names_a_package_above(pkg):
    above = [p for p in CASES[pkg] if p in {"characterization", "nnsim", "imc", "spicebridge"}]
    # a dotted module name in a string literal ("nnsim.cli") is an import string
    pat = re.compile(r"""["']({})(\.\w+)*["']""".format("|".join(above)))
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / pkg).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pat.search(line)]
    assert not hits, hits


def test_the_block_catches_an_upward_import(tmp_path):
    # the check itself can fail: a module that imports a blocked package is reported
    (tmp_path / "lowpkg").mkdir()
    (tmp_path / "lowpkg" / "__init__.py").write_text("")
    (tmp_path / "lowpkg" / "bad.py").write_text("import imc\n")
    r = subprocess.run([sys.executable, "-c", SCRIPT, "imc", "lowpkg"], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode != 0 and "ImportError" in r.stderr
