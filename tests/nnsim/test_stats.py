"""Intervals over chips and images, paired differences, and the sweep's JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnsim.stats import bootstrap_ci, chip_warning, paired_difference


def _crossed(rng, n_c, n_i, s_c, s_i, s_e, mean=0.8):
    chip = rng.normal(0, s_c, (n_c, 1))
    img = rng.normal(0, s_i, (1, n_i))
    return mean + chip + img + rng.normal(0, s_e, (n_c, n_i)), chip, img


def test_interval_covers_chip_and_image_variation():
    """Two-way random effects: Var(mean) = s_c^2/n_c + s_i^2/n_i + s_e^2/(n_c n_i). The
    bootstrap's half-width matches 1.96 sqrt of that within 20 % whether chips or images
    dominate. (Mutation checked: the half-width x2, or resampling only the images or only
    the chips, fails here.)"""
    rng = np.random.default_rng(0)
    n_c, n_i = 100, 400
    for s_c, s_i in ((0.05, 0.01), (0.005, 0.2)):
        c, _, _ = _crossed(rng, n_c, n_i, s_c, s_i, 0.02)
        mean, (lo, hi), msgs = bootstrap_ci(c, seed=1, warn=False)
        want = 1.96 * np.sqrt(s_c ** 2 / n_c + s_i ** 2 / n_i + 0.02 ** 2 / (n_c * n_i))
        assert mean == pytest.approx(c.mean())
        assert (hi - lo) / 2 == pytest.approx(want, rel=0.2), (s_c, s_i)
        assert lo < mean < hi and not msgs


def test_paired_difference_cancels_what_two_settings_share():
    rng = np.random.default_rng(1)
    a, _, _ = _crossed(rng, 5, 450, 0.04, 0.3, 0.01)
    b = a - 0.03 + rng.normal(0, 0.01, a.shape)  # the same chips and images, 3 points worse
    d, (lo, hi), _ = paired_difference(a, b, seed=2, warn=False)
    assert d == pytest.approx(0.03, abs=0.002) and lo < 0.03 < hi
    _, (alo, ahi), _ = bootstrap_ci(a, seed=2, warn=False)
    _, (blo, bhi), _ = bootstrap_ci(b, seed=2, warn=False)
    unpaired = np.hypot((ahi - alo) / 2, (bhi - blo) / 2)
    assert (hi - lo) / 2 < 0.2 * unpaired
    with pytest.raises(ValueError, match="same chips and images"):
        paired_difference(a, b[:, :10])


def test_fewer_than_three_chips_warn():
    assert chip_warning(3) == []
    assert "poorly known" in chip_warning(2)[0] and "image sample only" in chip_warning(1)[0]
    with pytest.warns(UserWarning, match="2 chip"):
        bootstrap_ci(np.ones((2, 10)))


def test_swept_json_lists_points_pairs_chips_and_has_no_top_level_accuracy(
        tiny_digits_model, synthetic_lookups, capsys):
    from imc.cli import main

    _, meta = tiny_digits_model
    args = ["evaluate", "--model", "digits-tiny", "--cache-dir", str(Path(meta["path"]).parent),
            "--lookup", *map(str, synthetic_lookups), "--bits", "6", "--gamma", "3,5",
            "--clipformer", "both", "--alpha", "2", "--beta", "0.5", "--chips", "3",
            "--limit", "12", "--static", "digital", "--quiet", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert "accuracy_mean" not in r and "accuracies" not in r
    pts = r["points"]
    assert len(pts) == 4
    assert all(p["chip_seeds"] == pts[0]["chip_seeds"] for p in pts)  # paired chips
    names = sorted(c["name"] for c in r["comparisons"])
    assert names.count("clipformer vs none") == 2
    assert sum(n.startswith("gamma 5.0 vs 3.0") for n in names) == 2
    for c in r["comparisons"]:
        lo, hi = c["difference_ci95"]
        assert lo <= c["difference_mean"] <= hi and c["chips"] == 3
    clip = next(c for c in r["comparisons"] if c["name"] == "clipformer vs none")
    a = next(p for p in pts if p["setting"]["clipformer"] and p["setting"]["gamma"] == 3.0)
    b = next(p for p in pts if not p["setting"]["clipformer"] and p["setting"]["gamma"] == 3.0)
    assert clip["difference_mean"] == pytest.approx(a["accuracy_mean"] - b["accuracy_mean"])
