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
    t.add_argument("--events", type=int, default=5, help="earthquakes (0: noise and transients only)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/network_test", help="output folder")
    t.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    t.add_argument("--model", help="ONNX model for the nodes (default: a small one, trained once into "
                                    "runs/cache/network_detector and copied into OUT/model)")
    t.add_argument("--spacing-km", type=float, default=15.0, help="station spacing (jittered by a sixth)")
    t.add_argument("--magnitudes", type=float, nargs=2, default=(3.0, 4.5), metavar=("MIN", "MAX"))
    t.add_argument(
        "--transients", type=int, default=5, help="single-station knocks, door slams ... per station"
    )
    t.add_argument(
        "--transient-kinds",
        nargs="+",
        default=None,
        metavar="KIND",
        help="the kinds of transient drawn (default: knock door footsteps vehicle; also machinery, spike)",
    )
    t.add_argument("--bad-clock", type=int, default=0, help="stations whose clock is free-running and off")
    t.add_argument("--clock-offset-s", type=float, default=3.0, help="how far off the bad clocks are, s")
    t.add_argument(
        "--speed", type=float, default=8.0, help="replay speed, x real time (all stations together)"
    )
    t.add_argument("--gap-s", type=float, default=80.0, help="seconds of record per earthquake")
    t.add_argument(
        "--pick-min-pga-mps2",
        type=float,
        default=None,
        help="the nodes' [mqtt] pick_min_pga_mps2 (default: the node's, 0.004 m/s^2)",
    )
    t.add_argument("--bank-cache", default=None, help="folder of cached Green's function banks")
    t.add_argument(
        "--record-s",
        type=float,
        default=0.0,
        help="record length at least this, s (0: 40 s + --gap-s per earthquake + 30 s)",
    )
    t.add_argument(
        "--broker-restart-at",
        type=float,
        nargs="+",
        default=[],
        metavar="S",
        help="stop the broker at these seconds of record and start it again on the same port",
    )
    t.add_argument(
        "--broker-down-s", type=float, default=3.0, help="wall seconds the broker stays down at each restart"
    )


def _checks(args) -> str | None:
    if not 4 <= args.stations <= 60:
        return "--stations must be 4 to 60 (each station is a node process)"
    if not 0 <= args.events <= 100:
        return "--events must be 0 to 100"
    if args.pick_min_pga_mps2 is not None and not args.pick_min_pga_mps2 > 0:
        return "--pick-min-pga-mps2 must be > 0"
    if not 0 <= args.bad_clock <= args.stations:
        return "--bad-clock must be 0 to --stations"
    if args.gap_s < 30:
        return "--gap-s must be >= 30 (an earthquake's waves and coda)"
    if args.speed <= 0:
        return "--speed must be > 0 (the stations are paced together)"
    if args.model and not Path(args.model).is_file():
        return f"--model {args.model}: no such file"
    from host_training.synthetic.noise import TRANSIENT_KINDS

    unknown = sorted(set(args.transient_kinds or ()) - set(TRANSIENT_KINDS))
    if unknown:
        return f"--transient-kinds: unknown {', '.join(unknown)} (known: {', '.join(TRANSIENT_KINDS)})"
    if not 0 < args.broker_down_s <= 60:
        return "--broker-down-s must be > 0 and <= 60"
    from .synth import record_length_s

    length_s = record_length_s(args.events, args.gap_s, args.record_s)
    # the nodes stop 3 s after their record ends and give the broker 2 s for their queue
    last_s = length_s - args.broker_down_s * args.speed - 10.0
    for at in args.broker_restart_at:
        if not 0 < at <= last_s:
            return (
                f"--broker-restart-at {at:g}: must be within the record and the broker back 10 s "
                f"before its end (0 to {last_s:.0f} s of the {length_s:.0f} s record)"
            )
    return None


def run(args) -> dict:
    """The whole test; returns the result dict (summary and per-earthquake rows)."""
    from .model import tiny_model
    from .score import bad_clock_use, plot, score
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
        record_s=args.record_s,
        **({"kinds": tuple(args.transient_kinds)} if args.transient_kinds else {}),
    )
    built_s = time.monotonic() - started
    bad = set(net.codes[-args.bad_clock :]) if args.bad_clock else set()
    versions, folders, status, picks, restarts = _live(args, net, model, out, bad)
    result = score(net, versions)
    result["summary"].update(
        _reached(net, folders, picks, bad, args.clock_offset_s),
        broker_restarts=len(restarts),
        broker_restarted_at_s=restarts,
        centre_connects=status.get("connects"),
        centre_picks_duplicate=status.get("picks_duplicate"),
        centre_picks_too_late=status.get("picks_too_late"),
        bad_clock_stations=sorted(bad),
        clock_offset_s=args.clock_offset_s if bad else None,
        centre_picks_bad_clock=status.get("picks_bad_clock"),
        **bad_clock_use(versions, bad),
        stations=args.stations,
        transients_per_station=args.transients,
        record_s=net.duration_s,
        seed=args.seed,
        build_s=round(built_s, 1),
        run_s=round(time.monotonic() - started - built_s, 1),
    )
    result["centre"] = status
    result["layers"] = net.layers
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "events.jsonl").write_text("".join(json.dumps(v) + "\n" for v in versions))
    (out / "picks.jsonl").write_text("".join(json.dumps(p) + "\n" for _, p in picks))
    plot(net, versions, out / "map.png")
    return result


def _live(args, net, model: Path, out: Path, bad: set):
    """Broker, centre, pick recorder and nodes, with the broker restarts asked for;
    returns ``(event versions, node folders, centre status, recorded picks, restarts)``."""
    from .run import (
        Mosquitto,
        PickRecorder,
        centre_config,
        replay_network,
        restart_broker_at,
        run_centre,
        settle,
    )

    restarts: list[dict] = []
    threads = []
    with Mosquitto(out / "broker") as broker:

        def schedule(replay_started: float) -> None:
            if args.broker_restart_at:
                at, down_s = args.broker_restart_at, args.broker_down_s
                threads.append(restart_broker_at(broker, at, args.speed, down_s, replay_started, restarts))

        center, stop, versions, thread = run_centre(centre_config(out, broker.url, net.layers))
        recorder = PickRecorder(broker.url)
        try:
            folders = replay_network(
                net, model, out, broker.url, args.speed, bad, args.clock_offset_s, at_start=schedule,
                mqtt={"pick_min_pga_mps2": args.pick_min_pga_mps2} if args.pick_min_pga_mps2 else None,
            )
            for th in threads:
                th.join()
            settle(center, versions)
        finally:
            stop.set()
            thread.join(10)
            status = center.status()
            center.close()
            recorder.close()
    failed = [r["error"] for r in restarts if "error" in r]
    if failed:
        raise RuntimeError(f"the broker did not restart: {failed[0]}")
    return versions, folders, status, recorder.picks, restarts


def _reached(net, folders, picks, bad, clock_offset_s) -> dict:
    """The triggers: what reached the centre (``single_station_triggers``) and the nodes' own."""
    from .score import arrivals, node_triggers

    during, outside = node_triggers(folders, net, bad, clock_offset_s)
    reached = arrivals(picks, net, bad, clock_offset_s)
    return dict(
        single_station_triggers=reached.pop("single_station_triggers"),
        transients=sum(len(t) for t in net.transients.values()),
        node_triggers_outside_earthquakes=outside,
        earthquake_triggers=during,
        **reached,
    )


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
