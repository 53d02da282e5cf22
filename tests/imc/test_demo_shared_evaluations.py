"""The demo's evaluation steps share one in-process cache (nnsim.evaluate.EvalCache): a
setting two steps both evaluate runs once and is the identical result, and anything that
changes the result changes the key."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from imc.cli import main
from nnsim.evaluate import EvalCache, fingerprint, shared_evaluations


def _args(meta, lookups, out: Path, gamma: str, clip: bool = False, limit: int = 24
          ) -> list[str]:
    # as the demo runs its steps (moment fidelity, calibrated K/V range), small
    return ["evaluate", "--model", "digits-tiny", "--cache-dir", str(Path(meta["path"]).parent),
            "--lookup", *map(str, lookups), "--process", "tt", "--vdd-v", "1.8", "--temp-c",
            "27", "--bits", "6", "--gamma", gamma, "--chips", "2", "--seed", "3", "--limit",
            str(limit), "--fidelity", "moment", "--kv-range", "calibrated", "--quiet",
            *(["--clipformer", "both", "--alpha", "2", "--beta", "0.5"] if clip else []),
            "--json", str(out)]


def _points(path: Path) -> dict[str, dict]:
    r = json.loads(path.read_text())
    return {json.dumps(p["setting"], sort_keys=True): p for p in r["points"]}


def test_shared_steps_give_the_identical_results(tiny_digits_model, synthetic_lookups,
                                                 tmp_path):
    _, meta = tiny_digits_model
    # reference: each step alone, no cache
    assert main(_args(meta, synthetic_lookups, tmp_path / "a0.json", "1,3")) == 0
    assert main(_args(meta, synthetic_lookups, tmp_path / "b0.json", "1", clip=True)) == 0
    assert main(_args(meta, synthetic_lookups, tmp_path / "c0.json", "3", limit=12)) == 0
    with shared_evaluations() as cache:
        assert main(_args(meta, synthetic_lookups, tmp_path / "a1.json", "1,3")) == 0
        assert (cache.hits, cache.misses) == (0, 2)
        # the second step shares gamma 1 without ClipFormer; gamma 1 with ClipFormer is new
        assert main(_args(meta, synthetic_lookups, tmp_path / "b1.json", "1", clip=True)) == 0
        assert (cache.hits, cache.misses) == (1, 3)
        # other test images: a new point, but the moment calibration is the same one
        memo = cache.memo_hits
        assert main(_args(meta, synthetic_lookups, tmp_path / "c1.json", "3", limit=12)) == 0
        assert (cache.hits, cache.misses, cache.memo_hits - memo) == (1, 4, 2)  # + K/V ranges
    for ref, got in (("a0", "a1"), ("b0", "b1"), ("c0", "c1")):
        p0, p1 = _points(tmp_path / f"{ref}.json"), _points(tmp_path / f"{got}.json")
        assert p0.keys() == p1.keys()
        for k in p0:
            for f in ("accuracies", "accuracy_mean", "accuracy_ci95", "chip_seeds",
                      "conversions_per_inference", "calibration", "n_images"):
                assert p0[k][f] == p1[k][f], (k, f)
    shared = [p for p in _points(tmp_path / "b1.json").values() if not p["setting"]["clipformer"]]
    assert shared[0]["timing"]["reused"] is True
    # the paired comparison of the second step still uses the shared point's per-image results
    c0 = json.loads((tmp_path / "b0.json").read_text())["comparisons"]
    c1 = json.loads((tmp_path / "b1.json").read_text())["comparisons"]
    assert [c["difference_mean"] for c in c0] == [c["difference_mean"] for c in c1]


def test_the_key_follows_the_content(tiny_digits_model, hw_tt):
    model, _ = tiny_digits_model
    c = EvalCache()
    k = c.key("point", model, hw_tt, [1.0, 2])
    assert k == c.key("point", copy.deepcopy(model), copy.deepcopy(hw_tt), [1.0, 2])
    # a parameter halved, the ADC thresholds doubled, the read noise doubled: other keys
    m2 = copy.deepcopy(model)
    with torch.no_grad():
        next(m2.parameters()).mul_(0.5)
    hw2 = copy.deepcopy(hw_tt)
    hw2.adcs[6] = dataclasses.replace(hw2.adcs[6], thresholds_lsb=hw2.adcs[6].thresholds_lsb * 2)
    hw3 = dataclasses.replace(hw_tt, read_sigma_a=np.asarray(hw_tt.read_sigma_a) * 2)
    keys = {k, c.key("point", m2, hw_tt, [1.0, 2]), c.key("point", model, hw2, [1.0, 2]),
            c.key("point", model, hw3, [1.0, 2]), c.key("point", model, hw_tt, [1.0, 3])}
    assert len(keys) == 5
    # what cannot be digested is not cached (never keyed by identity)
    assert c.key("point", object()) is None
    assert c.memo(None, lambda: 7) == 7
    assert fingerprint(torch.zeros(3)) != fingerprint(torch.zeros(3, dtype=torch.float64))


def test_a_step_made_with_other_chips_is_redone(tmp_path):
    from imc.demo.pipeline import _eval_counts, _eval_done

    p = tmp_path / "corners.json"
    p.write_text(json.dumps({"meta": {"chips": 3, "seed": 0},
                             "points": [{"chips": 3, "n_images": 450}] * 2, "rap": []}))
    assert _eval_done(p, chips=3, seed=0)
    assert not _eval_done(p, chips=5, seed=0) and not _eval_done(p, chips=3, seed=1)
    assert not _eval_done(tmp_path / "missing.json", chips=3, seed=0)
    # a RAP step (--limit) made on other images is redone too
    assert _eval_done(p, chips=3, seed=0, images=450)
    assert not _eval_done(p, chips=3, seed=0, images=90)
    c = _eval_counts(p, 1, 1, ran=True)
    assert c == {"settings": 2, "chips": [3], "images": [450], "settings_simulated": 1,
                 "settings_reused": 1}
