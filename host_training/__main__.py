"""Command line of the host side: ``python -m host_training {synth,train,export} ...``.

A typical run::

    python -m host_training synth  --out runs/data --n-events 2000
    python -m host_training train  --data runs/data --out runs/train
    python -m host_training export --checkpoint runs/train/earthquake_cnn.pt --out runs/model.onnx
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m host_training",
        description="Prepare data, train and export the SeismicTorch models on a workstation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate a labelled synthetic P / S / noise dataset",
                       description="Write waveforms.hdf5 + metadata.csv of raw 2 s windows "
                                   "cut from seeded synthetic MEMS records.")
    s.add_argument("--out", required=True, help="dataset folder")
    s.add_argument("--n-events", type=int, default=2000, help="synthetic earthquakes")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampling-rate", type=float, default=100.0, help="Hz")

    t = sub.add_parser("train", help="train EarthquakeCNN on a dataset folder",
                       description="Train on the 'train' split, select on 'val', report on "
                                   "'test'; writes the checkpoint, plots and config.")
    t.add_argument("--data", required=True, help="dataset folder (waveforms.hdf5, metadata.csv)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")

    e = sub.add_parser("export", help="export a checkpoint to ONNX with node metadata",
                       description="Export to ONNX (input 'modelInput', dynamic batch), write "
                                   "the metadata the node needs and check onnxruntime against torch.")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", required=True, help=".onnx file")
    e.add_argument("--opset", type=int, default=17)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "synth":
        from .data.synth import synthetic_dataset

        ds = synthetic_dataset(args.n_events, seed=args.seed, fs=args.sampling_rate, progress=True)
        folder = ds.save(args.out)
        (folder / "config.json").write_text(json.dumps(vars(args), indent=2))
        print(f"{len(ds)} windows -> {folder}")
        return 0
    if args.command == "train":
        return _train(args)
    if args.command == "export":
        from edge_runtime.metadata import ModelMetadata

        from .export import export_onnx
        from .train import load_checkpoint

        model, info = load_checkpoint(args.checkpoint)
        meta = ModelMetadata(model=info["model"], classes=info["classes"],
                             components=["E", "N", "Z"], preprocess=info["preprocess"],
                             extra={"checkpoint": Path(args.checkpoint).name,
                                    "train_config": info["train_config"]})
        print(json.dumps(export_onnx(model, args.out, meta, opset=args.opset)))
        return 0
    return 2


def _train(args) -> int:
    from edge_runtime.preprocess import PreprocessConfig

    from .data.dataset import WindowDataset
    from .evaluate import classification_report, predict_torch
    from .models import PHASE_CLASSES, build_model
    from .plots import plot_confusion, plot_history
    from .train import TrainConfig, save_checkpoint, train

    try:
        ds = WindowDataset.load(args.data)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prep = PreprocessConfig()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, threads=args.threads)
    (out / "config.json").write_text(json.dumps({"data": args.data, "train": config.to_dict(),
                                                 "preprocess": prep.to_dict()}, indent=2))
    parts = {}
    for split in ("train", "val", "test"):
        part = ds.split(split)
        x, keep = part.model_inputs(prep)
        parts[split] = (x[keep], part.labels(PHASE_CLASSES)[keep])
    model = build_model("EarthquakeCNN", args.seed)
    result = train(model, *parts["train"], *parts["val"], config)
    report = classification_report(parts["test"][1], predict_torch(model, parts["test"][0]).argmax(1),
                                   PHASE_CLASSES)
    save_checkpoint(out / "earthquake_cnn.pt", model, "EarthquakeCNN", PHASE_CLASSES,
                    prep.to_dict(), config, extra={"test": report})
    plot_history(result["history"], out / "history.png")
    plot_confusion(report, out / "confusion_test.png")
    print(f"best epoch {result['best_epoch']}, val accuracy {result['best_val_accuracy']:.4f}, "
          f"test accuracy {report['accuracy']:.4f} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
