"""The frame decoder as it was before its run checks were rewritten (765148f), kept as the
reference the new decoder must match frame for frame and counter for counter
(tests/test_protocol_equivalence.py). Test code: not imported by the product.
"""

from __future__ import annotations

import binascii
import logging
import struct
import zlib
from itertools import repeat

import numpy as np

from edge_runtime.protocol import (
    CRC,
    FLAGS_KNOWN,
    HEADER,
    HEADER_SIZES,
    HEADER_V2,
    MAX_CHANNELS,
    MAX_FRAME_SIZE,
    MAX_RATE_MHZ,
    MAX_SAMPLES,
    MIN_RATE_MHZ,
    SYNC,
    TIME_FIX,
    VERSION,
    VERSION_2,
    DecoderStats,
    Frame,
    frame_dtype,
    frame_size,
    header_crc,
)

_INCOMPLETE = object()


def _crc16_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint16)
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table[i] = crc & 0xFFFF
    return table


_CRC16_TABLE = _crc16_table()


def header_crcs(headers: np.ndarray) -> np.ndarray:
    crc = np.full(headers.shape[0], 0xFFFF, dtype=np.uint16)
    for j in range(headers.shape[1]):
        crc = (crc << 8) ^ _CRC16_TABLE[(crc >> 8) ^ headers[:, j]]
    return crc


def _dtype(version: int, n_samples: int, n_channels: int) -> np.dtype:
    return frame_dtype(version, n_samples, n_channels)


class _Batch:
    def __init__(self, records, version):
        self.records, self.version = records, version

    def __len__(self):
        return len(self.records)


def FrameBatch(records, version):  # noqa: N802 - the name the copied code calls
    return _Batch(records, version)


def _frames(batch) -> list[Frame]:
    r = batch.records
    samples = r["samples"].astype(np.int32)
    seq = r["sequence"].tolist()
    ts = r["timestamp_us"].tolist()
    rate = (r["rate_mhz"] / 1000.0).tolist()
    if batch.version == VERSION_2:
        fix = [TIME_FIX.get(x, "unknown") for x in r["time_fix"].tolist()]
        return list(map(Frame, seq, ts, rate, samples, repeat(VERSION_2), r["board_id"].tolist(),
                        r["flags"].tolist(), fix))
    return list(map(Frame, seq, ts, rate, samples))


class ReferenceDecoder:
    """Incremental decoder of v1 and v2 frames: feed it bytes, get whole frames back.

    Anything that is not a valid frame is dropped and counted, and decoding resumes at
    the next sync pattern, so a burst of line noise costs the frames it touched and no
    more. The decoder never raises on input. Runs of frames of one shape are parsed at
    once with a structured dtype over the buffer (:meth:`feed_batches`).

    Every byte fed is accounted for: ``bytes_in == bytes of accepted frames +
    bytes_discarded + pending`` (:attr:`pending` bytes wait for the rest of a frame).
    """

    def __init__(self, max_buffer: int = 1 << 16):
        self._buf = bytearray()
        self._max_buffer = max(max_buffer, 2 * MAX_FRAME_SIZE)
        self.stats = DecoderStats()
        self.bytes_accepted = 0
        self._log = lambda *args: None

    @property
    def pending(self) -> int:
        """Bytes buffered, waiting for the rest of a frame."""
        return len(self._buf)

    def _error(self, kind: str, message: str) -> None:
        self.stats.last_error = message
        self._log(logging.WARNING, kind, "%s", message)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames completed by them (possibly none)."""
        out: list[Frame] = []
        for batch in self.feed_batches(data):
            out += _frames(batch)
        return out

    def flush(self) -> list[Frame]:
        """The line went quiet: release a frame held back only because the bytes after it
        (needed to rule out that it borrowed them) have not come."""
        out: list[Frame] = []
        for batch in self._parse(final=True):
            out += _frames(batch)
        return out

    def feed_batches(self, data: bytes) -> list[FrameBatch]:
        """Like :meth:`feed`, but frames come as :class:`FrameBatch` arrays (fast path)."""
        self.stats.bytes_in += len(data)
        self._buf += data
        return self._parse(final=False)

    # ---------------------------------------------------------------- parsing
    def _header(self, buf, pos: int):
        """Header at ``pos``: ``_INCOMPLETE``, a problem string, or its fields."""
        if len(buf) - pos < 3:
            return _INCOMPLETE
        version = buf[pos + 2]
        if version not in HEADER_SIZES:
            return f"version {version}"
        hsize = HEADER_SIZES[version]
        if len(buf) - pos < hsize:
            return _INCOMPLETE
        if version == VERSION:
            f = HEADER.unpack_from(buf, pos)
            fields = (f[1], f[2], f[3], f[4], f[5], f[6], None, 0, 0, 0, f[7])
        else:
            fields = HEADER_V2.unpack_from(buf, pos)[1:]
        (version, n_channels, n_samples, _seq, _ts, rate_mhz, _board, flags, time_fix,
         reserved, crc16) = fields
        if header_crc(bytes(buf[pos + 2:pos + hsize - 2])) != crc16:
            return "header CRC"
        if not 1 <= n_channels <= MAX_CHANNELS:
            return f"n_channels {n_channels}"
        if not 1 <= n_samples <= MAX_SAMPLES:
            return f"n_samples {n_samples}"
        if not MIN_RATE_MHZ <= rate_mhz <= MAX_RATE_MHZ:
            return f"rate_mhz {rate_mhz}"
        if version == VERSION_2 and (flags & ~FLAGS_KNOWN or time_fix not in TIME_FIX or reserved):
            return f"v2 flags {flags:#x} time_fix {time_fix} reserved {reserved}"
        return version, n_channels, n_samples

    def _whole_frame_at(self, buf, pos: int) -> bool:
        """A complete, valid frame starts at ``pos``."""
        head = self._header(buf, pos)
        if not isinstance(head, tuple):
            return False
        size = frame_size(head[0], head[2], head[1])
        if len(buf) - pos < size:
            return False
        return zlib.crc32(memoryview(buf)[pos + 2:pos + size - 4]) == \
            CRC.unpack_from(buf, pos + size - 4)[0]

    def _proved_wrong(self, buf, pos: int) -> bool:
        """While waiting for a frame at ``pos``: does a whole valid frame start inside it?"""
        q = buf.find(SYNC, pos + 1)
        while q >= 0:
            if self._whole_frame_at(buf, q):
                return True
            q = buf.find(SYNC, q + 1)
        return False

    def _borrows(self, buf, end: int, final: bool):
        """Does the frame ending at ``end`` end inside the next frame?

        True when a valid header starts in its last 4 bytes (its CRC field): the frame
        was cut short and its CRC matched bytes borrowed from its successor by chance.
        False when not. ``None`` when it cannot be told yet (a sync byte there, the rest
        of the header not in) and more bytes may come.
        """
        if buf[end:end + 2] == SYNC:
            return False  # the next frame starts exactly where this one ends
        undecided = False
        for p in range(end - 4, end):
            if buf[p] != 0xA5 or (p + 1 < len(buf) and buf[p + 1] != 0x5A):
                continue
            head = self._header(buf, p)
            if head is _INCOMPLETE:
                undecided = True
            elif isinstance(head, tuple):
                return True
        return None if undecided and not final else False

    def _run(self, buf, pos: int, version: int, n_channels: int, n_samples: int):
        """Check the run of frames of one shape starting at ``pos`` (a valid header).

        Returns ``(k, good, records)``: frames of this shape in a row, how many of them
        from the first are valid, and a copy of those records. The buffer views are
        released on return, so the caller may resize the buffer.

        Field checks are numpy expressions over the whole run; the two CRCs are one C
        call per frame mapped over memoryview slices (no Python-level loop body), the
        header CRC vectorised over rows instead when the run is long (a backlog), where
        its 20-odd column steps cost less than a call per frame.
        """
        size = frame_size(version, n_samples, n_channels)
        k = (len(buf) - pos) // size
        dtype = _dtype(version, n_samples, n_channels)
        if k == 1:  # one frame, its header checked by _header: only the CRC-32 is left
            with memoryview(buf) as view:
                crc = zlib.crc32(view[pos + 2:pos + size - 4])
            good = int(crc == CRC.unpack_from(buf, pos + size - 4)[0])
            return 1, good, np.frombuffer(buf[pos:pos + good * size], dtype=dtype)
        rec = np.frombuffer(buf, dtype=dtype, count=k, offset=pos)
        if k > 1:
            # sync, version, n_channels, n_samples: the first 6 bytes equal the first frame's
            lead = np.ndarray((k,), "<u4", buf, pos, (size,))
            shape = np.ndarray((k,), "<u2", buf, pos + 4, (size,))
            same = (lead == lead[0]) & (shape == shape[0])
            if not same.all():
                k = int(np.argmin(same))
                rec = rec[:k]
            del lead, shape
        hsize = HEADER_SIZES[version]
        end = pos + k * size
        starts = range(pos + 2, end, size)
        view = memoryview(buf)
        try:  # the slices and maps are consumed and freed inside, so the view can be released
            if k >= 256:
                raw = np.frombuffer(buf, dtype=np.uint8, count=k * size, offset=pos).reshape(k, size)
                ok = header_crcs(raw[:, 2:hsize - 2]) == rec["header_crc"]
                del raw
            else:
                heads = map(view.__getitem__, map(slice, starts, range(pos + hsize - 2, end, size)))
                ok = np.fromiter(map(binascii.crc_hqx, heads, repeat(0xFFFF)), np.uint16, k) == \
                    rec["header_crc"]
                del heads
            bodies = map(view.__getitem__, map(slice, starts, range(pos + size - 4, end, size)))
            ok &= np.fromiter(map(zlib.crc32, bodies), np.uint32, k) == rec["crc32"]
            del bodies
        finally:
            view.release()
        rate = rec["rate_mhz"]
        ok &= (rate >= MIN_RATE_MHZ) & (rate <= MAX_RATE_MHZ)
        if version == VERSION_2:
            ok &= ((rec["flags"] & np.uint8(0xFF & ~FLAGS_KNOWN)) == 0) & (rec["time_fix"] <= 2) & \
                (rec["reserved"] == 0)
        good = k if ok.all() else int(np.argmin(ok))
        del rec, rate
        # A copy of the bytes, viewed: a structured array's own copy() goes field by field.
        return k, good, np.frombuffer(buf[pos:pos + good * size], dtype=dtype)

    def _parse(self, final: bool) -> list[FrameBatch]:
        buf = self._buf
        stats = self.stats
        batches: list[FrameBatch] = []
        pos = 0
        n = len(buf)
        while True:
            start = buf.find(SYNC, pos)
            if start < 0:
                # Keep a trailing 0xA5: it may be the first half of the next sync.
                keep = 1 if n > pos and buf[n - 1] == 0xA5 else 0
                stats.bytes_discarded += n - keep - pos
                pos = n - keep
                break
            if start > pos:
                stats.bytes_discarded += start - pos
                pos = start
            head = self._header(buf, pos)
            if head is _INCOMPLETE:
                break
            if not isinstance(head, tuple):
                stats.header_errors += 1
                self._error("header", f"serial frame header rejected ({head}); resyncing")
                stats.bytes_discarded += 1
                pos += 1
                continue
            version, n_channels, n_samples = head
            size = frame_size(version, n_samples, n_channels)
            if n - pos < size:
                if self._proved_wrong(buf, pos):
                    stats.header_errors += 1
                    stats.length_errors += 1
                    self._error("length", f"serial frame header claims {size} bytes but a whole "
                                          "frame follows inside them; resyncing")
                    stats.bytes_discarded += 1
                    pos += 1
                    continue
                break
            k, good, rec = self._run(buf, pos, version, n_channels, n_samples)
            if not good:
                # The first frame of the run fails its CRC: drop one byte, resync (the
                # frame's bytes may hold the start of the next frame).
                stats.crc_errors += 1
                seq = struct.unpack_from("<I", buf, pos + 6)[0]
                self._error("crc", f"serial frame seq={seq} failed CRC; dropped, resyncing")
                stats.bytes_discarded += 1
                pos += 1
                continue
            hold = refused = False
            if good == k:  # the last frame of the run: does it end inside the next one?
                borrow = self._borrows(buf, pos + good * size, final)
                if borrow is None:
                    hold, good = True, good - 1  # wait for the bytes that tell
                elif borrow:
                    refused, good = True, good - 1
            if good:
                batches.append(FrameBatch(rec[:good], version))
                stats.frames += good
                self.bytes_accepted += good * size
                pos += good * size
            if refused:
                stats.overlaps += 1
                self._error("overlap", "serial frame ends inside the next frame (cut short, it "
                                       "borrowed the next frame's first bytes); dropped")
                stats.bytes_discarded += 1
                pos += 1
            elif hold:
                break
        if pos:
            del buf[:pos]
        if len(buf) > self._max_buffer:  # cannot happen with the bounds above; belt and braces
            stats.bytes_discarded += len(buf)
            buf.clear()
        return batches
