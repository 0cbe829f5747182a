"""The ``python -m tools scan`` command: its arguments, checks of the user's input in one line,
then :func:`tools.scan.run.run_scan`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(sub) -> None:
    """The ``scan`` sub-command on the tools' sub-parsers."""
    import argparse

    from edge_runtime.sensors import DEFAULT_SENSOR

    s = sub.add_parser(
        "scan", help="run the node's own decisions over an archive (SDS, folders), here or on Dask",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Read ARCHIVE (SDS trees, folders, files or globs of anything the record reader "
                    "reads) station-day by station-day, run each through the node's own pipeline, "
                    "detector and event record with no pty and no node process, and write the "
                    "catalogue (catalog.jsonl/.csv/.xml), per station-day statistics, plots and "
                    "summary.json under OUT. Station-days already in OUT from a run with the same "
                    "settings are skipped. Exit 1 if input was skipped or a station-day failed, 2 on "
                    "bad arguments or an unreachable scheduler.")
    s.add_argument("archive", nargs="+", help="SDS roots, folders, waveform files or globs")
    s.add_argument("--model", required=True, help="ONNX model with SeismicTorch metadata")
    s.add_argument("--out", default="runs/scan", help="output folder")
    s.add_argument("--catalog", help="CSV as replay-test's: kinds, picks and units, to score the run")
    s.add_argument("--inventory", help="StationXML: responses (counts) and coordinates (TauP)")
    s.add_argument("--quakeml", help="QuakeML with event origins (TauP picks)")
    s.add_argument("--units", help="units of every record: counts, gal, m/s2, g, ... "
                                   "(default: catalog, SAC idep, StationXML response)")
    s.add_argument("--time", default="auto",
                   help="keep or auto (move records outside 2000-2100 by whole 50-year steps)")
    s.add_argument("--sensor", default=DEFAULT_SENSOR, help="sensor model that digitizes the records")
    s.add_argument("--missing", default="zeros", choices=["zeros", "self-noise"],
                   help="what a missing component carries")
    s.add_argument("--tolerance-s", type=float, default=2.0, help="P/S match tolerance, s")
    s.add_argument("--seed", type=int, default=0, help="seed of self-noise draws")
    s.add_argument("--batch-s", type=float, default=60.0,
                   help="seconds of samples handed to the node at once where the node's windows come "
                        "out the same (whole-microsecond sample periods); 0: replay-test's 10-sample "
                        "frames throughout")
    s.add_argument("--all-windows", action="store_true",
                   help="run the model on every window, as the node does, for its per-class window counts "
                        "over all the data; by default only windows within lookback_s before or off_s "
                        "after one reaching the detector's PGA gate are classified (the events are the "
                        "same; the rest are counted as windows_unclassified)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://HOST:8786")
    where.add_argument("--workers", type=int, default=0, help="local Dask workers (0: this process)")
    s.add_argument("--json", action="store_true", help="print the summary JSON (replay-test's keys)")


def main_scan(args) -> int:
    """Scan; exit 1 when something was skipped or failed, 2 on bad input."""
    from .day import ScanSettings
    from .run import ScanError, run_scan

    for flag, value in (("--model", args.model), ("--catalog", args.catalog),
                        ("--inventory", args.inventory), ("--quakeml", args.quakeml)):
        if value is not None and not Path(value).is_file():
            print(f"error: {flag} {value}: no such file", file=sys.stderr)
            return 2
    if args.workers < 0:
        print(f"error: --workers {args.workers}: must be >= 0", file=sys.stderr)
        return 2
    if args.time not in ("keep", "auto"):
        print(f"error: --time {args.time!r}: use keep or auto", file=sys.stderr)
        return 2
    try:
        from edge_runtime.sensors import get_sensor

        get_sensor(args.sensor)
        settings = ScanSettings(model=str(Path(args.model).resolve()), units=args.units,
                                inventory=args.inventory, catalog=args.catalog, quakeml=args.quakeml,
                                sensor=args.sensor, missing=args.missing, time=args.time,
                                tolerance_s=args.tolerance_s, seed=args.seed, batch_s=args.batch_s,
                                all_windows=args.all_windows)
        result = run_scan(args.archive, settings, args.out, scheduler=args.scheduler, workers=args.workers,
                          progress=not args.json, printer=lambda line: print(line, file=sys.stderr))
    except (ScanError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; station-days already written are kept (run again to resume)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({k: result[k] for k in ("summary", "rows", "skipped")}, indent=2, default=str))
    else:
        print(format_summary(result))
        print(f"outputs in {args.out}/ (catalog.csv, catalog.xml, catalog.jsonl, station_days.csv, "
              "summary.json, events_per_day.png)")
    s = result["summary"]
    return 1 if s["skipped"] or s["station_days_failed"] else 0


def format_summary(result: dict) -> str:
    """A few lines a seismologist reads first."""
    from tools.replay.score import fmt

    s = result["summary"]
    lines = [f"station-days {s['station_days']} ({s['station_days_run']} run, {s['station_days_resumed']} "
             f"resumed, {s['station_days_failed']} failed), stations {s['stations']}, records {s['records']}",
             f"triggers {s['triggers']}  events {s['events']}  {s['simulated_s']:.0f} s of data, "
             f"{fmt(s['throughput'], '.0f')} x real time",
             f"false alarms on noise: {fmt(s['false_triggers_per_noise_day'], '.2f')} triggers and "
             f"{fmt(s['false_events_per_noise_day'], '.2f')} events per station-day of noise "
             f"({s['noise_days']:.3f} days of noise)"]
    if s["earthquakes"]:
        lines.append(f"earthquakes detected {s['detected']}/{s['earthquakes']}  false events "
                     f"{s['false_events']}  median |P error| {fmt(s['median_abs_p_error_s'], '.2f')} s")
    lines += [f"skipped {where}: {why}" for where, why in result["skipped"]]
    return "\n".join(lines)
