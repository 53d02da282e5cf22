"""``spicebridge train`` and ``spicebridge evaluate``: the ViT simulator's command line."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``evaluate`` to the command line."""
    t = sub.add_parser("train", help="train an offline ViT (digits, fashion_mnist) and cache it",
                       description="Train a small DeiT-style ViT on an offline dataset and "
                       "cache the checkpoint with its training seed "
                       "(~/.cache/spicebridge/models by default).")
    t.add_argument("--dataset", default="digits",
                   help="digits | fashion_mnist (the model preset of the same name)")
    t.add_argument("--model", default=None, help="preset instead of the dataset's "
                   "(digits, digits-tiny, fashion_mnist)")
    t.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    t.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    t.add_argument("--cache-dir", type=Path, default=None, help="checkpoint folder")
    t.add_argument("--force", action="store_true", help="retrain even if cached")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    from .common import add_output_options

    add_output_options(t, quiet=False)  # --json [PATH]: the checkpoint's meta
    _add_vat_train_options(t)
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate", help="ViT accuracy on simulated analog chips from lookup files",
        description="Convert a ViT to analog crossbars (hardware from lookup files), evaluate "
        "it on several simulated chips and print accuracy mean and 95 % CI. Comma lists "
        "(--gamma 3,4,5 --bits 4,6 --vdd-v 1.62,1.8) sweep their Cartesian product.")
    e.add_argument("--dataset", default=None,
                   help="digits | fashion_mnist | imagenet (default: the model's)")
    e.add_argument("--model", default=None,
                   help="digits | fashion_mnist | digits-tiny | deit-s (default: the dataset's)")
    e.add_argument("--weights", type=Path, default=None,
                   help="DeiT-S weights file (.pth or .safetensors; no downloads)")
    e.add_argument("--data", type=Path, default=None,
                   help="image folder for imagenet (DIR/val/<class>/*) or Fashion-MNIST IDX dir")
    e.add_argument("--lookup", type=Path, nargs="+", action="extend", default=[],
                   metavar="FILE.h5", help="lookup file(s): crossbar and ADC (repeatable)")
    e.add_argument("--process", "--corner", dest="process", default="tt",
                   help="process corner(s), comma list (default tt)")
    e.add_argument("--vdd-v", "--vdd", dest="vdd_v", default=None,
                   help="supply(ies) V, comma list (default: nominal characterized)")
    e.add_argument("--temp-c", "--temp", dest="temp_c", default=None,
                   help="temperature(s) degC, comma list (default: nominal characterized)")
    e.add_argument("--bits", default="6", help="ADC bits, comma list (default 6)")
    e.add_argument("--gamma", default="1",
                   help="K/V write-noise factor(s) x characterized sigma, comma list (default 1)")
    e.add_argument("--write-noise-sigma", type=float, default=None, metavar="S",
                   help="parametric write-noise sigma (the 'guessed Gaussian' baseline): "
                   "G' = G + gamma*S*sqrt((G-Gmin)(Gmax-Gmin))*N(0,1)")
    e.add_argument("--write-noise", choices=("levels", "samples", "fit", "parametric", "none"),
                   default="levels", help="write-noise model: levels = per level the "
                   "characterized mean error (once) + gamma x its sigma; samples = the "
                   "characterized residuals drawn, x gamma; fit = TxSim form with the fitted k "
                   "(default levels)")
    e.add_argument("--protocol", choices=("circuit", "clipformer"), default="circuit",
                   help="circuit: static weights and K/V programmed with the characterized "
                   "errors; clipformer: the paper's protocol exactly (static weights without "
                   "write noise, K/V with the zero-mean TxSim form, fitted k)")
    e.add_argument("--calib-data", type=Path, default=None, metavar="DIR",
                   help="imagenet: held-out calibration images DIR/<class>/* (default "
                   "DATA/calib; required by anything that calibrates, never the test images)")
    e.add_argument("--clipformer", nargs="?", const="2,0.25", default=None, metavar="A,B",
                   help="ClipFormer on K/V (default alpha,beta = 2,0.25); 'both' sweeps off/on")
    e.add_argument("--alpha", type=float, default=None, help="ClipFormer alpha")
    e.add_argument("--beta", type=float, default=None, help="ClipFormer beta")
    e.add_argument("--calibrate-clipformer", action="store_true",
                   help="pick alpha, beta on the calib split first")
    e.add_argument("--static", choices=("analog", "digital"), default="analog",
                   help="static linear layers on crossbars (default) or digital")
    e.add_argument("--fidelity", choices=("bit", "moment"), default="bit",
                   help="bit (the default): every column conversion simulated (exact; read "
                   "out by the fused C kernel nnsim/kernels/readout.c where a C compiler is "
                   "present, else the slower torch path, IMC_KERNELS=off forces it; the "
                   "JSON's timing.readout_kernel says which ran); "
                   "moment: one matmul per layer, readout errors as a calibrated Gaussian "
                   "(fast, approximate)")
    e.add_argument("--sampling", choices=("threshold", "full"), default="threshold",
                   help="bit fidelity's per-conversion noise: threshold (the default) draws it "
                   "only where a column's noiseless input lies within 6 sigma of an ADC "
                   "threshold (elsewhere the code is certain; same code distribution); full: "
                   "one draw per conversion")
    e.add_argument("--kv-range", choices=("matrix", "calibrated"), default="matrix",
                   help="K/V magnitude mapped to G_max: each matrix's max, or a per-layer range "
                   "calibrated on the calib split")
    e.add_argument("--tile-rows", type=int, default=64,
                   help="rows per crossbar array (default 64); match the characterized column's "
                   "rows (the crossbar file's 'rows' attribute) to stay inside its tables")
    e.add_argument("--ideal", action="store_true",
                   help="ideal crossbars (no lookup needed): equals the digital model")
    e.add_argument("--adc-trim", choices=("none", "pedestal", "offset"), default="none",
                   help="ADC offset trim, a design option for the dense analog path and RAP "
                   "alike (default none: the thresholds as characterized); pedestal: the "
                   "corner's sampling-switch pedestal (adc/sampling/pedestal_lsb) subtracted "
                   "from every instance (dummy-switch / differential cancellation); offset: "
                   "each instance's measured offset (adc/offset_lsb) trimmed by a foreground "
                   "calibration with an assumed 1/4-LSB trim-DAC step")
    e.add_argument("--chips", type=int, default=5, help="simulated chips (default 5)")
    e.add_argument("--seed", type=int, default=0, help="root seed of the chips (default 0)")
    e.add_argument("--train-seed", type=int, default=0, help="seed of the offline model")
    e.add_argument("--limit", type=int, default=None, help="score only the first N test images")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    e.add_argument("--chip-batch", default="auto", metavar="N|auto",
                   help="simulated chips in one forward (moment above 4 ADC bits; same results "
                   "as one chip at a time); auto (the default): all --chips on cuda, 1 on cpu "
                   "(no faster there, docs/nnsim.md)")
    e.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1)")
    e.add_argument("--cache-dir", type=Path, default=None, help="model checkpoint folder")
    e.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                   help="write the results as JSON to OUT (or stdout without OUT)")
    e.add_argument("--rap", action="store_true", help="also evaluate RAP (nnsim.rap)")
    e.add_argument("--rap-no-dense", action="store_true",
                   help="RAP: skip its dense all-rows MVM (same integer path, same cells and "
                   "ADC, ADC range calibrated on the calib split's column sums); saves most of "
                   "RAP's time, but then RAP has no fair baseline in the output")
    e.add_argument("--rap-only", action="store_true",
                   help="RAP only (implies --rap): skip the dense analog points, which a RAP "
                   "run otherwise evaluates at the same hardware points as well")
    e.add_argument("--rap-k", type=int, default=None,
                   help="RAP: most active rows per conversion (default: the most that --bits "
                   "resolves exactly, floor((2^bits - 1) / (2^cell_bits - 1)))")
    v = e.add_argument_group("variation-aware training (Table II: standard and VAT, each "
                             "without and with ClipFormer, on the same chips)")
    v.add_argument("--vat", action="store_true",
                   help="also evaluate the VAT checkpoint of the same model and lookup files "
                   "(fine-tuned first if it is not cached, as 'train --variation-aware')")
    v.add_argument("--vat-gamma", type=float, default=None, metavar="G",
                   help="gamma the VAT checkpoint is trained at (default: the largest --gamma)")
    v.add_argument("--vat-robust-pvt", action="store_true",
                   help="the VAT checkpoint trained over the characterized PVT grid")
    v.add_argument("--vat-fidelity", choices=("bit", "moment"), default="moment",
                   help="fidelity of the VAT training forward (default moment)")
    v.add_argument("--vat-epochs", type=int, default=None, help="VAT epochs (preset default)")
    v.add_argument("--vat-seed", type=int, default=0, help="VAT seed (default 0)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.add_argument("--config", type=Path, default=None, metavar="EXPERIMENT.toml",
                   help="experiment file: model, hardware points, sweep and every "
                   "AnalogConfig field (ablation switches); flags given here win over it "
                   "(docs/experiments.md)")
    dg = e.add_mutually_exclusive_group()
    dg.add_argument("--dask", metavar="ADDRESS", default=None,
                    help="run each (setting, chip) on a Dask scheduler, tcp://host:port "
                    "(results identical to a local run for the same --seed)")
    dg.add_argument("--dask-local", type=int, metavar="N", default=None,
                    help="run the chips on a local Dask cluster of N one-thread workers")
    e.set_defaults(func=run_evaluate)
    e.set_defaults(eval_defaults={a.dest: a.default for a in e._actions})


def _add_vat_train_options(t: argparse.ArgumentParser) -> None:
    v = t.add_argument_group(
        "variation-aware training (nnsim.vat)",
        "--variation-aware fine-tunes the trained model with the characterized crossbar and "
        "ADC non-idealities in the forward pass (the evaluation's forward, straight-through "
        "gradient) and caches it next to the standard checkpoint, keyed by the lookup "
        "files' sha256 and the hardware point; 'evaluate --vat' uses it.")
    v.add_argument("--variation-aware", action="store_true",
                   help="fine-tune with the hardware in the loop (needs --lookup)")
    v.add_argument("--lookup", type=Path, nargs="+", action="extend", default=[],
                   metavar="FILE.h5", help="crossbar and ADC lookup files")
    v.add_argument("--process", "--corner", dest="process", default="tt",
                   help="process corner (default tt)")
    v.add_argument("--vdd-v", "--vdd", dest="vdd_v", type=float, default=None,
                   help="supply V (default: nominal characterized)")
    v.add_argument("--temp-c", "--temp", dest="temp_c", type=float, default=None,
                   help="temperature degC (default: nominal characterized)")
    v.add_argument("--bits", type=int, default=6, help="ADC bits (default 6)")
    v.add_argument("--gamma", type=float, default=1.0,
                   help="K/V write-noise factor during training (default 1)")
    v.add_argument("--robust-pvt", action="store_true",
                   help="sample the (process, vdd, temp) point per step over the grid")
    v.add_argument("--write-noise", choices=("levels", "samples", "fit", "parametric", "none"),
                   default="levels", help="write-noise model, as evaluate (default levels)")
    v.add_argument("--write-noise-sigma", type=float, default=None, metavar="S",
                   help="parametric write-noise sigma, as evaluate")
    v.add_argument("--protocol", choices=("circuit", "clipformer"), default="circuit",
                   help="as evaluate")
    v.add_argument("--static", choices=("analog", "digital"), default="analog",
                   help="static layers on crossbars (default) or digital, as evaluate")
    v.add_argument("--fidelity", choices=("bit", "moment"), default="moment",
                   help="fidelity of the training forward (default moment)")
    v.add_argument("--kv-range", choices=("matrix", "calibrated"), default="matrix",
                   help="K/V range, as evaluate (default matrix)")
    v.add_argument("--tile-rows", type=int, default=64, help="rows per array, as evaluate")
    v.add_argument("--vat-epochs", type=int, default=None, help="epochs (preset default)")
    v.add_argument("--vat-lr", type=float, default=None, help="peak lr (preset default)")
    v.add_argument("--vat-batch-size", type=int, default=None, help="batch (preset default)")
    v.add_argument("--reprogram-every", type=int, default=1,
                   help="steps between chip re-programming (default 1)")
    v.add_argument("--vat-seed", type=int, default=0, help="VAT seed (default 0)")


def _analog_base(args: argparse.Namespace) -> Any:
    """The ``AnalogConfig`` of ``train --variation-aware`` from its flags, built as
    ``evaluate`` builds its own (so the two find the same checkpoint)."""
    from nnsim.analog import AnalogConfig

    base = AnalogConfig(write_noise=args.write_noise, write_noise_sigma=args.write_noise_sigma,
                        static=args.static == "analog", fidelity=args.fidelity,
                        kv_range=args.kv_range, tile_rows=args.tile_rows)
    if args.protocol == "clipformer":
        from nnsim.analog import clipformer_protocol

        base = clipformer_protocol(base)
    return base


def _vat_settings(base: Any, *, process: str, vdd_v: float, temp_c: float, bits: int,
                  gamma: float, robust_pvt: bool, fidelity: str, epochs: int | None = None,
                  lr: float | None = None, batch_size: int | None = None,
                  reprogram_every: int = 1) -> Any:
    from nnsim.vat import VatSettings

    analog = dataclasses.replace(base, fidelity=fidelity, clipformer=None).to_dict()
    return VatSettings(process=process, vdd_v=float(vdd_v), temp_c=float(temp_c),
                       bits=int(bits), gamma=float(gamma), robust_pvt=robust_pvt,
                       epochs=epochs, lr=lr, batch_size=batch_size,
                       reprogram_every=reprogram_every, analog=analog)


def run_train_vat(args: argparse.Namespace, name: str) -> int:
    """``train --variation-aware``: fine-tune (or load the cached) VAT checkpoint."""
    from nnsim.hardware import HardwareModel
    from nnsim.vat import load_or_finetune

    if not args.lookup:
        print("spicebridge train --variation-aware: give --lookup CROSSBAR.h5 ADC.h5",
              file=sys.stderr)
        return 2
    try:
        # the hardware point as evaluate resolves it (nominal vdd/temp when not given)
        hw = HardwareModel.from_lookup(args.lookup, process=args.process, vdd_v=args.vdd_v,
                                       temp_c=args.temp_c, adc_bits=args.bits,
                                       rows=args.tile_rows)
        settings = _vat_settings(_analog_base(args), process=hw.process, vdd_v=hw.vdd_v,
                                 temp_c=hw.temp_c, bits=args.bits, gamma=args.gamma,
                                 robust_pvt=args.robust_pvt, fidelity=args.fidelity,
                                 epochs=args.vat_epochs, lr=args.vat_lr,
                                 batch_size=args.vat_batch_size,
                                 reprogram_every=args.reprogram_every)
        settings.recipe(name)  # a bad --vat-epochs/--vat-lr fails here, before any work
        _model, meta = load_or_finetune(name, args.lookup, settings, cache_dir=args.cache_dir,
                                        train_seed=args.seed, seed=args.vat_seed,
                                        base_epochs=args.epochs, quiet=args.quiet,
                                        force=args.force)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"spicebridge train --variation-aware: {e}", file=sys.stderr)
        return 2
    from .common import emit

    def human() -> None:
        src = "cached" if meta.get("cached") else (
            f"fine-tuned in {meta['train_time_s']:.1f} s ({meta['train_cpu_s']:.1f} CPU s; "
            f"standard training {meta['base'].get('train_time_s') or float('nan'):.1f} s)")
        print(f"{meta['name']} VAT at {hw.process} {hw.vdd_v:g} V {hw.temp_c:g} C "
              f"{args.bits}-bit gamma {args.gamma:g}"
              f"{' (robust PVT)' if args.robust_pvt else ''}: digital test accuracy "
              f"{100 * meta['test_accuracy']:.2f} % ({src}) -> {meta['path']}")

    emit(args, meta, human)
    return 0


def _floats(s: str | None) -> list[float | None]:
    return [None] if s is None else [float(x) for x in str(s).split(",") if x.strip()]


def run_train(args: argparse.Namespace) -> int:
    """Train (or load) a preset and print its test accuracy."""
    import torch

    from nnsim.data import canonical_name
    from nnsim.models import checkpoint_path, load_or_train

    torch.set_num_threads(args.threads)
    name = args.model or canonical_name(args.dataset)
    if args.variation_aware:
        return run_train_vat(args, name)
    path = checkpoint_path(name, args.cache_dir, args.seed, args.epochs)
    if args.force and path.exists():
        path.unlink()
    _model, meta = load_or_train(name, args.cache_dir, args.seed, args.epochs, quiet=args.quiet)
    from .common import emit

    def human() -> None:
        src = "cached" if meta.get("cached") else f"trained in {meta['train_time_s']:.1f} s"
        print(f"{meta['name']}: test accuracy {100 * meta['test_accuracy']:.2f} % "
              f"(seed {meta['seed']}, {src}) -> {meta['path']}")

    emit(args, meta, human)
    return 0


def _load_model(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any]]:
    from nnsim.data import canonical_name
    from nnsim.models import PRESETS, canonical_model_name, load_deit_s, load_or_train

    if args.model:
        name = canonical_model_name(args.model)
    elif args.dataset:
        ds = canonical_name(args.dataset)
        name = "deit-s" if ds == "imagenet" else ds
    else:
        name = "digits"
    dataset = canonical_name(args.dataset) if args.dataset else PRESETS[name]["dataset"]
    if name == "deit-s":
        if args.weights is None:
            raise SystemExit("spicebridge evaluate: --model deit-s needs --weights FILE "
                             "(a local deit_small_patch16_224 state_dict; nothing is downloaded)")
        return load_deit_s(args.weights), dataset, {"name": name, "weights": str(args.weights)}
    model, meta = load_or_train(name, args.cache_dir, args.train_seed, quiet=args.quiet)
    return model, dataset, meta


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate every point of the requested sweep; print a table and/or JSON.

    Ctrl-C: ``Interrupted`` (exit 130, one line); ``--json OUT`` is written (atomically) only
    when every setting is done, so nothing is written.
    """
    from .common import Interrupted

    try:
        return _run_evaluate(args)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        if args.dask or args.dask_local is not None:
            import logging

            # the Dask client's tasks cut short log "Task exception was never retrieved"
            # tracebacks as the cluster closes at exit: Ctrl-C is one line
            for name in ("asyncio", "distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        where = f" to {args.json}" if args.json and args.json != "-" else ""
        raise Interrupted(f"no result written{where} (the JSON is written when every "
                          "setting is done)") from None


def _run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from characterization.errors import CharacterizationError
    from nnsim.analog import AnalogConfig, ideal
    from nnsim.data import load_dataset
    from nnsim.evaluate import calibrate_clipformer, digital_reference, evaluate_chips
    from nnsim.hardware import HardwareModel, HardwareModelError

    from .experiment import run_start

    start = run_start()  # the commit of the code that runs, before any work (meta.git_commit)
    analog_config: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        from .experiment import load_experiment

        analog_config = load_experiment(args.config, args, args.eval_defaults)
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("spicebridge evaluate: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    try:
        chip_batch = (args.chips if device.startswith("cuda") else 1) \
            if args.chip_batch == "auto" else int(args.chip_batch)
        if chip_batch < 1:
            raise ValueError
    except ValueError:
        print(f"spicebridge evaluate: --chip-batch {args.chip_batch!r}: give a positive "
              "integer or auto", file=sys.stderr)
        return 2
    if not args.lookup and not args.ideal:
        print("spicebridge evaluate: give --lookup FILE.h5 [FILE2.h5] (or --ideal)",
              file=sys.stderr)
        return 2
    if args.rap_only:
        if args.vat or args.calibrate_clipformer:
            print("spicebridge evaluate: --rap-only evaluates no analog points: drop --vat / "
                  "--calibrate-clipformer", file=sys.stderr)
            return 2
        args.rap = True
    try:
        model, dataset, model_meta = _load_model(args)
        test = load_dataset(dataset, "test", root=args.data)
        needs_calib = (args.rap or args.calibrate_clipformer or args.kv_range == "calibrated"
                       or args.fidelity == "moment")
        calib = None
        if needs_calib:
            if args.calib_data is not None and dataset == "imagenet":
                from nnsim.data import image_folder

                calib = image_folder(args.calib_data)
            else:
                calib = load_dataset(dataset, "calib", root=args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"spicebridge evaluate: {e}", file=sys.stderr)
        return 2
    if args.limit:
        test = test.subset(args.limit) if hasattr(test, "subset") else \
            torch.utils.data.Subset(test, range(min(args.limit, len(test))))
    model = model.to(device).eval()
    # the digital reference: accuracy, and the fastest of a few timed forwards (timing)
    digital, digital_repeats_s = digital_reference(model, test, args.batch_size, device)
    client = None
    if args.dask or args.dask_local is not None:
        from nnsim.distributed import make_client

        try:
            client = make_client(args.dask, args.dask_local)
        except (ValueError, OSError) as e:
            print(f"spicebridge evaluate: --dask: {e}", file=sys.stderr)
            return 2

    clips: list[tuple[float, float] | None]
    if args.clipformer == "both":
        clips = [None, (args.alpha or 2.0, args.beta or 0.25)]
    elif args.clipformer is not None or args.alpha is not None or args.beta is not None:
        a, b = ([float(x) for x in args.clipformer.split(",")] if args.clipformer
                else [2.0, 0.25])
        clips = [(args.alpha if args.alpha is not None else a,
                  args.beta if args.beta is not None else b)]
    else:
        clips = [None]
    base = ideal() if args.ideal else AnalogConfig(
        write_noise=args.write_noise, write_noise_sigma=args.write_noise_sigma,
        static=args.static == "analog", fidelity=args.fidelity, kv_range=args.kv_range,
        sampling=args.sampling,
        tile_rows=args.tile_rows)
    if analog_config and not args.ideal:  # the experiment file's [analog] fields
        base = dataclasses.replace(base, **analog_config)
    if args.protocol == "clipformer" and not args.ideal:
        from nnsim.analog import clipformer_protocol

        base = clipformer_protocol(base)
    kv_ranges = None
    if args.kv_range == "calibrated" and not args.ideal and not args.rap_only:
        from nnsim.convert import kv_ranges_digital
        from nnsim.data import make_loader
        from nnsim.evaluate import active_cache

        def kv() -> Any:  # once, on the digital model: every point maps K/V with these ranges
            return kv_ranges_digital(model, (x.to(device) for x, _ in
                                             make_loader(calib, args.batch_size)))

        shared = active_cache()  # the demo's steps share one (same model and calib split)
        kv_ranges = shared.memo(shared.key("kv_ranges", model, calib, args.batch_size,
                                           str(device)), kv) if shared is not None else kv()
    results: list[Any] = []
    rap_results: list[Any] = []
    vat_cache: dict[Any, Any] = {}
    rap_done: set[tuple[Any, ...]] = set()  # RAP has no write noise: once per hardware point
    if args.vat and model_meta.get("name") not in _VAT_PRESETS:
        print(f"spicebridge evaluate --vat: needs a model trained here "
              f"({', '.join(_VAT_PRESETS)}), not {model_meta.get('name')!r}", file=sys.stderr)
        return 2
    points = list(itertools.product(args.process.split(","), _floats(args.vdd_v),
                                    _floats(args.temp_c), [int(b) for b in args.bits.split(",")],
                                    _floats(args.gamma)))
    for process, vdd, temp, bits, gamma in points:
        try:
            hw = HardwareModel.ideal() if args.ideal else HardwareModel.from_lookup(
                args.lookup, process=process, vdd_v=vdd, temp_c=temp, adc_bits=bits,
                rows=args.tile_rows, adc_trim=args.adc_trim)
        except (CharacterizationError, HardwareModelError, KeyError) as e:
            print(f"spicebridge evaluate: {e}", file=sys.stderr)
            return 2
        cfg0 = dataclasses.replace(base, gamma=gamma)
        point_clips = clips
        calib_info = None
        if args.calibrate_clipformer:
            calib_info = calibrate_clipformer(model, hw, cfg0, calib, chips=2, seed=args.seed,
                                              batch_size=args.batch_size, device=device,
                                              quiet=args.quiet)
            point_clips = [None, (calib_info["alpha"], calib_info["beta"])]
        for clip in ([] if args.rap_only else point_clips):
            cfg = dataclasses.replace(cfg0, clipformer=clip)
            setting = dict(process=hw.process, vdd_v=hw.vdd_v, temp_c=hw.temp_c, bits=bits,
                           gamma=gamma, clipformer=list(clip) if clip else None,
                           protocol=args.protocol, method="analog", adc_trim=hw.adc_trim)
            r = evaluate_chips(model, hw, cfg, test, chips=args.chips, seed=args.seed,
                               batch_size=args.batch_size, device=device, quiet=args.quiet,
                               digital_accuracy=digital, calib_ds=calib,
                               digital_repeats_s=digital_repeats_s, client=client,
                               kv_ranges=kv_ranges,
                               setting=setting, chip_batch=chip_batch)
            if calib_info is not None:
                r.calibration["clipformer"] = calib_info
            results.append(r)
            if not args.json or args.json != "-":
                _print_row(r)
        if args.vat and not args.ideal:  # the same point and chips with the VAT weights
            try:
                vat_model, vat_meta, vat_kv = _vat_point(
                    args, model_meta, hw, bits, base, calib, device, vat_cache)
            except (FileNotFoundError, ValueError, KeyError) as e:
                print(f"spicebridge evaluate --vat: {e}", file=sys.stderr)
                return 2
            for clip in point_clips:
                cfg = dataclasses.replace(cfg0, clipformer=clip)
                setting = dict(process=hw.process, vdd_v=hw.vdd_v, temp_c=hw.temp_c,
                               bits=bits, gamma=gamma, clipformer=list(clip) if clip else None,
                               protocol=args.protocol, method="vat", adc_trim=hw.adc_trim,
                               vat_gamma=vat_meta["settings"]["gamma"],
                               vat_checkpoint=vat_meta["path"])
                r = evaluate_chips(vat_model, hw, cfg, test, chips=args.chips, seed=args.seed,
                                   batch_size=args.batch_size, device=device,
                                   quiet=args.quiet, calib_ds=calib, client=client,
                                   kv_ranges=vat_kv, setting=setting, chip_batch=chip_batch)
                r.method = "vat"  # labels read "... [vat]"
                results.append(r)
                if not args.json or args.json != "-":
                    _print_row(r)
        # RAP's cells carry no K/V write noise (gamma does not enter evaluate_rap): a gamma
        # sweep runs it once per (corner, supply, temperature, bits), not once per gamma
        rap_key = (hw.process, hw.vdd_v, hw.temp_c, bits)
        if args.rap and rap_key not in rap_done:
            rap_done.add(rap_key)
            rap_results.append(_run_rap(model, calib, test, hw, bits, args))
    if client is not None:
        client.close()
    from nnsim.evaluate import sweep_comparisons
    from nnsim.results import Sweep, to_json

    comparisons = sweep_comparisons(results, seed=args.seed)
    if args.vat:
        comparisons += _vat_clip_vs_standard(results, args.seed)
    if len(rap_results) > 1:  # RAP sparse / dense across corners, supplies, temperatures, bits
        from nnsim.results import rap_sweep_comparisons

        comparisons += rap_sweep_comparisons(rap_results, seed=args.seed)
    sweep = Sweep(points=results, comparisons=comparisons, rap=rap_results, meta=dict(
        model=model_meta, dataset=dataset, device=device, digital_accuracy=digital,
        chips=args.chips, seed=args.seed, n_images=len(test),
        lookup=[str(p) for p in args.lookup], adc_trim=args.adc_trim,
        command=" ".join(["spicebridge", *sys.argv[1:]]), **_run_metadata(args, base, start),
        **({"vat": [m for _, m, _ in vat_cache.values()]} if vat_cache else {})))
    if not args.json or args.json != "-":
        for c in comparisons:
            _print_comparison(c)
    out = to_json(sweep)
    if len(results) == 1 and not rap_results:  # one point (not a sweep): its keys on top
        out = {**out["points"][0], **out}
    if args.json:
        from imc.cli.common import dumps

        text = dumps(out)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            from spicebridge.fileio import atomic_write_text

            atomic_write_text(args.json, text + "\n")  # a kill mid-write: no half file
    return 0


def _run_metadata(args: argparse.Namespace, base: Any,
                  start: dict[str, Any] | None = None) -> dict[str, Any]:
    from .experiment import run_metadata

    return run_metadata(args, base, start)


def _pct_ci(ci: list[float | None]) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


_VAT_PRESETS = ("digits", "digits-tiny", "fashion_mnist")


def _vat_point(args: argparse.Namespace, model_meta: dict[str, Any], hw: Any, bits: int,
               base: Any, calib: Any, device: str, cache: dict[Any, Any]
               ) -> tuple[Any, dict[str, Any], Any]:
    """(VAT model, its checkpoint meta, its K/V ranges) for an evaluated hardware point:
    the checkpoint ``train --variation-aware`` makes for the same model, lookup files,
    point and settings (fine-tuned now if missing), at ``--vat-gamma`` (default: the
    largest evaluated gamma)."""
    from nnsim.vat import load_or_finetune

    gamma = args.vat_gamma if args.vat_gamma is not None else max(
        g for g in _floats(args.gamma) if g is not None)
    key = ("robust", bits) if args.vat_robust_pvt else (hw.process, hw.vdd_v, hw.temp_c, bits)
    if key not in cache:
        settings = _vat_settings(base, process=hw.process, vdd_v=hw.vdd_v, temp_c=hw.temp_c,
                                 bits=bits, gamma=gamma, robust_pvt=args.vat_robust_pvt,
                                 fidelity=args.vat_fidelity, epochs=args.vat_epochs)
        model, meta = load_or_finetune(model_meta["name"], args.lookup, settings,
                                       cache_dir=args.cache_dir, train_seed=args.train_seed,
                                       seed=args.vat_seed, quiet=args.quiet, device=device)
        kv = None
        if base.kv_range == "calibrated":
            from nnsim.convert import kv_ranges_digital
            from nnsim.data import make_loader

            kv = kv_ranges_digital(model.to(device), (x.to(device) for x, _ in
                                                      make_loader(calib, args.batch_size)))
        if not args.quiet and (not args.json or args.json != "-"):
            src = "cached" if meta["cached"] else f"fine-tuned in {meta['train_time_s']:.0f} s"
            print(f"VAT checkpoint (gamma {gamma:g}, {src}): {meta['path']}", flush=True)
        cache[key] = (model.to(device).eval(), meta, kv)
    return cache[key]


def _vat_clip_vs_standard(results: list[Any], seed: int) -> list[Any]:
    """"vat + clipformer vs standard" at each point (the other pairs come from
    ``sweep_comparisons``: method vat vs analog, clipformer vs none)."""
    from nnsim.evaluate import compare

    keys = ("process", "vdd_v", "temp_c", "bits", "gamma")
    std = {tuple(str(r.setting.get(k)) for k in keys): r for r in results
           if r.setting.get("method") == "analog" and not r.setting.get("clipformer")}
    out = []
    for r in results:
        if r.setting.get("method") == "vat" and r.setting.get("clipformer"):
            ref = std.get(tuple(str(r.setting.get(k)) for k in keys))
            if ref is not None and ref.correct is not None and r.correct is not None:
                out.append(compare(r, ref, "vat + clipformer vs standard", seed=seed))
    return out


def _print_row(r: Any) -> None:
    s = r.setting
    clip = s.get("clipformer")
    c = f" clipformer a={clip[0]:g} b={clip[1]:g}" if clip else ""
    print(f"{s['process']} {s['vdd_v']:g} V {s['temp_c']:g} C {s['bits']}-bit ADC "
          f"(trim {s.get('adc_trim', 'none')}) "
          f"gamma {s['gamma']:g}{c}{' [VAT]' if s.get('method') == 'vat' else ''}: "
          f"accuracy {100 * r.accuracy_mean:.2f} %"
          f"{_pct_ci(r.accuracy_ci95)} (95 % CI over {r.chips} chips x {r.n_images} images; "
          f"digital {100 * r.digital_accuracy:.2f} %)", flush=True)
    if r.energy_per_inference is not None:  # total and parts; sources in the JSON
        from nnsim.energy import format_breakdown_line

        print(f"  {format_breakdown_line(r.energy_per_inference)}", flush=True)
    for w in r.warnings:
        print(f"  warning: {w}", flush=True)


def _print_comparison(c: Any) -> None:
    print(f"{c.name}: {100 * c.difference_mean:+.2f} points{_pct_ci(c.difference_ci95)} "
          f"(paired, {c.chips} chips x {c.n_images} images; {c.a} - {c.b})", flush=True)
    for w in c.warnings:
        print(f"  warning: {w}", flush=True)


def _run_rap(model: Any, calib: Any, test: Any, hw: Any, bits: int,
             args: argparse.Namespace) -> Any:
    try:
        from nnsim.rap import evaluate_rap
    except ImportError as e:
        raise SystemExit(f"spicebridge evaluate --rap: nnsim.rap is not available ({e})") \
            from e
    from nnsim.data import make_loader

    r = evaluate_rap(model, make_loader(calib, args.batch_size), make_loader(test,
                     args.batch_size), hw, bits, args.rap_k, args.seed, chips=args.chips,
                     quiet=args.quiet, include_dense=not args.rap_no_dense)
    if not args.json or args.json != "-":
        for m in (r.rap, r.dense):
            if m is None:
                continue
            e = m.adc_energy_j_per_inference
            print(f"RAP {m.mode} k={m.k} {bits}-bit ADC (trim {hw.adc_trim}): "
                  f"accuracy {100 * m.accuracy_mean:.2f} %"
                  f"{_pct_ci(m.accuracy_ci95)}, {m.conversions_per_inference:.3g} conversions"
                  + (f", {e:.3g} J ADC energy" if e is not None else "") + " per inference; "
                  f"ADC range: {m.adc_range['method']}; attention products digital", flush=True)
            for w in m.warnings:
                print(f"  warning: {w}", flush=True)
        for c in r.comparisons:
            _print_comparison(c)
        print(f"RAP: {r.rap.crossbar}; digital: {'; '.join(r.rap.digital)}", flush=True)
    return r
