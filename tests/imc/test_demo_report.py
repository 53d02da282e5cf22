"""The demo's fits and report, on lookup files in the real format and a real evaluation run.

The full ``spicebridge demo`` takes minutes (characterizations, training); here its last steps
run on small inputs: the statistical fits and ``write_report`` read lookup files written by
the real writer, and evaluation JSON written by a real ``spicebridge evaluate`` run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

    d = tmp_path_factory.mktemp("demo")
    xbar = write_synthetic_crossbar(d / "crossbar.h5", seed=1)
    adc = write_synthetic_adc(d / "adc.h5", seed=2, bits=(4, 6))
    evals = d / "eval"
    evals.mkdir()
    common = [sys.executable, "-m", "imc.cli", "evaluate", "--model", "digits-tiny",
              "--lookup", str(xbar), str(adc), "--vdd-v", "1.8", "--temp-c", "27",
              "--limit", "40", "--chips", "2", "--fidelity", "moment", "--quiet",
              "--cache-dir", str(d / "models")]
    runs = {"corners": ["--process", "tt,ss", "--bits", "6", "--gamma", "1", "--clipformer",
                        "both", "--alpha", "2", "--beta", "0.5"],
            "temperature": ["--process", "tt", "--temp-c", "27,85", "--bits", "6",
                            "--gamma", "1"],
            "rap_bits": ["--process", "tt", "--bits", "4", "--rap", "--rap-no-dense"]}
    for name, extra in runs.items():
        p = subprocess.run([*common, *extra, "--json", str(evals / f"{name}.json")],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
    return d, xbar, adc, evals


def test_statistical_fits_per_corner(demo_inputs):
    from imc.demo.pipeline import statistical_fits

    _, xbar, adc, _ = demo_inputs
    fits = statistical_fits(xbar, adc)
    assert set(fits["write_noise"]) == {"tt", "ss", "ff"}
    k = fits["write_noise"]["tt"]["single"]["params"]["k"]
    assert 0 < k < 1
    assert fits["adc_threshold_spread"]["tt"]["params"]["offset_sigma_lsb"] >= 0


def test_report_has_the_promised_keys_tables_and_plots(demo_inputs):
    from imc.demo.pipeline import statistical_fits
    from imc.demo.report import write_report

    d, xbar, adc, evals = demo_inputs
    (d / "fits.json").write_text(json.dumps(statistical_fits(xbar, adc), default=str))
    md = write_report(d, xbar=xbar, adc=adc, fits_path=d / "fits.json",
                      fit_dir=d / "no_memristor_fit", evals=evals,
                      steps=[{"step": "test", "status": "ran", "seconds": 0.0,
                              "command": None}],
                      settings=dict(jobs=1, chips=2, seed=0, vdd_v=1.8, temp_c=27.0,
                                    clip_alpha=2.0, clip_beta=0.5, demo_bits=6,
                                    machine="test"), wall_s=1.0)
    r = json.loads((d / "report.json").read_text())
    assert set(r["crossbar"]["write_noise_k"]) == {"tt", "ss", "ff"}
    assert set(r["adc"]["enob"]["tt"]) == {"4", "6"}
    assert r["adc"]["energy_j"]["6"] > r["adc"]["energy_j"]["4"] > 0
    acc = r["accuracy"]
    assert 0.5 < acc["digital"] <= 1
    for key in ("analog/gamma=1/corner=tt/bits=6", "analog+clipformer/gamma=1/corner=ss/bits=6",
                "rap/gamma=0/corner=tt/bits=4"):
        assert 0 <= acc[key]["accuracy_mean"] <= 1
        assert "accuracy_ci95" in acc[key]
    text = md.read_text()
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (d / img).is_file(), img
    assert "analog+clipformer/gamma=1/corner=ss/bits=6" in text
    # the 85 degC point is its own setting, and the decision table pairs it with 27 degC
    hot = acc["analog/gamma=1/corner=tt/bits=6/temp=85"]
    assert hot["temp_c"] == 85.0 and 0 <= hot["accuracy_mean"] <= 1
    assert acc["analog/gamma=1/corner=tt/bits=6"]["temp_c"] == 27.0
    table = text.split("### Which circuit decision moved accuracy", 1)[1]
    assert "| temperature | 85.0 vs 27.0 |" in table and "| process corner |" in table
