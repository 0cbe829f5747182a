"""The node as a SeedLink client (``[node] source = "seedlink"``).

The server is the node's own (:mod:`edge_runtime.network.seedlink`) on 127.0.0.1, its ring
filled with 512-byte Steim-2 records packed by libmseed as it packs a node's counts; the
records are appended while the client reads, as a live station's are. A restart of the
server is a new server on the same port whose ring holds what a restarted server would:
part of what was sent before, not what came while it was down, and what came after.
Servers that send garbage or stall are small socket servers of the test's own.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymseed")

from edge_runtime.config import ConfigError, NodeConfig  # noqa: E402
from edge_runtime.network.miniseed import RecordPacker, record_info  # noqa: E402
from edge_runtime.network.ring import PacketRing  # noqa: E402
from edge_runtime.network.seedlink import SeedLinkServer  # noqa: E402
from edge_runtime.network.seedlink_client import SeedLinkFrames, decode_record, parse_streams  # noqa: E402
from edge_runtime.network.slproto import StationInfo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAPA = REPO.parent / "shared" / "realdata" / "napa_2014"
T0_US = 1_767_225_600_000_000  # 2026-01-01
RATE_HZ = 100.0
CHANNELS = ("HNE", "HNN", "HNZ")
STATION = StationInfo("XX", "ST01", "test station", tuple(("", c) for c in CHANNELS + ("HHZ", "HN2")))


class Config:
    """What SeedLinkFrames reads of a NodeConfig."""

    def __init__(self, server: str, **kw):
        self.seedlink_server = server
        self.seedlink_streams = ["XX_ST01:HN?"]
        self.channels = list(CHANNELS)
        self.seedlink_state = None
        self.seedlink_timeout_s = 5.0
        self.seedlink_reconnect_max_s = 1.0
        self.__dict__.update(kw)


def records_of(counts: np.ndarray, t0_us: int = T0_US, rate_hz: float = RATE_HZ, channels=CHANNELS) -> list:
    """512-byte records of ``counts`` (n, 3), in the order a live packer completes them."""
    packer = RecordPacker("XX", "ST01", "", channels)
    out = []
    for k in range(0, len(counts), 10):
        out += packer.push(t0_us + round(k * 1e6 / rate_hz), rate_hz, counts[k:k + 10])
    return out + packer.flush()


def serve(records=(), port: int = 0) -> SeedLinkServer:
    ring = PacketRing(4096)
    server = SeedLinkServer(ring, [STATION], f"127.0.0.1:{port}", client_timeout_s=30)
    for record in records:
        ring.append(record_info(record), record)
    return server


def append(server: SeedLinkServer, records, pause_s: float = 0.0) -> None:
    for record in records:
        server.ring.append(record_info(record), record)
        if pause_s:
            time.sleep(pause_s)


def read_until(source, done, timeout_s: float = 30.0) -> list:
    frames, deadline = [], time.monotonic() + timeout_s
    while not done(frames):
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(frames)} frames in {timeout_s} s: {source.counters()}")
        frames += source.read().frames
    return frames


def wait_for(condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def samples_by_time(frames) -> dict:
    """Sample index (from T0_US at RATE_HZ) -> counts row, of every frame; no index twice."""
    out = {}
    for frame in frames:
        k0 = round((frame.timestamp_us - T0_US) * RATE_HZ / 1e6)
        for i, row in enumerate(frame.samples):
            assert k0 + i not in out, "a sample delivered twice"
            out[k0 + i] = row
    return out


@pytest.fixture
def counts():
    rng = np.random.default_rng(7)
    return np.cumsum(rng.integers(-300, 300, size=(12_000, 3)), axis=0).astype(np.int32)


# ------------------------------------------------------------------ config
def test_streams_name_one_station_and_accelerometer_channels():
    assert parse_streams(["CE_68150:HN?"]) == ("CE", "68150", ["HN?"])
    assert parse_streams(["AM_R1234:00EN? !ENN.D", "AM_R1234"]) == ("AM", "R1234", ["00EN?", "!ENN.D"])
    for bad, why in [(["CE68150"], "expected NET_STA"), (["CE_68150:HH?"], "not accelerometer channels"),
                     (["CE_1:HN?", "CE_2:HN?"], "one station"), (["CE_1:HNZZZZ"], "bad selector")]:
        with pytest.raises(ValueError, match=why):
            parse_streams(bad)
    with pytest.raises(ConfigError, match=r"streams = \['AM_R1:EH\?'\]: EH\?: not accelerometer"):
        NodeConfig(model="m", source="seedlink", seedlink_server="h:18000", seedlink_streams=["AM_R1:EH?"])
    with pytest.raises(ConfigError, match="set \\[seedlink_client\\] server and streams"):
        NodeConfig(model="m", source="seedlink", seedlink_server="h:18000")
    config = NodeConfig(model="m", source="seedlink", seedlink_server="h:18000",
                        seedlink_streams=["CE_1:HN?"])
    assert config.port is None


def test_a_record_is_decoded_by_libmseed(counts):
    record = records_of(counts[:2000])[0]
    loc, cha, stream, start_ns, rate, samples = decode_record(record)
    assert (loc, cha, stream, start_ns, rate) == ("", "HNE", "XX_ST01", T0_US * 1000, RATE_HZ)
    assert np.array_equal(samples, counts[:len(samples), 0]) and samples.dtype == np.int32
    for bad in [b"\0" * 512, b"x" * 512, record[:64] + b"\xff" * 448]:
        with pytest.raises(ValueError):
            decode_record(bad)


# ------------------------------------------------------------------ a live server
def test_the_live_stream_becomes_the_exact_frames(counts):
    server = serve()
    source = SeedLinkFrames(Config("%s:%d" % server.address), 3, 0.2, None)
    try:
        wait_for(lambda: server.n_streaming == 1, "the client's stream")
        records = records_of(counts)
        append(server, records)
        frames = read_until(source, lambda f: len(f) >= 470)
    finally:
        source.close()
        server.close()
    got = samples_by_time(frames)
    assert min(got) == 0 and all(np.array_equal(row, counts[k]) for k, row in got.items())
    assert sorted(got) == list(range(len(got)))  # contiguous
    c = source.counters()["seedlink_client"]
    # Every packet received became a record, or still waits in the reader's queue (the loop
    # stopped reading at 470 frames while the reader thread went on), or is the one packet the
    # reader held when close() stopped it (counted on arrival, never queued).
    waiting = source.reader.records.qsize()
    assert c["connected"] is False and c["records_bad"] == 0 and c["frames_incomplete"] == 0
    assert 0 <= c["packets_received"] - c["records"] - waiting <= 1, (c, waiting)


def test_a_server_restart_resumes_with_no_sample_twice_and_a_gap_only_where_data_is_missing(counts, tmp_path):
    records = records_of(counts)
    info = [record_info(r) for r in records]
    before, after = records[:60], records[75:]  # 60 to 74 come while the server is down
    server = serve()
    host, port = server.address
    state = tmp_path / "seedlink.json"
    source = SeedLinkFrames(Config(f"{host}:{port}", seedlink_state=str(state)), 3, 0.2, None)
    try:
        wait_for(lambda: server.n_streaming == 1, "the client's stream")
        append(server, before, pause_s=0.002)
        frames = read_until(source, lambda f: source.counters()["seedlink_client"]["records"] >= 60)
        server.close()  # the server goes down; what it had was sent
        wait_for(lambda: not source.reader.connected, "the client to see it")
        # Restarted: it kept the last records it had (an archive), lost those of its downtime.
        server = serve(before[45:], port=port)
        wait_for(lambda: source.reader.connected, "the client to reconnect", timeout_s=60)
        append(server, after, pause_s=0.002)
        end_us = T0_US + round((len(counts) - 700) * 1e6 / RATE_HZ)  # all but the records still open
        frames += read_until(source, lambda f: f and f[-1].timestamp_us >= end_us, timeout_s=60)
    finally:
        source.close()
        server.close()
    c = source.counters()["seedlink_client"]
    assert c["connections"] == 2 and c["reconnects"] >= 1
    assert c["samples_duplicate"] + c["samples_late"] > 0  # the restarted server sent some again: dropped
    got = samples_by_time(frames)
    assert all(np.array_equal(row, counts[k]) for k, row in got.items())  # nothing invented or moved
    missing = set()
    for i in info[60:75]:
        k = round((i.start_ns / 1000 - T0_US) * RATE_HZ / 1e6)
        missing.update(range(k, k + i.n_samples))
    last = max(got)
    lost_at = sorted(k for k in range(min(got), last) if k not in got)
    frame_n = source.aligner.frame_n
    assert lost_at and set(lost_at) >= {k for k in missing if k < last}
    # Only frames that held a missing sample are absent.
    assert all(any(k // frame_n == m // frame_n for m in missing) for k in lost_at)
    kept = json.loads(state.read_text())
    assert kept["stream"] == "XX_ST01" and kept["sequence"] == c["last_sequence"]


def test_channels_of_another_instrument_are_dropped_and_a_rate_change_restarts(counts, caplog):
    server = serve()
    source = SeedLinkFrames(Config("%s:%d" % server.address, seedlink_streams=["XX_ST01"]), 3, 0.2, None)
    try:
        wait_for(lambda: server.n_streaming == 1, "the client's stream")
        append(server, records_of(counts[:3000]))
        append(server, records_of(counts[:1000, :2], channels=("HHZ", "HN2")))  # velocity; E taken by HNE
        append(server, records_of(counts[3000:6000], T0_US + 30_000_000, 50.0))
        frames = read_until(source, lambda f: source.aligner.rate_hz == 50.0 and len(f) >= 140)
    finally:
        source.close()
        server.close()
    c = source.counters()["seedlink_client"]
    assert c["records_not_acceleration"] > 0 and c["records_other_channel"] > 0 and c["restarts"] == 1
    assert {f.sampling_rate_hz for f in frames} == {100.0, 50.0}
    assert "HHZ is not an accelerometer channel" in caplog.text
    assert "component E is read from .HNE" in caplog.text
    assert "sampling rate changed from 100 to 50 Hz; stream restarted" in caplog.text


# ------------------------------------------------------------------ servers that misbehave
class BadServer:
    """Answers the handshake, then sends ``stream`` (bytes) and stays silent."""

    def __init__(self, stream: bytes):
        self.stream = stream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        buffer = b""
        with conn:
            while b"END\r\n" not in buffer:
                data = conn.recv(1024)
                if not data:
                    return
                buffer += data
                while b"\r\n" in buffer and not buffer.startswith(b"END"):
                    line, buffer = buffer.split(b"\r\n", 1)
                    conn.sendall(b"SeedLink v3.1\r\ntest\r\n" if line == b"HELLO" else b"OK\r\n")
            conn.sendall(self.stream)
            time.sleep(30)

    def close(self):
        self.listener.close()


def test_garbage_from_the_server_is_one_line_and_the_client_connects_again(counts, caplog):
    good = records_of(counts[:2000])[:3]
    stream = b"SL000001" + good[0] + b"SL000002" + b"\xaa" * 512 + b"SL000003" + good[1] + \
        b"GARBAGE!" + b"x" * 600
    server = BadServer(stream)
    source = SeedLinkFrames(Config("127.0.0.1:%d" % server.address[1]), 3, 0.2, None)
    try:
        wait_for(lambda: server.connections >= 2, "a second connection", timeout_s=30)
        c = source.counters()["seedlink_client"]
    finally:
        source.close()
        server.close()
    assert c["records_bad"] >= 1 and c["garbage"] >= 1 and c["packets_received"] >= 3
    assert source.reader.records.qsize() >= 2  # the good records before the garbage
    assert "not a SeedLink packet" in caplog.text and "not a miniSEED record" in caplog.text


def test_a_stalled_server_is_left_after_the_timeout(caplog):
    caplog.set_level(logging.INFO)
    server = BadServer(b"")
    source = SeedLinkFrames(Config("127.0.0.1:%d" % server.address[1], seedlink_timeout_s=1.0), 3, 0.2, None)
    try:
        wait_for(lambda: server.connections >= 2, "a connection after the stall", timeout_s=30)
        c = source.counters()["seedlink_client"]
    finally:
        source.close()
        server.close()
    assert c["stalls"] >= 1
    assert "no data for 1 s: connecting again" in caplog.text


def test_an_unreachable_server_is_retried_and_the_node_goes_on(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = SeedLinkFrames(Config(f"127.0.0.1:{port}"), 3, 0.1, None)
    try:
        assert source.read().frames == []
        wait_for(lambda: source.reader.counts["reconnects"] >= 1, "a second attempt")
    finally:
        source.close()
    assert "Connection refused" in caplog.text


# ------------------------------------------------------------------ a real node
def napa_records() -> list[bytes]:
    obspy = pytest.importorskip("obspy")
    if not NAPA.exists():
        pytest.skip("../shared/realdata is not here")
    stream = obspy.read(str(NAPA / "CE.68150.mseed"))
    data = np.stack([tr.data for tr in stream], axis=1).astype(np.int32)  # HNE, HNN, HNZ counts
    t0_us = int(stream[0].stats.starttime.ns // 1000)
    packer = RecordPacker("CE", "68150", "", CHANNELS)
    out = []
    for k in range(0, len(data), 40):
        out += packer.push(t0_us + k * 5000, 200.0, data[k:k + 40])
    return out + packer.flush()


def test_a_real_node_detects_the_napa_quake_served_over_seedlink(tiny_model, tmp_path):
    from _helpers import wait_status
    from conftest import PYTHON, python_env, stop

    records = napa_records()
    ring = PacketRing(8192)
    server = SeedLinkServer(ring, [StationInfo("CE", "68150", "Napa", tuple(("", c) for c in CHANNELS))],
                            "127.0.0.1:0")
    host, port = server.address
    cmd = [PYTHON, "-m", "edge_runtime", "run", "--source", "seedlink", "--seedlink-server", f"{host}:{port}",
           "--seedlink-streams", "CE_68150:HN?", "--channels", *CHANNELS, "--counts-per-mps2", "213744",
           "--model", str(tiny_model["sim"]), "--events", str(tmp_path / "events.jsonl"),
           "--status", str(tmp_path / "status.json"), "--status-every-s", "0.2", "--idle-exit-s", "4"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_status(tmp_path / "status.json", proc, lambda s: s["seedlink_client"]["connected"],
                    "connect to the SeedLink server")
        append(server, records)
        output, _ = proc.communicate(timeout=180)
    finally:
        stop(proc)
        server.close()
    assert proc.returncode == 0, output
    final = json.loads((tmp_path / "status.json").read_text())
    client, pipeline = final["seedlink_client"], final["pipeline"]
    assert client["records"] == len(records) and client["records_bad"] == 0
    assert client["frames_incomplete"] == 0
    assert pipeline["frames_lost"] == 0 and pipeline["frames_rejected"] == 0 and final["gaps"] == 0
    assert pipeline["frames"] * 50 >= 23_800 - 100  # 2 min at 200 Hz, all but the frame still open
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    quake = [e for e in events if e["type"] == "event"]
    assert quake and quake[0]["pga_mps2"] > 1.0
    assert f"seedlink: reading CE_68150 HN? from {host}:{port}" in output
