"""DeiT-S at gamma 0: does analog attention agree with digital as closely as the static
linears do? (issue 15, item 2)

timm's ``deit_small_patch16_224`` (random init, offline: no weights are downloaded), a few
random input images, the digital logits against the analog model's with only the attention
products on crossbars (Q K^T and S V, K and V written per inference; static linears
digital), only the static linears on crossbars (qkv, proj, fc1, fc2; attention digital), and
everything. ClipFormer's protocol at gamma 0 (static weights and K/V written without write
noise), so what is left is the mapping (8-bit weights and K/V, 2-bit cells, 8-bit bit-serial
inputs, softmax probabilities on a per-row power-of-two scale, ``prob_scale="row_pow2"``) and
the readout. Two readouts:

* ``exact``: no ADC, no read noise, no column transfer: quantization and mapping only;
* ``circuit``: the lookup files' column transfer and its per-chip spread, read noise and the
  characterized SAR ADC (``--bits``, its Monte-Carlo instances and noise) at the corner.

``--fidelity moment`` (the default; calibrated per layer with ``calibrate_moment`` on
``--calib`` other random images on the chip) or ``bit`` (every conversion; slow: minutes per
image and configuration on one core). The error is ``||y_analog - y_digital||_F /
||y_digital||_F`` over the images' logits (and per image); each circuit configuration is
evaluated on ``--chips`` chips. ``attention only`` with the old fixed 1/255 probability grid
(``prob_scale="fixed"``) is listed beside it for the record. Writes
bench/results/deit_gamma0.json.

    .venv/bin/python bench/deit_gamma0.py --lookup CROSSBAR.h5 ADC.h5 [--images 4] [--chips 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
from common import LOOKUPS

OUT = Path(__file__).parent / "results" / "deit_gamma0.json"

#: placement -> AnalogConfig fields
PLACEMENTS = {"attention only": dict(static=False, attention=True),
              "static linears only": dict(static=True, attention=False),
              "everything": dict(static=True, attention=True)}


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, list[float]]:
    """(over all images, per image) relative Frobenius error of logits ``y`` vs ``ref``."""
    d = (y - ref).double()
    r = ref.double()
    per = (d.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)).tolist()
    return float(d.norm() / r.norm()), [float(v) for v in per]


def layer_check(model, hw, base, x, calib, chip: int = 1) -> list[dict]:
    """Block 0's static linears one at a time, on the inputs the digital model gives them
    (``x``'s images): relative output error of the circuit readout in ``bit`` (every
    conversion) and ``moment`` (calibrated on ``calib``'s block-0 inputs) against the
    digital linear. Checks that the moment mode's per-layer error is the bit mode's, then
    (``moment``) takes one readout error out at a time: the ADC (``adc=False``), the read
    noise, the column transfer and spread (``nonlinearity``), the ADC noise."""
    import copy

    from nnsim.convert import calibrate_moment, convert_to_analog, program_chip

    block = copy.deepcopy(model.blocks[0]).eval()

    def block_input(imgs):
        with torch.no_grad():
            t = model.patch_embed(imgs)
            return model.norm_pre(model._pos_embed(t))

    xin, cin = block_input(x), block_input(calib)
    names = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    seen: dict[str, torch.Tensor] = {}
    hooks = [block.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, i[0].detach())) for n in names]
    with torch.no_grad():
        block(xin)
    for h in hooks:
        h.remove()
    rows = []
    ablations = {"without ADC": dict(adc=False), "without read noise": dict(read_noise=False),
                 "without transfer": dict(nonlinearity=False),
                 "without ADC noise": dict(adc_noise=False)}
    for fid, what in (("bit", "circuit"), ("moment", "circuit"), *(
            ("moment", k) for k in ablations)):
        cfg = dataclasses.replace(base, fidelity=fid, static=True, attention=False,
                                  **ablations.get(what, {}))
        ab = convert_to_analog(block, hw, cfg, seed=None)
        program_chip(ab, chip)
        if fid == "moment" and cfg.nonideal_readout:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                calibrate_moment(ab, [cin], seed=chip)
            program_chip(ab, chip)
        for n in names:
            with torch.no_grad():
                ref = block.get_submodule(n)(seen[n])
                t = time.perf_counter()
                y = ab.get_submodule(n)(seen[n])
                dt = time.perf_counter() - t
            e, _ = rel_err(y.flatten(0, -2)[None], ref.flatten(0, -2)[None])
            rows.append(dict(layer=f"blocks.0.{n}", fidelity=fid, readout=what, rel_error=e,
                             seconds=dt))
            print(f"layer check  blocks.0.{n:9s} {fid:6s} {what:18s} rel error "
                  f"{100 * e:.2f} % [{dt:.1f} s]", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lookup", nargs="*", default=LOOKUPS, help="crossbar and ADC files")
    ap.add_argument("--process", default="tt")
    ap.add_argument("--vdd-v", type=float, default=1.8)
    ap.add_argument("--temp-c", type=float, default=27.0)
    ap.add_argument("--bits", type=int, default=6)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--calib", type=int, default=2, help="calibration images (moment)")
    ap.add_argument("--chips", type=int, default=2)
    ap.add_argument("--fidelity", choices=("moment", "bit"), default="moment")
    ap.add_argument("--only", nargs="*", default=list(PLACEMENTS), choices=list(PLACEMENTS))
    ap.add_argument("--no-fixed", action="store_true", help="skip the prob_scale=fixed row")
    ap.add_argument("--readouts", nargs="*", default=["exact", "circuit"],
                    choices=["exact", "circuit"])
    ap.add_argument("--layer-check", action="store_true",
                    help="also block 0's static linears one by one, bit vs moment (circuit)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import timm

    from nnsim.analog import AnalogConfig, clipformer_protocol
    from nnsim.convert import calibrate_moment, convert_to_analog, program_chip
    from nnsim.hardware import HardwareModel

    hw = HardwareModel.from_lookup(a.lookup, process=a.process, vdd_v=a.vdd_v,
                                   temp_c=a.temp_c, adc_bits=a.bits)  # circuit data only
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.images, 3, 224, 224, generator=g)
    calib = torch.randn(a.calib, 3, 224, 224, generator=g)
    with torch.no_grad():
        t = time.perf_counter()
        ref = model(x)
        digital_s = time.perf_counter() - t

    base = clipformer_protocol(AnalogConfig(fidelity=a.fidelity, gamma=0.0))
    exact = dict(adc=False, read_noise=False, nonlinearity=False, adc_noise=False)
    runs = []
    for readout in a.readouts:
        for name in a.only:
            scales = ["row_pow2"]
            if name == "attention only" and not a.no_fixed:
                scales.append("fixed")
            for ps in scales:
                cfg = dataclasses.replace(base, **PLACEMENTS[name], prob_scale=ps,
                                          **(exact if readout == "exact" else {}))
                analog = convert_to_analog(model, hw, cfg, seed=None)
                chips = 1 if readout == "exact" else a.chips
                errs, per, secs = [], [], []
                for chip in range(1, chips + 1):
                    program_chip(analog, chip)
                    if cfg.fidelity == "moment" and cfg.nonideal_readout:
                        with warnings.catch_warnings(), torch.no_grad():
                            warnings.simplefilter("ignore")
                            calibrate_moment(analog, [calib], seed=chip)
                        program_chip(analog, chip)
                    t = time.perf_counter()
                    with torch.no_grad():
                        y = analog(x)
                    secs.append(time.perf_counter() - t)
                    e, p = rel_err(y, ref)
                    errs.append(e)
                    per.append(p)
                row = dict(readout=readout, placement=name, prob_scale=ps,
                           rel_logit_error=float(sum(errs) / len(errs)),
                           rel_logit_error_per_chip=errs, per_image=per,
                           top1_agreement=None, forward_s=secs, config=cfg.to_dict())
                with torch.no_grad():  # last chip's top-1 agreement with digital
                    row["top1_agreement"] = float((y.argmax(1) == ref.argmax(1)).float().mean())
                runs.append(row)
                print(f"{readout:8s} {name:20s} {ps:9s} rel logit error "
                      f"{100 * row['rel_logit_error']:.2f} % (chips: "
                      f"{', '.join(f'{100 * v:.2f}' for v in errs)}) "
                      f"[{sum(secs) / len(secs):.1f} s/forward]", flush=True)
    layers = layer_check(model, hw, base, x, calib) if a.layer_check else None
    res = dict(
        what="relative logit error vs the digital model, DeiT-S at gamma 0 (issue 15 item 2)",
        model="timm deit_small_patch16_224, random init (torch.manual_seed(0)), offline",
        inputs=f"{a.images} images N(0,1) 3x224x224 (generator seed 0); calib {a.calib} more",
        protocol="clipformer (static weights and K/V without write noise), gamma 0",
        fidelity=a.fidelity, hardware=hw.summary(), lookup=[str(p) for p in a.lookup],
        digital_forward_s=digital_s, runs=runs, layer_check=layers, command=" ".join(sys.argv),
        torch=str(torch.__version__), timm=str(timm.__version__), python=platform.python_version())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
