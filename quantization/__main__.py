"""Command line of the quantization steps: ``python -m quantization {int16,simplify,compare}``.

The steps compose::

    python -m quantization int16    model.onnx model_int16.onnx
    python -m quantization simplify model_int16.onnx model_int16_sim.onnx
    python -m quantization compare  model.onnx model_int16_sim.onnx --data runs/data
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quantization",
        description="Shrink and speed up exported SeismicTorch models for the node.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    i = sub.add_parser("int16", help="make the model take the seed's int16 windows",
                       description="Prepend Cast and per-window max-abs normalize so the model "
                                   "takes int16 windows; metadata input_scheme becomes int16_maxabs.")
    i.add_argument("src")
    i.add_argument("dst")
    s = sub.add_parser("simplify", help="simplify the graph with onnxsim (metadata kept)")
    s.add_argument("src")
    s.add_argument("dst")
    c = sub.add_parser("compare", help="class agreement of a float and an int16 model",
                       description="Run both models on the test split of a dataset folder: the "
                                   "float model on float windows, the int16 model on int16 windows.")
    c.add_argument("float_model")
    c.add_argument("int16_model")
    c.add_argument("--data", required=True, help="dataset folder (host_training synth/train layout)")
    c.add_argument("--split", default="test")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "int16":
            from .int16 import quantize_int16

            quantize_int16(args.src, args.dst)
        elif args.command == "simplify":
            from .simplify import simplify

            print(json.dumps(simplify(args.src, args.dst)))
        elif args.command == "compare":
            from host_training.data.dataset import WindowDataset

            from .int16 import dataset_agreement

            part = WindowDataset.load(args.data).split(args.split)
            print(json.dumps(dataset_agreement(args.float_model, args.int16_model, part)))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
