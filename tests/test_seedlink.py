"""The SeedLink server and the miniSEED packer, read back by real clients.

Known counts are packed with libmseed (pymseed), served from the ring on 127.0.0.1
and read with ObsPy's two SeedLink clients (the basic client's ``get_waveforms`` and
``EasySeedLinkClient`` streaming) and with EarthScope's independent ``seedlink-client``;
every sample and every time must come back as sent. Then the protocol's edges with a
raw socket (resume from a sequence number, FETCH and TIME ends, hostile input, 50
clients, a client that never reads), a fuzzed command parser, and a real node process
serving its own stream.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("pymseed")
from obspy import UTCDateTime, read  # noqa: E402
from obspy.clients.seedlink.basic_client import Client  # noqa: E402
from obspy.clients.seedlink.easyseedlink import EasySeedLinkClient  # noqa: E402

from edge_runtime.network.miniseed import RecordPacker, check_code, record_info  # noqa: E402
from edge_runtime.network.ring import PacketRing  # noqa: E402
from edge_runtime.network.seedlink import SeedLinkServer  # noqa: E402
from edge_runtime.network.slproto import (  # noqa: E402
    MAX_LINE_BYTES,
    Session,
    StationInfo,
    parse_selector,
    parse_time,
)

T0_US = 1_767_225_600_123_456  # 2026-01-01 00:00:00.123456
RATE_HZ = 100.0
CHANNELS = ("HNE", "HNN", "HNZ")
STATION = StationInfo("XX", "ST01", "test station", tuple(("", c) for c in CHANNELS))


def known_counts(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) int32 counts: a random walk with spikes (Steim-2 sees every difference size)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-400, 400, size=(n, 3))
    steps[rng.random((n, 3)) < 0.01] *= 5000
    return np.cumsum(steps, axis=0).astype(np.int32)


def pack(packer: RecordPacker, counts: np.ndarray, t0_us: int, frame: int = 10) -> list[bytes]:
    records = []
    for k in range(0, len(counts), frame):
        records += packer.push(t0_us + round(k * 1e6 / RATE_HZ), RATE_HZ, counts[k:k + frame])
    return records


def feed(ring: PacketRing, records: list[bytes]) -> None:
    for record in records:
        ring.append(record_info(record), record)


def served_server(ring_records: int = 8192, **kwargs) -> tuple[SeedLinkServer, PacketRing]:
    ring = PacketRing(ring_records)
    return SeedLinkServer(ring, [STATION], "127.0.0.1:0", **kwargs), ring


@pytest.fixture(scope="module")
def served():
    """A server holding 60 s of known counts on three channels (flushed: every sample served)."""
    counts = known_counts(6000)
    packer = RecordPacker("XX", "ST01", "", CHANNELS)
    records = pack(packer, counts, T0_US) + packer.flush()
    server, ring = served_server()
    feed(ring, records)
    yield server, counts, records
    server.close()


def check_trace(trace, counts: np.ndarray, t0_us: int = T0_US) -> None:
    """``trace`` is a stretch of ``counts`` (column by its channel) at exactly the sent times."""
    column = CHANNELS.index(trace.stats.channel)
    offset_s = trace.stats.starttime - UTCDateTime(t0_us / 1e6)
    first = round(offset_s * RATE_HZ)
    assert trace.stats.starttime == UTCDateTime(ns=t0_us * 1000 + first * 10_000_000)
    assert trace.stats.sampling_rate == RATE_HZ
    np.testing.assert_array_equal(trace.data, counts[first:first + trace.stats.npts, column])


# ------------------------------------------------------------------ miniSEED
def test_records_read_back_exactly_across_a_gap_and_a_restart():
    counts = known_counts(3000, seed=1)
    packer = RecordPacker("XX", "ST01", "00", CHANNELS)
    later_us = T0_US + 40_000_000  # a 10 s gap after 30 s
    earlier_us = T0_US - 3_600_000_000  # a board restart with its clock an hour back
    records = (pack(packer, counts[:2000], T0_US) + pack(packer, counts[2000:2500], later_us)
               + pack(packer, counts[2500:], earlier_us) + packer.flush())
    assert {len(r) for r in records} == {512}
    stream = read(io.BytesIO(b"".join(records)))
    assert {tr.stats.mseed.encoding for tr in stream} == {"STEIM2"}
    stream = stream.merge().split()  # contiguous stretches; merge alone masks the gaps
    got = {(tr.stats.channel, tr.stats.starttime.ns): tr.data for tr in stream}
    assert len(got) == 9
    for column, channel in enumerate(CHANNELS):
        np.testing.assert_array_equal(got[(channel, T0_US * 1000)], counts[:2000, column])
        np.testing.assert_array_equal(got[(channel, later_us * 1000)], counts[2000:2500, column])
        np.testing.assert_array_equal(got[(channel, earlier_us * 1000)], counts[2500:, column])
    codes = {(tr.stats.network, tr.stats.station, tr.stats.location) for tr in stream}
    assert codes == {("XX", "ST01", "00")}


def test_packer_holds_at_most_about_a_record_per_channel():
    packer = RecordPacker("XX", "ST01", "", CHANNELS)
    counts = known_counts(20000, seed=2)
    records = pack(packer, counts, T0_US)
    held = 20000 * 3 - sum(record_info(r).n_samples for r in records)
    assert 0 < held < 3 * 2 * 1000  # below two full records' worth per channel
    assert sum(record_info(r).n_samples for r in packer.flush()) == held


@pytest.mark.parametrize("kind, code", [("network", "XXX"), ("station", "TOOLONG"), ("location", "0"),
                                        ("channel", "HN"), ("station", "ST 1"),
                                        ("station", "st01"), ("channel", "hnz")])
def test_codes_seed_cannot_carry_are_refused(kind, code):
    with pytest.raises(ValueError, match=kind):
        check_code(kind, code)


# ------------------------------------------------------------------ real clients
def test_obspy_basic_client_gets_exact_waveforms(served):
    server, counts, _ = served
    client = Client("127.0.0.1", server.address[1], timeout=20)
    t = UTCDateTime(T0_US / 1e6)
    stream = client.get_waveforms("XX", "ST01", "", "HNZ", t + 5, t + 20)
    assert len(stream) == 1 and stream[0].id == "XX.ST01..HNZ"
    assert stream[0].stats.starttime == t + 5 and stream[0].stats.endtime == t + 20
    check_trace(stream[0], counts)
    both = client.get_waveforms("XX", "ST01", "", "HN?", t + 30, t + 31)
    assert sorted(tr.stats.channel for tr in both) == list(CHANNELS)
    for trace in both:
        check_trace(trace, counts)


def test_obspy_info_lists_the_station_and_its_streams(served):
    server, _, _ = served
    client = Client("127.0.0.1", server.address[1], timeout=20)
    assert client.get_info(level="station") == [("XX", "ST01")]
    assert client.get_info(level="channel") == [("XX", "ST01", "", c) for c in CHANNELS]


def test_easy_seedlink_client_streams_live_samples():
    server, ring = served_server()
    counts = known_counts(3000, seed=3)
    traces = []

    class Enough(Exception):
        pass

    class Collect(EasySeedLinkClient):
        def on_data(self, trace):
            traces.append(trace)
            if sum(t.stats.npts for t in traces) >= len(counts):
                raise Enough  # conn.terminate() here is undone by the next collect()

        def run_until_enough(self):
            try:
                self.run()
            except Enough:
                self.close()

    try:
        client = Collect(f"127.0.0.1:{server.address[1]}", autoconnect=False)
        client.conn.timeout = 30  # ObsPy 1.5.1's EasySeedLinkClient leaves it None, and connect() fails
        client.connect()
        client.select_stream("XX", "ST01", "HNZ")
        runner = threading.Thread(target=client.run_until_enough, daemon=True)
        runner.start()
        wait_for(lambda: server.n_streaming == 1, "the client's stream to start")
        packer = RecordPacker("XX", "ST01", "", CHANNELS)
        feed(ring, pack(packer, counts, T0_US) + packer.flush())  # live: after the client asked
        runner.join(60)
        assert not runner.is_alive(), f"{sum(t.stats.npts for t in traces)} samples in 60 s"
    finally:
        server.close()
    stream = read_traces(traces)
    assert len(stream) == 1 and stream[0].stats.npts == len(counts)
    assert stream[0].stats.starttime.ns == T0_US * 1000
    check_trace(stream[0], counts)


def read_traces(traces):
    from obspy import Stream

    stream = Stream(traces)
    stream.merge()
    return stream


def test_seedlink_client_package_fetches_and_resumes(served):
    from seedlink_client import SeedLink

    server, counts, records = served
    with SeedLink("127.0.0.1", server.address[1], timeout=10, dialup=True) as client:
        client.add_stream("XX_ST01", "HNN", seqnum=-1)  # resume after -1: "FETCH 0", the ring's first
        packets = list(client.collect(reconnect=False))
    hnn = [n for n, r in enumerate(records) if record_info(r).channel == "HNN"]
    assert [p.seqnum for p in packets] == hnn
    stream = read(io.BytesIO(b"".join(p.payload for p in packets)))
    stream.merge()
    assert len(stream) == 1 and stream[0].stats.npts == len(counts)
    check_trace(stream[0], counts)
    middle = packets[len(packets) // 2].seqnum
    with SeedLink("127.0.0.1", server.address[1], timeout=10, dialup=True) as client:
        client.add_stream("XX_ST01", "HNN", seqnum=middle)  # resume after the last packet received
        resumed = list(client.collect(reconnect=False))
    assert [p.seqnum for p in resumed] == [p.seqnum for p in packets if p.seqnum > middle]


# ------------------------------------------------------------------ the protocol with a raw socket
def talk(port: int, commands: bytes, until: bytes = b"END", timeout_s: float = 10.0) -> bytes:
    """Send ``commands``, read until the server closes or the reply ends with ``until``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(commands)
        reply = bytearray()
        while not reply.endswith(until):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return bytes(reply)


def packets_of(reply: bytes) -> list[tuple[int, bytes]]:
    """(sequence, record) of each 520-byte packet at the front of ``reply``."""
    out = []
    while reply.startswith(b"SL") and not reply.startswith(b"SLINFO") and len(reply) >= 520:
        out.append((int(reply[2:8], 16), reply[8:520]))
        reply = reply[520:]
    return out


def test_fetch_resumes_at_a_sequence_number_and_ends(served):
    server, _, records = served
    reply = talk(server.address[1], b"HELLO\r\nSTATION ST01 XX\r\nSELECT HNZ.D\r\nFETCH 00000A\r\nEND\r\n")
    hello, rest = reply.split(b"\r\n", 2)[:2], reply.split(b"\r\n", 2)[2]
    assert hello[0].startswith(b"SeedLink v3.1") and b"SLPROTO:3.1" in hello[0]
    assert rest.startswith(b"OK\r\nOK\r\nOK\r\n")
    got = packets_of(rest[12:])
    expected = [(n, r) for n, r in enumerate(records) if n >= 10 and record_info(r).channel == "HNZ"]
    assert got == expected and rest.endswith(b"END")


def test_time_window_ends_once_every_selected_channel_passed_it(served):
    server, counts, _ = served
    reply = talk(server.address[1],
                 b"STATION ST01\r\nSELECT ??HN?\r\nTIME 2026,1,1,0,0,10 2026,1,1,0,0,12\r\nEND\r\n")
    assert reply.startswith(b"OK\r\nOK\r\nOK\r\n") and reply.endswith(b"END")
    stream = read(io.BytesIO(b"".join(r for _, r in packets_of(reply[12:]))))
    stream.merge()
    assert sorted(tr.stats.channel for tr in stream) == list(CHANNELS)
    for trace in stream:
        assert trace.stats.starttime <= UTCDateTime(2026, 1, 1, 0, 0, 10)
        assert trace.stats.endtime >= UTCDateTime(2026, 1, 1, 0, 0, 12)
        check_trace(trace, counts)


def test_uni_station_data_from_a_sequence_streams_at_once(served):
    server, _, records = served
    with socket.create_connection(("127.0.0.1", server.address[1]), timeout=10) as sock:
        sock.sendall(b"SELECT HNE\nDATA 5\n")
        reply = bytearray()
        while len(reply) < 8 + 520:
            reply += sock.recv(65536)
    assert reply.startswith(b"OK\r\nOK\r\n")  # SELECT, DATA; then packets, without an END
    first = next(n for n, r in enumerate(records) if n >= 5 and record_info(r).channel == "HNE")
    assert packets_of(bytes(reply[8:]))[0][0] == first


def test_bad_commands_get_error_and_the_server_goes_on(served, caplog):
    server, _, _ = served
    port = server.address[1]
    assert talk(port, b"FROB\r\nBYE\r\n", until=b"\0") == b"ERROR\r\n"
    assert talk(port, b"CAPABILITIES EXTREPLY\r\nSTATION NOPE ZZ\r\nBYE\r\n", until=b"\0") == \
        b"OK\r\nERROR\rstation NOPE ZZ not served\r\n"
    assert talk(port, b"\xff\xfe\x00garbage\r\nSELECT ABCDEFG\r\nTIME 2026,13,1,0,0,0\r\nBYE\r\n",
                until=b"\0") == b"ERROR\r\n" * 3
    assert talk(port, b"X" * (MAX_LINE_BYTES + 100), until=b"\0") == b"ERROR\r\n"  # then closed
    assert talk(port, b"END\r\n" * 20, until=b"\0") == b"ERROR\r\n" * 10  # closed after ten
    assert talk(port, b"HELLO\r\nBYE\r\n", until=b"\0")[:13] == b"SeedLink v3.1"  # still serving
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_fifty_clients_at_once_each_get_every_packet(served):
    server, _, records = served
    replies = [None] * 50

    def fetch(i):
        replies[i] = talk(server.address[1], b"STATION ST01 XX\r\nFETCH 0\r\nEND\r\n", timeout_s=60)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    expected = list(enumerate(records))
    for reply in replies:
        assert reply.startswith(b"OK\r\nOK\r\n") and reply.endswith(b"END")
        assert packets_of(reply[8:]) == expected
    wait_for(lambda: server.n_clients == 0, "every connection to close")


def test_a_client_that_never_reads_is_dropped_and_delays_nothing(caplog):
    server, ring = served_server(client_timeout_s=0.5)
    packer = RecordPacker("XX", "ST01", "", CHANNELS)
    records = pack(packer, known_counts(60000, seed=4), T0_US)  # ~2000 records, ~1 MB
    try:
        with socket.create_connection(("127.0.0.1", server.address[1])) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"STATION ST01 XX\r\nDATA\r\nEND\r\n")
            wait_for(lambda: server.n_streaming == 1, "the stream to start")
            started = time.perf_counter()
            feed(ring, records)  # the node's side: appends never wait for a client
            assert time.perf_counter() - started < 5.0
            wait_for(lambda: server.counts["clients_dropped"] == 1, "the dead client to be dropped")
    finally:
        server.close()
    drops = [r.getMessage() for r in caplog.records if "dropped client" in r.getMessage()]
    assert len(drops) == 1 and "read nothing for 0.5 s" in drops[0]


def test_a_client_beyond_max_clients_is_refused():
    server, _ = served_server(max_clients=2)
    try:
        held = [socket.create_connection(("127.0.0.1", server.address[1])) for _ in range(2)]
        wait_for(lambda: server.n_clients == 2, "two connections")
        with socket.create_connection(("127.0.0.1", server.address[1]), timeout=10) as third:
            assert third.recv(100) == b""  # closed at once
        assert server.counts["clients_refused"] == 1
        for sock in held:
            sock.close()
    finally:
        server.close()


def test_server_refuses_a_port_in_use():
    server, ring = served_server()
    try:
        with pytest.raises(ValueError, match="cannot listen on 127.0.0.1:"):
            SeedLinkServer(ring, [STATION], f"127.0.0.1:{server.address[1]}")
    finally:
        server.close()


# ------------------------------------------------------------------ the parser, fuzzed
def session() -> Session:
    return Session(("SeedLink v3.1 :: SLPROTO:3.1", "test"), [STATION],
                   lambda level: b"SLINFO  " + level.encode())


WORDS = st.sampled_from([b"HELLO", b"STATION", b"SELECT", b"DATA", b"FETCH", b"TIME", b"END", b"INFO",
                         b"BYE", b"CAT", b"BATCH", b"CAPABILITIES", b"ST01", b"XX", b"HN?", b"!HNZ.D",
                         b"2026,1,1,0,0,0", b"00000A", b"0x1F", b"ID", b"STREAMS", b"*", b"?", b".", b"-",
                         b" ", b"\r", b"\n", b"\r\n", b"\x00", b"\xff"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=300), st.lists(WORDS, max_size=12).map(b" ".join)),
                max_size=20))
def test_session_never_raises_and_stays_bounded(chunks):
    s = session()
    for chunk in chunks:
        reply = s.feed(chunk)
        assert isinstance(reply, bytes) and len(reply) < 64 * len(chunk) + 512
        assert len(s._buffer) <= MAX_LINE_BYTES
        if s.closing:
            assert s.feed(b"HELLO\r\n") == b""
            break
    assert len(s.requests) <= 64 and all(len(r.selectors) <= 32 for r in s.requests)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789?.!-", max_size=12))
def test_selector_parser_accepts_or_refuses_with_value_error(text):
    try:
        selector = parse_selector(text)
    except ValueError:
        return
    assert selector.matches("", "HNZ") in (True, False)


def test_times_and_selectors_mean_what_seedlink_says():
    assert parse_time("2026,1,1,0,0,0") == 1_767_225_600 * 10**9
    assert parse_time("2026,01,01,00,00,01.5") == 1_767_225_601_500_000_000
    assert parse_selector("HN?").matches("00", "HNZ") and not parse_selector("HN?").matches("", "BHZ")
    assert parse_selector("--HNZ").matches("", "HNZ") and not parse_selector("00HNZ").matches("", "HNZ")
    assert not parse_selector("HNZ.L").matches("", "HNZ", "D")
    assert parse_selector("!HNZ").negate


def wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ------------------------------------------------------------------ a real node serving its stream
def test_node_serves_its_counts_over_seedlink(tiny_model, tmp_path):
    """``[seedlink] listen`` on a node reading a pty: ObsPy reads back what the board sent."""
    from _helpers import start_node, wait_frames, wait_ready, wait_status
    from conftest import running, stop

    from edge_runtime.protocol import encode_frame
    from tools.replay.pty import open_pty
    from tools.replay.sender import Writer

    config = tmp_path / "node.toml"
    config.write_text('[node]\nnetwork = "XX"\nstation = "ST01"\nlocation = ""\n'
                      'channels = ["HNE", "HNN", "HNZ"]\n\n[seedlink]\nlisten = "127.0.0.1:0"\n')
    counts = np.cumsum(np.random.default_rng(5).integers(-200, 200, size=(3000, 3)), axis=0).astype(np.int32)
    pty = open_pty()
    proc = start_node(tiny_model["sim"], pty.port, tmp_path, "--config", str(config))
    with running(proc, pty):
        wait_ready(tmp_path, proc)
        status = wait_status(tmp_path / "status.json", proc, lambda s: "seedlink" in s,
                             "open its SeedLink port")
        host, port = status["seedlink"]["listen"].rsplit(":", 1)
        assert host == "127.0.0.1"
        writer = Writer(pty, speed=0)
        for i, k in enumerate(range(0, len(counts), 10)):  # 30 s of 10-sample frames
            writer.send(encode_frame(i, T0_US + k * 10_000, RATE_HZ, counts[k:k + 10]), 0)
        wait_frames(tmp_path / "status.json", proc, 300)
        t = UTCDateTime(T0_US / 1e6)
        client = Client("127.0.0.1", int(port), timeout=20)
        # The frames are accepted before their records are packed and served (the output's
        # worker takes them a second at a time): ask until every channel reaches t + 20 s.
        deadline = time.monotonic() + 60
        while True:
            stream = client.get_waveforms("XX", "ST01", "", "HN?", t + 2, t + 20)
            if len(stream) >= 3 and all(tr.stats.endtime >= t + 20 for tr in stream):
                break
            assert time.monotonic() < deadline, f"the node did not serve 2-20 s within 60 s: {stream}"
            time.sleep(0.2)
        assert sorted(tr.stats.channel for tr in stream) == list(CHANNELS)
        for trace in stream:
            assert trace.stats.starttime == t + 2 and trace.stats.endtime == t + 20
            check_trace(trace, counts)
        output = stop(proc)
    assert proc.returncode == 0, output
    assert "seedlink: serving XX.ST01 on 127.0.0.1:" in output
