"""Speed (issue 17): analog / digital time and peak memory, side by side in one run.

Measures, each variant right after its digital reference on the same inputs (best of
``--repeat``; ratios are what to read, the machine is shared):

* digits (the ``digits`` preset ViT, ``--images`` test images): the default fidelity
  (``bit``, threshold-near sampling, the fused C readout kernel), the same through the torch
  readout path (``readout_kernel="torch"``), ``bit`` with full sampling, the default with the
  4-bit ADC, each at 1 and 2 threads (``--bit-threads``) with its digital reference at the
  same thread count, and ``moment`` (calibrated on the calib split) vs the digital forward
  (wall and process-CPU-time ratios, ``ratios_cpu``); peak extra resident memory of each; a
  cProfile of each analog forward (top functions) and the C kernel's share of the default's
  time;
* one DeiT-S block (timm ``deit_small_patch16_224``, random init, offline; batch
  ``--deit-batch`` x 197 tokens): ``moment`` vs digital, time and peak memory, and the same
  block with aihwkit-lightning's linears when it imports (``make bench`` installs it);
* RAP's sparse path at 3 bits with the circuit ADC vs the analog forward (default fidelity)
  on the same images, for a noisy stand-in ADC (0.2 LSB, most conversions uncertain) and for
  one with the characterized quick-preset noise level (0.0076 LSB at 3 bits, ss).

Hardware: the real quick-preset lookups when they load (``--lookup``), else the synthetic
stand-ins of ``nnsim.synthetic`` (the JSON's ``hardware_source`` says which; stand-ins are NOT
circuit data; for speed only the table shapes matter). Writes ``bench/results/speed.json``.

    .venv/bin/python bench/speed.py [--images 64] [--deit-batch 2] [--repeat 2] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch
from common import LOOKUPS, deit_block, hardware, measure, profile

OUT = Path(__file__).parent / "results" / "speed.json"
TARGETS = {"digits_default_over_digital": 25.0, "digits_moment_over_digital": 3.0,
           "deit_block_moment_time_over_digital": 2.0,
           "deit_block_moment_memory_over_digital": 1.5,
           "rap_sparse_3bit_over_analog": 2.0}


def digits_section(a, res: dict, moment: bool = True) -> None:
    """The digits legs; ``moment=False`` (``--only digits-bit``): the bit legs only, merged
    into an existing ``digits`` entry (its moment keys kept)."""
    from nnsim import analog
    from nnsim.analog import AnalogConfig
    from nnsim.convert import calibrate_moment, convert_to_analog, program_chip
    from nnsim.data import load_dataset
    from nnsim.models import load_or_train

    model, _ = load_or_train("digits", quiet=True)
    model.eval()
    x = load_dataset("digits", "test").images[:a.images]
    calib = load_dataset("digits", "calib").images[:64]
    hw, src = hardware(a.lookup, 6)
    res["hardware_source"] = src
    from nnsim import kernels
    from nnsim.analog import readout_paths

    bit = convert_to_analog(model, hw, AnalogConfig(), seed=1)
    tbit = convert_to_analog(model, hw, AnalogConfig(readout_kernel="torch"), seed=1)
    full = convert_to_analog(model, hw, AnalogConfig(sampling="full"), seed=1)
    bit4 = None
    if 4 in hw.adcs:
        import dataclasses

        hw4 = dataclasses.replace(hw, adc_bits=4, _cache={})
        bit4 = convert_to_analog(model, hw4, AnalogConfig(), seed=1)
    mom = None
    if moment:
        mom = convert_to_analog(model, hw, AnalogConfig(fidelity="moment"), seed=None)
        program_chip(mom, 1)
        calibrate_moment(mom, [calib], seed=0)
    with torch.no_grad():
        model(x[:4]), bit(x[:4]), tbit(x[:4]), full(x[:4])
        if mom is not None:
            mom(x[:4])
    lib = kernels.load("readout")
    out = {"images": int(x.shape[0]), "adc_bits": hw.adc_bits,
           "adc_noise_lsb": hw.adc().noise_lsb, "readout_kernel": "c" if lib else "torch",
           "kernel_unavailable": kernels.why_unavailable("readout"),
           "kernel_simd": bool(lib.imc_simd()) if lib is not None else False}
    out["digital"] = measure(lambda: model(x), a.repeat)
    if mom is not None:
        out["moment"] = measure(lambda: mom(x), a.repeat)
    out["digital_again"] = measure(lambda: model(x), a.repeat)
    legs = ("digital", "digital_again")
    t_dig = min(out[k]["time_s"] for k in legs)
    c_dig = min(out[k]["cpu_s"] for k in legs)
    if mom is not None:
        out["moment_over_digital"] = out["moment"]["time_s"] / t_dig
    # the bit variants, each thread count with its own digital reference (same threads)
    rep_bit = 1 if a.quick else a.repeat
    def general_row(x):  # the kernel's general (non-AVX-512) row: the same bits, slower
        analog.KERNEL_SIMD = False
        try:
            return bit(x)
        finally:
            analog.KERNEL_SIMD = True

    variants = {"default_bit": bit, "bit_torch_readout": tbit, "bit_full_sampling": full}
    if out["kernel_simd"]:
        variants["default_bit_general_row"] = general_row
    if bit4 is not None:
        variants["default_bit_4bit_adc"] = bit4
    per_threads = {}
    for n in a.bit_threads:
        torch.set_num_threads(n)
        r = {"digital": measure(lambda: model(x), a.repeat)}
        for k, fn in variants.items():
            readout_paths(reset=True)
            r[k] = measure(lambda fn=fn: fn(x), rep_bit)
            r[k]["readout_paths"] = readout_paths()
        r["digital_again"] = measure(lambda: model(x), a.repeat)
        td = min(r["digital"]["time_s"], r["digital_again"]["time_s"])
        cd = min(r["digital"]["cpu_s"], r["digital_again"]["cpu_s"])
        r["ratios_wall"] = {k: r[k]["time_s"] / td for k in variants}
        r["ratios_cpu"] = {k: r[k]["cpu_s"] / cd for k in variants}
        r["torch_readout_over_kernel_wall"] = (r["bit_torch_readout"]["time_s"]
                                               / r["default_bit"]["time_s"])
        per_threads[str(n)] = r
        print(f"digits {x.shape[0]} images, {n} thread(s): digital {td * 1e3:.1f} ms; wall "
              f"ratios {json.dumps({k: round(v, 1) for k, v in r['ratios_wall'].items()})}; "
              f"CPU ratios {json.dumps({k: round(v, 1) for k, v in r['ratios_cpu'].items()})}",
              flush=True)
    torch.set_num_threads(a.threads)
    out["threads"] = per_threads
    main_t = per_threads.get(str(a.threads)) or next(iter(per_threads.values()))
    out["default_over_digital"] = main_t["ratios_wall"]["default_bit"]
    out["ratios_cpu"] = {**({"moment": out["moment"]["cpu_s"] / c_dig} if mom is not None
                            else {}), **main_t["ratios_cpu"]}
    # what remains: the C kernel's own time within one default forward (ctypes call timed)
    if lib is not None:
        spent = [0.0]
        orig = lib.imc_readout_mvm

        def timed(*args, orig=orig):
            t0 = time.process_time()
            try:
                return orig(*args)
            finally:
                spent[0] += time.process_time() - t0

        lib.imc_readout_mvm = timed
        readout_paths(reset=True)
        try:
            m_ = measure(lambda: bit(x), 1)
        finally:
            lib.imc_readout_mvm = orig
        conv = readout_paths()
        out["kernel_share_of_default_cpu"] = spent[0] / max(m_["cpu_s"], 1e-12)
        out["kernel_cpu_s"] = spent[0]
        out["kernel_ns_per_conversion"] = spent[0] / max(1, conv["c"]) * 1e9
        out["drawn_fraction"] = conv["c_drawn"] / max(1, conv["c"])
        out["conversions_per_image"] = conv["c"] / x.shape[0]
    out["profile_default_bit"] = profile(lambda: bit(x[:16]))
    if mom is not None:
        out["profile_moment"] = profile(lambda: mom(x))
        res["digits"] = out
    else:  # the bit legs only: the moment keys of an earlier run stay
        old = res.get("digits", {})
        keep = {k: v for k, v in old.items() if "moment" in k}
        out["ratios_cpu"] = {**{k: v for k, v in old.get("ratios_cpu", {}).items()
                                if k == "moment"}, **out["ratios_cpu"]}
        res["digits"] = {**keep, **out}
    cpu = out["ratios_cpu"]
    mo = res["digits"].get("moment_over_digital", float("nan"))
    print(f"digits {x.shape[0]} images: digital {t_dig * 1e3:.1f} ms, moment "
          f"{mo:.1f}x, default (bit) {out['default_over_digital']:.1f}x"
          f" (CPU-time ratios: {json.dumps({k: round(v, 1) for k, v in cpu.items()})})",
          flush=True)


def digits_moment_section(a, res: dict) -> None:
    """``--only digits-moment``: the moment fidelity on digits at evaluate's batch size
    (``--moment-batch``, 256) over all test images (450) and over the first 32, each with its
    digital forward side by side (digital, moment, digital; best of ``--repeat``), with the
    moment C kernel (``readout_kernel="auto"``) and the torch path (``"torch"``); chips as a
    batch dimension (``--chip-batch`` chips: the chip loop vs ``program_chips``, per chip);
    and a cProfile of one moment forward. Written to ``digits_moment``."""
    from nnsim.analog import AnalogConfig
    from nnsim.convert import calibrate_moment, convert_to_analog, program_chip, program_chips
    from nnsim.data import load_dataset
    from nnsim.models import load_or_train

    model, _ = load_or_train("digits", quiet=True)
    model.eval()
    test = load_dataset("digits", "test").images
    calib = load_dataset("digits", "calib").images[:64]
    hw, src = hardware(a.lookup, 6)
    res["hardware_source"] = src
    mods = {}
    for k in ("auto", "torch"):
        m = convert_to_analog(model, hw, AnalogConfig(fidelity="moment", readout_kernel=k),
                              seed=None)
        program_chip(m, 1)
        calibrate_moment(m, [calib], seed=0)
        mods[k] = m
    bs = a.moment_batch

    def over(fn, x):
        for i in range(0, x.shape[0], bs):
            fn(x[i:i + bs])

    out = {"batch_size": bs, "hardware_source": src}
    with torch.no_grad():
        model(test[:4]), mods["auto"](test[:4]), mods["torch"](test[:4])
    for name, x in (("all_450", test), ("first_32", test[:32])):
        r = {"images": int(x.shape[0])}
        r["digital"] = measure(lambda x=x: over(model, x), a.repeat)
        r["moment"] = measure(lambda x=x: over(mods["auto"], x), a.repeat)
        r["moment_torch_path"] = measure(lambda x=x: over(mods["torch"], x), a.repeat)
        r["digital_again"] = measure(lambda x=x: over(model, x), a.repeat)
        td = min(r["digital"]["time_s"], r["digital_again"]["time_s"])
        cd = min(r["digital"]["cpu_s"], r["digital_again"]["cpu_s"])
        r["moment_over_digital"] = r["moment"]["time_s"] / td
        r["moment_over_digital_cpu"] = r["moment"]["cpu_s"] / cd
        r["moment_torch_path_over_digital"] = r["moment_torch_path"]["time_s"] / td
        out[name] = r
        print(f"digits moment, {x.shape[0]} images in batches of {min(bs, x.shape[0])}: "
              f"{r['moment_over_digital']:.2f}x digital (CPU {r['moment_over_digital_cpu']:.2f}x"
              f"; torch path {r['moment_torch_path_over_digital']:.2f}x)", flush=True)
    nc = a.chip_batch
    m = mods["auto"]
    seeds = list(range(11, 11 + nc))
    x = test[:bs]

    def loop():
        for s_ in seeds:
            program_chip(m, s_)
            m(x)

    def batched():
        program_chips(m, seeds)
        m(x.repeat(nc, 1, 1, 1))

    cb = {"chips": nc, "images": int(x.shape[0])}
    cb["loop"] = measure(loop, a.repeat)
    cb["batched"] = measure(batched, a.repeat)
    cb["batched_over_loop"] = cb["batched"]["time_s"] / cb["loop"]["time_s"]
    cb["batched_over_loop_cpu"] = cb["batched"]["cpu_s"] / cb["loop"]["cpu_s"]
    program_chip(m, 1)
    out["chip_batch"] = cb
    print(f"chip batch of {nc}: {cb['batched_over_loop']:.2f}x the loop's time (CPU "
          f"{cb['batched_over_loop_cpu']:.2f}x)", flush=True)
    out["profile_moment"] = profile(lambda: m(test[:bs]))
    res["digits_moment"] = out


def _mem_child(which: str, a) -> None:
    """In a fresh process: peak extra resident memory of one forward (``digital`` or
    ``moment``) of the DeiT-S block, after one warm-up forward of the same kind."""
    block, mom, x = deit_block(a.deit_batch, a.lookup)[:3]
    fn = block if which == "digital" else mom
    with torch.no_grad():
        fn(x)
    import gc
    gc.collect()
    print(json.dumps(measure(lambda: fn(x), 1)))


def fresh_memory(a) -> dict:
    """Peak extra memory of the digital and moment block forwards, each in a fresh process."""
    import subprocess
    import sys

    out = {}
    for which in ("digital", "moment"):
        cmd = [sys.executable, __file__, "--mem-child", which, "--deit-batch",
               str(a.deit_batch), "--threads", str(a.threads), "--lookup", *a.lookup]
        # large blocks mmapped (and returned on free), so the peak of the measured forward
        # is not hidden behind memory the warm-up forward left with the allocator
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        try:
            out[which] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out[which] = {"error": (r.stderr or r.stdout)[-500:]}
    try:
        out["moment_over_digital"] = (out["moment"]["peak_extra_mib"]
                                      / out["digital"]["peak_extra_mib"])
    except (KeyError, TypeError, ZeroDivisionError):
        out["moment_over_digital"] = None
    return out


def deit_section(a, res: dict) -> None:
    block, mom, x = deit_block(a.deit_batch, a.lookup)[:3]
    with torch.no_grad():
        block(x), mom(x)
    out = {"batch": a.deit_batch, "tokens": 197}
    out["digital"] = measure(lambda: block(x), a.repeat)
    out["moment"] = measure(lambda: mom(x), a.repeat)
    out["digital_again"] = measure(lambda: block(x), a.repeat)
    dig_t = min(out["digital"]["time_s"], out["digital_again"]["time_s"])
    dig_m = max(out["digital"]["peak_extra_mib"] or 0, out["digital_again"]["peak_extra_mib"]
                or 0)
    out["moment_time_over_digital"] = out["moment"]["time_s"] / dig_t
    del dig_m  # in-process peaks hide behind memory the process already holds: fresh ones
    out["memory_fresh_processes"] = fresh_memory(a)
    out["moment_memory_over_digital"] = out["memory_fresh_processes"]["moment_over_digital"]
    try:
        from aihwkit_lightning.nn.conversion import convert_to_analog as ahl_convert

        sys_path = Path(__file__).parent
        import sys
        sys.path.insert(0, str(sys_path))
        from nnsim_overhead import _ahl_rpu_config

        ahl = ahl_convert(copy.deepcopy(block), _ahl_rpu_config()).eval()
        with torch.no_grad():
            ahl(x)
        out["aihwkit_lightning"] = measure(lambda: ahl(x), a.repeat)
        out["aihwkit_time_over_digital"] = out["aihwkit_lightning"]["time_s"] / dig_t
        out["moment_over_aihwkit"] = out["moment"]["time_s"] / out["aihwkit_lightning"][
            "time_s"]
    except Exception as exc:
        out["aihwkit_lightning"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    out["profile_moment"] = profile(lambda: mom(x))
    res["deit_block"] = out
    print(f"DeiT-S block x{a.deit_batch}: moment {out['moment_time_over_digital']:.2f}x time, "
          f"{out['moment_memory_over_digital'] or float('nan'):.2f}x memory; aihwkit-lightning "
          f"{out.get('aihwkit_time_over_digital', float('nan')):.2f}x", flush=True)


def rap_section(a, res: dict) -> None:
    from nnsim.convert import convert_to_analog
    from nnsim.data import load_dataset, make_loader
    from nnsim.hardware import AdcModel, HardwareModel
    from nnsim.models import load_or_train
    from nnsim.rap import MVMConfig, convert_to_rap

    model, _ = load_or_train("digits", quiet=True)
    x = load_dataset("digits", "test").images[:a.rap_images]
    rap = convert_to_rap(model, make_loader(load_dataset("digits", "calib"), 64))
    hw6, _ = hardware(a.lookup, 6)
    analog = convert_to_analog(model, hw6, seed=0)
    out = {"images": int(x.shape[0])}
    out["analog_default"] = measure(lambda: analog(x), 1)
    adcs = {}
    base = hw6.adcs.get(3) or hardware([], 3)[0].adc(3)
    for name, noise in (("noisy_0.2lsb", 0.2), ("quick_preset_noise_0.0076lsb", 0.0076)):
        hw = HardwareModel.ideal(adc_bits=3)
        hw.adcs[3] = AdcModel(3, base.thresholds_lsb, noise, base.energy_j,
                              base.conversion_time_s, base.code_offset)
        adcs[name] = hw
    for name, hw in adcs.items():
        rap.set_mvm(MVMConfig(mode="sparse", adc_bits=3), hw, 0)
        col = rap.column_adc
        r = measure(lambda: rap(x), 1)
        r["over_analog"] = r["time_s"] / out["analog_default"]["time_s"]
        r["adc_source"] = rap.adc_source
        r["uncertain_fraction"] = getattr(col, "uncertain_fraction", None)
        out[f"sparse_3bit_{name}"] = r
        print(f"RAP sparse 3-bit ({name}): {r['over_analog']:.2f}x the analog forward "
              f"({rap.adc_source})", flush=True)
    rap.set_mvm(MVMConfig(mode="sparse", adc_bits=3), adcs["noisy_0.2lsb"], 0)
    out["profile_sparse_3bit_noisy"] = profile(lambda: rap(x[:4]))
    res["rap"] = out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="digits test images")
    ap.add_argument("--rap-images", type=int, default=8)
    ap.add_argument("--deit-batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bit-threads", type=int, nargs="*", default=[1, 2],
                    help="thread counts of the digits bit-mode legs (each with its digital)")
    ap.add_argument("--lookup", nargs="*", default=LOOKUPS)
    ap.add_argument("--only", nargs="*", default=["digits", "deit", "rap"],
                    help="sections: digits, digits-bit (the bit legs of digits only, merged "
                         "into the digits entry), digits-moment (the moment legs at "
                         "evaluate's batch size, chip batch), deit, rap")
    ap.add_argument("--moment-batch", type=int, default=256,
                    help="digits-moment: images per forward (evaluate's batch size)")
    ap.add_argument("--chip-batch", type=int, default=5,
                    help="digits-moment: chips in one forward (program_chips) vs the loop")
    ap.add_argument("--quick", action="store_true", help="one repetition of the bit forward")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge", action="store_true", help="update the sections of --out")
    ap.add_argument("--mem-child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.lookup = [p for p in a.lookup if Path(p).exists()]
    torch.set_num_threads(a.threads)
    if a.mem_child:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _mem_child(a.mem_child, a)
        return
    res = {"targets": TARGETS, "threads": a.threads, "python": platform.python_version(),
           "torch": torch.__version__, "machine": platform.machine(),
           "note": "shared 2-core machine: read the ratios (measured side by side), not the "
                   "absolute times", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                              time.gmtime())}
    if a.merge and a.out.exists():
        res = {**json.loads(a.out.read_text()), **res}
    sections = {"digits": digits_section, "deit": deit_section, "rap": rap_section,
                "digits-bit": lambda a, res: digits_section(a, res, moment=False),
                "digits-moment": digits_moment_section}
    for name in a.only:
        sections[name](a, res)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    met = {}
    if "digits" in res:
        met["digits_default_over_digital"] = res["digits"]["default_over_digital"]
        if "moment_over_digital" in res["digits"]:
            met["digits_moment_over_digital"] = res["digits"]["moment_over_digital"]
    if "digits_moment" in res:  # evaluate's batch size over all 450 test images
        met["digits_moment_over_digital"] = res["digits_moment"]["all_450"][
            "moment_over_digital"]
    if "deit_block" in res:
        met["deit_block_moment_time_over_digital"] = res["deit_block"]["moment_time_over_digital"]
        met["deit_block_moment_memory_over_digital"] = res["deit_block"][
            "moment_memory_over_digital"]
    # the RAP target is on programmed cells and the characterized ADC: bench/rap_speed.py
    # measures that (its JSON beside this one); this file's "rap" section is the ideal-cell
    # leg with a synthetic 0.2-LSB ADC noise (a stress case of the sampler, not the target)
    where = {}
    rap_json = a.out.parent / "rap_speed.json"
    if rap_json.is_file():
        runs = json.loads(rap_json.read_text(encoding="utf-8"))["runs"]
        met["rap_sparse_3bit_over_analog"] = runs["rap_sparse_3bit_programmed_fused"][
            "over_analog_cpu"]
        where["rap_sparse_3bit_over_analog"] = (
            f"{rap_json.name}: runs.rap_sparse_3bit_programmed_fused.over_analog_cpu")
    res["summary"] = {k: {"measured": v, "target": TARGETS[k],
                          "met": None if v is None else v <= TARGETS[k],
                          **({"where": where[k]} if k in where else {})}
                      for k, v in met.items()}
    a.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    print(json.dumps(res["summary"], indent=1))


if __name__ == "__main__":
    main()
