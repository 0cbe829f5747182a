"""Command line of the host side: ``python -m host_training {synth,train,finetune,evaluate,export} ...``.

A typical run::

    python -m host_training synth    --out runs/data --n-events 2000
    python -m host_training train    --model earthquake --data runs/data --out runs/train
    python -m host_training evaluate --model runs/train/best.pt --data runs/data --split test
    python -m host_training export   --checkpoint runs/train/best.pt --out runs/model.onnx
    python -m host_training evaluate --model runs/model.onnx --data runs/data
    python -m host_training finetune --from runs/train/best.pt --data runs/local --freeze conv

On several processes or machines, the same ``train`` under torchrun (gloo on CPU, NCCL on GPU)::

    torchrun --nproc_per_node=2 -m host_training train --data runs/data --out runs/ddp
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_runtime.helpformat import HelpFormatter

FORMATTER = HelpFormatter


def _add_training_options(p, defaults) -> None:
    """Optimizer, schedule, stopping and sampling options shared by train and finetune."""
    from .train import BALANCING, OPTIMIZERS, SCHEDULERS

    p.add_argument("--epochs", type=int, default=defaults.epochs, help="maximum epochs")
    p.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="global batch size (split among torchrun processes)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer, help="optimizer")
    p.add_argument("--lr", type=float, default=defaults.lr, help="initial learning rate")
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                   help="L2 penalty (decoupled for adamw)")
    p.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default=defaults.scheduler,
        help="step: StepLR(--step-size, --gamma); cosine: anneal to 0 over --epochs",
    )
    p.add_argument("--step-size", type=int, default=defaults.step_size, help="StepLR epochs per step")
    p.add_argument("--gamma", type=float, default=defaults.gamma, help="StepLR factor")
    p.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without a lower validation loss (0: never)",
    )
    p.add_argument(
        "--balance",
        choices=BALANCING,
        default=defaults.balance,
        help="class imbalance: inverse-frequency loss weights or balanced sampling",
    )
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="seeds initialization, batch order, dropout and augmentation")
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch threads (0: torch default)")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=defaults.device,
        help="auto: CUDA when present, else CPU",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from .train import FREEZE, MODEL_KINDS, TrainConfig

    parser = argparse.ArgumentParser(
        prog="python -m host_training",
        formatter_class=FORMATTER,
        description="Prepare data, train, finetune, evaluate and export the SeismicTorch models "
        "on a workstation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "synth",
        help="generate a labelled synthetic P / S / noise dataset",
        formatter_class=FORMATTER,
        description="Write waveforms.hdf5 + metadata.csv of raw 2 s windows "
        "cut from seeded synthetic MEMS records.",
    )
    s.add_argument("--out", required=True, help="dataset folder")
    s.add_argument("--generator", choices=("simple", "physics"), default="simple",
                   help="simple: hand-shaped arrivals (fast, the demo's); physics: layered-earth Green's "
                        "functions, Brune sources, NLNM-NHNM noise, MEMS sensors, dead channels")
    s.add_argument("--n-events", type=int, default=2000, help="synthetic earthquakes (simple)")
    s.add_argument("--n-windows", type=int, default=100000, help="windows (physics)")
    s.add_argument("--dead-fraction", type=float, default=0.55,
                   help="fraction of records with 1 or 2 dead/missing components (physics)")
    s.add_argument("--snr-min-db", type=float, default=20.0,
                   help="P and S windows: filtered peak over noise rms at least this, dB (physics; 20: a "
                        "clear onset; the STEAD recipe's 40 makes a model deaf to weak events; "
                        "first version 12)")
    s.add_argument("--max-distance-km", type=float, default=100.0,
                   help="largest epicentral distance, km (physics; the recipe's 100; first version 200)")
    s.add_argument("--min-sp-s", type=float, default=None,
                   help="smallest S-P time, s (physics; default window/2 + max shift + 0.1 = 1.9 s, so no "
                        "P window holds the S onset and no S window the P onset; 0: any)")
    s.add_argument("--s-contrast-min", type=float, default=2.0,
                   help="S onset peak over the P coda peak before it, on the live components, at least this "
                        "(physics; an S an analyst would pick; 0: any, as the first version)")
    s.add_argument("--p-contrast-min", type=float, default=2.0,
                   help="first P onset (0.5 s) peak over the noise peak before it, node's filter, live "
                        "components, at least this (physics; a P an analyst would pick, the recipe's "
                        "p_weight > 0.75; 0: any)")
    s.add_argument("--raise-magnitude", action="store_true",
                   help="meet --snr-min-db by raising the magnitude (physics; the first version) instead of "
                        "scaling the amplitude, which keeps the drawn magnitudes and source spectra")
    s.add_argument("--coda-fraction", type=float, default=0.0,
                   help="events that add an S-class window in the S coda (physics; first version 0.3)")
    s.add_argument("--bank-cache", default=None,
                   help="folder of the Green's function bank (physics; default $SEISMICTORCH_CACHE/greens "
                        "or ~/.cache/seismictorch/greens; built on first use, about 45 CPU-minutes)")
    s.add_argument("--bank-preset", default="full", choices=("full", "small", "tiny"),
                   help="Green's function bank (physics; host_training.synthetic.greens.BANK_PRESETS): "
                        "full (16 crusts x 2 depths), small (8 x 2, about 4 CPU-minutes to build, "
                        "make demo's), tiny (tests)")
    s.add_argument("--seed", type=int, default=0, help="seed of the generator")
    s.add_argument("--sampling-rate", type=float, default=100.0, help="Hz")

    rec = sub.add_parser(
        "records",
        formatter_class=FORMATTER,
        help="write a record-level earthquake / active_source dataset (SpectrogramCNN)",
        description="Whole records (default 60 s, onset 15 s in) labelled earthquake or "
        "active_source, generated and/or cut from labelled folders of files.",
    )
    from .prepare.record_sets import add_arguments as add_records_arguments

    add_records_arguments(rec)

    t = sub.add_parser(
        "train",
        help="train EarthquakeCNN or SpectrogramCNN on a dataset folder",
        formatter_class=FORMATTER,
        description="Train on the 'train' split, stop and select on 'val' (lowest loss), "
        "report on 'test'. Writes config.json, a checkpoint per epoch, best.pt, "
        "history, throughput and the test evaluation into --out. Defaults are "
        "the original's recipe (Adam 1e-3, StepLR(7, 0.5), batch 256, 50 epochs).",
    )
    t.add_argument(
        "--model",
        choices=sorted(MODEL_KINDS),
        default="earthquake",
        help="earthquake: EarthquakeCNN on P/S/noise windows; spectrogram: SpectrogramCNN on "
        "earthquake/active_source records",
    )
    t.add_argument("--data", required=True, help="dataset folder (waveforms.hdf5, metadata.csv)")
    t.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    _add_training_options(t, TrainConfig())
    t.add_argument(
        "--augment",
        default="",
        help="comma-separated augmentations of training batches, applied in order: time_shift, add_noise, "
        "drop_channels, scale_amplitude (host_training.datasets.augment; the seed used all four)",
    )
    t.add_argument(
        "--allow-chance", action="store_true", help="exit 0 even when validation accuracy stays near chance"
    )

    f = sub.add_parser(
        "finetune",
        help="finetune a trained checkpoint on local data",
        formatter_class=FORMATTER,
        description="The original's local-data step (AdamW, lr 1e-3, batch 32): train a "
        "checkpoint further on the dataset's 'train' split, optionally with "
        "frozen convolutional blocks or a lower learning rate; reports the "
        "same split before and after.",
    )
    f.add_argument("--from", dest="checkpoint", required=True, help="checkpoint (.pt) from train")
    f.add_argument("--data", required=True, help="local dataset folder")
    f.add_argument("--out", default="runs/finetune", help="run folder")
    f.add_argument(
        "--freeze",
        choices=FREEZE,
        default="none",
        help="conv: keep the convolutional blocks fixed, train the dense layers",
    )
    f.add_argument("--split", default="test", help="split scored before and after (dev is val)")
    f.add_argument("--allow-missing-classes", action="store_true",
                   help="finetune on a set without windows of some class (warned: the model learns never "
                        "to call it); default: refuse")
    _add_training_options(
        f,
        TrainConfig(
            epochs=100, batch_size=32, optimizer="adamw", lr=1e-3, weight_decay=0.01, scheduler="none"
        ),
    )

    ev = sub.add_parser(
        "evaluate",
        help="score a checkpoint or ONNX model on a dataset split",
        formatter_class=FORMATTER,
        description="One evaluator for torch checkpoints and ONNX models (float, int16-input, "
        "quantized): accuracy, per-class precision/recall/F1, confusion, P<->S "
        "confusion, ROC and precision-recall curves, reliability diagram, the "
        "worst misclassified windows; metrics.json and PNGs in --out.",
    )
    ev.add_argument("--model", required=True, help=".pt checkpoint or .onnx model")
    ev.add_argument("--data", required=True, help="dataset folder")
    ev.add_argument("--split", default="test", help="train, val (or dev), test, or all (every window)")
    ev.add_argument(
        "--out", default=None, help="output folder (default: <model>_eval_<split> beside the model)"
    )
    ev.add_argument("--worst", type=int, default=8, help="misclassified windows to plot")

    e = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX with node metadata",
        formatter_class=FORMATTER,
        description="Export with torch's dynamo exporter (input 'modelInput', output "
        "'logits', dynamic batch), write the metadata the node needs (classes, "
        "preprocessing, input scheme, model version, data card hash) and check "
        "onnxruntime against torch (max |diff| <= 1e-5).",
    )
    e.add_argument("--checkpoint", required=True, help=".pt checkpoint from train or finetune")
    e.add_argument("--out", required=True, help=".onnx file")
    e.add_argument("--opset", type=int, default=20, help="ONNX opset")
    e.add_argument(
        "--model-version",
        default="",
        help="version string for the metadata (default: run folder, best epoch, weights hash)",
    )

    from .prepare.cli import add_prepare_parser

    add_prepare_parser(sub)
    return parser


def _config_from(args, **fixed):
    from .train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        scheduler=args.scheduler,
        step_size=args.step_size,
        gamma=args.gamma,
        patience=args.patience,
        balance=args.balance,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        **fixed,
    )


def main(argv=None) -> int:
    from edge_runtime.extras import missing_extra

    missing = missing_extra("seismictorch-host", ("host", "edge"))  # before torch is imported
    if missing:
        print(missing, file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from .checkpoints import CheckpointError
    from .datasets.splits import DataError
    from .train import ChanceLevelError

    try:
        return _run(args)
    except ChanceLevelError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return 3
    except (DataError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "prepare":
        from .prepare.cli import main_prepare

        return main_prepare(args)
    if args.command == "synth" and args.generator == "physics":
        return _synth_physics(args)
    if args.command == "synth":
        from .synthetic.parametric import synthetic_dataset

        if args.n_events <= 0:
            raise ValueError(f"--n-events {args.n_events}: must be positive")
        ds = synthetic_dataset(args.n_events, seed=args.seed, fs=args.sampling_rate, progress=True)
        folder = ds.save(args.out)
        (folder / "config.json").write_text(json.dumps(vars(args), indent=2))
        print(f"{len(ds)} windows -> {folder}")
        return 0
    if args.command == "records":
        from .prepare.record_sets import main_records

        return main_records(args)
    if args.command in ("train", "finetune"):
        return _train_or_finetune(args)
    if args.command == "evaluate":
        from .evaluate import evaluate, format_metrics

        model = Path(args.model)
        out = Path(args.out) if args.out else model.with_name(f"{model.stem}_eval_{args.split}")
        metrics = evaluate(model, args.data, split=args.split, out=out, n_worst=args.worst)
        print(format_metrics(metrics))
        print(f"-> {out / 'metrics.json'}")
        return 0
    if args.command == "export":
        from .export import export_checkpoint

        print(
            json.dumps(
                export_checkpoint(
                    args.checkpoint, args.out, opset=args.opset, model_version=args.model_version
                )
            )
        )
        return 0
    return 2


def _synth_physics(args) -> int:
    import os
    import time

    from .synthetic.greens import build_bank, preset_config
    from .synthetic.physics import dataset_card, physics_dataset

    if args.n_windows < 3 or not 0 <= args.dead_fraction <= 1 or args.sampling_rate <= 40:
        raise ValueError("--n-windows must be >= 3, --dead-fraction in [0, 1], --sampling-rate > 40 Hz")
    if not 0 <= args.coda_fraction <= 1 or args.max_distance_km <= 0 or (args.min_sp_s or 0) < 0:
        raise ValueError("--coda-fraction must be in [0, 1], --max-distance-km > 0, --min-sp-s >= 0")
    if args.s_contrast_min < 0 or args.p_contrast_min < 0:
        raise ValueError("--s-contrast-min and --p-contrast-min must be >= 0 (0: no rule)")
    t0 = time.perf_counter()
    bank = build_bank(preset_config(args.bank_preset), cache_dir=args.bank_cache, progress=True,
                      jobs=os.cpu_count() or 1)  # one PyGRT process per core
    t1 = time.perf_counter()
    ds = physics_dataset(args.n_windows, seed=args.seed, fs=args.sampling_rate, bank=bank,
                         dead_fraction=args.dead_fraction, snr_min_db=args.snr_min_db,
                         max_distance_km=args.max_distance_km, min_sp_s=args.min_sp_s,
                         coda_fraction=args.coda_fraction, s_contrast_min=args.s_contrast_min,
                         p_contrast_min=args.p_contrast_min,
                         raise_magnitude=args.raise_magnitude, progress=True)
    t2 = time.perf_counter()
    folder = ds.save(args.out)
    card = dataset_card(ds)
    card.update(build_s=round(t2 - t1, 1), bank_s=round(t1 - t0, 1),
                windows_per_s=round(len(ds) / max(t2 - t1, 1e-9), 1), bank=bank.config.to_dict())
    (folder / "config.json").write_text(json.dumps(vars(args), indent=2))
    (folder / "card.json").write_text(json.dumps(card, indent=2))
    print(json.dumps({k: card[k] for k in ("windows", "label", "split", "source", "channels")}))
    print(f"{len(ds)} windows in {t2 - t1:.1f} s ({card['windows_per_s']} windows/s) -> {folder}")
    return 0


def _train_or_finetune(args) -> int:
    import torch.distributed as dist

    from .train import init_distributed_from_env, run_finetune, run_training

    joined = init_distributed_from_env(args.device)
    try:
        if args.command == "train":
            augment = [a.strip() for a in args.augment.split(",") if a.strip()]
            summary = run_training(
                args.model,
                args.data,
                args.out,
                _config_from(args, augment=augment),
                resume=args.resume,
                allow_chance=args.allow_chance,
                progress=not args.no_progress,
            )
            if summary.get("test"):  # rank 0 only in a distributed run
                from .evaluate import format_metrics

                print(format_metrics(summary["test"]))
                print(
                    f"best epoch {summary['best_epoch']}, val loss {summary['best_val_loss']:.4f}, "
                    f"val accuracy {summary['best_val_accuracy']:.4f}, "
                    f"{summary['throughput_windows_per_s']:.0f} windows/s -> {args.out}"
                )
        else:
            summary = run_finetune(
                args.checkpoint,
                args.data,
                args.out,
                _config_from(args, freeze=args.freeze),
                split=args.split,
                resume=args.resume,
                progress=not args.no_progress,
                allow_missing_classes=args.allow_missing_classes,
            )
            _print_finetune(summary, args.out)
    finally:
        if joined:
            dist.destroy_process_group()
    return 0


def _print_finetune(summary: dict, out) -> None:
    """The local split and the base model's test split, before -> after; a missing class loudly."""
    if summary["missing_classes"]:
        names = ", ".join(repr(c) for c in summary["missing_classes"])
        print(f"WARNING: finetuned without {names} windows (--allow-missing-classes): the model learns "
              "never to call them; compare the original test split below", file=sys.stderr)
    b, a = summary["before"], summary["after"]
    print(
        f"{summary['split']} accuracy {b['accuracy']:.4f} -> {a['accuracy']:.4f}, "
        f"macro F1 {b['macro_f1']:.4f} -> {a['macro_f1']:.4f} on {summary['n']} windows"
        + (f" ({len(summary['frozen'])} frozen tensors)" if summary["frozen"] else "")
        + f" -> {out}"
    )
    original = summary["original"]
    if "error" in original:
        print(f"original test split ({original['data']}): not scored: {original['error']}")
        return
    b, a = original["before"], original["after"]
    print(f"original test split ({original['data']}): accuracy {b['accuracy']:.4f} -> {a['accuracy']:.4f}, "
          f"macro F1 {b['macro_f1']:.4f} -> {a['macro_f1']:.4f} on {original['n']} windows")


if __name__ == "__main__":
    sys.exit(main())
