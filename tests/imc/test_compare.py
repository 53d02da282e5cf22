"""spicebridge compare on real evaluate runs: table rows, figure, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imc.cli import main


@pytest.fixture(scope="module")
def two_runs(tiny_digits_model, synthetic_lookups, tmp_path_factory):
    _, meta = tiny_digits_model
    d = tmp_path_factory.mktemp("runs")
    common = ["evaluate", "--model", "digits-tiny", "--cache-dir", str(Path(meta["path"]).parent),
              "--lookup", *map(str, synthetic_lookups), "--process", "tt,ss", "--vdd-v", "1.8",
              "--temp-c", "27", "--bits", "4,6", "--gamma", "3", "--chips", "2",
              "--limit", "24", "--quiet"]
    assert main([*common, "--json", str(d / "analog.json")]) == 0
    assert main([*common, "--clipformer", "--json", str(d / "clip.json")]) == 0
    return d / "analog.json", d / "clip.json"


def test_compare_tables_and_plots_every_point(two_runs, tmp_path, capsys):
    a, b = two_runs
    fig = tmp_path / "fig.png"
    out = tmp_path / "cmp.json"
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--x", "bits", "--hue", "process", "--out",
                 str(fig), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads(out.read_text())
    assert r["paired"] and len(r["rows"]) == 8  # 2 runs x 2 corners x 2 resolutions
    runs = {p.stem: json.loads(p.read_text()) for p in (a, b)}
    for row in r["rows"]:  # every row is a point of its run, with its numbers
        pts = [p for p in runs[row["run"]]["points"]
               if (p["setting"]["process"], p["setting"]["bits"]) == (row["process"],
                                                                       row["bits"])]
        assert len(pts) == 1
        assert row["accuracy"] == pts[0]["accuracy_mean"] and row["ci"] == pts[0]["accuracy_ci95"]
        assert row["energy_j"] == pts[0]["adc_energy_j_per_inference"] > 0
        assert f"{100 * row['accuracy']:.2f}" in text
        # the point's own cost, as its run recorded it
        assert row["per_chip_s"] == pts[0]["timing"]["per_chip_s"] > 0
        assert row["digital_s"] == pts[0]["timing"]["digital_s"] > 0
        assert f"{row['per_chip_s']:.3g}" in text
    assert "ADC energy (" in text and "s/chip" in text


def test_compare_refuses_what_is_not_a_run(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text('{"accuracy": 1}')
    assert main(["compare", str(bad)]) == 2
    assert "not an evaluate run" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
