"""evaluate --config EXPERIMENT.toml: every AnalogConfig field, the hardware points and the
sweep from one file; the run JSON records the effective config, hashes, version, commit."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from imc.cli import main


def _toml(tmp_path: Path, lookups, body: str) -> Path:
    for p in lookups:  # paths in the file are relative to it
        (tmp_path / Path(p).name).write_bytes(Path(p).read_bytes())
    names = ", ".join(f'"{Path(p).name}"' for p in lookups)
    f = tmp_path / "exp.toml"
    f.write_text(f'[hardware]\nlookup = [{names}]\n' + body)
    return f


def test_experiment_file_sets_ablations_points_and_sweep(tiny_digits_model, synthetic_lookups,
                                                         tmp_path, capsys):
    _, meta = tiny_digits_model
    cache = str(Path(meta["path"]).parent)
    exp = _toml(tmp_path, synthetic_lookups, """process = ["tt", "ss"]
vdd_v = 1.8
temp_c = 27.0
bits = 6
[model]
model = "digits-tiny"
[sweep]
gamma = [1, 3]
chips = 2
seed = 5
limit = 24
[analog]
read_noise = false
adc_noise = false
nonlinearity = false
static = false
""")
    out = tmp_path / "run.json"
    assert main(["evaluate", "--config", str(exp), "--cache-dir", cache, "--gamma", "3",
                 "--quiet", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    pts = r["points"]
    # the hardware points from the file, gamma from the command line (it wins)
    assert sorted((p["setting"]["process"], p["setting"]["gamma"]) for p in pts) == \
        [("ss", 3.0), ("tt", 3.0)]
    assert all(p["chips"] == 2 and p["n_images"] == 24 for p in pts)
    for p in pts:  # the ablation switches reached the simulated configuration
        c = p["config"]
        assert c["read_noise"] is False and c["adc_noise"] is False
        assert c["nonlinearity"] is False and c["static"] is False
    m = r["meta"]
    e = m["experiment"]
    from nnsim.analog import AnalogConfig

    assert set(e["analog"]) == {f.name for f in dataclasses.fields(AnalogConfig)}
    assert e["analog"]["read_noise"] is False and e["analog"]["write_noise"] == "levels"
    assert e["hardware"]["process"] == ["tt", "ss"] and e["hardware"]["bits"] == [6]
    assert e["sweep"]["gamma"] == [3.0] and e["sweep"]["chips"] == 2
    for f in m["lookup_files"]:
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
    assert m["config_file"]["sha256"] == hashlib.sha256(exp.read_bytes()).hexdigest()
    assert m["package_version"] and (m["git_commit"] is None or len(m["git_commit"]) >= 40)


def test_bad_experiment_files_name_file_and_key(tmp_path, synthetic_lookups, capsys):
    cases = {
        "[analog]\nread_nosie = false\n": "[analog] unknown key 'read_nosie'",
        "[analog]\nread_noise = 1\n": "[analog] read_noise: expected bool",
        "[analog]\ngamma = 3\n": "[analog] gamma: set it in [sweep]",
        "[sweep]\nchips = \"many\"\n": "[sweep] chips: expected int",
        "[hardware.extra]\nx = 1\n": "[hardware] unknown key 'extra'",
        "[runs]\n": "unknown section(s) ['runs']",
        "[sweep\n": "not valid TOML",
    }
    for body, msg in cases.items():
        exp = _toml(tmp_path, synthetic_lookups, body)
        assert main(["evaluate", "--config", str(exp), "--quiet"]) == 2, body
        err = capsys.readouterr().err
        assert str(exp) in err and msg in err, (body, err)


def test_the_example_experiment_file_loads():
    from imc.cli import build_parser
    from imc.cli.experiment import load_experiment

    path = Path(__file__).parents[2] / "examples" / "experiments" / "ablation.toml"
    args = build_parser().parse_args(["evaluate"])
    over = load_experiment(path, args, args.eval_defaults)
    assert over == {"read_noise": False, "adc_noise": False, "nonlinearity": True}
    assert (args.process, args.bits, args.fidelity, args.kv_range) == \
        ("tt,ss,ff", "4,6,8", "moment", "calibrated")
    assert [p.name for p in args.lookup] == ["crossbar.h5", "adc.h5"]
