"""replay-test's peak memory on a long record: ``python -m tools.bench.replay_memory``.

Writes an ``--hours`` long 100 Hz 3-component FLOAT32 miniSEED of noise (24 h: 105 MB)
and measures the peak resident set (``ru_maxrss`` of a child process, from ``wait4``) of
the host side of replay-test in two ways on the same file, in the same run:

* baseline: read the record, digitize it as replay-test did before (a float64 copy of
  the whole record, then the sensor's rounding and clipping on all of it at once) and
  keep a ``(sequence, intact)`` tuple per frame sent, as its ledger did;
* candidate: read it, :func:`tools.replay.records.digitize` (per component, in chunks) and
  :class:`tools.replay.ledger.Ledger` (a byte per frame).

With ``--command`` the whole ``python -m tools replay-test`` (node included, its frames
sent through a pty) is measured too. Results go to ``<out>/replay_memory.json``. Memory,
not time: it is not one of ``make bench``'s timed benchmarks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edge_runtime.helpformat import HelpFormatter
from tools.replay.node import REPO, python_env

# Read, digitize and fill a ledger as replay-test does for one record; print nothing.
_HOST_STEPS = r"""
import sys
import numpy as np
from edge_runtime.sensors import DEFAULT_SENSOR, get_sensor
from host_training.recordings.reader import read_records
from tools.replay.ledger import Ledger
from tools.replay.records import digitize

path, mode = sys.argv[1], sys.argv[2]
(record,), _ = read_records([path], units="m/s2", nan_gaps=True)
sensor = get_sensor(DEFAULT_SENSOR)
if mode == "baseline":
    data = np.array(record.data, dtype=np.float64)
    counts, _ = sensor.digitize(data)
    sessions = [[]]
    for seq in range(counts.shape[1] // 10):
        sessions[-1].append((seq, True))
else:
    counts, _ = digitize(record, sensor, "zeros", None)
    ledger = Ledger()
    for seq in range(counts.shape[1] // 10):
        ledger.sent(seq, True)
"""


def write_record(path: Path, hours: float, seed: int = 0) -> Path:
    """``hours`` of 100 Hz E/N/Z noise (m/s^2, float32) as miniSEED; the path."""
    import numpy as np
    from obspy import Stream, Trace, UTCDateTime

    rng = np.random.default_rng(seed)
    n = int(round(hours * 3600 * 100))
    stream = Stream([Trace((rng.standard_normal(n) * 2e-3).astype(np.float32),
                           header=dict(network="XX", station="DAY", channel=f"HN{c}", sampling_rate=100.0,
                                       starttime=UTCDateTime(2026, 2, 1))) for c in "ENZ"])
    path.parent.mkdir(parents=True, exist_ok=True)
    stream.write(str(path), format="MSEED", encoding="FLOAT32")
    return path


def peak_rss_mib(cmd) -> float:
    """Peak resident set (MiB) of ``cmd`` and the children it waited for; raises on failure."""
    import tempfile

    env = python_env()
    with tempfile.TemporaryFile() as err:  # a pipe could fill while wait4 waits
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):  # replay-test exits 1 on a failed score, not here
            err.seek(0)
            raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} exited {proc.returncode}: "
                               f"{err.read().decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024.0


def bench_replay_memory(out="runs/bench", hours: float = 24.0, model=None, command: bool = False,
                        seed: int = 0) -> dict:
    """Peak RSS of replay-test's host steps, old way against current; written to JSON."""
    out = Path(out)
    record = write_record(out / "replay_memory" / f"noise_{hours:g}h.mseed", hours, seed)
    host = [sys.executable, "-c", _HOST_STEPS, str(record)]
    result = {"name": f"replay-test host steps, {hours:g} h of 100 Hz x 3 (FLOAT32 miniSEED)",
              "baseline": "whole-record float64 copy + digitize; a tuple per frame in the ledger",
              "baseline_peak_mib": peak_rss_mib([*host, "baseline"]),
              "candidate": "digitize per component in chunks into int32; a byte per frame",
              "candidate_peak_mib": peak_rss_mib([*host, "candidate"])}
    result["ratio"] = result["baseline_peak_mib"] / result["candidate_peak_mib"]
    if command:
        model = model or REPO / "runs" / "demo" / "model" / "earthquake_cnn_int16_sim.onnx"
        result["command_peak_mib"] = peak_rss_mib(
            [sys.executable, "-m", "tools", "replay-test", str(record), "--model", str(model), "--units",
             "m/s2", "--out", str(out / "replay_memory" / "replay_test")])
    (out / "replay_memory.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m tools.bench.replay_memory",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--hours", type=float, default=24.0, help="length of the synthetic record, h")
    p.add_argument("--out", default="runs/bench", help="output folder")
    p.add_argument("--command", action="store_true",
                   help="also measure the whole `python -m tools replay-test` (a node and a pty)")
    p.add_argument("--model", default=None,
                   help="model for --command (default: runs/demo/model/earthquake_cnn_int16_sim.onnx)")
    args = p.parse_args(argv)
    if args.hours <= 0:
        p.error(f"--hours {args.hours:g}: must be > 0")
    if args.command and args.model is not None and not Path(args.model).is_file():
        p.error(f"--model {args.model}: no such file")
    r = bench_replay_memory(args.out, args.hours, args.model, args.command)
    print(f"{r['name']}\n  baseline  {r['baseline_peak_mib']:8.0f} MiB  {r['baseline']}\n"
          f"  candidate {r['candidate_peak_mib']:8.0f} MiB  {r['candidate']}\n"
          f"  ratio     {r['ratio']:8.2f} x")
    if "command_peak_mib" in r:
        print(f"  whole replay-test command: {r['command_peak_mib']:.0f} MiB")
    print(f"results in {Path(args.out) / 'replay_memory.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
