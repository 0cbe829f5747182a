"""The node in a seismic network, its outputs together (issue 20's integration items).

Each output has its own tests (test_archive.py, test_seedlink.py, test_mqtt.py,
test_web.py); these run them together in real node processes on real ptys:

* ``tools replay-test --node-config FILE`` hands each record's node a node TOML, so a
  bench-top run exercises any output (through the real command);
* an hour of data with line faults and one node restart: the SDS archive (read with ObsPy)
  and the SeedLink stream (read with ObsPy's client) each hold exactly the samples of the
  frames the node was delivered, sample for sample; the samples of lost frames are absent
  from both, not invented;
* load and bad input the per-output tests leave to the node: 50 SeedLink clients and one
  that never reads while the node classifies, an MQTT broker down for an hour of data, a
  full disk under the archive, a quota smaller than a day; and nothing listening beyond
  127.0.0.1 unless the config says so;
* the benchmark of all four outputs on against off (tools/bench/outputs.py) in its quick mode.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymseed")
pytest.importorskip("paho.mqtt")
import obspy  # noqa: E402
from _helpers import add_trace_samples, wait_ready, wait_status  # noqa: E402
from conftest import REPO, python_env, stop  # noqa: E402
from obspy import UTCDateTime  # noqa: E402

from tools.replay.faults import FaultConfig, FaultInjector  # noqa: E402
from tools.replay.node import node_on_pty  # noqa: E402
from tools.replay.sender import Writer, count_frames  # noqa: E402

MIDNIGHT_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
RATE_HZ = 100.0
PERIOD_US = 10_000
CHANNELS = ("HNE", "HNN", "HNZ")
# The hour goes to the node this many frames (240 s of data) at a time, each step once the
# node has accepted the one before: as fast as it reads, its loop can outrun the outputs'
# bounded queues on a loaded machine, and frames beyond them are dropped (counted in
# <output>_dropped, as they must be: the loop never waits for an output). A worker now takes
# the frames of a batch in one push (sink.Queued), faster than the loop classifies them, so a
# step above the 1024-frame bound passes with nothing dropped (3,600 did too, at load 2).
STEP_FRAMES = 2400
IDENTITY = '[node]\nnetwork = "XX"\nstation = "ST01"\nlocation = ""\nchannels = ["HNE", "HNN", "HNZ"]\n'


def walk(rng, n: int, step: int = 60) -> np.ndarray:
    """(3, n) int32 counts as a board sends them: a random walk (every Steim-2 difference width)."""
    return np.cumsum(rng.integers(-step, step + 1, size=(3, n)), axis=1).astype(np.int32)


def samples_of(counts: np.ndarray, t0_us: int, frames) -> dict:
    """``{(channel, time_us): count}`` of the 10-sample frames numbered in ``frames``."""
    out = {}
    for i in frames:
        for k in range(i * 10, min(i * 10 + 10, counts.shape[1])):
            t = t0_us + k * PERIOD_US
            for c, cha in enumerate(CHANNELS):
                out[(cha, t)] = int(counts[c, k])
    return out


def traces_samples(stream) -> dict:
    """``{(channel, time_us): count}`` of an ObsPy stream; a sample present twice fails."""
    out = {}
    for trace in stream:
        assert trace.stats.sampling_rate == RATE_HZ
        add_trace_samples(out, trace, PERIOD_US)
    return out


def node_status(folder: Path) -> dict:
    for _ in range(100):
        try:
            return json.loads((folder / "status.json").read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise AssertionError("no status file")


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on (/proc/net/tcp and tcp6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            if width == 8:
                address = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                address = socket.inet_ntop(socket.AF_INET6, words)
            out.append((address, int(hex_port, 16)))
    return out


# ------------------------------------------------------------------ replay-test --node-config
def _replay_test(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tools", "replay-test", *map(str, args)], cwd=REPO,
                          env=python_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quake_record(tmp_path_factory):
    """One 30 s three-component synthetic quake as SAC (station QK1)."""
    from host_training.recordings.sac import write_record
    from host_training.synthetic import parametric as synth

    folder = tmp_path_factory.mktemp("record")
    rec = synth.earthquake(np.random.default_rng(3), duration_s=30.0, fs=100.0, p_s=10.0, pga_mps2=0.3,
                           sp_s=4.0)
    write_record(rec.data, 100.0, UTCDateTime(2026, 3, 1, 12), folder, station="QK1", picks={"P": rec.p_s},
                 kind="earthquake")
    return folder


def test_replay_test_node_config_runs_the_outputs_it_asks_for(tiny_model, quake_record, tmp_path):
    """A node TOML with the archive and a SeedLink server, and the port, model and events of a
    field node: the replay says it overrides those, the node archives exactly the counts the
    replay sent, and the rest of the run is scored as without the file."""
    from edge_runtime.sensors import DEFAULT_SENSOR, get_sensor
    from host_training.recordings.reader import read_records
    from tools.replay.records import digitize

    config = tmp_path / "node.toml"
    config.write_text('[node]\nport = "/dev/serial/by-id/usb-board"\nmodel = "/opt/m.onnx"\nnetwork = "XX"\n'
                      f'[output]\nevents = "/var/lib/x.jsonl"\n[archive]\npath = "{tmp_path / "sds"}"\n'
                      '[seedlink]\nlisten = "127.0.0.1:0"\n')
    out = tmp_path / "out"
    result = _replay_test(quake_record, "--model", tiny_model["sim"], "--node-config", config, "--out", out,
                          "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"--node-config {config}: the replay sets [node] port, [node] model, [output] events itself "
            "(the file's values are overridden)") in result.stderr
    report = json.loads(result.stdout)
    (row,) = report["rows"]
    assert row["node_exit"] == 0 and row["frames_sent"] == row["frames_accepted"] == 300, row
    log = Path(row["workdir"], "node.log").read_text()
    assert "seedlink: serving XX.QK1 on 127.0.0.1:" in log, log[-2000:]
    (record,), _ = read_records([quake_record], min_duration_s=2.0, nan_gaps=True)
    counts, _ = digitize(record, get_sensor(DEFAULT_SENSOR), "zeros", np.random.default_rng(0))
    t0_us = round(record.starttime.timestamp * 1e6)
    archived = traces_samples(obspy.read(str(tmp_path / "sds" / "2026/XX/QK1/*.D/*")))
    assert archived == samples_of(counts, t0_us, range(300))
    assert (tmp_path / "sds" / "XX.QK1.xml").is_file()


@pytest.mark.parametrize("text, message", [
    ("[archive]\nquota = 5\n", "[archive] unknown key 'quota'; known: path, quota_mb"),
    ('[mqtt]\nbroker = "mqtt://127.0.0.1:1883"\npassword = "x"\n', "[mqtt] password: set username too"),
    ('[seedlink]\nlisten = "localhost"\n', "[seedlink] listen"),
    ("[node\n", "not valid TOML"),
])
def test_replay_test_node_config_mistakes_are_one_line(tiny_model, quake_record, tmp_path, text, message):
    config = tmp_path / "node.toml"
    config.write_text(text)
    result = _replay_test(quake_record, "--model", tiny_model["sim"], "--node-config", config, "--out",
                          tmp_path / "out", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "out").exists()  # refused before any record is read


def test_replay_test_node_config_that_is_missing_is_one_line(tiny_model, quake_record, tmp_path):
    result = _replay_test(quake_record, "--model", tiny_model["sim"], "--node-config", tmp_path / "no.toml",
                          timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'no.toml'}: no such config file"


# ------------------------------------------------------------------ an hour, faults, a restart
def faulty_line(frames: list, faults: FaultInjector) -> tuple[list[bytes], list[int]]:
    """The bytes on the line for each frame (faults applied, held frames let out at the end)
    and the indices of the frames that reach the node intact: the frame ledger's view."""
    chunks, delivered = [], []
    for i, (seq, _t_us, frame) in enumerate(frames):
        chunks.append(faults.apply(seq, frame))
        if faults.last_intact:  # a swapped frame is held, then sent whole after the next one
            delivered.append(i)
    chunks.append(faults.flush())
    return chunks, delivered


class LiveCollector(threading.Thread):
    """ObsPy's ``EasySeedLinkClient`` streaming ``XX.ST01..HN?`` live until it holds ``n`` samples."""

    def __init__(self, address: str, n: int):
        from obspy.clients.seedlink.easyseedlink import EasySeedLinkClient

        super().__init__(name="test-seedlink", daemon=True)
        self.traces, self.n = [], n
        collector = self

        class Enough(Exception):
            pass

        class Collect(EasySeedLinkClient):
            def on_data(self, trace):
                collector.traces.append(trace)
                if sum(t.stats.npts for t in collector.traces) >= collector.n:
                    raise Enough  # conn.terminate() here is undone by the next collect()

        self.enough = Enough
        self.client = Collect(address, autoconnect=False)
        self.client.conn.timeout = 30  # ObsPy 1.5.1 leaves it None, and connect() fails without it
        self.client.connect()
        self.client.select_stream("XX", "ST01", "HN?")

    def run(self) -> None:
        try:
            self.client.run()
        except self.enough:
            self.client.close()


def serve_session(model, folder: Path, chunks: list, config: Path, delivered: list,
                  n_samples: int) -> tuple[dict, list]:
    """One node run: ObsPy's SeedLink client streaming live, the chunks :data:`STEP_FRAMES` at
    a time as fast as the node takes them, then SIGTERM once the client holds ``n_samples``;
    (the node's last status, the client's traces). ``delivered``: indices of the frames that
    reach the node intact (0 = the first chunk)."""
    with node_on_pty(model, folder / "events.jsonl", folder / "status.json", "--config", str(config),
                     "--status-every-s", "0.05", "--step-s", "1.0", cwd=REPO, grace_s=0) as (proc, pty):
        wait_ready(folder, proc)
        status = wait_status(folder / "status.json", proc, lambda s: "seedlink" in s,
                             "open its SeedLink port")
        collector = LiveCollector(status["seedlink"]["listen"], n_samples)
        collector.start()
        wait_status(folder / "status.json", proc, lambda s: s["seedlink"]["clients_streaming"] == 1,
                    "start the client's stream")
        writer = Writer(pty, speed=0)
        for start in range(0, len(chunks), STEP_FRAMES):
            for chunk in chunks[start:start + STEP_FRAMES]:
                writer.send(chunk, 0)
            # The sequencer may hold the last few frames while it waits for a missing one.
            accepted = int(np.searchsorted(delivered, start + STEP_FRAMES - 10))
            wait_status(folder / "status.json", proc, lambda s, n=accepted: s["pipeline"]["frames"] >= n,
                        f"accept {accepted} frames", timeout_s=120)
        wait_status(folder / "status.json", proc, lambda s: s["pipeline"]["frames"] >= len(delivered),
                    f"accept {len(delivered)} frames", timeout_s=120)
        collector.join(120)  # the last records are packed 5 s after the last frame
        held = sum(t.stats.npts for t in collector.traces)
        assert not collector.is_alive(), f"SeedLink client: {held} of {n_samples} samples in 120 s"
        output = stop(proc)
    assert proc.returncode == 0, output
    return node_status(folder), collector.traces


def test_archive_and_seedlink_hold_exactly_the_delivered_samples_over_an_hour(tiny_model, tmp_path):
    """An hour of 100 Hz counts across midnight through a faulty line (bits flipped, frames
    dropped, cut, swapped, sent twice, garbage between), the node restarted once in the
    middle: what ObsPy reads from the SDS archive, and what ObsPy's SeedLink client reads
    from each node run, are the samples of the delivered frames, at their times, exactly."""
    rng = np.random.default_rng(20)
    n = 360_000
    counts = walk(rng, n)
    t0 = MIDNIGHT_US - 1_800_000_000  # 23:30: the archive's day changes half-way
    frames = list(count_frames(counts, RATE_HZ, t0))
    half = len(frames) // 2
    faults = FaultConfig(corrupt=0.002, drop=0.002, truncate=0.002, garbage=0.005, swap=0.002,
                         duplicate=0.002, seed=4)
    sessions = [faulty_line(frames[:half], FaultInjector(faults)),
                faulty_line(frames[half:], FaultInjector(FaultConfig(**{**faults.to_dict(), "seed": 5})))]
    sessions[1] = (sessions[1][0], [half + i for i in sessions[1][1]])
    config = tmp_path / "node.toml"
    config.write_text(IDENTITY + f'[archive]\npath = "{tmp_path / "sds"}"\n'
                      '[seedlink]\nlisten = "127.0.0.1:0"\n')
    expected_all = {}
    for k, (chunks, delivered) in enumerate(sessions):
        assert 0 < len(frames) // 2 - len(delivered) < 200  # faults were drawn, most frames pass
        expected = samples_of(counts, t0, delivered)
        first = delivered[0] - delivered[0] % half
        status, traces = serve_session(tiny_model["sim"], tmp_path, chunks, config,
                                       [i - first for i in delivered], len(expected))
        pipe = status["pipeline"]
        assert pipe["frames"] == len(delivered) and pipe["frames_lost"] > 0, pipe  # the ledger
        assert status["seedlink_dropped"] == status["archive_dropped"] == 0, status
        assert traces_samples(traces) == expected, f"SeedLink of node run {k + 1}"
        expected_all.update(expected)
    files = sorted((tmp_path / "sds").glob("*/*/*/*.D/*"))
    assert len(files) == 6  # three channels, two days
    archived = traces_samples(obspy.read(str(tmp_path / "sds" / "*/XX/ST01/*.D/*")))
    assert archived == expected_all


# ------------------------------------------------------------------ load and bad input, in a node
def feed_in_steps(folder: Path, proc, pty, frames: list, accepted=None, step: int = STEP_FRAMES) -> list:
    """``frames`` (bytes) ``step`` at a time, each step once the node accepted the one before
    (``accepted(i)``: frames it must have accepted once ``i`` went; default ``i - 10``); the
    status after each step."""
    writer = Writer(pty, speed=0)
    seen = []
    for start in range(0, len(frames), step):
        for frame in frames[start:start + step]:
            writer.send(frame, 0)
        want = accepted(start + step) if accepted else min(start + step, len(frames)) - 10
        seen.append(wait_status(folder / "status.json", proc, lambda s, n=want: s["pipeline"]["frames"] >= n,
                                f"accept {want} frames", timeout_s=120))
    return seen


def quake_frames(rng, minutes: float, every_s: float = 120.0, t0_us: int = MIDNIGHT_US) -> list[bytes]:
    """Frames of ``minutes`` of self-noise with a synthetic quake every ``every_s`` (P 10 s in)."""
    from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
    from host_training.synthetic import parametric as synth

    parts = [synth.earthquake(rng, duration_s=every_s, fs=RATE_HZ, p_s=10.0, pga_mps2=0.3, sp_s=4.0).data
             for _ in range(int(round(minutes * 60 / every_s)))]
    data = np.concatenate(parts, axis=1)
    return [f for _, _, f in count_frames(np.round(data * ADXL355_COUNTS_PER_MPS2).astype(np.int32), RATE_HZ,
                                          t0_us)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class StreamClients:
    """``n`` raw SeedLink clients streaming ``DATA`` on one selector, and one that asks for the
    stream and never reads (a 4 kB receive buffer)."""

    def __init__(self, address: str, n: int):
        import selectors

        host, port = address.rsplit(":", 1)
        self.selector = selectors.DefaultSelector()
        self.received = {}
        for _ in range(n):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"STATION ST01 XX\r\nDATA\r\nEND\r\n")
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.received[sock] = bytearray()
        self.deaf = socket.create_connection((host, int(port)), timeout=10)
        self.deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.deaf.sendall(b"STATION ST01 XX\r\nDATA\r\nEND\r\n")
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopped.is_set():
            for key, _ in self.selector.select(0.2):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                if data:
                    self.received[key.fileobj] += data

    def packets(self) -> list[list[bytes]]:
        """Each client's packets (the 8-byte SeedLink header and its 512-byte record), in order."""
        out = []
        for data in list(self.received.values()):
            assert data[:8] == b"OK\r\nOK\r\n", bytes(data[:40])
            body = bytes(data[8:])
            out.append([body[i:i + 520] for i in range(0, len(body) - len(body) % 520, 520)])
        return out

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        for sock in [*self.received, self.deaf]:
            sock.close()


def test_a_node_with_every_output_under_load_listens_on_loopback_only(tiny_model, tmp_path):
    """Archive, SeedLink, MQTT (a real Mosquitto) and the status page on together; 50 SeedLink
    clients streaming and one that never reads, while the node classifies a quake-laden
    stream: its windows keep coming, every client gets every record, the deaf one is dropped
    with one line, and nothing listens beyond 127.0.0.1."""
    from tools.bench.outputs import PagePoller, start_mosquitto

    broker, broker_port = start_mosquitto(tmp_path / "broker")
    config = tmp_path / "node.toml"
    config.write_text(IDENTITY + f'[detector]\ntrigger_prob = 0.0\n[archive]\npath = "{tmp_path / "sds"}"\n'
                      '[seedlink]\nlisten = "127.0.0.1:0"\nclient_timeout_s = 2.0\n'
                      f'[mqtt]\nbroker = "mqtt://127.0.0.1:{broker_port}"\nqueue = "{tmp_path / "q"}"\n'
                      '[web]\nlisten = "127.0.0.1:0"\n')
    frames = quake_frames(np.random.default_rng(7), 12.0, every_s=60.0)
    try:
        with node_on_pty(tiny_model["sim"], tmp_path / "events.jsonl", tmp_path / "status.json", "--config",
                         str(config), "--status-every-s", "0.05", cwd=REPO, grace_s=0) as (proc, pty):
            wait_ready(tmp_path, proc)
            status = wait_status(tmp_path / "status.json", proc, lambda s: "seedlink" in s and "web" in s
                                 and s.get("mqtt_connected"), "open its ports and reach the broker")
            assert {a for a, _ in listening(proc.pid)} == {"127.0.0.1"}, listening(proc.pid)
            assert sorted(p for _, p in listening(proc.pid)) == sorted(
                int(status[k]["listen"].rsplit(":", 1)[1]) for k in ("seedlink", "web"))
            clients = StreamClients(status["seedlink"]["listen"], 50)
            poller = PagePoller(status["web"]["listen"], period_s=0.5)
            poller.start()
            wait_status(tmp_path / "status.json", proc, lambda s: s["seedlink"]["clients_streaming"] == 51,
                        "stream to 51 clients")
            seen = feed_in_steps(tmp_path, proc, pty, frames)
            packets = []  # the clients' packets as the final status found them: more may come after

            def delivered(s):
                packets[:] = clients.packets()
                return s["pipeline"]["frames"] == s["decoder"]["frames"] == len(frames) \
                    and s["mqtt_sent"] > 0 and s["seedlink"]["clients_dropped"] == 1 \
                    and s["seedlink_dropped"] == 0 \
                    and all(len(p) == s["seedlink"]["records"] for p in packets)

            final = wait_status(tmp_path / "status.json", proc, delivered, "accept every frame, send every "
                                "record to the 50 readers and drop the deaf one", timeout_s=120)
            poller.stop()
            clients.close()
            output = stop(proc)
    finally:
        broker.terminate()
        broker.wait(10)
    assert proc.returncode == 0, output
    windows = [s["pipeline"]["windows"] for s in seen]
    assert all(b > a for a, b in zip(windows, windows[1:], strict=False)), windows  # they keep coming
    assert final["pipeline"]["frames"] == final["decoder"]["frames"] == len(frames)
    assert final["pipeline"]["windows"] >= (len(frames) * 10 - 200) // 25  # every step of 0.25 s
    assert all(p == packets[0] for p in packets) and len(packets[0]) == final["seedlink"]["records"] > 100
    assert final["pipeline"]["events"] >= 10 and final["mqtt_sent"] > 0
    assert poller.failures == 0 and poller.requests > 0
    drops = [line for line in output.splitlines() if "dropped client" in line]
    assert len(drops) == 1 and "read nothing for 2 s" in drops[0], drops


@pytest.mark.parametrize("listen", ["0.0.0.0:0"])
def test_the_listening_check_sees_a_server_opened_to_the_network(tiny_model, tmp_path, listen):
    """The check above can fail: a config that asks for every interface gets it, and says so."""
    config = tmp_path / "node.toml"
    config.write_text(IDENTITY + f'[seedlink]\nlisten = "{listen}"\n')
    with node_on_pty(tiny_model["sim"], tmp_path / "events.jsonl", tmp_path / "status.json", "--config",
                     str(config), "--status-every-s", "0.05", cwd=REPO, grace_s=0) as (proc, _pty):
        wait_ready(tmp_path, proc)
        wait_status(tmp_path / "status.json", proc, lambda s: "seedlink" in s, "open its SeedLink port")
        assert [a for a, _ in listening(proc.pid)] == ["0.0.0.0"]
        stop(proc)


def wait_for_messages(sub, kinds: tuple, n: int, timeout_s: float = 60.0) -> None:
    """Until the test's MQTT subscriber ``sub`` holds ``n`` messages of the ``kinds`` (the last
    part of their topics)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with sub.lock:
            got = sum(t.rsplit("/", 1)[-1] in kinds for t, _, _ in sub.messages)
        if got >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"the subscriber got {got} of {n} {'/'.join(kinds)} messages in {timeout_s} s")


def test_mqtt_broker_down_for_an_hour_keeps_the_queue_bound_and_memory(tiny_model, tmp_path):
    """The broker goes away for an hour of data with a quake every two minutes: the node goes
    on classifying, the disk queue stops at queue_max (the oldest dropped, counted, said
    once), the broker's absence is said once, memory stays flat; when the broker returns,
    the queue left goes out in order."""
    from test_mqtt import PREFIX, Broker, Subscriber

    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port)  # a persistent session: the broker keeps its messages while away
    broker.stop()
    queue_max = 40
    config = tmp_path / "node.toml"
    config.write_text(IDENTITY + f'[detector]\ntrigger_prob = 0.0\n[mqtt]\nbroker = "{broker.url}"\n'
                      f'queue = "{tmp_path / "q"}"\nqueue_max = {queue_max}\nreconnect_max_s = 1.0\n')
    frames = quake_frames(np.random.default_rng(8), 60.0)
    try:
        with node_on_pty(tiny_model["sim"], tmp_path / "events.jsonl", tmp_path / "status.json", "--config",
                         str(config), "--status-every-s", "0.05", "--step-s", "1.0", cwd=REPO,
                         grace_s=0) as (proc, pty):
            wait_ready(tmp_path, proc)
            rss = []
            quarter = len(frames) // 4
            for k in range(4):  # a quarter of the hour at a time
                feed_in_steps(tmp_path, proc, pty, frames[k * quarter:(k + 1) * quarter],
                              accepted=lambda i, k=k: k * quarter + min(i, quarter) - 10)
                rss.append(rss_mib(proc.pid))
            # The MQTT worker queues (and drops) a record after the loop counted it: wait until
            # it has caught up with every trigger, event and pick the status counts.
            status = wait_status(tmp_path / "status.json", proc,
                                 lambda s: s["pipeline"]["frames"] == len(frames)
                                 and s["mqtt_queued"] == queue_max and s["mqtt_dropped"] == 0
                                 and s["mqtt_queue_dropped"] == s["pipeline"]["triggers"]
                                 + s["pipeline"]["events"] + s["mqtt_picks"] - queue_max,
                                 "accept every frame, fill its queue and drop the oldest of the rest",
                                 timeout_s=120)
            assert status["pipeline"]["frames"] == len(frames) and status["pipeline"]["events"] >= 25, status
            made = status["pipeline"]["triggers"] + status["pipeline"]["events"] + status["mqtt_picks"]
            assert status["mqtt_queue_dropped"] == made - queue_max > 0, status
            assert not status["mqtt_connected"]
            assert len(list((tmp_path / "q").glob("*.json"))) == queue_max
            assert max(rss) - rss[0] < 8.0, rss  # MiB: nothing grows with the outage
            broker.start()
            expected = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
            wait_status(tmp_path / "status.json", proc, lambda s: s["mqtt_queued"] == 0, "send its queue",
                        timeout_s=60)
            # Acknowledged by the broker is not yet delivered: the subscriber reconnects on its own.
            wait_for_messages(sub, ("trigger", "event", "pick"), queue_max)
            output = stop(proc)
    finally:
        sub.close()
        broker.stop()
    assert proc.returncode == 0, output
    assert len([ln for ln in output.splitlines() if "unreachable" in ln]) == 1, output[-3000:]
    assert len([ln for ln in output.splitlines() if f"full ({queue_max} messages)" in ln]) == 1, output
    got = [(t, json.loads(p)) for t, p, _ in sub.messages
           if t.rsplit("/", 1)[-1] in ("trigger", "event", "pick")]
    assert len(got) == queue_max, [t for t, _ in got]
    records = [r for t, r in got if not t.endswith("/pick")]
    assert records == [r for r in expected if r in records]  # in the order they were written
    assert records[-1] == expected[-1] and all(t.startswith(PREFIX) for t, _ in got)


def test_a_full_disk_under_the_archive_loses_nothing_the_node_accepted(tiny_model, tmp_path):
    """Every day file of the archive refuses writes (/dev/full: ENOSPC) for ten minutes of
    data: the node goes on classifying, says so once with the cause, keeps the records in
    memory (bounded); once there is space again they are written, and ObsPy reads back every
    sample sent."""
    sds = tmp_path / "sds"
    for cha in CHANNELS:
        day = sds / f"2026/XX/ST01/{cha}.D/XX.ST01..{cha}.D.2026.001"
        day.parent.mkdir(parents=True)
        day.symlink_to("/dev/full")
    counts = walk(np.random.default_rng(9), 60_000)
    frames = [f for _, _, f in count_frames(counts, RATE_HZ, MIDNIGHT_US)]
    config = tmp_path / "node.toml"
    config.write_text(IDENTITY + f'[archive]\npath = "{sds}"\n')
    with node_on_pty(tiny_model["sim"], tmp_path / "events.jsonl", tmp_path / "status.json", "--config",
                     str(config), "--status-every-s", "0.05", cwd=REPO, grace_s=0) as (proc, pty):
        wait_ready(tmp_path, proc)
        seen = feed_in_steps(tmp_path, proc, pty, frames)
        status = wait_status(tmp_path / "status.json", proc, lambda s: s["pipeline"]["frames"] == len(frames)
                             and s["archive_disk_error"] is not None, "accept every frame")
        assert status["archive_disk_error"] == "No space left on device (ENOSPC)", status
        assert 0 < status["archive_backlog"] <= 8192 and status["archive_records_dropped"] == 0, status
        windows = [s["pipeline"]["windows"] for s in seen]
        assert all(b > a for a, b in zip(windows, windows[1:], strict=False)), windows
        for cha in CHANNELS:  # space again
            (sds / f"2026/XX/ST01/{cha}.D/XX.ST01..{cha}.D.2026.001").unlink()
        wait_status(tmp_path / "status.json", proc, lambda s: s["archive_backlog"] == 0
                    and s["archive_disk_error"] is None, "write its backlog", timeout_s=30)
        output = stop(proc)
    assert proc.returncode == 0, output
    errors = [ln for ln in output.splitlines() if "cannot write" in ln]
    assert len(errors) == 1 and "No space left on device" in errors[0], output[-3000:]
    archived = traces_samples(obspy.read(str(sds / "2026/XX/ST01/*.D/*")))
    assert archived == samples_of(counts, MIDNIGHT_US, range(len(frames)))


def test_a_quota_smaller_than_a_day_keeps_the_current_day_and_says_so_once(tiny_model, tmp_path):
    """quota_mb far below a day of records, ten minutes either side of midnight: the day
    before is deleted once the new one starts, the current day is kept whole (beyond the
    quota, said once), and the node classifies throughout."""
    sds = tmp_path / "sds"
    counts = walk(np.random.default_rng(10), 120_000)
    t0 = MIDNIGHT_US - 600_000_000
    frames = [f for _, _, f in count_frames(counts, RATE_HZ, t0)]
    config = tmp_path / "node.toml"
    config.write_text(IDENTITY + f'[archive]\npath = "{sds}"\nquota_mb = 0.05\n')
    with node_on_pty(tiny_model["sim"], tmp_path / "events.jsonl", tmp_path / "status.json", "--config",
                     str(config), "--status-every-s", "0.05", cwd=REPO, grace_s=0) as (proc, pty):
        wait_ready(tmp_path, proc)
        feed_in_steps(tmp_path, proc, pty, frames)
        status = wait_status(tmp_path / "status.json", proc, lambda s: s["pipeline"]["frames"] == len(frames)
                             and s["archive_days_deleted"] == 1, "delete the day before")
        assert status["pipeline"]["windows"] >= (len(frames) * 10 - 200) // 25
        output = stop(proc)
    assert proc.returncode == 0, output
    assert sorted(p.name[-3:] for p in sds.glob("*/*/*/*.D/*")) == ["001"] * 3
    said = [ln for ln in output.splitlines() if "larger than quota_mb" in ln]
    assert len(said) == 1, output[-3000:]
    archived = traces_samples(obspy.read(str(sds / "2026/XX/ST01/*.D/*")))
    assert archived == samples_of(counts, t0, range(len(frames) // 2, len(frames)))


# ------------------------------------------------------------------ the benchmark, quick
def test_outputs_benchmark_quick_mode_measures_both_nodes_with_every_output_busy(tiny_model, tmp_path):
    """`make bench`'s outputs benchmark in its quick mode: both nodes detect every quake, the
    four outputs did their work, and the figures are written (no timing is asserted)."""
    from tools.bench.outputs import describe, run
    from tools.bench.suite import BENCHES

    assert "outputs" in BENCHES
    latency, cpu = run(tmp_path, np.random.default_rng(0), quick=True, model=tiny_model["sim"])
    assert len(latency["latencies_off_s"]) == len(latency["latencies_on_s"]) == latency["quakes"] == 2
    assert latency["baseline_s"] > 0 and latency["candidate_s"] > 0 and latency["exit_codes"] == [0, 0]
    assert cpu["baseline_s"] > 0 and cpu["candidate_s"] > 0 and cpu["rss_peak_on_mib"] > 0
    act = latency["activity"]
    assert act["seedlink_packets_read"] > 0 and act["web_requests"] > 0 and act["web_failures"] == 0
    assert act["counters"]["archive_records"] > 0 and act["counters"]["mqtt_sent"] > 0
    assert json.loads((tmp_path / "outputs" / "outputs.json").read_text())[0]["name"] == latency["name"]
    assert "RSS peak" in describe([latency, cpu])


# ------------------------------------------------------------------ the install bundle
def test_bundle_ships_the_network_wheels_when_its_config_needs_them(tiny_model, tmp_path):
    """A node config with [archive] (or --network) puts the network extra in the bundle's
    requirements, and its wheels (pymseed, paho-mqtt and what they need) install offline from
    the bundle alone; the default config ships none of them."""
    import importlib.metadata as md
    import tarfile

    from edge_runtime.requirements import extra_requirements, requirement_name
    from tools.deploy.bundle import _installed_closure, build_bundle, repack_wheel

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for dist in [md.distribution("pyserial"), *_installed_closure(extra_requirements("network"))]:
        repack_wheel(dist, wheels)
    network = {requirement_name(r) for r in extra_requirements("network")}
    assert network == {"pymseed", "paho-mqtt"}
    config = tmp_path / "node.toml"
    config.write_text(IDENTITY + 'port = "/dev/ttyACM0"\n[archive]\npath = "/var/lib/seismictorch/sds"\n')

    def bundle(name, **kw):
        from _helpers import ARCH, HOST_PY

        return build_bundle(tmp_path / name, model=tiny_model["float"], platform_tag=f"manylinux_2_17_{ARCH}",
                            python_version=HOST_PY, version="1.0", wheelhouse=wheels, compresslevel=1, **kw)

    plain, forced, archive = bundle("plain"), bundle("forced", network=True), bundle("archive", config=config)
    assert not network & set(plain["requirements"])
    assert network <= set(forced["requirements"]) and network <= set(archive["requirements"])
    with tarfile.open(archive["path"]) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (top,) = (tmp_path / "unpacked").iterdir()
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                          str(top / "wheels"), "--target", str(target), *sorted(network)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    probe = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path[:0] = [sys.argv[1]]; "
                            "import pymseed, paho.mqtt.client; print(pymseed.__file__)", str(target)],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.startswith(str(target)), probe.stderr
