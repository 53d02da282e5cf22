"""One output convention: every command has --json [PATH] with parseable stdout, a human
summary otherwise, and --help that shows defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imc.cli import build_parser, main

EXAMPLES = Path(__file__).parents[2] / "examples" / "sweeps"
COMMANDS = [["simulate"], ["sweep"], ["inspect"], ["characterize", "crossbar"],
            ["characterize", "adc"], ["fit", "memristor"], ["fit", "netlist"], ["train"],
            ["evaluate"], ["demo"], ["compare"]]


def _help(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_json_and_shows_defaults(argv, capsys):
    text = _help(capsys, argv)
    assert "--json" in text, argv
    assert "%%" not in text and "(default: None)" not in text and "default: False" not in text


def test_top_level_help_lists_every_command(capsys):
    text = _help(capsys, [])
    for argv in COMMANDS:
        assert argv[0] in text


def test_help_shows_defaults_and_demo_help_is_whole(capsys):
    text = _help(capsys, ["demo"])
    assert "5. OUT/report.md, OUT/report.json and the PNG plots." in text
    assert "root seed of the evaluations (default: 0)" in text
    assert "95 % CI" in _help(capsys, ["evaluate"])
    assert "(default: shared)" in _help(capsys, ["simulate"])
    assert build_parser().prog == "spicebridge"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("spicebridge ")


@pytest.mark.ngspice
def test_simulate_and_sweep_json_keep_stdout_parseable(tmp_path, capsys):
    deck = tmp_path / "rc.cir"
    deck.write_text("* rc\nV1 a 0 1\nR1 a b 1k\nR2 b 0 3k\n.op\n.end\n")
    assert main(["simulate", str(deck), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (plot,) = out.values()
    assert plot["v(b)"] == pytest.approx(0.75, rel=1e-9)  # the divider, 3k / 4k
    assert main(["simulate", str(deck)]) == 0
    assert "v(b)" in capsys.readouterr().out
    for name in ("divider.cir", "divider.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    res = tmp_path / "d.h5"
    assert main(["sweep", str(tmp_path / "divider.toml"), "--out", str(res), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["path"] == str(res) and s["n_failed"] == 0 and s["failures"] == []
    summary = tmp_path / "s.json"
    assert main(["sweep", str(tmp_path / "divider.toml"), "--out", str(res), "--json",
                 str(summary)]) == 0
    assert "points" in capsys.readouterr().out  # the human summary, JSON in the file
    assert json.loads(summary.read_text())["n_resumed"] == s["n_points"]
