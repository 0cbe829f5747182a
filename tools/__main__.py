"""Command line of the tools: ``python -m tools {demo,replay,replay-test,score,scan,bundle,deploy,...}``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge_runtime.helpformat import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools",
        description="SeismicTorch tools: the end-to-end demo, the serial-replay simulator, "
                    "event scoring, benchmarks.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the whole chain on synthetic data (make demo)",
                       description="Generate data, train, export, quantize, replay SAC records "
                                   "over a pty into the edge runtime, score the events.")
    d.add_argument("--out", default="runs/demo", help="output folder (default %(default)s)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--generator", choices=("physics", "simple"), default="physics",
                   help="training windows: physics (Green's functions, dead channels: the model that "
                        "transfers to real records; builds its bank once, a few CPU-minutes) or simple "
                        "(parametric, seconds) (default %(default)s)")
    d.add_argument("--n-windows", type=int, default=30000,
                   help="physics: P / S / noise windows to train on (default %(default)s)")
    d.add_argument("--bank-preset", default="small", choices=("tiny", "small", "full"),
                   help="physics: Green's function bank (host_training.synthetic.greens; "
                        "default %(default)s)")
    d.add_argument("--bank-cache", default=None,
                   help="physics: folder of cached banks (default $SEISMICTORCH_CACHE/greens or "
                        "~/.cache/seismictorch/greens)")
    d.add_argument("--n-events", type=int, default=2000, help="simple: synthetic earthquakes to train on")
    d.add_argument("--epochs", type=int, default=12)
    d.add_argument("--threads", type=int, default=2,
                   help="torch threads of the training (default %(default)s)")
    d.add_argument("--speed", type=float, default=20.0, help="replay speed, x real time (0: max)")

    importlib.import_module("tools.replay.cli").add_arguments(sub)

    u = sub.add_parser("bundle", help="the node's offline install bundle (make bundle)",
                       formatter_class=HelpFormatter,
                       description="Build dist/seismictorch-node-<version>-<arch>.tar.gz: edge_runtime, the "
                                   "chosen model, config, systemd files, install.py and offline wheels "
                                   "for the target, with MANIFEST.sha256.")
    importlib.import_module("tools.deploy.bundle").add_arguments(u)
    importlib.import_module("tools.deploy.remote").add_arguments(sub)
    importlib.import_module("tools.deploy.qemu").add_arguments(sub)

    importlib.import_module("tools.scan.cli").add_arguments(sub)
    importlib.import_module("tools.network_test.cli").add_arguments(sub)

    b = sub.add_parser("bench", help="benchmarks against same-run baselines (make bench)")
    b.add_argument("--out", default="runs/bench", help="output folder (default %(default)s)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these benchmarks (default: all of tools.bench.suite.BENCHES)")
    b.add_argument("--soak-hours", type=float, default=24.0,
                   help="simulated hours of the soak run (default %(default)s)")

    s = sub.add_parser("score", help="score a node's events against the picks of the replayed records",
                       formatter_class=HelpFormatter,
                       description="Score the events a node wrote while `replay` sent RECORDS (the "
                                   "two-terminal path): per record as replay-test scores it. Picks "
                                   "from --catalog, SAC headers (ka, kt0..kt9 labels; unlabelled a = "
                                   "P) or TauP. Exit 1 if an earthquake was missed, a false event "
                                   "was declared or a record was skipped.")
    s.add_argument("events", help="events.jsonl written by the edge runtime")
    s.add_argument("records", nargs="+", help="the replayed waveform files, globs or folders")
    s.add_argument("--units", help="units of the records when the files do not say")
    s.add_argument("--catalog", help="CSV: files (glob relative to the CSV), kind, p_time, s_time, units")
    s.add_argument("--inventory", help="StationXML: responses (counts) and coordinates (TauP)")
    s.add_argument("--quakeml", help="QuakeML with event origins (TauP picks)")
    s.add_argument("--time", default="auto", help="how replay moved the records: keep, auto or an ISO "
                                                  "UTC start (as replay --time)")
    s.add_argument("--tolerance-s", type=float, default=2.0, help="P/S match tolerance, s")
    s.add_argument("--window-s", type=float, default=2.0, help="the model's window (detection delay), s")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


# command -> (module, function taking the parsed arguments and returning the exit status)
COMMANDS = {
    "demo": ("tools.demo", "main_demo"),
    "replay": ("tools.replay.cli", "main_replay"),
    "replay-test": ("tools.replay.cli", "main_replay_test"),
    "score": ("tools.replay.score", "main_score"),
    "bundle": ("tools.deploy.bundle", "main_bundle"),
    "bundle-qemu": ("tools.deploy.qemu", "main_qemu"),
    "deploy": ("tools.deploy.remote", "main_deploy"),
    "rollback": ("tools.deploy.remote", "main_deploy"),
    "releases": ("tools.deploy.remote", "main_deploy"),
    "bench": ("tools.bench.suite", "main_bench"),
    "scan": ("tools.scan.cli", "main_scan"),
    "network-test": ("tools.network_test.cli", "main_network_test"),
}


# Commands that need only the edge extra (the others read records or train: the host extra too).
EDGE_COMMANDS = ("bundle", "deploy", "rollback", "releases")


def main(argv=None) -> int:
    from edge_runtime.extras import missing_extra

    missing = missing_extra("seismictorch-tools", ("edge",))  # the parser reads edge_runtime's tables
    if missing:
        print(missing, file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    missing = args.command not in EDGE_COMMANDS and missing_extra(f"seismictorch-tools {args.command}",
                                                                  ("host", "edge"))
    if missing:
        print(missing, file=sys.stderr)
        return 2
    # Each command's module is imported only when it runs: `tools bundle` needs no torch.
    module, function = COMMANDS[args.command]
    return getattr(importlib.import_module(module), function)(args)


if __name__ == "__main__":
    sys.exit(main())
