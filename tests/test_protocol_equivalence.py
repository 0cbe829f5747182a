"""The frame decoder against its reference (tests/protocol_reference.py, the decoder before
its run checks were rewritten): random v1/v2 streams with corruption, forged fields, cut
frames, borrowed bytes and junk, fed in reads of random sizes (a byte, a frame, 4 KiB, a
backlog), must give the same frames, frame for frame, and the same counters after every
read; and under hypothesis no exception escapes and no damaged frame is accepted.
"""

import binascii
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_reference import ReferenceDecoder

from edge_runtime.protocol import (
    CRC,
    HEADER,
    HEADER_V2,
    SYNC,
    Frame,
    FrameDecoder,
    encode_frame,
    encode_frame_v2,
    header_crc,
    header_crcs,
)

T0 = 1_767_225_600_000_000
# (version, n_samples, n_channels): the common 10 x 3, one sample, the widest, a long frame
SHAPES = [(1, 10, 3), (2, 10, 3), (1, 1, 1), (2, 1, 8), (2, 25, 8), (1, 50, 1)]
FIELDS = ("sequence", "timestamp_us", "sampling_rate_hz", "version", "board_id", "flags", "time_fix")


def _counts(rng, n, ch):
    return rng.integers(-2**31, 2**31, (n, ch), dtype=np.int64)


def intact(rng, shape, seq) -> bytes:
    version, n, ch = shape
    rate = float(rng.choice([100.0, 200.0, 0.1, 100_000.0]))
    if version == 1:
        return encode_frame(seq, T0 + seq * 10_000, rate, _counts(rng, n, ch))
    return encode_frame_v2(seq, T0 + seq * 10_000, rate, _counts(rng, n, ch),
                           board_id=int(rng.integers(0, 2**32)), flags=int(rng.integers(0, 8)),
                           time_fix=str(rng.choice(["free", "ntp", "gps"])))


def forged(rng, shape, seq) -> bytes:
    """A CRC-32 that matches, but a header the decoder must refuse: its CRC-16, the rate,
    or v2's flags, time-fix or reserved field."""
    version, n, ch = shape
    rate, flags, fix, reserved = 100_000, 0, 2, 0
    bad = int(rng.integers(-1, 4 if version == 2 else 1))
    if bad == -1:
        pass  # the header CRC, below
    elif bad == 0:
        rate = int(rng.choice([0, 99, 100_000_001, 2**32 - 1]))
    elif bad == 1:
        flags = int(rng.integers(8, 256))
    elif bad == 2:
        fix = int(rng.integers(3, 256))
    else:
        reserved = int(rng.integers(1, 2**16))
    if version == 1:
        fields = HEADER.pack(SYNC, 1, ch, n, seq, T0, rate, 0)[2:-2]
    else:
        fields = HEADER_V2.pack(SYNC, 2, ch, n, seq, T0, rate, 7, flags, fix, reserved, 0)[2:-2]
    crc16 = header_crc(fields) ^ ((1 << int(rng.integers(16))) if bad == -1 else 0)
    body = fields + struct.pack("<H", crc16) + _counts(rng, n, ch).astype("<i4").tobytes()
    return SYNC + body + CRC.pack(zlib.crc32(body))


def bogus_length(rng) -> bytes:
    """A header whose CRC passes but whose length is wrong (the longest frame)."""
    fields = HEADER.pack(SYNC, 1, 8, 1024, int(rng.integers(0, 2**32)), T0, 100_000, 0)[2:-2]
    return SYNC + fields + struct.pack("<H", header_crc(fields))


def borrowing(rng, shape, seq) -> tuple[bytes, bytes]:
    """A frame cut by its last byte, which is the next frame's first (0xA5), then that
    frame; and that intact frame alone."""
    version, n, ch = shape
    c = _counts(rng, n, ch)
    t = T0
    while (a := encode_frame(seq, t, 100.0, c) if version == 1 else
           encode_frame_v2(seq, t, 100.0, c, board_id=3))[-1] != 0xA5:
        t += 1
    b = intact(rng, shape, seq + 1)
    return a[:-1] + b, b


def damaged_stream(rng, n_pieces: int) -> tuple[bytes, set]:
    """Runs of intact frames with damage between them; also the set of intact frames sent."""
    pieces, sent, seq = [], set(), 0
    for _ in range(n_pieces):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        kind = rng.choice(["run", "run", "run", "long run", "flip", "cut", "junk", "forged",
                           "bogus", "borrow", "sync"])
        if kind in ("run", "long run"):
            count = int(rng.integers(257, 320)) if kind == "long run" else int(rng.integers(1, 40))
            run = [intact(rng, shape, seq + i) for i in range(count)]
            sent.update(run)
            # a forged frame inside the run: the run's checks must stop exactly there
            if rng.random() < 0.3:
                i = int(rng.integers(count))
                sent.discard(run[i])
                run[i] = forged(rng, shape, seq + i)
            pieces += run
            seq += count
        elif kind == "flip":
            f = bytearray(intact(rng, shape, seq))
            f[int(rng.integers(len(f)))] ^= 1 << int(rng.integers(8))
            pieces.append(bytes(f))
        elif kind == "cut":
            f = intact(rng, shape, seq)
            i = int(rng.integers(len(f)))
            pieces.append(f[:i] + f[i + int(rng.integers(1, 40)):])
        elif kind == "junk":
            pieces.append(rng.bytes(int(rng.integers(1, 300))))
        elif kind == "forged":
            pieces.append(forged(rng, shape, seq))
        elif kind == "bogus":
            pieces.append(bogus_length(rng))
        elif kind == "borrow":
            cut, b = borrowing(rng, shape, seq)
            pieces.append(cut)
            sent.add(b)
            seq += 1
        else:
            pieces.append(SYNC[: int(rng.integers(1, 3))])
        seq += 1
    return b"".join(pieces), sent


def read_sizes(rng, n_bytes: int) -> list[int]:
    """Reads the way the node makes them: a byte, about a frame, 4 KiB, a backlog, anything."""
    regime = rng.choice(["tiny", "frame", "4k", "backlog", "mixed"])
    sizes, total = [], 0
    while total < n_bytes:
        r = regime if regime != "mixed" else rng.choice(["tiny", "frame", "4k", "backlog"])
        if r == "tiny" and total > 30_000:  # byte by byte only for a while: the reference is slow
            r = "frame"
        size = {"tiny": lambda: int(rng.integers(1, 20)),
                "frame": lambda: int(rng.integers(100, 400)),
                "4k": lambda: 4096,
                "backlog": lambda: int(rng.choice([1 << 18, int(rng.integers(5000, 300_000))]))}[r]()
        sizes.append(size)
        total += size
    return sizes


def assert_same_frames(got: list[Frame], want: list[Frame]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        for name in FIELDS:
            x, y = getattr(a, name), getattr(b, name)
            assert x == y and type(x) is type(y), (name, x, y)
        assert a.samples.dtype == b.samples.dtype == np.int32
        assert a.samples.shape == b.samples.shape and a.samples.flags.c_contiguous
        assert a.samples.flags.writeable == b.samples.flags.writeable
        np.testing.assert_array_equal(a.samples, b.samples)


def assert_same_state(dec, ref) -> None:
    assert dec.stats.to_dict() == ref.stats.to_dict()
    assert (dec.bytes_accepted, dec.pending) == (ref.bytes_accepted, ref.pending)


def decode_both(stream: bytes, sizes: list[int]):
    """Feed both decoders (frames and batches) read by read, comparing after each read."""
    dec, ref = FrameDecoder(), ReferenceDecoder()
    dec_b, ref_b = FrameDecoder(), ReferenceDecoder()
    out, pos = [], 0
    for size in sizes:
        data = stream[pos:pos + size]
        pos += size
        got = dec.feed(data)
        assert_same_frames(got, ref.feed(data))
        assert_same_state(dec, ref)
        batches, ref_batches = dec_b.feed_batches(data), ref_b.feed_batches(data)
        assert [(b.version, b.records.dtype, b.records.tobytes()) for b in batches] == \
            [(b.version, b.records.dtype, b.records.tobytes()) for b in ref_batches]
        assert_same_state(dec_b, ref_b)
        out += got
    got = dec.flush()
    assert_same_frames(got, ref.flush())
    assert_same_state(dec, ref)
    assert_same_frames(dec_b.flush(), ref_b.flush())
    assert_same_state(dec_b, ref_b)
    return out + got, dec


@pytest.mark.parametrize("seed", range(30))
def test_same_frames_and_counters_as_the_reference(seed):
    rng = np.random.default_rng(seed)
    stream, _ = damaged_stream(rng, int(rng.integers(5, 40)))
    for _ in range(3):
        decode_both(stream, read_sizes(rng, len(stream)))


def test_reference_comparison_sees_every_path():
    """The streams above do reach what they are meant to test: every counter moves."""
    rng = np.random.default_rng(1234)
    totals = {}
    for _ in range(8):
        stream, _ = damaged_stream(rng, 30)
        _, dec = decode_both(stream, [len(stream)])
        for key, value in dec.stats.to_dict().items():
            if key != "last_error":
                totals[key] = totals.get(key, 0) + value
    assert all(totals[k] > 0 for k in ("frames", "bytes_discarded", "crc_errors", "header_errors",
                                       "overlaps", "length_errors")), totals


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("where", [0, 1, 255, 256, 299])
def test_a_forged_frame_ends_a_long_run_exactly_there(shape, where):
    """300 frames in one read (the backlog path), one with a field the decoder must refuse."""
    rng = np.random.default_rng(where)
    frames = [intact(rng, shape, i) for i in range(300)]
    frames[where] = forged(rng, shape, where)
    got, dec = decode_both(b"".join(frames), [len(frames) * len(frames[0])])
    assert [f.sequence for f in got] == [i for i in range(300) if i != where]


@pytest.mark.parametrize("n_bytes", [0, 1, 2, 20, 28, 40])
def test_header_crcs_is_crc_hqx_per_row(n_bytes):
    rows = np.random.default_rng(n_bytes).integers(0, 256, (50, n_bytes), dtype=np.uint8)
    assert header_crcs(rows).tolist() == [binascii.crc_hqx(r.tobytes(), 0xFFFF) for r in rows]
    assert header_crcs(rows[:0]).tolist() == []


def frame_key(f: Frame) -> bytes:
    if f.version == 1:
        return encode_frame(f.sequence, f.timestamp_us, f.sampling_rate_hz, f.samples)
    return encode_frame_v2(f.sequence, f.timestamp_us, f.sampling_rate_hz, f.samples,
                           board_id=f.board_id, flags=f.flags, time_fix=f.time_fix)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 15),
       st.lists(st.integers(1, 70_000), min_size=1, max_size=6))
def test_fuzz_no_exception_no_damaged_frame_same_as_reference(seed, n_pieces, sizes):
    """Whatever the damage and the reads, every frame out is one sent intact, and the
    decoder agrees with its reference."""
    rng = np.random.default_rng(seed)
    stream, sent = damaged_stream(rng, n_pieces)
    reads, total = [], 0
    while total < len(stream):  # the drawn sizes in turn, then 4 KiB reads past 2,000 reads
        reads.append(sizes[len(reads) % len(sizes)] if len(reads) < 2000 else 4096)
        total += reads[-1]
    got, dec = decode_both(stream, reads)
    assert all(frame_key(f) in sent for f in got)
    assert dec.stats.bytes_in == dec.bytes_accepted + dec.stats.bytes_discarded + dec.pending
