"""The frame format: round trips, damage, resync, and fuzzing of the decoder."""

import binascii
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.protocol import (
    HEADER_SIZE,
    MAX_SAMPLES,
    SYNC,
    FrameDecoder,
    encode_frame,
)


def frame(seq=0, n=10, channels=3, rate=100.0, t_us=1_700_000_000_000_000, rng=None):
    rng = rng or np.random.default_rng(seq)
    samples = rng.integers(-(2**31), 2**31, (n, channels), dtype=np.int64).astype(np.int32)
    return samples, encode_frame(seq, t_us, rate, samples)


def test_round_trip():
    samples, data = frame(seq=41, n=25, channels=3, rate=125.0)
    assert len(data) == HEADER_SIZE + 4 * samples.size + 4
    (f,) = FrameDecoder().feed(data)
    assert f.sequence == 41 and f.sampling_rate_hz == 125.0
    assert f.timestamp_us == 1_700_000_000_000_000
    np.testing.assert_array_equal(f.samples, samples)
    assert f.samples.dtype == np.int32


def test_layout_is_the_documented_one():
    samples = np.array([[1, -2, 3]], dtype=np.int32)
    data = encode_frame(7, 123456789, 100.0, samples)
    assert data[:2] == b"\xa5\x5a"
    version, n_ch, n_s, seq, ts, rate, hcrc = struct.unpack_from("<BBHIqIH", data, 2)
    assert (version, n_ch, n_s, seq, ts, rate) == (1, 3, 1, 7, 123456789, 100000)
    assert hcrc == binascii.crc_hqx(data[2:22], 0xFFFF)
    assert struct.unpack_from("<3i", data, 24) == (1, -2, 3)
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[2:-4])


def test_sequence_wraps():
    _, data = frame(seq=2**32 + 5)
    assert FrameDecoder().feed(data)[0].sequence == 5


def test_byte_by_byte_feed():
    frames = [frame(seq=i)[1] for i in range(3)]
    dec = FrameDecoder()
    got = []
    for byte in b"".join(frames):
        got += dec.feed(bytes([byte]))
    assert [f.sequence for f in got] == [0, 1, 2]
    assert dec.stats.bytes_discarded == 0


def test_corrupt_frame_is_dropped_and_stream_resyncs():
    frames = [bytearray(frame(seq=i)[1]) for i in range(4)]
    frames[1][30] ^= 0x10  # a bit flip in the payload
    dec = FrameDecoder()
    got = dec.feed(b"".join(bytes(f) for f in frames))
    assert [f.sequence for f in got] == [0, 2, 3]
    assert dec.stats.crc_errors == 1
    assert "seq=1" in dec.stats.last_error and "CRC" in dec.stats.last_error


def test_garbage_and_false_sync_between_frames():
    _, a = frame(seq=1)
    _, b = frame(seq=2)
    junk = b"\x00\xff" + SYNC + b"\x09\x09\x09" + SYNC[:1]
    dec = FrameDecoder()
    got = dec.feed(a + junk + b)
    assert [f.sequence for f in got] == [1, 2]
    assert dec.stats.header_errors >= 1
    assert dec.stats.bytes_discarded >= len(junk) - 1


def test_truncated_frame_costs_only_itself():
    _, a = frame(seq=1)
    _, b = frame(seq=2)
    _, c = frame(seq=3)
    dec = FrameDecoder()
    got = dec.feed(a + b[:40] + c)
    # The cut frame swallows the start of the next one until its CRC fails; the
    # decoder then goes back to the next sync and recovers frame 3.
    assert [f.sequence for f in got] == [1, 3]
    assert dec.stats.crc_errors + dec.stats.header_errors >= 1


def test_damaged_length_field_does_not_stall():
    """The header CRC catches a bad length before the decoder waits for its bytes."""
    frames = [bytearray(frame(seq=i, n=5)[1]) for i in range(3)]
    frames[0][4] ^= 0x10  # n_samples 5 -> 21: longer than everything that follows
    dec = FrameDecoder()
    got = dec.feed(b"".join(bytes(f) for f in frames))
    assert [f.sequence for f in got] == [1, 2]
    assert dec.stats.header_errors >= 1 and "header CRC" in dec.stats.last_error


def test_header_bounds_do_not_wait_forever():
    """A header claiming a huge frame is rejected at once instead of stalling the stream."""
    fields = struct.pack("<BBHIqI", 1, 3, MAX_SAMPLES + 1, 0, 0, 100000)
    bad = SYNC + fields + struct.pack("<H", binascii.crc_hqx(fields, 0xFFFF))
    _, good = frame(seq=9)
    got = FrameDecoder().feed(bad + good)
    assert [f.sequence for f in got] == [9]


@pytest.mark.parametrize("kwargs,match", [
    (dict(samples=np.zeros((10,), np.int32)), "shape"),
    (dict(samples=np.zeros((10, 9), np.int32)), "n_channels"),
    (dict(samples=np.zeros((MAX_SAMPLES + 1, 3), np.int32)), "n_samples"),
    (dict(samples=np.full((1, 3), 2**31, np.int64)), "int32"),
    (dict(samples=np.zeros((1, 3), np.int32), rate=0.0), "sampling rate"),
])
def test_encoder_rejects_what_the_decoder_would(kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode_frame(0, 0, kwargs.get("rate", 100.0), kwargs["samples"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes_never_raise(data):
    dec = FrameDecoder()
    frames = dec.feed(data)
    # Random bytes essentially never carry a valid CRC; whatever came out is well formed.
    for f in frames:
        assert f.samples.ndim == 2
    assert dec.stats.bytes_in == len(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(1, 8)), min_size=1, max_size=8),
    st.lists(st.binary(max_size=50).filter(lambda b: SYNC[:1] not in b), min_size=8, max_size=8),
    st.lists(st.integers(1, 64), min_size=1, max_size=5),
)
def test_fuzz_frames_survive_garbage_and_any_chunking(shapes, junks, chunk_sizes):
    """Garbage without sync bytes between frames, fed in arbitrary chunks: nothing is lost."""
    rng = np.random.default_rng(0)
    stream, expected = b"", []
    for i, (n, ch) in enumerate(shapes):
        samples = rng.integers(-1000, 1000, (n, ch)).astype(np.int32)
        stream += junks[i] + encode_frame(i, i * 1000, 100.0, samples)
        expected.append(samples)
    dec, got, pos, k = FrameDecoder(), [], 0, 0
    while pos < len(stream):
        size = chunk_sizes[k % len(chunk_sizes)]
        got += dec.feed(stream[pos:pos + size])
        pos += size
        k += 1
    got += dec.flush()  # the line goes quiet: a frame held back to rule out borrowing comes out
    assert [f.sequence for f in got] == list(range(len(shapes)))
    for f, samples in zip(got, expected, strict=True):
        np.testing.assert_array_equal(f.samples, samples)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 7))
def test_fuzz_any_single_bit_flip_loses_at_most_that_frame(position, bit):
    frames = [frame(seq=i, n=5)[1] for i in range(3)]
    data = bytearray(b"".join(frames))
    position %= len(data)
    data[position] ^= 1 << bit
    got = FrameDecoder().feed(bytes(data))
    damaged = position // len(frames[0])
    assert [f.sequence for f in got] == [i for i in range(3) if i != damaged]
