"""Command line of the quantization steps: ``python -m quantization <step> ...``.

Each step is usable alone; ``all`` runs them in order and chooses the node's model::

    python -m quantization int16   model.onnx model_int16.onnx
    python -m quantization static  model.onnx model_int8.onnx --data runs/data
    python -m quantization dynamic spectrogram.onnx spectrogram_dynamic.onnx
    python -m quantization tflite  best.pt model_int8.tflite --like model.onnx --int8 --data runs/data
    python -m quantization compare model.onnx model_int8.onnx --data runs/data
    python -m quantization report  model.onnx model_*.onnx model_*.tflite --data runs/data --out runs/quant
    python -m quantization choose  runs/quant/report.json
    python -m quantization all     model.onnx --checkpoint best.pt --data runs/data --out runs/quant
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge_runtime.helpformat import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m quantization", formatter_class=fmt,
        description="Make node variants of an exported SeismicTorch model (int16 input, int8/int16 "
                    "static, dynamic, LiteRT), measure them on one test split and choose the fastest "
                    "that keeps the float model's accuracy.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STEP")

    i = sub.add_parser("int16", formatter_class=fmt, help="take the seed's int16 windows as input",
                       description="Rewrite a float model to take int16 counts (Cast, 1/32767 folded into "
                                   "the first Conv); metadata input_scheme becomes int16_maxabs.")
    i.add_argument("src", help="float ONNX model")
    i.add_argument("dst", help="output ONNX file")

    s = sub.add_parser("simplify", formatter_class=fmt, help="fold constants with onnxsim (no speed change)",
                       description="onnxsim constant folding; metadata kept. A tidier graph, not a faster "
                                   "one: onnxruntime folds the same constants at load.")
    s.add_argument("src")
    s.add_argument("dst")

    st = sub.add_parser("static", formatter_class=fmt, help="static QDQ quantization, calibrated",
                        description="onnxruntime static quantization (QDQ) with symmetric max-abs "
                                    "scales, calibrated on windows of a dataset's train split.")
    st.add_argument("src", help="float ONNX model")
    st.add_argument("dst", help="output ONNX file")
    st.add_argument("--data", required=True, help="dataset folder for calibration windows")
    st.add_argument("--scheme", choices=("int8", "a16w8", "a16w16"), default="int8")
    st.add_argument("--windows", type=int, default=512, help="number of calibration windows")
    st.add_argument("--split", default="train", help="split the calibration windows come from")
    st.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    st.add_argument("--calibration", choices=("minmax", "percentile", "entropy"), default="minmax",
                    help="range estimate (minmax + symmetric = max-abs)")
    st.add_argument("--per-channel", action="store_true", help="one weight scale per output channel")
    st.add_argument("--no-fuse", action="store_true", help="do not fuse GELU before quantizing (slower)")
    st.add_argument("--op-types", default="Conv,Gemm", help="operator types to quantize")
    st.add_argument("--activation-type", choices=("int8", "uint8"), default="int8",
                    help="8-bit activation type of the int8 scheme")

    d = sub.add_parser("dynamic", formatter_class=fmt, help="int8 dense weights (SpectrogramCNN)",
                       description="Dynamic quantization: dense-layer weights stored as int8, activations "
                                   "quantized per inference. For SpectrogramCNN's 41.8 M-weight fc1.")
    d.add_argument("src")
    d.add_argument("dst")
    d.add_argument("--per-channel", action="store_true", help="one scale per output column")

    t = sub.add_parser("tflite", formatter_class=fmt, help="LiteRT .tflite (float or int8) via litert-torch",
                       description="Convert a trained checkpoint with litert-torch; --int8 quantizes with "
                                   "ai-edge-quantizer on calibration windows. Runs with ai-edge-litert.")
    t.add_argument("checkpoint", help="checkpoint from `python -m host_training train`")
    t.add_argument("dst", help="output .tflite file")
    t.add_argument("--like", required=True, help="the float ONNX exported from the same checkpoint "
                                                 "(its metadata is copied)")
    t.add_argument("--int8", action="store_true", help="quantize weights and activations to int8")
    t.add_argument("--data", help="dataset folder for calibration windows (with --int8)")
    t.add_argument("--windows", type=int, default=512, help="number of calibration windows")
    t.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")

    c = sub.add_parser("compare", formatter_class=fmt, help="agreement AND accuracy of a variant",
                       description="Run the float reference and a variant on a split, each fed as the "
                                   "node feeds it; print agreement (same class) and both accuracies.")
    c.add_argument("reference", help="float ONNX model")
    c.add_argument("candidate", help="variant (.onnx or .tflite)")
    c.add_argument("--data", required=True, help="dataset folder")
    c.add_argument("--split", default="test")

    r = sub.add_parser("report", formatter_class=fmt, help="table + JSON + PNG over variants",
                       description="Size, accuracy, per-class F1, agreement, latency p50/p99 (one thread) "
                                   "and peak memory of each model; writes report.{json,txt,png}.")
    r.add_argument("models", nargs="+", help=".onnx / .tflite files; the first is the reference")
    r.add_argument("--data", required=True, help="dataset folder")
    r.add_argument("--out", default="runs/quantization", help="output folder")
    r.add_argument("--split", default="test")
    r.add_argument("--rounds", type=int, default=30, help="latency rounds (20 calls each)")
    r.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")

    ch = sub.add_parser("choose", formatter_class=fmt, help="fastest variant within the accuracy gate",
                        description="Read report.json, write chosen_model.json (read by tools bundle).")
    ch.add_argument("report", help="report.json")
    ch.add_argument("--gate-pp", type=float, default=0.5, help="max accuracy loss (percentage points)")
    ch.add_argument("--min-agreement", type=float, default=0.99, help="min agreement with the reference")
    ch.add_argument("--out", help="output file (default: chosen_model.json beside the report)")
    ch.add_argument("--runtimes", default="onnxruntime,litert",
                    help="runtimes the node has (drop litert for a node without ai-edge-litert)")

    a = sub.add_parser("all", formatter_class=fmt, help="build every variant, report, choose",
                       description="int16, static int8/A16W8/A16W16, LiteRT float/int8 (with --checkpoint), "
                                   "or dynamic for SpectrogramCNN; then report and choose.")
    a.add_argument("float_model", help="float ONNX model")
    a.add_argument("--data", required=True, help="dataset folder (train: calibration, test: report)")
    a.add_argument("--out", default="runs/quantization", help="output folder")
    a.add_argument("--checkpoint", help="checkpoint of the float model (for the LiteRT variants)")
    a.add_argument("--gate-pp", type=float, default=0.5, help="max accuracy loss (percentage points)")
    a.add_argument("--windows", type=int, default=512, help="number of calibration windows")
    a.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    a.add_argument("--rounds", type=int, default=30, help="latency rounds")
    a.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    return parser


def _positive(name, value):
    if value <= 0:
        raise ValueError(f"--{name} must be positive, got {value}")


def _calibration(data, n, seed, split="train"):
    from host_training.datasets.splits import open_dataset

    from .static import calibration_windows

    return calibration_windows(open_dataset(data), n=n, seed=seed, split=split)


def run(args) -> None:
    if getattr(args, "dst", None):
        from .files import check_output_file

        check_output_file(args.dst)  # before any work: a folder is not an output file
    if args.command == "int16":
        from .int16 import quantize_int16

        print(quantize_int16(args.src, args.dst))
    elif args.command == "simplify":
        from .simplify import simplify

        print(json.dumps(simplify(args.src, args.dst)))
    elif args.command == "static":
        from .files import load_onnx
        from .static import quantize_static_model

        _positive("windows", args.windows)
        load_onnx(args.src, expect_scheme="float_maxabs")  # the model first: no data read for a wrong one
        x = _calibration(args.data, args.windows, args.seed, args.split)
        ops = [o.strip() for o in args.op_types.split(",") if o.strip()]
        print(json.dumps(quantize_static_model(args.src, args.dst, x, scheme=args.scheme,
                                               per_channel=args.per_channel, fuse=not args.no_fuse,
                                               op_types=ops, calibrate=args.calibration,
                                               activation_type=args.activation_type)))
    elif args.command == "dynamic":
        from .dynamic import quantize_dynamic_model

        print(json.dumps(quantize_dynamic_model(args.src, args.dst, per_channel=args.per_channel)))
    elif args.command == "tflite":
        from .tflite import convert_checkpoint

        x = None
        if args.int8:
            if not args.data:
                raise ValueError("--int8 needs --data (calibration windows)")
            _positive("windows", args.windows)
            x = _calibration(args.data, args.windows, args.seed)
        print(json.dumps(convert_checkpoint(args.checkpoint, args.dst, args.like, x)))
    elif args.command == "compare":
        from host_training.datasets.splits import open_dataset

        from .compare import compare_models

        result = compare_models(args.reference, args.candidate, open_dataset(args.data), args.split)
        print(f"{result['candidate']} vs {result['reference']} on {result['n']} {args.split} windows:\n"
              f"  agreement (same class as the reference) {100 * result['agreement']:6.2f} %\n"
              f"  accuracy  reference {100 * result['accuracy_reference']:6.2f} %, candidate "
              f"{100 * result['accuracy_candidate']:6.2f} % ({result['accuracy_delta_pp']:+.2f} pp)")
        print(json.dumps(result))
    elif args.command == "report":
        from .report import format_table, quantization_report

        _positive("rounds", args.rounds)
        report = quantization_report(args.models, args.data, args.out, split=args.split,
                                     rounds=args.rounds, memory=not args.no_memory)
        print(format_table(report))
        print(f"written: {args.out}/report.json, report.txt, report.png")
    elif args.command == "choose":
        from .report import choose

        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        c = choose(args.report, args.out, gate_pp=args.gate_pp, min_agreement=args.min_agreement,
                   runtimes=runtimes)
        print(f"chosen: {c['model']} ({c['runtime']}, {c['scheme']}): {c['latency_p50_us']:.1f} us p50 "
              f"(x{c['latency_ratio']:.2f} of the reference), accuracy {c['accuracy_delta_pp']:+.2f} pp, "
              f"agreement {100 * c['agreement']:.2f} %")
    elif args.command == "all":
        from .pipeline import run_all

        _positive("windows", args.windows)
        _positive("rounds", args.rounds)
        run_all(args.float_model, args.data, args.out, args.checkpoint, gate_pp=args.gate_pp,
                windows=args.windows, seed=args.seed, rounds=args.rounds, memory=not args.no_memory)


def main(argv=None) -> int:
    from edge_runtime.extras import missing_extra

    missing = missing_extra("seismictorch-quant", ("host", "edge"))  # onnx, onnxruntime, torch
    if missing:
        print(missing, file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    root_level = logging.root.level
    if not args.verbose:
        logging.root.setLevel(logging.ERROR)  # onnxruntime's quantizer logs its chatter to the root
    from host_training.checkpoints import CheckpointError
    from host_training.datasets.splits import DataError

    try:
        run(args)
    except (ValueError, FileNotFoundError, CheckpointError, DataError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        logging.root.setLevel(root_level)  # main() is also called in-process (tests, tools)
    return 0


if __name__ == "__main__":
    sys.exit(main())
