"""The ``python -m tools replay`` and ``python -m tools replay-test`` commands: their flags
(one name for one thing in both), checks of the user's input in one line, then the work."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import stat
import sys
import time
from pathlib import Path

from edge_runtime.helpformat import HelpFormatter

from .faults import FaultConfig, FaultInjector, parse_faults
from .node_config import node_config_args
from .pty import PtyLink
from .records import model_info, read_waveform_records
from .replay_test import ReplayTestConfig, format_report, run_replay_test
from .sender import Writer, replay_records

PTY_FOLDER = Path("runs/replay_pty")
READER_WAIT_S = 5.0  # after Enter, how long a node may still take to open the pty
FAULTS_HELP = ("line faults, e.g. corrupt=0.001,drop=0.001,truncate=0.001,garbage=0.01,swap=0.001,"
               "late=0.001,duplicate=0.001,drift_ppm=50,seed=1; replay-test also unplug=0.001,unplug_s=2 "
               "(docs/replay.md)")
# The per-fault flags `tools replay` had before --faults: still read, no longer offered.
OLD_FAULT_FLAGS = {"--corrupt": "corrupt", "--drop": "drop", "--truncate": "truncate",
                   "--garbage": "garbage", "--fault-seed": "seed"}


class ReplayError(ValueError):
    """A mistake in the user's input or set-up; the message is one line."""


def _record_options(p, sensor_default: str) -> None:
    """The flags `replay` and `replay-test` share: which records, how they are read and sent."""
    p.add_argument("records", nargs="+", metavar="RECORDS",
                   help="waveform files, globs or folders (1-3 components per record)")
    p.add_argument("--model", help="ONNX window model with SeismicTorch metadata (EarthquakeCNN)")
    p.add_argument("--catalog", help="CSV: files (glob relative to the CSV), kind, p_time, s_time, units")
    p.add_argument("--inventory", help="StationXML: responses (counts) and coordinates (TauP)")
    p.add_argument("--units", help="units of every record: counts, gal, m/s2, g, cm/s, m/s ... "
                                   "(default: catalog, SAC idep, StationXML response)")
    p.add_argument("--time", default="auto",
                   help="keep, now, auto (move records outside 2000-2100 by whole 50-year steps, as "
                        "`score --time auto` expects) or an ISO UTC start")
    p.add_argument("--sensor", default=sensor_default,
                   help="sensor model whose counts are sent: scale, range (clipped samples are "
                        "counted), bits (edge_runtime/sensors.py)")
    p.add_argument("--samples-per-frame", type=int, default=10, help="samples per channel in a frame")
    p.add_argument("--faults", default="", help=FAULTS_HELP)


def add_arguments(sub) -> None:
    """Add the ``replay`` and ``replay-test`` subcommands to ``python -m tools``."""
    from edge_runtime.sensors import DEFAULT_SENSOR

    fmt = HelpFormatter
    r = sub.add_parser("replay", help="send recorded files as serial frames to a node you start",
                       formatter_class=fmt,
                       description="Replay recorded acceleration as protocol frames to a serial port, or "
                                   "to a new pty behind runs/replay_pty/tty; with --pty it prints the "
                                   "node's command and, afterwards, the `tools score` command.")
    _record_options(r, DEFAULT_SENSOR)
    target = r.add_mutually_exclusive_group(required=True)
    target.add_argument("--port", help="serial device to write to (pyserial)")
    target.add_argument("--pty", action="store_true",
                        help="create a pty behind a private link (runs/replay_pty/tty) and print the "
                             "node command; the pty stays open until Enter after the replay")
    r.add_argument("--speed", type=float, default=1.0, help="x real time; 0 sends as fast as read")
    r.add_argument("--counts-per-mps2", type=float, default=None,
                   help="override the sensor's sensitivity, counts per m/s^2")
    for flag, name in OLD_FAULT_FLAGS.items():
        r.add_argument(flag, dest=f"old_{name}", type=int if name == "seed" else float, default=None,
                       help=argparse.SUPPRESS)

    t = sub.add_parser(
        "replay-test", help="replay real recordings into a fresh node each and score it (make replay)",
        formatter_class=fmt,
        description="For each record in RECORDS (files, globs or folders of anything ObsPy reads; "
                    "StationXML/QuakeML found there are used), replay it through a real pty into a "
                    "fresh `python -m edge_runtime run`, wait for the node to exit, score its events "
                    "and counters. Prints a table; writes OUT/summary.json and OUT/summary.png. "
                    "Exit status 1 if any file or record was skipped or a node failed.")
    _record_options(t, DEFAULT_SENSOR)
    t.add_argument("--quakeml", help="QuakeML with event origins (TauP picks)")
    t.add_argument("--missing", default="zeros", choices=["zeros", "self-noise"],
                   help="what a missing component carries")
    t.add_argument("--speed", type=float, default=0.0, help="x real time; 0: as fast as the node reads")
    t.add_argument("--tolerance-s", type=float, default=2.0, help="P/S match tolerance, s")
    t.add_argument("--idle-exit-s", type=float, default=2.0, help="node exits after this silence, s")
    t.add_argument("--seed", type=int, default=0, help="seed of self-noise draws")
    t.add_argument("--out", default="runs/replay_test", help="output folder")
    t.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    t.add_argument("--node-config", metavar="FILE",
                   help="node TOML each record's node also reads (outputs: [archive], [seedlink], [mqtt], "
                        "[web] ...); the replay keeps its port, model, events, status, idle exit, scale "
                        "and station (docs/network.md)")


def _files_exist(args, flags) -> None:
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None and not Path(value).is_file():
            raise ReplayError(f"{flag} {value}: no such file")


def _replay_faults(args) -> FaultConfig:
    """``--faults`` with the old per-fault flags folded in; ``unplug`` refused (it needs the
    node's process, which replay-test owns)."""
    faults = parse_faults(args.faults)
    old = {name: getattr(args, f"old_{name}") for name in OLD_FAULT_FLAGS.values()
           if getattr(args, f"old_{name}") is not None}
    if old:
        faults = FaultConfig(**{**faults.to_dict(), **old})
    if faults.unplug:
        raise ReplayError("--faults unplug: only replay-test, which runs the node, can pull its cable")
    return faults


def _check_port(port: str) -> None:
    """A serial device: it exists and is a character device (a tty, a pty or a link to one)."""
    try:
        mode = os.stat(port).st_mode
    except FileNotFoundError:
        raise ReplayError(f"--port {port}: no such device (is the board plugged in? `ls /dev/serial/by-id/`)"
                          ) from None
    except OSError as exc:
        raise ReplayError(f"--port {port}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISCHR(mode):
        what = "folder" if stat.S_ISDIR(mode) else "file"
        raise ReplayError(f"--port {port}: not a serial device (a {what})")


def check_replay_args(args) -> FaultConfig:
    """Every flag of ``tools replay`` that can be checked before a record is read; the faults."""
    from edge_runtime.protocol import MAX_SAMPLES

    if args.speed < 0:
        raise ReplayError(f"--speed {args.speed:g}: must be >= 0 (0: as fast as the node reads)")
    if not 1 <= args.samples_per_frame <= MAX_SAMPLES:
        raise ReplayError(f"--samples-per-frame {args.samples_per_frame}: must be 1..{MAX_SAMPLES}")
    if args.counts_per_mps2 is not None and not args.counts_per_mps2 > 0:
        raise ReplayError(f"--counts-per-mps2 {args.counts_per_mps2:g}: must be > 0")
    faults = _replay_faults(args)
    _files_exist(args, ("--model", "--catalog", "--inventory"))
    if args.model is not None:
        model_info(args.model)  # a window model, or one line saying what it is
    if args.port is not None:
        _check_port(args.port)
    return faults


def _commands(args, port: str, counts_per_mps2: float) -> tuple[str, str]:
    """The node's command for ``port`` and the ``tools score`` command for what it will write."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    events, status = PTY_FOLDER / f"events-{stamp}.jsonl", PTY_FOLDER / "status.json"
    node = ["python", "-m", "edge_runtime", "run", "--port", port, "--model", args.model or "MODEL.onnx",
            "--counts-per-mps2", f"{counts_per_mps2:.6g}", "--events", str(events), "--status", str(status)]
    score = ["python", "-m", "tools", "score", str(events), *args.records, "--time", args.time]
    for flag in ("units", "catalog", "inventory"):
        if getattr(args, flag):
            score += [f"--{flag}", getattr(args, flag)]
    return shlex.join(node), shlex.join(score)


def _wait_for_reader(link: PtyLink, timeout_s: float = READER_WAIT_S) -> None:
    """Until a node has opened and configured the pty; ReplayError naming the link otherwise."""
    deadline = time.monotonic() + timeout_s
    while not link.pty.configured():
        if time.monotonic() > deadline:
            raise ReplayError(f"no node has opened {link.port}: start the node with the command printed "
                              "above, wait until it runs, then press Enter")
        time.sleep(0.05)
    time.sleep(0.1)  # pyserial flushes the input right after configuring the port


def _send(args, records, target, faults: FaultConfig, sensor) -> dict:
    """Write the records to ``target`` (a Pty or a device path); one line on a failed line."""
    import serial

    counts_per_mps2 = args.counts_per_mps2 or sensor.counts_per_mps2
    try:
        writer = Writer(target, speed=args.speed)
    except (serial.SerialException, OSError) as exc:
        raise ReplayError(f"--port {args.port}: cannot open it ({exc})") from None
    try:
        return replay_records(records, writer, counts_per_mps2, args.samples_per_frame,
                              FaultInjector(faults), progress=True,
                              sensor=None if args.counts_per_mps2 else sensor, drift_ppm=faults.drift_ppm)
    except TimeoutError as exc:
        raise ReplayError(f"{exc} (did the node exit? its log says why)") from None
    except (serial.SerialException, OSError) as exc:
        raise ReplayError(f"writing to {args.port or 'the pty'} failed ({exc}); replay stopped") from None
    finally:
        writer.close()


def main_replay(args) -> int:
    """Send the records to ``--port`` or a new pty (held open until Enter after the replay)."""
    from edge_runtime.sensors import get_sensor

    try:
        faults = check_replay_args(args)
        sensor = get_sensor(args.sensor)
        records = read_waveform_records(args.records, units=args.units, time_mode=args.time,
                                        catalog=args.catalog, inventory=args.inventory)
        if not records:
            raise ReplayError("no usable record in the given files (reasons above)")
        return _replay(args, records, faults, sensor)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _replay(args, records, faults: FaultConfig, sensor) -> int:
    """Replay to the port, or through a pty into the node the user starts from the printed command."""
    if not args.pty:
        print(json.dumps(_send(args, records, args.port, faults, sensor)))
        return 0
    # The node gets a private link, never /dev/pts/N: once this pty closes, Linux may
    # give N to another program, and a node reopening it would read that program's bytes.
    link = PtyLink(PTY_FOLDER / "tty")
    try:
        node, score = _commands(args, link.port, args.counts_per_mps2 or sensor.counts_per_mps2)
        print(f"replaying on {link.port} (-> {link.pty.port}); start the node now:\n  {node}\n"
              "press Enter when it is reading", flush=True)
        sys.stdin.readline()
        _wait_for_reader(link)
        print(json.dumps(_send(args, records, link.pty, faults, sensor)))
        print(f"replay done; stop the node (Ctrl-C) once it has read everything, then score its events:\n"
              f"  {score}\npress Enter once the node has exited (the pty stays open until then)", flush=True)
        sys.stdin.readline()
    finally:
        link.close()  # the link goes first, so a reopening node finds nothing
    return 0


def main_replay_test(args) -> int:
    """Replay-test the records; exit 1 when a record was skipped or a node failed, 2 on bad input."""
    try:
        if args.model is None:
            raise ReplayError("--model: required (the window model the node runs)")
        _files_exist(args, ("--model", "--catalog", "--inventory", "--quakeml"))
        faults = parse_faults(args.faults)
        model_info(args.model)  # a window model, or one line saying what it is
        node_args = []
        if args.node_config is not None:
            node_args, note = node_config_args(args.node_config, args.model)
            if note:
                print(note, file=sys.stderr)
        config = ReplayTestConfig(model=args.model, out=args.out, sensor=args.sensor,
                                  missing=args.missing, time=args.time, speed=args.speed,
                                  samples_per_frame=args.samples_per_frame,
                                  tolerance_s=args.tolerance_s, idle_exit_s=args.idle_exit_s,
                                  seed=args.seed, faults=faults, node_args=node_args)
        from edge_runtime.sensors import get_sensor

        get_sensor(args.sensor)
        result = run_replay_test(args.records, config, catalog=args.catalog, inventory=args.inventory,
                                 events=args.quakeml, units=args.units, progress=not args.json)
    except ValueError as exc:  # bad setting, catalog, inventory or model: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the running node was stopped and its pty closed on the way out
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({k: result[k] for k in ("summary", "rows", "skipped")}, indent=2, default=str))
    else:
        print(format_report(result))
        print(f"outputs in {args.out}/ (summary.json, summary.png, records/*/node.log)")
    s = result["summary"]
    return 1 if s["skipped"] or s["node_failures"] else 0

