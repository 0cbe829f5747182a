"""The node's CPU at real time, per input: a board on a serial port, a Raspberry Shake's UDP
datacast and a SeedLink server, in the same run.

Three real node processes (``python -m edge_runtime run``, the same untrained
EarthquakeCNN, int16, one onnxruntime thread) run side by side and are fed the same
counts (noise, 3 components at 100 Hz) at real time for ``seconds``:

* ``serial``: v1 frames of 25 samples every 0.25 s on a pty;
* ``shake-udp``: one datagram per channel every 0.25 s, rsudp's text format, on 127.0.0.1;
* ``seedlink``: 512-byte Steim-2 records in the ring of the node's own SeedLink server on
  127.0.0.1, appended as libmseed completes them (a live station's records).

Each node's CPU (user + system, ``/proc/PID/stat``) is read after a warm-up (model load,
first windows) and again at the end; the figure is its share of one core over that span.
Running the three at once puts them under the same load of the machine.

Usage: ``python -m tools.bench.sources [--seconds 60] [--out runs/bench]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

RATE_HZ = 100.0
PACKET = 25  # samples per frame / datagram: 0.25 s
T0_US = 1_767_225_600_000_000


def cpu_s(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _node(source_args: list, model: Path, out: Path):
    import subprocess
    import sys

    from tools.replay.node import python_env

    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "edge_runtime", "run", *source_args, "--model", str(model), "--events",
           str(out / "events.jsonl"), "--status", str(out / "status.json"), "--status-every-s", "1",
           "--threads", "1"]
    log = open(out / "node.log", "w")
    return subprocess.Popen(cmd, env=python_env(), stdout=log, stderr=subprocess.STDOUT)


def _wait_status(out: Path, key: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = json.loads((out / "status.json").read_text())
            if key in status:
                return status
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{out}: the node did not start; see {out / 'node.log'}")


def feed(senders: list, counts: np.ndarray, seconds: float) -> None:
    """Call every sender with each 0.25 s packet at its real time."""
    start = time.monotonic()
    for i, k in enumerate(range(0, int(seconds * RATE_HZ), PACKET)):
        wait = start + i * PACKET / RATE_HZ - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        for send in senders:
            send(T0_US + k * 10_000, counts[k:k + PACKET])


def bench_sources(out: Path, seconds: float = 60.0, warmup_s: float = 10.0, seed: int = 0) -> dict:
    """CPU share of one core of a node per input, fed the same counts at real time together."""
    from edge_runtime.network.miniseed import RecordPacker, record_info
    from edge_runtime.network.ring import PacketRing
    from edge_runtime.network.seedlink import SeedLinkServer
    from edge_runtime.network.slproto import StationInfo
    from edge_runtime.protocol import encode_frame
    from tools.bench.common import untrained_models
    from tools.replay.pty import open_pty

    out = Path(out) / "sources"
    model = untrained_models(out) / "earthquake_cnn_int16_sim.onnx"
    rng = np.random.default_rng(seed)
    counts = np.round(rng.normal(0, 2000, (int((seconds + warmup_s) * RATE_HZ) + PACKET, 3))).astype(np.int32)
    pty = open_pty()
    ring = PacketRing(8192)
    server = SeedLinkServer(ring, [StationInfo("XX", "ST01", "bench", tuple(("", c) for c in ("HNE", "HNN",
                                                                                                  "HNZ")))],
                            "127.0.0.1:0")
    udp_port = _free_udp_port()
    nodes = {
        "serial": _node(["--port", pty.port], model, out / "serial"),
        "shake-udp": _node(["--source", "shake-udp", "--shake-listen", f"127.0.0.1:{udp_port}"], model,
                           out / "shake-udp"),
        "seedlink": _node(["--source", "seedlink", "--seedlink-server", "%s:%d" % server.address,
                           "--seedlink-streams", "XX_ST01:HN?"], model, out / "seedlink"),
    }
    try:
        _wait_status(out / "serial", "port_open")
        _wait_status(out / "shake-udp", "shake_udp")
        _wait_status(out / "seedlink", "seedlink_client")
        packer = RecordPacker("XX", "ST01", "", ["HNE", "HNN", "HNZ"])
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sequence = iter(range(1 << 30))

        def serial(t0_us, block):
            os.write(pty.master_fd, encode_frame(next(sequence), t0_us, RATE_HZ, block))

        def shake(t0_us, block):
            for c, channel in enumerate(("ENE", "ENN", "ENZ")):
                line = "{'%s', %.3f, %s}" % (channel, t0_us / 1e6, ", ".join(map(str, block[:, c])))
                udp.sendto(line.encode(), ("127.0.0.1", udp_port))

        def seedlink(t0_us, block):
            for record in packer.push(t0_us, RATE_HZ, block):
                ring.append(record_info(record), record)

        senders = [serial, shake, seedlink]
        feeder = threading.Thread(target=feed, args=(senders, counts, seconds + warmup_s))
        feeder.start()
        time.sleep(warmup_s)
        before = {name: (cpu_s(p.pid), time.monotonic()) for name, p in nodes.items()}
        feeder.join()
        time.sleep(1.0)
        result = {}
        for name, proc in nodes.items():
            used, t = before[name]
            result[name] = {"cpu_percent_of_one_core": round(100 * (cpu_s(proc.pid) - used) /
                                                             (time.monotonic() - t), 2)}
            status = json.loads((out / name / "status.json").read_text())
            result[name].update(frames=status["pipeline"]["frames"], windows=status["pipeline"]["windows"],
                                frames_lost=status["pipeline"]["frames_lost"])
        udp.close()
    finally:
        for proc in nodes.values():
            proc.terminate()
            proc.wait(30)
        server.close()
        pty.close()
    report = {"seconds": seconds, "rate_hz": RATE_HZ, "components": 3, "machine_cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "nodes": result}
    (out / "sources_bench.json").write_text(json.dumps(report, indent=2))
    return report


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="real time streamed (default %(default)s)")
    parser.add_argument("--out", default="runs/bench", help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    print(json.dumps(bench_sources(Path(args.out), args.seconds), indent=2))


if __name__ == "__main__":
    main()
