"""``python -m tools network-test``: options and the run (see :mod:`tools.network_test.run`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(sub) -> None:
    t = sub.add_parser(
        "network-test",
        help="a synthetic seismic network through real nodes into the network centre, scored",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Build a synthetic network (stations --spacing-km apart, earthquakes of known location, "
        "depth and magnitude from Green's functions, noise, single-station knocks and door slams), "
        "replay every station through a real pty into its own node process publishing to a "
        "Mosquitto broker started on 127.0.0.1, run the network centre on that broker, and score "
        "it. Writes OUT/summary.json and OUT/map.png; prints a table or, with --json, the summary.",
    )
    t.add_argument("--stations", type=int, default=12, help="stations in the network")
    t.add_argument("--events", type=int, default=5, help="earthquakes")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/network_test", help="output folder")
    t.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    t.add_argument("--model", help="ONNX model for the nodes (default: a small one trained into OUT/model)")
    t.add_argument("--spacing-km", type=float, default=15.0, help="station spacing (jittered by a sixth)")
    t.add_argument("--magnitudes", type=float, nargs=2, default=(3.0, 4.5), metavar=("MIN", "MAX"))
    t.add_argument(
        "--transients", type=int, default=5, help="single-station knocks, door slams ... per station"
    )
    t.add_argument("--bad-clock", type=int, default=0, help="stations whose clock is free-running and off")
    t.add_argument("--clock-offset-s", type=float, default=3.0, help="how far off the bad clocks are, s")
    t.add_argument(
        "--speed", type=float, default=8.0, help="replay speed, x real time (all stations together)"
    )
    t.add_argument("--gap-s", type=float, default=80.0, help="seconds of record per earthquake")
    t.add_argument("--bank-cache", default=None, help="folder of cached Green's function banks")


def _checks(args) -> str | None:
    if not 4 <= args.stations <= 60:
        return "--stations must be 4 to 60 (each station is a node process)"
    if not 1 <= args.events <= 100:
        return "--events must be 1 to 100"
    if not 0 <= args.bad_clock <= args.stations:
        return "--bad-clock must be 0 to --stations"
    if args.gap_s < 30:
        return "--gap-s must be >= 30 (an earthquake's waves and coda)"
    if args.speed <= 0:
        return "--speed must be > 0 (the stations are paced together)"
    if args.model and not Path(args.model).is_file():
        return f"--model {args.model}: no such file"
    return None


def run(args) -> dict:
    """The whole test; returns the result dict (summary and per-earthquake rows)."""
    from .model import tiny_model
    from .run import Mosquitto, centre_config, replay_network, run_centre, settle
    from .score import node_triggers, plot, score
    from .synth import build_network

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else tiny_model(out / "model")
    started = time.monotonic()
    net = build_network(
        args.stations,
        args.events,
        args.seed,
        args.transients,
        tuple(args.magnitudes),
        args.spacing_km,
        gap_s=args.gap_s,
        cache_dir=args.bank_cache,
    )
    built_s = time.monotonic() - started
    bad = set(net.codes[-args.bad_clock :]) if args.bad_clock else set()
    with Mosquitto(out / "broker") as broker:
        center, stop, versions, thread = run_centre(centre_config(out, broker.url, net.layers))
        try:
            folders = replay_network(net, model, out, broker.url, args.speed, bad, args.clock_offset_s)
            settle(center, versions)
        finally:
            stop.set()
            thread.join(10)
            status = center.status()
            center.close()
    result = score(net, versions)
    during, outside = node_triggers(folders, net)
    result["summary"].update(
        single_station_triggers=outside,
        earthquake_triggers=during,
        bad_clock_stations=sorted(bad),
        stations=args.stations,
        seed=args.seed,
        build_s=round(built_s, 1),
        run_s=round(time.monotonic() - started - built_s, 1),
    )
    result["centre"] = status
    result["layers"] = net.layers
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "events.jsonl").write_text("".join(json.dumps(v) + "\n" for v in versions))
    plot(net, versions, out / "map.png")
    return result


def main_network_test(args) -> int:
    why = _checks(args)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = result["summary"]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:32s} {value}")
        print(f"written: {Path(args.out) / 'summary.json'}, {Path(args.out) / 'map.png'}")
    return 0
