"""spicebridge train / evaluate end to end (in-process), on the tiny model and synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

from imc.cli import main


def test_train_reports_the_cached_checkpoint(tiny_digits_model, capsys):
    _, meta = tiny_digits_model
    cache = str(Path(meta["path"]).parent)
    assert main(["train", "--dataset", "digits", "--model", "digits-tiny", "--cache-dir", cache,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cached"] and out["seed"] == 0 and out["test_accuracy"] > 0.8


def test_evaluate_json(tiny_digits_model, synthetic_lookups, capsys, tmp_path):
    _, meta = tiny_digits_model
    cache = str(Path(meta["path"]).parent)
    args = ["evaluate", "--model", "digits-tiny", "--cache-dir", cache, "--lookup",
            str(synthetic_lookups[0]), "--lookup", str(synthetic_lookups[1]), "--process", "tt",
            "--vdd-v", "1.7", "--temp-c", "27", "--bits", "6", "--gamma", "3",
            "--clipformer", "--alpha", "2", "--beta", "0.5", "--chips", "2", "--seed", "4",
            "--limit", "40", "--quiet", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["chips"] == 2 and len(r["accuracies"]) == 2
    assert 0.0 <= r["accuracy_mean"] <= 1.0 and 0.0 <= r["digital_accuracy"] <= 1.0
    lo, hi = r["accuracy_ci95"]
    assert lo <= r["accuracy_mean"] <= hi and r["warnings"]  # 2 chips: warned
    s = r["setting"]
    assert s["vdd_v"] == 1.7 and s["gamma"] == 3.0 and s["clipformer"] == [2.0, 0.5]
    assert r["hardware"]["adc"]["bits"] == 6
    assert r["conversions_per_inference"] > 0 and r["adc_energy_j_per_inference"] > 0
    assert len(r["points"]) == 1
    # the same command again gives the same numbers (seeded chips)
    out = tmp_path / "r.json"
    assert main([*args[:-1], "--json", str(out)]) == 0
    assert json.loads(out.read_text())["accuracies"] == r["accuracies"]


def test_evaluate_refuses_extrapolation(tiny_digits_model, synthetic_lookups, capsys):
    _, meta = tiny_digits_model
    rc = main(["evaluate", "--model", "digits-tiny", "--cache-dir",
               str(Path(meta["path"]).parent), "--lookup", *map(str, synthetic_lookups),
               "--vdd-v", "2.5", "--quiet", "--limit", "10"])
    assert rc == 2
    assert "outside the characterized range" in capsys.readouterr().err


def test_evaluate_names_the_corner_range_and_the_missing_weights(tiny_digits_model,
                                                                  synthetic_lookups, capsys):
    _, meta = tiny_digits_model
    base = ["evaluate", "--model", "digits-tiny", "--cache-dir", str(Path(meta["path"]).parent),
            "--lookup", *map(str, synthetic_lookups), "--quiet", "--limit", "10"]
    assert main([*base, "--corner", "sf"]) == 2
    err = capsys.readouterr().err
    assert "process='sf'" in err and "['tt', 'ss', 'ff']" in err
    assert main([*base, "--temp", "150"]) == 2
    err = capsys.readouterr().err
    assert "temp_c=150" in err and "[-40, 85]" in err
    assert main([*base, "--bits", "3"]) == 2
    assert "available: [4, 6, 8]" in capsys.readouterr().err
    rc = main(["evaluate", "--model", "deit-s", "--weights", "/nonexistent/deit_s.pth",
               "--lookup", *map(str, synthetic_lookups), "--quiet"])
    assert rc == 2
    assert "/nonexistent/deit_s.pth does not exist" in capsys.readouterr().err


def test_rap_only_refuses_what_needs_analog_points(synthetic_lookups, capsys):
    for extra in (["--vat"], ["--calibrate-clipformer"]):
        assert main(["evaluate", "--model", "digits-tiny", "--lookup",
                     *map(str, synthetic_lookups), "--rap-only", *extra]) == 2
        assert "--rap-only evaluates no analog points" in capsys.readouterr().err


def test_chip_batch_from_the_cli_equals_one_chip_at_a_time(tiny_digits_model, synthetic_lookups,
                                                           capsys):
    _, meta = tiny_digits_model
    args = ["evaluate", "--model", "digits-tiny", "--cache-dir", str(Path(meta["path"]).parent),
            "--lookup", str(synthetic_lookups[0]), "--lookup", str(synthetic_lookups[1]),
            "--process", "tt", "--vdd-v", "1.8", "--temp-c", "27", "--bits", "6", "--gamma", "2",
            "--fidelity", "moment", "--chips", "2", "--seed", "3", "--limit", "40", "--quiet",
            "--json"]
    runs = {}
    for nb in ("1", "2"):
        assert main([*args, "--chip-batch", nb]) == 0
        runs[nb] = json.loads(capsys.readouterr().out)
    assert runs["1"]["timing"]["chip_batch"] == 1 and runs["2"]["timing"]["chip_batch"] == 2
    assert runs["2"]["accuracies"] == runs["1"]["accuracies"]
    assert main([*args, "--chip-batch", "0"]) == 2
    assert "--chip-batch '0'" in capsys.readouterr().err
