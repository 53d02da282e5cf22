"""``spicebridge evaluate`` through the real CLI (``imc.cli.main``), issue 15: an ImageNet
folder without a calibration split is refused (exit 2, the split named, no traceback) by
everything that calibrates, and a swept evaluate's JSON is a list of points with paired
comparisons and no top-level accuracy. (Mutation checked once, then restored: with the
calibration falling back to the test images the refusal test fails.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imc.cli import main


def _cache(meta) -> str:
    return str(Path(meta["path"]).parent)


@pytest.fixture
def imagenet_without_calib(tmp_path):
    """DIR/val/<class>/*.png, two classes, no DIR/calib."""
    from PIL import Image

    for c in ("n01", "n02"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (40 * i, 80, 120)).save(tmp_path / "val" / c / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize("trigger", [["--fidelity", "moment"], ["--kv-range", "calibrated"],
                                     ["--calibrate-clipformer"], ["--rap"]],
                         ids=["moment", "kv-range", "clipformer-search", "rap"])
def test_imagenet_without_calib_split_exits_2_naming_it(imagenet_without_calib,
                                                        tiny_digits_model, synthetic_lookups,
                                                        capsys, trigger):
    root = imagenet_without_calib
    args = ["evaluate", "--dataset", "imagenet", "--model", "digits-tiny", "--data",
            str(root), "--lookup", *map(str, synthetic_lookups), "--chips", "1", "--quiet",
            "--cache-dir", _cache(tiny_digits_model[1]), *trigger]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'calib' split is missing" in err and str(root / "calib") in err, err
    assert "--calib-data" in err and "Traceback" not in err


def test_missing_calib_data_folder_exits_2_naming_it(imagenet_without_calib,
                                                     tiny_digits_model, synthetic_lookups,
                                                     capsys):
    missing = imagenet_without_calib / "held_out"
    args = ["evaluate", "--dataset", "imagenet", "--model", "digits-tiny", "--data",
            str(imagenet_without_calib), "--calib-data", str(missing), "--lookup",
            *map(str, synthetic_lookups), "--kv-range", "calibrated", "--quiet",
            "--cache-dir", _cache(tiny_digits_model[1])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err, err


def test_swept_json_is_points_with_paired_comparisons(tiny_digits_model, synthetic_lookups,
                                                      tmp_path):
    """--gamma 3,5 x --clipformer both, 3 chips, 8 images, JSON to a file: four points, each
    with its accuracy mean (the mean of its per-chip accuracies, each a count over the
    images), a 95 % interval holding it, the chips and their seeds (the same spawned seeds
    in every point: paired), the root seed; the comparisons are the paired differences of
    those points (clipformer vs none at each gamma, gamma 5 vs 3 with and without), and
    nothing at the top level reads as one accuracy."""
    from nnsim.evaluate import chip_seeds

    out = tmp_path / "sweep.json"
    args = ["evaluate", "--model", "digits-tiny", "--cache-dir", _cache(tiny_digits_model[1]),
            "--lookup", *map(str, synthetic_lookups), "--bits", "6", "--gamma", "3,5",
            "--clipformer", "both", "--alpha", "2", "--beta", "0.5", "--chips", "3",
            "--seed", "4", "--limit", "8", "--static", "digital", "--quiet", "--json",
            str(out)]
    assert main(args) == 0
    r = json.loads(out.read_text())
    for key in ("accuracy_mean", "accuracy_ci95", "accuracies", "chips", "chip_seeds"):
        assert key not in r, key
    assert r["meta"]["seed"] == 4 and r["meta"]["chips"] == 3 and r["meta"]["n_images"] == 8
    pts = r["points"]
    assert isinstance(pts, list) and len(pts) == 4
    assert sorted((p["setting"]["gamma"], p["setting"]["clipformer"] is not None)
                  for p in pts) == [(3.0, False), (3.0, True), (5.0, False), (5.0, True)]
    seeds = chip_seeds(4, 3)
    by_label = {}
    for p in pts:
        assert p["chips"] == 3 and p["seed"] == 4 and p["n_images"] == 8
        assert p["chip_seeds"] == seeds
        acc = np.asarray(p["accuracies"])
        assert acc.shape == (3,)
        np.testing.assert_allclose(acc * 8, np.round(acc * 8), atol=1e-9)  # counts of 8
        assert p["accuracy_mean"] == pytest.approx(acc.mean(), abs=1e-12)
        lo, hi = p["accuracy_ci95"]
        assert 0.0 <= lo <= p["accuracy_mean"] <= hi <= 1.0
        by_label[_label(p)] = p
    names = sorted(c["name"] for c in r["comparisons"])
    assert names.count("clipformer vs none") == 2
    assert sum(n.startswith("gamma 5.0 vs 3.0") for n in names) == 2
    for c in r["comparisons"]:
        a, b = by_label[c["a"]], by_label[c["b"]]
        assert c["difference_mean"] == pytest.approx(a["accuracy_mean"] - b["accuracy_mean"],
                                                     abs=1e-12), c["name"]
        assert c["chips"] == 3 and c["n_images"] == 8 and c["chip_seeds"] == seeds
        lo, hi = c["difference_ci95"]
        assert lo <= c["difference_mean"] <= hi
        if c["name"] == "clipformer vs none":
            assert a["setting"]["clipformer"] and not b["setting"]["clipformer"]
            assert a["setting"]["gamma"] == b["setting"]["gamma"]


def _label(p) -> str:
    """The label ``nnsim.results.EvalPoint.label`` gives a point (comparisons name theirs)."""
    from nnsim.results import EvalPoint

    fields = {f: p.get(f) for f in EvalPoint.__dataclass_fields__ if f in p}
    return EvalPoint(**fields).label


def test_git_commit_names_the_commit_and_marks_a_dirty_tree(tmp_path):
    """``git_commit`` on a real repository: the HEAD sha (from git itself), ``-dirty`` once a
    tracked file changes, None outside a checkout."""
    import subprocess

    from imc.cli.experiment import git_commit

    def git(*a):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    sha = git("rev-parse", "HEAD").strip()
    assert git_commit(tmp_path) == sha
    (tmp_path / "a.txt").write_text("2\n")
    assert git_commit(tmp_path) == sha + "-dirty"
    (tmp_path / "untracked.txt").write_text("x\n")  # untracked files do not count
    git("checkout", "-q", "--", "a.txt")
    assert git_commit(tmp_path) == sha
    assert git_commit(tmp_path / "no-such-dir") is None


def test_meta_git_commit_is_taken_when_the_run_starts(tiny_digits_model, tmp_path,
                                                      monkeypatch):
    """The commit in ``meta.git_commit`` is the tree's when evaluate started; a tree that
    moved on during the run (here: once the first chip is evaluated) is named separately as
    ``git_commit_end``. (Fails with the commit read when the JSON is written.)"""
    import imc.cli.experiment as experiment
    import nnsim.evaluate as nev

    state = {"commit": "aaaa1111"}
    real = nev.evaluate_chips

    def evaluate_chips(*a, **k):  # the real evaluation; the tree "changes" meanwhile
        state["commit"] = "bbbb2222-dirty"
        return real(*a, **k)

    monkeypatch.setattr(experiment, "git_commit", lambda where=None: state["commit"])
    monkeypatch.setattr(nev, "evaluate_chips", evaluate_chips)
    out = tmp_path / "run.json"
    args = ["evaluate", "--model", "digits-tiny", "--cache-dir", _cache(tiny_digits_model[1]),
            "--ideal", "--chips", "1", "--limit", "4", "--quiet", "--json", str(out)]
    assert main(args) == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["git_commit"] == "aaaa1111" and meta["git_commit_end"] == "bbbb2222-dirty"
    assert meta["started_utc"].endswith("+00:00")


def _check_timing(t, chips):
    assert t["digital_s"] > 0 and len(t["chips_s"]) == chips
    # the fastest of the timed digital forwards (nnsim.evaluate.digital_reference)
    assert len(t["digital_repeats_s"]) == 3 and t["digital_s"] == min(t["digital_repeats_s"])
    assert all(s > 0 for s in t["chips_s"])
    assert t["per_chip_s"] == pytest.approx(float(np.mean(t["chips_s"])), rel=1e-12)


def test_every_evaluate_path_records_its_timing(tiny_digits_model, synthetic_lookups,
                                                tmp_path):
    """Issue 17: every evaluate result says its own cost, ``"timing": {"digital_s",
    "per_chip_s"}`` (the digital forward over the same images; the analog evaluation per
    simulated chip = the mean of the chips' own times): one point (at the top level too),
    each point of a sweep run on a local Dask cluster, and RAP's sparse path (per chip =
    the path's time / chips). (Checked to fail with per_chip_s x2.)"""
    common = ["evaluate", "--model", "digits-tiny", "--cache-dir", _cache(tiny_digits_model[1]),
              "--lookup", *map(str, synthetic_lookups), "--bits", "4", "--chips", "2",
              "--fidelity", "moment", "--quiet"]
    one = tmp_path / "one.json"
    assert main([*common, "--limit", "4", "--gamma", "3", "--json", str(one)]) == 0
    d = json.loads(one.read_text())
    (p,) = d["points"]
    for t in (d["timing"], p["timing"]):
        _check_timing(t, 2)
        assert t["distributed"] is False
    swept = tmp_path / "swept.json"
    assert main([*common, "--limit", "4", "--gamma", "3,5", "--dask-local", "1", "--json",
                 str(swept)]) == 0
    d = json.loads(swept.read_text())
    assert len(d["points"]) == 2 and "timing" not in d
    for p in d["points"]:
        _check_timing(p["timing"], 2)
        assert p["timing"]["distributed"] is True
    # the CLI times the digital forward once, over the images every point scores
    assert d["points"][0]["timing"]["digital_s"] == d["points"][1]["timing"]["digital_s"]
    rap = tmp_path / "rap.json"
    assert main([*common, "--limit", "2", "--gamma", "3", "--rap", "--rap-no-dense", "--json",
                 str(rap)]) == 0
    (r,) = json.loads(rap.read_text())["rap"]
    t = r["timing"]
    assert t["digital_s"] > 0 and r["dense"] is None and t["dense_per_chip_s"] is None
    assert t["per_chip_s"] == pytest.approx(r["rap"]["time_s"] / 2, rel=1e-12)


def test_statistics_from_the_cli_as_a_user_reads_them(tiny_digits_model, synthetic_lookups,
                                                      tmp_path, capsys):
    """Issue 15 item 6 through the CLI: two corners with RAP, 2 chips. Every interval
    printed (points, RAP rows, paired comparisons) carries the below-3-chips warning; the
    paired differences 'corner ss vs tt', 'rap vs dense' and RAP's own 'corner ss vs tt'
    (sparse and dense) are there, each the difference of the two settings' accuracies on the
    same chip seeds and images, with a bootstrap interval over chips and images that holds
    it ('clipformer vs none': test_swept_json_is_points_with_paired_comparisons). (Checked
    to fail with RAP's corner difference x2 and with the comparisons' warnings not
    printed.)"""
    out = tmp_path / "stats.json"
    args = ["evaluate", "--model", "digits-tiny", "--cache-dir", _cache(tiny_digits_model[1]),
            "--lookup", *map(str, synthetic_lookups), "--process", "tt,ss", "--bits", "4",
            "--gamma", "3", "--fidelity", "moment", "--chips", "2", "--limit", "2", "--rap",
            "--quiet",
            "--json", str(out)]
    with pytest.warns(UserWarning, match="2 chip"):
        assert main(args) == 0
    text = capsys.readouterr().out.splitlines()
    d = json.loads(out.read_text())
    pts, comps, raps = d["points"], d["comparisons"], d["rap"]
    rap_comps = [c for r in raps for c in r["comparisons"]]
    n_rows = len(pts) + 2 * len(raps) + len(comps) + len(rap_comps)
    warned = [i for i, line in enumerate(text) if line.strip().startswith("warning: 2 chip(s)")]
    assert len(pts) == 2 and len(raps) == 2 and len(warned) == n_rows, "\n".join(text)
    for c in (*comps, *rap_comps):
        assert c["warnings"] and "2 chip(s)" in c["warnings"][0]
        assert "over chips and images" in c["ci_method"]
        lo, hi = c["difference_ci95"]
        assert lo <= c["difference_mean"] <= hi
    names = [c["name"] for c in comps]
    assert names.count("corner ss vs tt") == 1
    assert [c["name"] for c in rap_comps] == ["rap vs dense", "rap vs dense"]
    seeds = {tuple(p["chip_seeds"]) for p in pts} | {
        tuple(r[m]["chip_seeds"]) for r in raps for m in ("rap", "dense")}
    assert len(seeds) == 1  # every setting on the same chips: paired

    acc = {p["setting"]["process"]: float(np.mean(p["accuracies"])) for p in pts}
    (c,) = [c for c in comps if c["name"] == "corner ss vs tt"]
    assert c["difference_mean"] == pytest.approx(acc["ss"] - acc["tt"])
    by = {r["corner"]["process"]: r for r in raps}
    for m in ("rap", "dense"):
        (c,) = [c for c in comps if c["name"] == f"rap {by['tt'][m]['mode']}: corner ss vs tt"]
        assert c["difference_mean"] == pytest.approx(
            float(np.mean(by["ss"][m]["accuracies"])) - float(np.mean(by["tt"][m]["accuracies"])))
    for r in raps:
        (c,) = r["comparisons"]
        assert c["difference_mean"] == pytest.approx(
            float(np.mean(r["rap"]["accuracies"])) - float(np.mean(r["dense"]["accuracies"])))
