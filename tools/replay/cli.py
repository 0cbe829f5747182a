"""The ``python -m tools replay`` and ``python -m tools replay-test`` commands (argparse in
``tools/__main__.py``): checks of the user's input in one line, then the work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .faults import FaultConfig, FaultInjector, parse_faults
from .pty import PtyLink
from .records import read_waveform_records
from .replay_test import ReplayTestConfig, format_report, run_replay_test
from .sender import Writer, replay_records


def main_replay(args) -> int:
    """Send the records to ``--port`` or a new pty (held open until Enter after the replay)."""
    from edge_runtime.sensors import get_sensor

    try:
        sensor = get_sensor(args.sensor)
        records = read_waveform_records(args.files, units=args.units, time_mode=args.time)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not records:
        print("error: no usable record in the given files (reasons above)", file=sys.stderr)
        return 2
    pty = None
    if args.pty:
        # The node gets a private link, never /dev/pts/N: once this pty closes, Linux may
        # give N to another program, and a node reopening it would read that program's bytes.
        pty = PtyLink("runs/replay_pty/tty")
        print(f"replaying on {pty.port} (-> {pty.pty.port}); start the node now, e.g.\n"
              f"  python -m edge_runtime run --port {pty.port} --model MODEL.onnx "
              f"--counts-per-mps2 {args.counts_per_mps2 or sensor.counts_per_mps2:.6g}\n"
              "press Enter when it is reading", flush=True)
        sys.stdin.readline()
    writer = Writer(pty.pty if pty else args.port, speed=args.speed)
    faults = FaultInjector(FaultConfig(args.corrupt, args.drop, args.truncate, args.garbage,
                                       args.fault_seed))
    sent = replay_records(records, writer, args.counts_per_mps2 or sensor.counts_per_mps2,
                          args.samples_per_frame, faults, progress=True,
                          sensor=None if args.counts_per_mps2 else sensor)
    print(json.dumps(sent))
    if pty:
        print("replay done; press Enter once the node has exited (the pty stays open until then)",
              flush=True)
        sys.stdin.readline()
        pty.close()  # the link goes first, so a reopening node finds nothing
    writer.close()
    return 0


def main_replay_test(args) -> int:
    """Replay-test the records; exit 1 when a record was skipped or a node failed, 2 on bad input."""
    for flag, value in (("--model", args.model), ("--catalog", args.catalog),
                        ("--inventory", args.inventory), ("--quakeml", args.quakeml)):
        if value is not None and not Path(value).is_file():
            print(f"error: {flag} {value}: no such file", file=sys.stderr)
            return 2
    try:
        config = ReplayTestConfig(model=args.model, out=args.out, sensor=args.sensor,
                                  missing=args.missing, time=args.time, speed=args.speed,
                                  tolerance_s=args.tolerance_s, idle_exit_s=args.idle_exit_s,
                                  seed=args.seed, faults=parse_faults(args.faults))
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
