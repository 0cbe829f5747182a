"""Protocol v2 (board id, status flags, time fix), text mode, and fuzzing of both decoders."""

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.protocol import (
    FLAG_CLIPPING,
    FLAG_OVERRUN,
    HEADER,
    MAX_FRAME_SIZE,
    SYNC,
    FrameDecoder,
    encode_frame,
    encode_frame_v2,
    frame_size,
    header_crc,
)
from edge_runtime.protocol_text import TextDecoder, encode_text_lines
from edge_runtime.sequencing import StreamSequencer

T0 = 1_767_225_600_000_000


def counts(seed=0, n=10, ch=3):
    return np.random.default_rng(seed).integers(-50000, 50000, (n, ch)).astype(np.int32)


def accounted(dec: FrameDecoder) -> bool:
    """Every byte fed is in an accepted frame, discarded and counted, or still pending."""
    return dec.stats.bytes_in == dec.bytes_accepted + dec.stats.bytes_discarded + dec.pending


def test_v2_round_trip_carries_identity_flags_and_time_fix():
    c = counts()
    data = encode_frame_v2(7, T0, 100.0, c, board_id=0xDEADBEEF, flags=FLAG_CLIPPING | FLAG_OVERRUN,
                           time_fix="ntp")
    assert len(data) == frame_size(2, 10, 3) == 156
    (f,) = FrameDecoder().feed(data)
    assert (f.version, f.board_id, f.flags, f.time_fix) == (2, 0xDEADBEEF, 5, "ntp")
    assert f.sequence == 7 and f.timestamp_us == T0 and f.sampling_rate_hz == 100.0
    np.testing.assert_array_equal(f.samples, c)


def test_v1_and_v2_frames_mix_on_one_line():
    stream = b"".join(encode_frame(i, T0 + i, 100.0, counts(i)) if i % 2 else
                      encode_frame_v2(i, T0 + i, 100.0, counts(i), board_id=1, time_fix="gps")
                      for i in range(10))
    dec = FrameDecoder()
    got = dec.feed(stream)
    assert [f.sequence for f in got] == list(range(10))
    assert [f.version for f in got] == [2, 1] * 5
    assert [f.time_fix for f in got] == ["gps", "unknown"] * 5
    assert accounted(dec) and dec.pending == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(board_id=2**32), "uint32"), (dict(board_id=1, flags=0x80), "unknown bits"),
    (dict(board_id=1, time_fix="atomic"), "time_fix"),
])
def test_v2_encoder_refuses_what_the_decoder_would(kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode_frame_v2(0, T0, 100.0, counts(), **kwargs)


def test_encoder_refuses_nan_instead_of_sending_int32_min():
    bad = np.zeros((10, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encode_frame(0, T0, 100.0, bad)


def test_board_id_lock_rejects_and_counts_other_boards():
    seq = StreamSequencer()
    dec = FrameDecoder()
    mine = [encode_frame_v2(i, T0 + i * 100_000, 100.0, counts(i), board_id=0xA1) for i in range(5)]
    other = encode_frame_v2(5, T0 + 500_000, 100.0, counts(9), board_id=0xB2)
    v1 = encode_frame(5, T0 + 500_000, 100.0, counts(9))
    out = [d for f in dec.feed(b"".join(mine) + other + v1) for d in seq.push(f)]
    assert [d.frame.sequence for d in out] == list(range(5))
    assert seq.board_id == 0xA1 and seq.counts["frames_other_board"] == 2


def test_board_flags_are_counted():
    seq = StreamSequencer()
    for i in range(3):
        flags = FLAG_CLIPPING if i == 1 else 0
        (f,) = FrameDecoder().feed(encode_frame_v2(i, T0 + i * 100_000, 100.0, counts(i), board_id=1,
                                                   flags=flags, time_fix="free"))
        seq.push(f)
    assert seq.counts["board_clipping"] == 1 and seq.counts["board_overrun"] == 0
    assert seq.time_fix == "free"


# --------------------------------------------------------------------- text
def test_text_mode_round_trip_with_and_without_checksum():
    c = counts(3, n=25)
    clock = iter([1000.0, 1000.1, 1000.2, 1000.3]).__next__
    dec = TextDecoder(3, 100.0, clock=clock, checksum="off")  # "auto" would refuse the plain lines
    crlf = encode_text_lines(c[12:]).replace(b"\n", b"\r\n")
    frames = dec.feed(encode_text_lines(c[:12], checksum=True) + crlf)
    frames += dec.flush()
    np.testing.assert_array_equal(np.concatenate([f.samples for f in frames]), c)
    assert [f.sequence for f in frames] == [0, 1, 2]
    assert frames[1].timestamp_us - frames[0].timestamp_us == 100_000  # nominal rate, not arrival
    assert all(f.time_fix == "node" and f.version == "text" for f in frames)
    assert dec.stats.line_errors == 0 and dec.stats.lines == 25


@pytest.mark.parametrize("line", [b"1,2\n", b"1,2,nan\n", b"1,2,inf\n", b"1,2,3.5\n", b"1,2,99999999999\n",
                                  b"1,2,3*00\n", b"x" * 200 + b"\n", b"1,,3\n"])
def test_text_mode_drops_and_counts_bad_lines(line):
    dec = TextDecoder(3, 100.0)
    frames = dec.feed(line + b"4,5,6\n") + dec.flush()
    assert dec.stats.line_errors == 1
    assert [f.samples.tolist() for f in frames] == [[[4, 5, 6]]]


def test_text_mode_reanchors_after_a_pause():
    times = iter([0.0, 0.0, 50.0, 50.0]).__next__
    dec = TextDecoder(1, 100.0, samples_per_frame=1, clock=times)
    a = dec.feed(b"1\n2\n")
    b = dec.feed(b"3\n")  # 50 s later by the node's clock: the count no longer says the time
    assert a[1].timestamp_us - a[0].timestamp_us == 10_000
    assert b[0].timestamp_us == 50_000_000


# ------------------------------------------------------- decoder hardening
def bogus_length_header(seq=99) -> bytes:
    fields = HEADER.pack(SYNC, 1, 8, 1024, seq, T0, 100_000, 0)[2:-2]
    return SYNC + fields + struct.pack("<H", header_crc(fields))


def test_wrong_length_header_stalls_for_one_frame_at_most():
    """A header with a valid CRC claiming 32 kB: the next frame comes out as soon as it is whole."""
    dec = FrameDecoder()
    nxt = encode_frame(1, T0, 100.0, counts())
    assert dec.feed(bogus_length_header()) == []
    assert dec.feed(nxt[:-1]) == []
    (f,) = dec.feed(nxt[-1:]) + dec.flush()
    assert f.sequence == 1 and dec.stats.length_errors == 1 and accounted(dec)


def test_frame_borrowing_its_successors_sync_is_refused():
    a_samples = counts(1)
    t = T0
    while (a := encode_frame(0, t, 100.0, a_samples))[-1] != 0xA5:  # CRC ends in 0xA5: 1 in 256
        t += 1
    b = encode_frame(1, T0 + 100_000, 100.0, counts(2))
    dec = FrameDecoder()
    got = dec.feed(a[:-1] + b) + dec.flush()  # a cut by one byte: its last byte is b's first
    assert [f.sequence for f in got] == [1] and dec.stats.overlaps == 1 and accounted(dec)
    # Byte by byte, the cut frame is held until the bytes that tell arrive.
    dec = FrameDecoder()
    got = [f for byte in a[:-1] + b for f in dec.feed(bytes([byte]))] + dec.flush()
    assert [f.sequence for f in got] == [1] and dec.stats.overlaps == 1
    # An intact frame ending in 0xA5 at the end of the stream comes out on flush().
    dec = FrameDecoder()
    assert dec.feed(a) == [] and [f.sequence for f in dec.flush()] == [0]


def test_longest_frame_decodes():
    c = counts(n=1024, ch=8)
    data = encode_frame_v2(3, T0, 1000.0, c, board_id=5)
    assert len(data) == MAX_FRAME_SIZE
    (f,) = FrameDecoder().feed(data) + FrameDecoder().flush()
    np.testing.assert_array_equal(f.samples, c)


# ------------------------------------------------------------------- fuzzing
frame_spec = st.tuples(st.integers(1, 12), st.integers(1, 4), st.sampled_from([1, 2]),
                       st.integers(0, 2**32 - 1))


def build(specs, seed=0):
    rng = np.random.default_rng(seed)
    blobs, samples = [], []
    for i, (n, ch, version, board) in enumerate(specs):
        c = rng.integers(-2**31, 2**31, (n, ch), dtype=np.int64).astype(np.int32)
        blobs.append(encode_frame(i, T0 + i, 100.0, c) if version == 1 else
                     encode_frame_v2(i, T0 + i, 100.0, c, board_id=board, flags=i % 8,
                                     time_fix=("free", "ntp", "gps")[i % 3]))
        samples.append(c)
    return blobs, samples


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_spec, min_size=1, max_size=8), st.data())
def test_fuzz_mutations_never_accept_a_corrupt_payload(specs, data):
    """Random byte edits, cuts and insertions: every frame out is one that was sent, intact."""
    blobs, samples = build(specs)
    stream = bytearray(b"".join(blobs))
    for _ in range(data.draw(st.integers(0, 6))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "sync"]))
        pos = data.draw(st.integers(0, max(0, len(stream) - 1)))
        if kind == "flip" and stream:
            stream[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del stream[pos:pos + data.draw(st.integers(1, 40))]
        elif kind == "insert":
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=40))
        else:
            stream[pos:pos] = SYNC
    chunk = data.draw(st.integers(1, 300))
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(bytes(stream[i:i + chunk]))
    got += dec.flush()
    sent = {i: s for i, s in enumerate(samples)}
    for f in got:
        assert f.sequence in sent, f.sequence
        np.testing.assert_array_equal(f.samples, sent[f.sequence])
    assert accounted(dec)


@settings(max_examples=150, deadline=None)
@given(st.lists(frame_spec, min_size=1, max_size=6), st.lists(st.binary(max_size=30), min_size=7, max_size=7),
       st.integers(1, 200))
def test_fuzz_intact_frames_between_garbage_all_arrive(specs, junks, chunk):
    """Garbage without sync bytes between intact frames, any chunking: every frame arrives."""
    blobs, samples = build(specs, seed=1)
    stream = b"".join(j.replace(b"\xa5", b"\xa4") + b for j, b in zip(junks, blobs, strict=False))
    dec = FrameDecoder()
    got = [f for i in range(0, len(stream), chunk) for f in dec.feed(stream[i:i + chunk])] + dec.flush()
    assert [f.sequence for f in got] == list(range(len(specs)))
    for f, s in zip(got, samples, strict=True):
        np.testing.assert_array_equal(f.samples, s)
    assert accounted(dec) and dec.pending == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes_both_decoders(data):
    dec = FrameDecoder()
    for f in dec.feed(data) + dec.flush():  # a CRC-32 match by chance is 2**-32: practically none
        body = f.samples  # whatever came out is well formed
        assert body.ndim == 2 and body.dtype == np.int32
    assert accounted(dec)
    text = TextDecoder(3, 100.0)
    frames = text.feed(data) + text.flush()
    for f in frames:
        assert f.samples.shape[1] == 3 and f.samples.dtype == np.int32
    assert text.stats.lines == sum(f.n_samples for f in frames)
    st_ = text.stats
    assert st_.bytes_in == st_.bytes_accepted + st_.bytes_discarded + len(text._buf)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(-2**31, 2**31 - 1), min_size=3, max_size=3), min_size=1, max_size=40),
       st.booleans(), st.integers(1, 50))
def test_fuzz_text_round_trip_any_chunking(rows, checksum, chunk):
    data = encode_text_lines(np.array(rows, dtype=np.int64), checksum=checksum)
    dec = TextDecoder(3, 100.0)
    frames = [f for i in range(0, len(data), chunk) for f in dec.feed(data[i:i + chunk])] + dec.flush()
    assert np.concatenate([f.samples for f in frames]).tolist() == rows
    assert dec.stats.line_errors == 0


# ------------------------------------------------------ through the real node
def test_node_process_v2_time_fix_into_events_and_other_board_rejected(tiny_model, tmp_path):
    """A v2 board streams a quake; a second board's frames on the same line are refused."""
    from _helpers import feed_until_idle, status_of
    from test_reliability import P_S, quake_counts

    counts_ = quake_counts(seed=3, quiet_after_s=15.0)
    blobs = []
    for k, i in enumerate(range(0, counts_.shape[0] - 9, 10)):
        flags = FLAG_CLIPPING if k == 5 else 0
        blobs.append(encode_frame_v2(k, T0 + k * 100_000, 100.0, counts_[i:i + 10], board_id=0xA1B2C3,
                                     flags=flags, time_fix="gps"))
        if k in (50, 250):  # a foreign board, e.g. a port path reused after an unplug
            blobs.append(encode_frame_v2(k, T0 + k * 100_000, 100.0, counts_[i:i + 10] + 1000,
                                         board_id=0xBAD, time_fix="free"))
    feed_until_idle(tiny_model["sim"], tmp_path, blobs)
    status = status_of(tmp_path)
    p = status["pipeline"]
    assert p["frames_other_board"] == 2 and p["board_clipping"] == 1 and p["frames_lost"] == 0
    from event_schema import check_events

    events = check_events(tmp_path / "events.jsonl")
    closed = [e for e in events if e["type"] == "event"]
    assert len(closed) == 1 and all(e["time_fix"] == "gps" for e in events)
    assert abs(closed[0]["p_time_us"] - (T0 + P_S * 1e6)) < 0.5e6


def test_node_process_text_mode(tiny_model, tmp_path):
    from _helpers import feed_until_idle, status_of

    lines = encode_text_lines(counts(4, n=300) // 100, checksum=True)
    feed_until_idle(tiny_model["sim"], tmp_path, [lines + b"1,2,nan\n" + b"7,8\n"], "--protocol", "text",
                    "--text-rate-hz", "100", idle_exit_s=1, timeout_s=60)
    status = status_of(tmp_path)
    assert status["decoder"]["lines"] == 300 and status["decoder"]["line_errors"] == 2
    assert status["pipeline"]["frames"] == 30 and status["pipeline"]["frames_lost"] == 0
    assert status["pipeline"]["windows"] + status["pipeline"]["windows_dead"] > 0
