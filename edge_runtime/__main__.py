"""Command line of the node: ``python -m edge_runtime {run,check,status,info} ...``."""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":
    # First thing, before the slow imports (numpy, onnxruntime, the model): a stop
    # during start-up (systemd, a test) is a clean exit 0, not death by SIGTERM (-15).
    # run() installs the real handlers as its first step.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))

import os  # noqa: E402

# Before numpy loads OpenBLAS: the node multiplies one small window at a time, and a
# BLAS thread pool only adds threads that spin after each call, CPU time and resident
# memory (a buffer per thread). The model has its own setting (`threads`).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402

from .extras import missing_extra  # noqa: E402

# Before numpy: `pip install .` without the edge extra gets one line, not a traceback (the
# console script imports this module before it calls main()).
_MISSING = missing_extra("seismictorch-node", ("edge",))
if _MISSING:
    print(_MISSING, file=sys.stderr)
    sys.exit(2)

from .config import ConfigError, add_arguments, build_config, read_toml  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_runtime",
        description="SeismicTorch node: classify MEMS accelerometer windows from a serial "
                    "port and write declared earthquakes as JSON lines (docs/node.md).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="subcommand", required=True)

    r = sub.add_parser("run", help="read frames from a serial port and detect events",
                       description="Read framed samples (docs/serial-protocol.md) from the board's "
                                   "serial port, classify sliding windows with the model, write events. "
                                   "Settings come from --config FILE (TOML, see deploy/node.toml); "
                                   "flags override the file.")
    r.add_argument("--config", default=None, help="TOML configuration file (example: deploy/node.toml)")
    add_arguments(r)

    c = sub.add_parser("check", help="self-test a model as this node would run it; exit 1 on mismatch",
                       description="Load the model, verify its metadata against its graph, run the stored "
                                   "self-test window through the node's preprocessing and runtime and "
                                   "compare with the expected probabilities stored in the model (or "
                                   "beside it: MODEL.selftest.json or selftest.json).")
    c.add_argument("model", nargs="?", default=None, help="ONNX model (default: [node] model of --config)")
    c.add_argument("--config", default=None, help="TOML configuration file: checks its model and settings")
    c.add_argument("--atol", type=float, default=None,
                   help="largest |difference| per probability (default: the one stored with the self-test)")

    s = sub.add_parser("status", help="print the node's status file",
                       description="Print the status file the running node rewrites every few seconds.")
    s.add_argument("path", nargs="?", default=None, help="status file (default: [output] status of --config)")
    s.add_argument("--config", default=None, help="TOML configuration file")

    i = sub.add_parser("info", help="print a model's SeismicTorch metadata")
    i.add_argument("model")
    return parser


def _config(args, overrides: dict | None = None):
    values = read_toml(args.config) if args.config else {}
    return build_config(values, overrides or {}, source=args.config or "setting")


def cmd_run(args) -> int:
    from .config import SETTINGS
    from .service import run

    overrides = {s.name: getattr(args, s.name) for s in SETTINGS}
    config = _config(args, overrides)
    run(config)
    return 0


def cmd_check(args) -> int:
    from .selftest import run_selftest

    if args.model is None and not args.config:
        raise ConfigError("check: give a MODEL or --config FILE")
    if args.config:
        config = _config(args, {"model": args.model})
        model, config_obj = config.model, config
    else:
        model, config_obj = args.model, None
    report = run_selftest(model, config_obj, atol=args.atol)
    for line in report["lines"]:
        print(line)
    return 0 if report["ok"] else 1


def cmd_status(args) -> int:
    from pathlib import Path

    path = args.path
    if path is None:
        if not args.config:
            raise ConfigError("status: give the status file or --config FILE")
        path = read_toml(args.config).get("status")
        if not path:
            raise ConfigError(f"{args.config}: [output] status is not set")
    try:
        status = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no status file (is the node running, with [output] status set?)") \
            from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable status file ({exc})") from None
    print(json.dumps(status, indent=2))
    return 0


def cmd_info(args) -> int:
    from .backends import load_backend

    backend = load_backend(args.model)
    print(json.dumps(json.loads(backend.metadata.to_json()), indent=2))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s" if _journal() else
                        "%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = {"run": cmd_run, "check": cmd_check, "status": cmd_status, "info": cmd_info}[args.subcommand]
    try:
        return command(args)
    except ValueError as exc:  # a setting or a model the node cannot honour: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _journal() -> bool:
    """Under systemd the journal stamps each line; the node does not repeat the time."""
    return "JOURNAL_STREAM" in os.environ


if __name__ == "__main__":
    sys.exit(main())
