"""The node's network outputs all on against all off, in one run (issue 20's targets).

Two ``python -m edge_runtime run`` processes, each on its own real pty, are fed the same
frames at the same moments (the order of the two writes alternates frame by frame): one
with no output but its event file, one with all four network outputs on: the SDS archive,
a SeedLink server read by one raw-socket client streaming every record, MQTT to a
Mosquitto broker this benchmark starts on 127.0.0.1, and the status page polled once a
second as the page does (one request on a kept-alive connection: traces and windows since
the last answer, events when they changed, status).
Both nodes see the same machine load, so their ratios are measured, not compared across
runs.

The stream is self-noise with an earthquake every ``quake_s`` (``host_training``'s
synthetic one, P at 15 s). Both nodes run the untrained model of the other benchmarks with
``[detector] trigger_prob = 0``: the trigger is then decided by the peak acceleration of
the windows alone, identically in both, while the model still runs on every window.

Measured, per node:

* detection latency: from the write of the frame carrying the P onset to the trigger
  record appearing in the node's event file (polled every 2 ms), p50 over the quakes;
* CPU: the process's utime + stime over the timed stream, per second of data;
* RSS peak: ``VmHWM`` of the process at the end.

Targets: p50 within 5 %, CPU at most 2x, RSS at most +25 MB. ``quick`` (the test suite):
two 30 s quakes at 10x real time; the full run (``make bench``): ten 40 s quakes at real
time. Each node's serial read gathers bytes for up to ``read_timeout_s`` (0.5 s) at its own
phase, so one quake's latency moves by up to that much in either node: the p50 of ten
quakes resolves a few percent, and the median of the paired differences is reported beside
it. ``python -m tools.bench.outputs [--quick] [--outputs NAMES]`` runs it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from tools.replay.node import node_on_pty, wait_for_port
from tools.replay.sender import Writer, record_frames

T0_US = 1_767_225_600_000_000  # 2026-01-01
RATE_HZ = 100.0
SAMPLES_PER_FRAME = 10
P_S = 15.0  # P onset in each quake segment, s
WARM_S = 5.0  # noise sent at once before the timed stream: first windows build matrices
MIB_PER_MB = 1e6 / 2**20
CANDIDATE = {"archive": "archive", "seedlink": "SeedLink (1 client)", "mqtt": "MQTT (mosquitto)",
             "web": "web (1 poller)"}
TARGETS = {"latency_ratio": 1.05, "cpu_ratio": 2.0, "rss_delta_mb": 25.0}


# ------------------------------------------------------------------ the broker
def start_mosquitto(folder: Path) -> tuple[subprocess.Popen, int]:
    """Debian's ``mosquitto`` on 127.0.0.1 at a free port; ``(process, port)``.

    Raises
    ------
    RuntimeError
        One line: the broker is not installed (``apt-get install mosquitto``), or did not listen.
    """
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists()
                                        else None)
    if exe is None:
        raise RuntimeError("the outputs benchmark needs the Mosquitto broker: apt-get install mosquitto")
    folder.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                    "log_dest stderr\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(folder / "broker.log", "ab"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{port} (see {folder / 'broker.log'})")


# ------------------------------------------------------------------ the nodes
OUTPUTS = ("archive", "seedlink", "mqtt", "web")


def node_toml(folder: Path, broker_port: int | None, outputs=OUTPUTS) -> Path:
    """The node's config: station identity, PGA-only trigger; the network ``outputs`` (of
    :data:`OUTPUTS`) when ``broker_port`` is given (ports 0: any free one, read back from the
    status file)."""
    text = ('[node]\nnetwork = "XX"\nstation = "BENCH"\nlocation = ""\nchannels = ["HNE", "HNN", "HNZ"]\n'
            "latitude = 46.5\nlongitude = 6.6\nelevation_m = 400.0\n\n[detector]\ntrigger_prob = 0.0\n")
    sections = {"archive": f'[archive]\npath = "{folder / "sds"}"\n',
                "seedlink": '[seedlink]\nlisten = "127.0.0.1:0"\n',
                "mqtt": f'[mqtt]\nbroker = "mqtt://127.0.0.1:{broker_port}"\n'
                        f'queue = "{folder / "mqtt-queue"}"\nhealth_interval_s = 10.0\n',
                "web": '[web]\nlisten = "127.0.0.1:0"\n'}
    if broker_port is not None:
        text += "".join("\n" + sections[name] for name in outputs)
    path = folder / "node.toml"
    path.write_text(text)
    return path


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _status(folder: Path) -> dict:
    for _ in range(100):
        try:
            return json.loads((folder / "status.json").read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    return {}


def _wait_listening(folder: Path, proc, keys=("seedlink", "web"), timeout_s: float = 60.0) -> dict:
    """The node's status once it names the addresses of ``keys``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _status(folder)
        if all(k in status for k in keys):
            return status
        if proc.poll() is not None:
            raise RuntimeError(f"the node with every output exited ({proc.returncode}); see "
                               f"{folder / 'node.log'}")
        time.sleep(0.1)
    raise RuntimeError(f"the node's status never named {', '.join(keys)} within {timeout_s:g} s")


# ------------------------------------------------------------------ the clients
class SeedLinkReader(threading.Thread):
    """One raw-socket SeedLink client streaming every record of a station (``DATA``)."""

    def __init__(self, address: str, station: str = "BENCH", network: str = "XX"):
        super().__init__(name="bench-seedlink", daemon=True)
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.sendall(f"STATION {station} {network}\r\nDATA\r\nEND\r\n".encode())
        self.bytes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        self.sock.settimeout(0.5)
        while not self.stopped.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)

    @property
    def packets(self) -> int:
        """SeedLink packets read: an 8-byte header and a 512-byte record each (after two OKs)."""
        return max(0, self.bytes - 8) // 520

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)
        self.sock.close()


class PagePoller(threading.Thread):
    """The status page's own polling, once a second (edge_runtime/network/web_static/app.js):
    one ``/api/poll`` for the traces and windows since its last answer, the events when they
    changed and the status, on one kept-alive HTTP/1.1 connection as a browser keeps it."""

    def __init__(self, address: str, period_s: float = 1.0):
        super().__init__(name="bench-web", daemon=True)
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.period_s = period_s
        self.requests = self.failures = 0
        self.stopped = threading.Event()
        self._after = {"traces_after_us": None, "windows_after_us": None, "events_version": -1}
        self._conn = None

    def _get(self, path: str) -> dict:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            self._conn.request("GET", path)
            answer = self._conn.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            self._conn = None  # a new connection next time, as a browser opens one
            raise
        if answer.status != 200:
            raise OSError(f"{path}: HTTP {answer.status}")
        self.requests += 1
        return json.loads(body)

    def poll(self) -> None:
        query = "&".join(f"{k}={v}" for k, v in self._after.items() if v is not None)
        answer = self._get(f"/api/poll?{query}")
        traces, windows = answer["traces"], answer["windows"]
        if traces["bins"]:
            self._after["traces_after_us"] = (traces["bins"][-1] - 1) * traces["bin_us"]
        if windows["center_us"]:
            self._after["windows_after_us"] = windows["center_us"][-1]
        self._after["events_version"] = answer["events"]["version"]

    def run(self) -> None:
        while not self.stopped.wait(self.period_s):
            try:
                self.poll()
            except (OSError, ValueError, http.client.HTTPException):
                self.failures += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        if self._conn is not None:
            self._conn.close()


class TriggerWatch(threading.Thread):
    """Polls event files every ``period_s`` and notes when each trigger record appears."""

    def __init__(self, paths: list, period_s: float = 0.002):
        super().__init__(name="bench-triggers", daemon=True)
        self.paths = paths
        self.period_s = period_s
        self.seen = [[] for _ in paths]  # per file: monotonic time of each trigger line
        self._offsets = [0] * len(paths)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period_s):
            for k, path in enumerate(self.paths):
                try:
                    size = os.stat(path).st_size
                except FileNotFoundError:
                    continue
                if size <= self._offsets[k]:
                    continue
                now = time.monotonic()
                with open(path, "rb") as f:
                    f.seek(self._offsets[k])
                    data = f.read()
                whole = data[:data.rfind(b"\n") + 1]
                self._offsets[k] += len(whole)
                self.seen[k] += [now for line in whole.splitlines() if b'"type": "trigger"' in line
                                 or b'"type":"trigger"' in line]

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


# ------------------------------------------------------------------ the stream
def quake_stream(rng, n_quakes: int, quake_s: float) -> tuple[list, list[int]]:
    """Frames ``(t_us, bytes)`` of noise then ``n_quakes`` quakes, and the index of the frame
    carrying each P onset."""
    from edge_runtime.sensors import G_MPS2
    from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
    from host_training.synthetic import parametric as synth

    warm = rng.standard_normal((3, int(WARM_S * RATE_HZ))) * 1e-3
    warm[2] += G_MPS2
    parts = [warm] + [synth.earthquake(rng, duration_s=quake_s, fs=RATE_HZ, p_s=P_S, pga_mps2=0.3,
                                       sp_s=4.0).data for _ in range(n_quakes)]
    data = np.concatenate(parts, axis=1)
    frames = [(t_us, frame) for _, t_us, frame in record_frames(data, RATE_HZ, T0_US, ADXL355_COUNTS_PER_MPS2,
                                                                SAMPLES_PER_FRAME)]
    per_quake = int(round(quake_s * RATE_HZ))
    p_frames = [(warm.shape[1] + k * per_quake + int(P_S * RATE_HZ)) // SAMPLES_PER_FRAME
                for k in range(n_quakes)]
    return frames, p_frames


def stream(ptys: list, frames: list, first: int, speed: float, p_frames: list) -> list[list[float]]:
    """Write ``frames[first:]`` to every pty at ``speed`` x real time, the two writes of a
    frame in alternating order; per pty, the monotonic time each P frame was written."""
    writers = [Writer(p, speed=0) for p in ptys]
    written = [[] for _ in ptys]
    wanted = set(p_frames)
    t0_us, t0 = frames[first][0], time.monotonic()
    for i in range(first, len(frames)):
        t_us, frame = frames[i]
        delay = t0 + (t_us - t0_us) / 1e6 / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        order = range(len(ptys)) if i % 2 else reversed(range(len(ptys)))
        for k in order:
            writers[k].send(frame, t_us)
            if i in wanted:
                written[k].append(time.monotonic())
    return written


def latencies(p_written: list[float], triggers: list[float]) -> list[float]:
    """For each P write, s to the first trigger record seen after it (and before the next P)."""
    out = []
    for k, t in enumerate(p_written):
        end = p_written[k + 1] if k + 1 < len(p_written) else float("inf")
        after = [s for s in triggers if t <= s < end]
        if after:
            out.append(after[0] - t)
    return out


# ------------------------------------------------------------------ the run
def _measure(procs: list, ptys: list, folders: list, frames: list, p_frames: list, speed: float) -> dict:
    """Warm both nodes, stream the quakes to both, and read each node's figures."""
    first = int(WARM_S * RATE_HZ) // SAMPLES_PER_FRAME
    for pty in ptys:
        warm = Writer(pty, speed=0)
        for t_us, frame in frames[:first]:
            warm.send(frame, t_us)
    time.sleep(1.5)
    watch = TriggerWatch([f / "events.jsonl" for f in folders])
    watch.start()
    cpu0 = [_cpu_s(p.pid) for p in procs]
    p_written = stream(ptys, frames, first, speed, p_frames)
    time.sleep(max(2.0, 5.0 / speed))  # the last quake's trigger; the same settling time for both
    cpu1 = [_cpu_s(p.pid) for p in procs]
    watch.stop()
    data_s = (len(frames) - first) * SAMPLES_PER_FRAME / RATE_HZ
    return {"data_s": data_s, "cpu_s": [b - a for a, b in zip(cpu0, cpu1, strict=True)],
            "latencies_s": [latencies(w, s) for w, s in zip(p_written, watch.seen, strict=True)],
            "rss_peak_kib": [_status_kib(p.pid, "VmHWM") for p in procs],
            "rss_end_kib": [_status_kib(p.pid, "VmRSS") for p in procs]}


def _run_nodes(model: Path, out: Path, broker_port: int, frames: list, p_frames: list, speed: float,
               outputs=OUTPUTS) -> dict:
    """Start the node without outputs and the node with the ``outputs``, clients on the
    second; :func:`_measure`, then the outputs' own counters from the second node's status."""
    folders = [out / "off", out / "on"]
    configs = []
    for folder, port in zip(folders, (None, broker_port), strict=True):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        configs.append(node_toml(folder, port, outputs))
    with contextlib.ExitStack() as stack:
        procs, ptys = [], []
        for folder, config in zip(folders, configs, strict=True):
            log = stack.enter_context(open(folder / "node.log", "w"))
            proc, pty = stack.enter_context(node_on_pty(
                model, folder / "events.jsonl", folder / "status.json", "--config", str(config),
                "--status-every-s", "1", output=log, grace_s=10))
            procs.append(proc)
            ptys.append(pty)
        for folder, proc in zip(folders, procs, strict=True):
            wait_for_port(folder / "status.json", proc, timeout_s=120, log_path=folder / "node.log")
        status = _wait_listening(folders[1], procs[1], [k for k in ("seedlink", "web") if k in outputs])
        clients = ([SeedLinkReader(status["seedlink"]["listen"])] if "seedlink" in outputs else []) \
            + ([PagePoller(status["web"]["listen"])] if "web" in outputs else [])
        for client in clients:
            client.start()
        try:
            m = _measure(procs, ptys, folders, frames, p_frames, speed)
        finally:
            for client in clients:
                client.stop()
        time.sleep(1.2)  # one more status file with the outputs' counters
        m["status_on"] = _status(folders[1])
        m["clients"] = {"seedlink_packets_read": sum(c.packets for c in clients if hasattr(c, "packets")),
                        "web_requests": sum(c.requests for c in clients if hasattr(c, "requests")),
                        "web_failures": sum(c.failures for c in clients if hasattr(c, "failures"))}
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
    m["exit_codes"] = [p.returncode for p in procs]
    return m


def _outputs_activity(status: dict, clients: dict) -> dict:
    """What each output did in the run, from the node's status and the bench's clients."""
    pipe = status.get("pipeline", {})
    outputs = {k: v for k, v in status.items() if k in ("seedlink", "web", "mqtt", "archive")}
    flat = {k: v for k, v in status.items() if k.startswith(("archive_", "mqtt_", "seedlink_", "web_"))}
    return {"frames": pipe.get("frames"), "windows": pipe.get("windows"), **clients, "outputs": outputs,
            "counters": flat}


def bench_outputs(out, rng, quick: bool = False, model=None, outputs=OUTPUTS) -> list[dict]:
    """All four network outputs (or those named in ``outputs``) on against all off, one run;
    the result rows of :func:`run`."""
    out = Path(out).resolve() / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    model = Path(model) if model else Path(out).parent / "model" / "earthquake_cnn_int16_sim.onnx"
    if not model.is_file():
        from .common import untrained_models

        model = untrained_models(out.parent) / "earthquake_cnn_int16_sim.onnx"
    n_quakes, quake_s, speed = (2, 30.0, 10.0) if quick else (10, 40.0, 1.0)
    frames, p_frames = quake_stream(rng, n_quakes, quake_s)
    broker, broker_port = start_mosquitto(out / "broker")
    try:
        m = _run_nodes(model, out, broker_port, frames, p_frames, speed, outputs)
    finally:
        broker.terminate()
        broker.wait(10)
    return _rows(m, n_quakes, speed, outputs)


def _rows(m: dict, n_quakes: int, speed: float, outputs=OUTPUTS) -> list[dict]:
    """The suite's result rows: latency p50 and CPU per second of data, RSS beside the CPU."""
    lat_off, lat_on = m["latencies_s"]
    p50 = [float(np.median(x)) if x else float("nan") for x in (lat_off, lat_on)]
    cpu = [c / m["data_s"] for c in m["cpu_s"]]
    rss_mib = [k / 1024 for k in m["rss_peak_kib"]]
    delta_mb = (rss_mib[1] - rss_mib[0]) / MIB_PER_MB
    where = f"{n_quakes} quakes, {m['data_s']:.0f} s of data at {speed:g}x real time"
    common = {"outputs": list(outputs), "speed": speed, "quakes": n_quakes, "data_s": m["data_s"],
              "exit_codes": m["exit_codes"],
              "activity": _outputs_activity(m.get("status_on", {}), m["clients"])}
    latency = {"name": f"network outputs: detection latency p50 ({where})",
               "baseline": "all outputs off", "baseline_s": p50[0],
               "candidate": " + ".join(CANDIDATE[name] for name in outputs),
               "candidate_s": p50[1], "speedup": p50[0] / p50[1], "ratio": p50[1] / p50[0],
               "target_ratio": TARGETS["latency_ratio"], "ok": p50[1] / p50[0] <= TARGETS["latency_ratio"],
               "latencies_off_s": lat_off, "latencies_on_s": lat_on,
               # Each node's serial read waits up to read_timeout_s (0.5 s) for a burst, at its own
               # phase: one quake's latency moves by up to that much, in either node.
               "paired_difference_median_s": float(np.median(np.subtract(lat_on, lat_off)))
               if len(lat_on) == len(lat_off) and lat_on else None, **common}
    cpu_row = {"name": f"network outputs: node CPU per second of data ({where})",
               "baseline": "all outputs off", "baseline_s": cpu[0],
               "candidate": " + ".join(outputs), "candidate_s": cpu[1], "speedup": cpu[0] / cpu[1],
               "ratio": cpu[1] / cpu[0], "target_ratio": TARGETS["cpu_ratio"],
               "ok": cpu[1] / cpu[0] <= TARGETS["cpu_ratio"], "cpu_s": m["cpu_s"],
               "rss_peak_off_mib": rss_mib[0], "rss_peak_on_mib": rss_mib[1], "rss_delta_mb": delta_mb,
               "rss_target_delta_mb": TARGETS["rss_delta_mb"], "rss_ok": delta_mb <= TARGETS["rss_delta_mb"],
               "rss_end_mib": [k / 1024 for k in m["rss_end_kib"]], **common}
    return [latency, cpu_row]


def describe(rows: list[dict]) -> str:
    """The run's figures as a person reads them."""
    lat, cpu = rows
    act = lat["activity"]
    ok = {True: "ok", False: "OVER"}
    return (f"{lat['name']}\n"
            f"  detection latency p50  off {lat['baseline_s'] * 1e3:.0f} ms  "
            f"on {lat['candidate_s'] * 1e3:.0f} ms  ratio {lat['ratio']:.3f} "
            f"(target <= {lat['target_ratio']}) {ok[lat['ok']]}; paired difference median "
            f"{(lat['paired_difference_median_s'] or 0) * 1e3:+.0f} ms\n"
            f"  CPU per s of data      off {cpu['baseline_s'] * 1e3:.2f} ms  "
            f"on {cpu['candidate_s'] * 1e3:.2f} ms  ratio {cpu['ratio']:.2f} "
            f"(target <= {cpu['target_ratio']}) {ok[cpu['ok']]}\n"
            f"  RSS peak               off {cpu['rss_peak_off_mib']:.1f} MiB  "
            f"on {cpu['rss_peak_on_mib']:.1f} MiB  +{cpu['rss_delta_mb']:.1f} MB "
            f"(target <= +{cpu['rss_target_delta_mb']:g} MB) {ok[cpu['rss_ok']]}\n"
            f"  outputs: {act['seedlink_packets_read']} SeedLink packets read, {act['web_requests']} page "
            f"requests, frames {act['frames']}, windows {act['windows']}")


def run(out, rng, quick: bool = False, model=None, outputs=OUTPUTS) -> list[dict]:
    """For ``make bench`` (tools/bench/suite.py); also writes ``<out>/outputs/outputs.json``
    (``outputs-<names>.json`` for a subset)."""
    rows = bench_outputs(out, rng, quick=quick, model=model, outputs=outputs)
    name = "outputs" if tuple(outputs) == OUTPUTS else "outputs-" + "-".join(outputs)
    (Path(out) / "outputs" / f"{name}.json").write_text(json.dumps(rows, indent=2, default=str))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.outputs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench", help="output folder (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="two quakes at 10x real time (seconds)")
    parser.add_argument("--model", default=None, help="window model (default: the benches' untrained one)")
    parser.add_argument("--outputs", default=",".join(OUTPUTS),
                        help="the candidate's outputs, comma-separated (default %(default)s): one alone "
                             "says what it costs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    outputs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        print(f"error: --outputs {args.outputs}: choose from {', '.join(OUTPUTS)}", file=sys.stderr)
        return 2
    try:
        rows = run(args.out, np.random.default_rng(args.seed), quick=args.quick, model=args.model,
                   outputs=outputs)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(rows))
    print(f"results in {Path(args.out) / 'outputs'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
