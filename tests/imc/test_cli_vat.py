"""``train --variation-aware`` caches a VAT checkpoint that ``evaluate --vat`` then finds (no
second fine-tuning) and evaluates on the standard model's chips, with the paired gains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imc.cli import main


def test_train_variation_aware_then_evaluate_vat(tiny_digits_model, synthetic_lookups, capsys,
                                                 tmp_path):
    _, meta = tiny_digits_model
    cache = str(Path(meta["path"]).parent)
    lk = [str(p) for p in synthetic_lookups]
    assert main(["train", "--model", "digits-tiny", "--cache-dir", cache, "--variation-aware",
                 "--lookup", *lk, "--gamma", "4", "--quiet", "--json"]) == 0
    vat = json.loads(capsys.readouterr().out)
    assert not vat["cached"] and vat["kind"] == "vat" and vat["steps"] == 5
    assert vat["settings"]["gamma"] == 4.0 and vat["settings"]["process"] == "tt"
    assert [h["path"] for h in vat["lookups"]] == lk
    assert all(len(h["sha256"]) == 64 for h in vat["lookups"])
    from nnsim.vat import lookup_content_sha256  # the cache key: table content, not bytes

    assert [h["content_sha256"] for h in vat["lookups"]] == [lookup_content_sha256(p)
                                                             for p in lk]
    out = tmp_path / "r.json"
    args = ["evaluate", "--model", "digits-tiny", "--cache-dir", cache, "--lookup", *lk,
            "--gamma", "4", "--clipformer", "both", "--vat", "--chips", "2", "--limit", "8",
            "--quiet",
            "--json", str(out)]
    assert main(args) == 0
    r = json.loads(out.read_text())
    (ck,) = r["meta"]["vat"]
    assert ck["cached"] and ck["path"] == vat["path"]  # found, not fine-tuned again
    assert ck["test_accuracy"] == vat["test_accuracy"]
    cells = [(p["setting"]["method"], bool(p["setting"]["clipformer"])) for p in r["points"]]
    assert cells == [("analog", False), ("analog", True), ("vat", False), ("vat", True)]
    seeds = {tuple(p["chip_seeds"]) for p in r["points"]}
    assert len(seeds) == 1  # all four cells on the same chips: paired
    assert r["points"][2]["setting"]["vat_gamma"] == 4.0
    names = sorted(c["name"] for c in r["comparisons"])
    assert names == ["clipformer vs none", "clipformer vs none", "method vat vs analog",
                     "method vat vs analog", "vat + clipformer vs standard"]
    # a VAT run needs lookup files; bad input exits 2 with a message
    assert main(["train", "--model", "digits-tiny", "--cache-dir", cache,
                 "--variation-aware"]) == 2
    assert "--lookup" in capsys.readouterr().err
    assert main(["train", "--model", "digits-tiny", "--cache-dir", cache, "--variation-aware",
                 "--lookup", *lk, "--process", "sf"]) == 2
    assert "sf" in capsys.readouterr().err
    # the demo report's four-way table reads the same JSON
    from imc.demo.report import _vat_markdown, vat_summary

    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "vat.json").write_text(out.read_text())
    v = vat_summary(ev)
    row = v["rows"]["4"]
    assert {"standard", "standard+clipformer", "vat", "vat+clipformer", "vat_gain",
            "vat_gain_clipformer", "clipformer_gain_standard", "clipformer_gain_vat",
            "vat_clipformer_vs_standard"} <= set(row)
    pts = r["points"]
    assert row["vat_gain"]["difference_mean"] == pytest.approx(
        pts[2]["accuracy_mean"] - pts[0]["accuracy_mean"])
    assert row["vat_clipformer_vs_standard"]["difference_mean"] == pytest.approx(
        pts[3]["accuracy_mean"] - pts[0]["accuracy_mean"])
    assert v["cost"]["steps"] == 5 and v["cost"]["vat_gamma"] == 4.0
    lines: list[str] = []
    _vat_markdown({"vat": v}, lines.append)
    assert any(line.startswith("| 4 |") for line in lines)
