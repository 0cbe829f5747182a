"""Command line of the node: ``python -m edge_runtime {run,info} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .detector import DetectorConfig
from .service import ADXL355_COUNTS_PER_MPS2, NodeConfig, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_runtime",
        description="SeismicTorch node: classify MEMS accelerometer windows from a serial "
                    "port and write declared earthquakes as JSON lines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="read frames from a serial port and detect events",
                       description="Read framed samples (docs/serial-protocol.md) from PORT, "
                                   "classify sliding windows with MODEL, write events.")
    r.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB0 or a pty")
    r.add_argument("--model", required=True, help="ONNX model with SeismicTorch metadata")
    r.add_argument("--events", default="events.jsonl", help="JSON-lines output (default %(default)s)")
    r.add_argument("--status", default=None, help="JSON status file rewritten every few seconds")
    r.add_argument("--station", default="NODE", help="station code written into events")
    r.add_argument("--baudrate", type=int, default=921600)
    r.add_argument("--counts-per-mps2", type=float, default=ADXL355_COUNTS_PER_MPS2,
                   help="sensor sensitivity in ADC counts per m/s^2 (default: ADXL355 +/-2 g)")
    r.add_argument("--step-s", type=float, default=0.25, help="window step in s")
    r.add_argument("--min-rate", type=float, default=10.0,
                   help="lowest sampling rate accepted, Hz (frames outside are dropped and counted)")
    r.add_argument("--max-rate", type=float, default=1000.0, help="highest sampling rate accepted, Hz")
    r.add_argument("--trigger-prob", type=float, default=DetectorConfig.trigger_prob,
                   help="minimum 1 - p(noise) of a triggering window")
    r.add_argument("--min-pga", type=float, default=DetectorConfig.min_pga_mps2,
                   help="minimum peak filtered acceleration of a triggering window, m/s^2")
    r.add_argument("--on-windows", type=int, default=DetectorConfig.on_windows)
    r.add_argument("--off-s", type=float, default=DetectorConfig.off_s,
                   help="close an event after this many seconds without a triggering window")
    r.add_argument("--idle-exit-s", type=float, default=None,
                   help="exit after this many seconds without bytes (replays and tests)")

    i = sub.add_parser("info", help="print a model's SeismicTorch metadata")
    i.add_argument("model")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "info":
        from .backend import OnnxBackend

        try:
            backend = OnnxBackend(args.model)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(json.loads(backend.metadata.to_json()), indent=2))
        return 0
    try:
        detector = DetectorConfig(trigger_prob=args.trigger_prob, min_pga_mps2=args.min_pga,
                                  on_windows=args.on_windows, off_s=args.off_s)
        config = NodeConfig(port=args.port, model=args.model, events=args.events, status=args.status,
                            station=args.station, baudrate=args.baudrate,
                            counts_per_mps2=args.counts_per_mps2, step_s=args.step_s,
                            idle_exit_s=args.idle_exit_s, min_rate_hz=args.min_rate,
                            max_rate_hz=args.max_rate, detector=detector)
        run(config)
    except ValueError as exc:  # a setting or a model the node cannot honour: say so, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
