"""The Raspberry Shake UDP input (``[node] source = "shake-udp"``) and the channel aligner.

The real-node test packetises the Napa record of ``../shared/realdata`` with rsudp's own
``rsudp.packetize.packetize`` (counts as a Shake's accelerometer gives them) and sends
its lines over UDP as rsudp's ``TestData`` does (the lines of one time stamp at once,
then the next), faster than real time, with repeats, swaps and foreign datagrams mixed
in. rsudp 2.x's ``c_settings.py`` is written in Python 3.12's f-string syntax; on 3.11
``rsudp.test`` (which packetize imports for its ``TEST`` flags only) cannot be imported,
so there the test registers ``rsudp.test`` as a module holding that dictionary alone
before importing ``rsudp.packetize``; the packetising code itself runs unchanged.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.alignment import ChannelAligner, component_of_channel
from edge_runtime.config import ConfigError, NodeConfig
from edge_runtime.logs import LimitedLog
from edge_runtime.sequencing import StreamSequencer
from edge_runtime.shake_udp import RateMeter, ShakeUDP, check_channels, parse_packet

REPO = Path(__file__).resolve().parents[1]
NAPA = REPO.parent / "shared" / "realdata" / "napa_2014"
T0_US = 1_600_000_000_000_000
RS4D_COUNTS_PER_MPS2 = 384500.0


def packets(data: np.ndarray, t0_us: int = T0_US, rate_hz: float = 100.0, n: int = 25, comps="ENZ"):
    """``(component, t0_us, rate_hz, counts)`` of each channel's packets, time by time."""
    return [(comp, t0_us + round(k * 1e6 / rate_hz), rate_hz, data[k:k + n, c])
            for k in range(0, len(data) - n + 1, n) for c, comp in enumerate(comps)]


def run_aligner(items, aligner=None, dt_s: float = 0.08):
    aligner = aligner or ChannelAligner("ENZ")
    frames, now = [], 0.0
    for comp, t, rate, counts in items:
        frames += aligner.push(comp, t, rate, counts, now)
        now += dt_s
    return aligner, frames + aligner.poll(now + 100.0)


def delivered(frames):
    sequencer = StreamSequencer()
    out = []
    for frame in frames:
        out += sequencer.push(frame)
    return sequencer, out + sequencer.drain()


# ------------------------------------------------------------------ packets
def test_rsudp_packet_is_read_and_anything_else_refused():
    line = b"{'EHZ', 1582315130.292, 14168, 14927, -16112}"
    assert parse_packet(line) == ("EHZ", 1_582_315_130_292_000, [14168, 14927, -16112])
    assert parse_packet(b"{'ENZ', 1582315130.25, 1}\n")[1] == 1_582_315_130_250_000
    for bad in [b"TERM", b"", b"\xff\xfe{'ENZ', 1.0, 1}", b"{'ENZ', 1.0}", b"{'ENZ', x, 1}", b"{ENZ, 1.0, 1}",
                b"{'ENZ', 1.0, 1, 2", b"{'ENZZ', 1.0, 1}", b"{'ENZ', 1.0, 99999999999}", b"{'ENZ', 1.0, 1.5}",
                b"{'ENZ', 1.0, 1}" + b"0" * 5000]:
        with pytest.raises(ValueError):
            parse_packet(bad)


def test_rate_is_measured_as_rsudp_does_and_a_lost_packet_does_not_fool_it():
    meter = RateMeter()
    times = [T0_US + k * 250_000 for k in (0, 1, 2, 3)]
    assert [meter.update(t, 25) for t in times] == [None, None, None, 100.0]
    assert meter.update(T0_US + 5 * 250_000, 25) == 100.0  # one packet lost: spacing 0.5 s, ignored
    assert meter.update(T0_US + 2 * 250_000, 25) == 100.0  # late: says nothing
    for k in range(4):  # 25 samples every 0.5 s: 50 Hz, once three spacings agree
        meter.update(T0_US + 6 * 250_000 + (k + 1) * 500_000, 25)
    assert meter.rate_hz == 50.0


def test_velocity_channels_are_refused_with_one_line():
    assert check_channels(["ene", "ENN", "ENZ"]) == ["ENE", "ENN", "ENZ"]
    with pytest.raises(ConfigError, match=r"EHZ is not an accelerometer channel .*geophones: velocity.*"
                                          r"ENE, ENN, ENZ$"):
        NodeConfig(model="m.onnx", source="shake-udp", shake_channels=["ENE", "ENN", "EHZ"])
    with pytest.raises(ConfigError, match="one channel per component"):
        NodeConfig(model="m.onnx", source="shake-udp", shake_channels=["ENE", "ENE", "ENZ"])
    cmd = [sys.executable, "-m", "edge_runtime", "run", "--source", "shake-udp", "--shake-channels", "SHZ",
           "ENN", "ENE", "--model", "m.onnx"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "SHZ is not an accelerometer" in result.stderr


def test_a_shake_source_needs_no_serial_port_and_takes_the_shakes_scale():
    config = NodeConfig(model="m.onnx", source="shake-udp")
    assert config.port is None and config.sensor == "rs4d-2g"
    assert config.counts_per_mps2 == RS4D_COUNTS_PER_MPS2
    with pytest.raises(ConfigError, match="port: required"):
        NodeConfig(model="m.onnx")


# ------------------------------------------------------------------ aligner
def test_components_follow_the_orientation_letter():
    assert [component_of_channel(c) for c in ("ENE", "HN1", "HN2", "HNZ", "HNX", "EN")] == \
        ["E", "N", "E", "Z", None, None]


def test_reordered_and_repeated_packets_give_the_stream_exactly_once(rng):
    data = rng.integers(-2**23, 2**23, (2000, 3)).astype(np.int32)
    items = packets(data)
    order = list(range(len(items)))
    for i in range(0, len(order) - 5, 7):  # swap packets up to 4 places apart
        order[i], order[i + 4] = order[i + 4], order[i]
    repeats = [items[10], items[11], items[200], items[-1]]  # right after, and long after
    shuffled = [items[i] for i in order]
    shuffled[20:20] = repeats[:2]
    aligner, frames = run_aligner(shuffled + repeats[2:])
    assert np.array_equal(np.concatenate([f.samples for f in frames]), data)
    assert aligner.counts["packets_duplicate"] == 4 and aligner.counts["frames_incomplete"] == 0
    assert [f.timestamp_us for f in frames] == [T0_US + k * 250_000 for k in range(80)]
    sequencer, out = delivered(frames)
    assert sequencer.counts["frames_lost"] == 0 and len(out) == 80


def test_a_missing_packet_is_a_gap_not_an_invention(rng):
    data = rng.integers(-1000, 1000, (2000, 3)).astype(np.int32)
    items = packets(data)
    kept = [p for i, p in enumerate(items) if not 60 <= i < 66 and i != 152]  # 2 times x 3, one ENZ alone
    aligner, frames = run_aligner(kept)
    assert aligner.counts["frames_incomplete"] == 1 and len(frames) == 80 - 3
    for frame in frames:
        k = (frame.timestamp_us - T0_US) // 10_000
        assert np.array_equal(frame.samples, data[k:k + 25])  # every sample made is a sample sent
    sequencer, out = delivered(frames)
    assert sequencer.counts["frames_lost"] == 3
    assert [d.lost_frames for d in out if d.lost_frames] == [2, 1]


def test_a_rate_change_restarts_the_stream_once_every_channel_changed(rng, caplog):
    first = rng.integers(-1000, 1000, (1000, 3)).astype(np.int32)
    second = rng.integers(-1000, 1000, (500, 3)).astype(np.int32)
    items = packets(first) + packets(second, T0_US + 15_000_000, 50.0)
    aligner, frames = run_aligner(items)
    assert aligner.counts["restarts"] == 1 and aligner.rate_hz == 50.0
    assert sum(f.sampling_rate_hz == 100.0 for f in frames) == 40
    assert np.array_equal(np.concatenate([f.samples for f in frames if f.sampling_rate_hz == 50.0]),
                          second[:len(frames[40:]) * 12])
    sequencer, out = delivered(frames)
    assert sequencer.counts["sequence_resets"] == 1 and [d.restart for d in out].count(True) == 2
    assert "sampling rate changed from 100 to 50 Hz; stream restarted" in caplog.text


def test_a_silent_channel_stops_the_frames_and_nothing_is_made_up(rng, caplog):
    data = rng.integers(-1000, 1000, (2000, 3)).astype(np.int32)
    items = [p for p in packets(data) if not (p[0] == "Z" and p[1] >= T0_US + 10_000_000)]
    aligner, frames = run_aligner(items)
    assert len(frames) == 40 and aligner.counts["frames_incomplete"] == 40
    assert "nothing from component Z" in caplog.text


def test_a_clock_that_went_back_restarts_the_stream(rng):
    data = rng.integers(-1000, 1000, (2000, 3)).astype(np.int32)
    items = packets(data[:1000]) + packets(data[1000:], T0_US - 3600_000_000)
    aligner, frames = run_aligner(items, ChannelAligner("ENZ", max_late_s=1.0), dt_s=0.1)
    assert aligner.counts["restarts"] == 1 and aligner.counts["packets_late"] > 0
    assert frames[-1].timestamp_us < T0_US


# ------------------------------------------------------------------ the source on a socket
class _Config:
    shake_listen = "127.0.0.1:0"
    shake_channels = ["ENE", "ENN", "ENZ"]
    shake_reorder_s = 1.0


def test_the_source_reads_datagrams_and_counts_what_is_not_a_shake_packet(rng):
    faults = LimitedLog(logging.getLogger("test"))
    source = ShakeUDP(_Config(), n_channels=3, read_timeout_s=0.2, faults=faults)
    host, port = source.where.removeprefix("udp://").rsplit(":", 1)
    data = rng.integers(-1000, 1000, (500, 3)).astype(np.int32)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for comp, t, _, counts in packets(data, comps=("ENE", "ENN", "ENZ")):
            line = "{'%s', %.3f, %s}" % (comp, t / 1e6, ", ".join(map(str, counts)))
            sender.sendto(line.encode(), (host, int(port)))
        for junk in [b"TERM", b"\x00\x01", b"{'EHZ', 1600000000.0, 1, 2}", b"{'HDF', 1600000000.0, 1}"]:
            sender.sendto(junk, (host, int(port)))
        frames, deadline = [], time.monotonic() + 10
        while len(frames) < 20 and time.monotonic() < deadline:
            frames += source.read().frames
        counts = source.counters()["shake_udp"]
    finally:
        sender.close()
        source.close()
    assert np.array_equal(np.concatenate([f.samples for f in frames]), data)
    assert counts["packets_bad"] == 2 and counts["packets_velocity"] == 1
    assert counts["packets_other_channel"] == 1  # the Boom's HDF
    assert counts["rate_hz"] == 100.0


# ------------------------------------------------------------------ a real node, rsudp's packets
def _rsudp_packetize():
    try:
        from rsudp.packetize import packetize
    except SyntaxError:  # rsudp 2.x's c_settings.py needs Python 3.12 (see the module notes)
        flags = types.ModuleType("rsudp.test")
        flags.TEST = {"x_packetize": ["packetizing data", False]}
        sys.modules["rsudp.test"] = flags
        from rsudp.packetize import packetize
    return packetize


def shake_packets(folder: Path) -> list[bytes]:
    """The Napa record as a Shake's datacast: m/s^2 at the RS4D's scale, 100 Hz, EN?, then
    rsudp's packetize (one line per datagram)."""
    obspy = pytest.importorskip("obspy")
    pytest.importorskip("rsudp")
    if not NAPA.exists():
        pytest.skip("../shared/realdata is not here")
    stream = obspy.read(str(NAPA / "CE.68150.mseed"))
    stream.remove_sensitivity(obspy.read_inventory(str(NAPA / "CE.68150.xml")))
    stream.decimate(2)  # a Shake's accelerometer channels run at 100 Hz
    for trace in stream:
        trace.data = np.round(trace.data * RS4D_COUNTS_PER_MPS2).astype(np.int32)
        trace.stats.network, trace.stats.station = "AM", "R0000"
        trace.stats.channel = "EN" + trace.stats.channel[-1]
    t = stream[0].stats.starttime
    stream.trim(t + 8, t + 60)
    stream.write(str(folder / "shake.mseed"), format="MSEED", encoding="STEIM2")
    _rsudp_packetize()(str(folder / "shake.mseed"), str(folder / "packets"))
    return (folder / "packets").read_bytes().splitlines()


def send_as_testdata(lines: list[bytes], address, speed: float) -> None:
    """rsudp TestData's way: the lines of one time stamp at once, then wait for the next."""
    import rsudp.raspberryshake as rs

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first, start = None, time.monotonic()
    for line in lines:
        if not line.startswith(b"{"):
            sock.sendto(line, address)  # TERM, garbage
            continue
        t = rs.getTIME(line)
        first = t if first is None else first
        wait = (t - first) / speed - (time.monotonic() - start)
        if wait > 0:
            time.sleep(wait)
        sock.sendto(line, address)
    sock.close()


def test_a_real_node_detects_the_napa_quake_from_rsudp_packets(tiny_model, tmp_path):
    from _helpers import wait_status
    from conftest import PYTHON, python_env, stop

    lines = shake_packets(tmp_path)
    assert lines[-1] == b"TERM" and lines[0].startswith(b"{'EN")
    body = lines[:-1]
    body[30], body[33] = body[33], body[30]  # out of order
    body[100:100] = [body[99], body[98]]  # repeated
    geophone = b"{'EHZ', %s, 1, 2, 3}" % body[199].split(b",")[1].strip()  # an RS4D's velocity channel
    body[200:200] = [geophone, b"not a shake packet", b"\xff" * 40]
    out = tmp_path / "node"
    out.mkdir()
    cmd = [PYTHON, "-m", "edge_runtime", "run", "--source", "shake-udp", "--shake-listen", "127.0.0.1:0",
           "--model", str(tiny_model["sim"]), "--events", str(out / "events.jsonl"), "--status",
           str(out / "status.json"), "--status-every-s", "0.2", "--idle-exit-s", "3"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        status = wait_status(out / "status.json", proc, lambda s: "shake_udp" in s, "listen for the Shake")
        host, port = status["shake_udp"]["listen"].removeprefix("udp://").rsplit(":", 1)
        send_as_testdata(body + [lines[-1]], (host, int(port)), speed=10.0)
        output, _ = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 0, output
    final = json.loads((out / "status.json").read_text())
    shake, pipeline = final["shake_udp"], final["pipeline"]
    assert shake["rate_hz"] == 100.0 and shake["packets_bad"] == 3 and shake["packets_velocity"] == 1
    assert shake["packets_duplicate"] == 2 and shake["frames_incomplete"] == 0
    assert pipeline["frames_lost"] == 0 and pipeline["frames_rejected"] == 0 and final["gaps"] == 0
    assert pipeline["frames"] == shake["frames"] == (len(lines) - 1) // 3
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    quake = [e for e in events if e["type"] == "event"]
    assert quake and quake[0]["pga_mps2"] > 1.0 and quake[0]["time_fix"] == "unknown"
    assert "a datagram that is not a Shake packet" in output
    assert "EHZ is a geophone (velocity) channel" in output
