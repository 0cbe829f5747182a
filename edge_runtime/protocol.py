"""Serial frame format of the MEMS acquisition board: encoders and decoders.

The wire format is specified in ``docs/serial-protocol.md``; this module is its only
implementation and is used on both ends (``tools.replay.sender`` encodes, the node decodes).
It does no I/O: bytes in, frames out, so it can be fuzzed and reused over any transport.

Binary layout (little-endian), version 1 (24-byte header) and version 2 (32 bytes)::

    offset  size  field           v1  v2
    0       2     sync            x   x   0xA5 0x5A
    2       1     version         1   2
    3       1     n_channels      x   x   1..MAX_CHANNELS
    4       2     n_samples       x   x   samples per channel, 1..MAX_SAMPLES
    6       4     sequence        x   x   uint32, +1 per frame, wraps at 2**32
    10      8     timestamp_us    x   x   int64, UTC microseconds of the first sample
    18      4     rate_mhz        x   x   uint32, sampling rate in mHz (100 Hz -> 100000)
    22      4     board_id            x   uint32, the board's identity
    26      1     flags               x   bit 0 clipping, 1 self-test failed, 2 overrun
    27      1     time_fix            x   0 free-running, 1 NTP, 2 GPS/PPS
    28      2     reserved            x   0
    22/30   2     header_crc      x   x   CRC-16/CCITT-FALSE of bytes 2..header end - 2
    24/32   4*n   samples         x   x   int32 ADC counts, interleaved by sample (s0c0 s0c1 ...)
    end-4   4     crc32           x   x   CRC-32 (zlib.crc32) of bytes 2..end-4

Text mode (one line of integer counts per sample, for the simplest boards) is
:mod:`edge_runtime.protocol_text`.

The header has its own CRC so that a damaged length field is caught at once. A header
whose CRC passes by chance but whose length is wrong cannot stall the stream either:
while the decoder waits for the bytes of a frame, a whole valid frame found inside the
awaited span proves the header wrong (at most one frame time of delay).
"""

from __future__ import annotations

import binascii
import logging
import struct
import zlib
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from .logs import LimitedLog

log = logging.getLogger(__name__)

SYNC = b"\xa5\x5a"
SYNC_U16 = 0x5AA5  # SYNC read as a little-endian uint16
VERSION = 1
VERSION_2 = 2
HEADER = struct.Struct("<2sBBHIqIH")
HEADER_V2 = struct.Struct("<2sBBHIqIIBBHH")
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size  # 24 bytes
HEADER_V2_SIZE = HEADER_V2.size  # 32 bytes
HEADER_SIZES = {VERSION: HEADER_SIZE, VERSION_2: HEADER_V2_SIZE}
MAX_CHANNELS = 8
# Bounds the length a corrupted header can claim (32,796 bytes at most).
MAX_SAMPLES = 1024
# Sanity bounds of the rate field (0.1 Hz to 100 kHz); what a node accepts is narrower
# and set in its configuration.
MIN_RATE_MHZ = 100
MAX_RATE_MHZ = 100_000_000

FLAG_CLIPPING = 1
FLAG_SELFTEST_FAIL = 2
FLAG_OVERRUN = 4
FLAGS_KNOWN = FLAG_CLIPPING | FLAG_SELFTEST_FAIL | FLAG_OVERRUN
TIME_FIX = {0: "free", 1: "ntp", 2: "gps"}
TIME_FIX_CODE = {v: k for k, v in TIME_FIX.items()}


@dataclass(slots=True)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    sequence : int
        Frame counter (uint32, wraps).
    timestamp_us : int
        UTC time of the first sample in microseconds since 1970-01-01.
    sampling_rate_hz : float
        Sampling rate in Hz.
    samples : numpy.ndarray
        ``(n_samples, n_channels)`` int32 ADC counts.
    version : int or str
        1, 2, or ``"text"``.
    board_id : int or None
        The board's 32-bit identity (v2 only).
    flags : int
        Board status bits (v2): :data:`FLAG_CLIPPING`, :data:`FLAG_SELFTEST_FAIL`,
        :data:`FLAG_OVERRUN`.
    time_fix : str
        ``"gps"`` (GPS/PPS), ``"ntp"``, ``"free"`` (free-running), ``"node"`` (text mode:
        stamped on arrival by the node's clock) or ``"unknown"`` (v1).
    """

    sequence: int
    timestamp_us: int
    sampling_rate_hz: float
    samples: np.ndarray
    version: int | str = VERSION
    board_id: int | None = None
    flags: int = 0
    time_fix: str = "unknown"

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[1])


def _check_samples(samples, sampling_rate_hz: float) -> tuple[np.ndarray, int]:
    counts = np.asarray(samples)
    if counts.ndim != 2:
        raise ValueError(f"samples must be (n_samples, n_channels), got shape {counts.shape}")
    n_samples, n_channels = counts.shape
    if not 1 <= n_channels <= MAX_CHANNELS:
        raise ValueError(f"n_channels={n_channels} outside 1..{MAX_CHANNELS}")
    if not 1 <= n_samples <= MAX_SAMPLES:
        raise ValueError(f"n_samples={n_samples} outside 1..{MAX_SAMPLES}")
    if counts.dtype.kind == "f" and not np.all(np.isfinite(counts)):
        raise ValueError("samples hold NaN or inf: a board never sends them; drop the frame")
    info = np.iinfo(np.int32)
    if counts.size and (counts.min() < info.min or counts.max() > info.max):
        raise ValueError("samples do not fit in int32 ADC counts")
    rate_mhz = int(round(sampling_rate_hz * 1000))
    if not MIN_RATE_MHZ <= rate_mhz <= MAX_RATE_MHZ:
        raise ValueError(f"sampling rate {sampling_rate_hz} Hz not representable")
    return counts, rate_mhz


def encode_frame(sequence: int, timestamp_us: int, sampling_rate_hz: float, samples) -> bytes:
    """Encode one version-1 frame.

    Parameters
    ----------
    sequence : int
        Frame counter; taken modulo 2**32.
    timestamp_us : int
        UTC time of the first sample, microseconds since the epoch.
    sampling_rate_hz : float
        Sampling rate in Hz (sent as integer mHz).
    samples : array_like
        ``(n_samples, n_channels)`` ADC counts; must fit in int32 (NaN/inf refused).
    """
    counts, rate_mhz = _check_samples(samples, sampling_rate_hz)
    n_samples, n_channels = counts.shape
    fields = HEADER.pack(SYNC, VERSION, n_channels, n_samples, sequence % 2**32,
                         int(timestamp_us), rate_mhz, 0)[2:-2]
    header = fields + struct.pack("<H", header_crc(fields))
    body = header + counts.astype("<i4").tobytes()
    return SYNC + body + CRC.pack(zlib.crc32(body))


def encode_frame_v2(sequence: int, timestamp_us: int, sampling_rate_hz: float, samples,
                    board_id: int, flags: int = 0, time_fix: str = "gps") -> bytes:
    """Encode one version-2 frame (board identity, status flags, time-fix state).

    Parameters
    ----------
    board_id : int
        The board's 32-bit identity.
    flags : int
        OR of :data:`FLAG_CLIPPING`, :data:`FLAG_SELFTEST_FAIL`, :data:`FLAG_OVERRUN`.
    time_fix : str
        ``"gps"``, ``"ntp"`` or ``"free"``.

    Other parameters as :func:`encode_frame`.
    """
    counts, rate_mhz = _check_samples(samples, sampling_rate_hz)
    if not 0 <= board_id < 2**32:
        raise ValueError(f"board_id {board_id} is not a uint32")
    if flags & ~FLAGS_KNOWN & 0xFF or not 0 <= flags <= 0xFF:
        raise ValueError(f"flags {flags:#x} has unknown bits")
    if time_fix not in TIME_FIX_CODE:
        raise ValueError(f"time_fix {time_fix!r} not one of {sorted(TIME_FIX_CODE)}")
    n_samples, n_channels = counts.shape
    fields = HEADER_V2.pack(SYNC, VERSION_2, n_channels, n_samples, sequence % 2**32,
                            int(timestamp_us), rate_mhz, board_id, flags, TIME_FIX_CODE[time_fix],
                            0, 0)[2:-2]
    header = fields + struct.pack("<H", header_crc(fields))
    body = header + counts.astype("<i4").tobytes()
    return SYNC + body + CRC.pack(zlib.crc32(body))


def header_crc(fields: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of the header fields."""
    return binascii.crc_hqx(fields, 0xFFFF)


def _crc16_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint16)
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table[i] = crc & 0xFFFF
    return table


_CRC16_TABLE = _crc16_table()
_CRC16_BY_POSITION: dict = {}


def _crc16_by_position(n_bytes: int) -> tuple[np.ndarray, np.ndarray, np.uint16]:
    """CRC-16/CCITT-FALSE is affine in its input: the CRC of ``n_bytes`` bytes is the CRC of
    as many zero bytes XOR one table entry per byte, chosen by its position and value.

    Returns the ``(n_bytes, 256)`` uint16 table flattened, each position's offset into it
    and the CRC of the zero bytes.
    """
    entry = _CRC16_BY_POSITION.get(n_bytes)
    if entry is None:
        table = np.empty((n_bytes, 256), dtype=np.uint16)
        crc = _CRC16_TABLE.copy()  # each byte value last, from 0
        for i in range(n_bytes - 1, -1, -1):
            table[i] = crc
            crc = (crc << 8) ^ _CRC16_TABLE[crc >> 8]  # one more zero byte after it
        offsets = np.arange(n_bytes, dtype=np.intp) * 256
        entry = _CRC16_BY_POSITION[n_bytes] = (table.ravel(), offsets, np.uint16(header_crc(bytes(n_bytes))))
    return entry


def header_crcs(headers: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT-FALSE of each row of a ``(n, k)`` uint8 array, vectorized over rows.

    One table look-up per byte and one XOR reduction per row (the CRC's linearity), so a
    run of a few frames costs a few array operations, not one per header byte.
    """
    table, offsets, zeros = _crc16_by_position(headers.shape[1])
    return np.bitwise_xor.reduce(table[headers + offsets], axis=1) ^ zeros


def frame_dtype(version: int, n_samples: int, n_channels: int) -> np.dtype:
    """Structured dtype of one whole binary frame (packed, little-endian)."""
    head = [("sync", "<u2"), ("version", "u1"), ("n_channels", "u1"), ("n_samples", "<u2"),
            ("sequence", "<u4"), ("timestamp_us", "<i8"), ("rate_mhz", "<u4")]
    if version == VERSION_2:
        head += [("board_id", "<u4"), ("flags", "u1"), ("time_fix", "u1"), ("reserved", "<u2")]
    return np.dtype(head + [("header_crc", "<u2"), ("samples", "<i4", (n_samples, n_channels)),
                            ("crc32", "<u4")])


def frame_size(version: int, n_samples: int, n_channels: int) -> int:
    """Bytes of a whole binary frame."""
    return HEADER_SIZES[version] + 4 * n_samples * n_channels + CRC.size


MAX_FRAME_SIZE = frame_size(VERSION_2, MAX_SAMPLES, MAX_CHANNELS)
# Bytes 18 to the header CRC: the rate, and in v2 the board id, flags, time fix and
# reserved bytes. A board keeps them from frame to frame; sequence and time change.
_FIXED_OFFSET = 18
_FLAGS_UNKNOWN = np.uint32(0xFF & ~FLAGS_KNOWN)
_TIME_FIX_NAMES = tuple(TIME_FIX[code] for code in range(len(TIME_FIX)))


@dataclass(frozen=True)
class _Layout:
    """One frame shape: its sizes and the dtypes that view a run of such frames in place.

    ``heads`` has the frame's size as itemsize and only the fields the checks and
    :class:`Frame` read (the samples stay bytes until a frame is accepted), some of them
    twice: ``lead`` (bytes 0-5: sync, version, n_channels, n_samples) and ``fixed``
    (bytes 18 to the header CRC) as uint8 rows, v2's ``status`` (bytes 26-29: flags |
    time_fix << 8 | reserved << 16) as one ``'<u4'``. ``lead_bytes`` is this shape's lead.
    """

    version: int
    n_samples: int
    n_channels: int
    size: int
    header_size: int
    records: np.dtype
    heads: np.dtype
    lead_bytes: np.ndarray


_LAYOUTS: dict = {}


def _layout(version: int, n_samples: int, n_channels: int) -> _Layout:
    key = (version, n_samples, n_channels)
    lay = _LAYOUTS.get(key)
    if lay is None:
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        size, hsize = frame_size(*key), HEADER_SIZES[version]
        fields = {"lead": (("u1", 6), 0), "sequence": ("<u4", 6), "timestamp_us": ("<i8", 10),
                  "rate_mhz": ("<u4", 18), "fixed": (("u1", hsize - 2 - _FIXED_OFFSET), _FIXED_OFFSET),
                  "header_crc": ("<u2", hsize - 2), "crc32": ("<u4", size - 4)}
        if version == VERSION_2:
            fields.update(board_id=("<u4", 22), flags=("u1", 26), time_fix=("u1", 27),
                          status=("<u4", 26))
        heads = np.dtype({"names": list(fields), "formats": [f for f, _ in fields.values()],
                          "offsets": [o for _, o in fields.values()], "itemsize": size})
        lead = np.frombuffer(SYNC + struct.pack("<BBH", version, n_channels, n_samples), np.uint8)
        lay = _LAYOUTS[key] = _Layout(version, n_samples, n_channels, size, hsize,
                                      frame_dtype(*key), heads, lead)
    return lay


def _run_checks(buf, pos: int, lay: _Layout, heads: np.ndarray, uniform: bool) -> int:
    """How many frames of a run (``heads``: its frames of one shape at ``pos``, viewed in
    place) pass every check in a row from the first: both CRCs and the field bounds.

    The CRC-32s are one C call per frame, over bytes objects that one ``tolist`` makes
    (cheaper than an array view per frame); the header CRCs, the rate bounds and v2's
    status byte are array expressions over the run. A ``uniform`` run (every frame's fixed
    fields equal the first's, which passed :meth:`FrameDecoder._header`) needs no field
    bounds.
    """
    k, size = len(heads), lay.size
    crc_spans = np.ndarray((k,), f"V{size - 6}", buf, pos + 2, (size,)).tolist()  # bytes 2..end-4
    ok = np.fromiter(map(zlib.crc32, crc_spans), np.uint32, k) == heads["crc32"]
    del crc_spans
    fields = np.ndarray((k, lay.header_size - 4), np.uint8, buf, pos + 2, (size, 1))
    ok &= header_crcs(fields) == heads["header_crc"]
    del fields
    if not uniform:
        ok &= heads["rate_mhz"] - np.uint32(MIN_RATE_MHZ) <= np.uint32(MAX_RATE_MHZ - MIN_RATE_MHZ)
        if lay.version == VERSION_2:
            status = heads["status"]  # flags' unknown bits none, time_fix <= 2, reserved 0
            ok &= ((status & _FLAGS_UNKNOWN) | (status >> np.uint32(8))) <= np.uint32(2)
    good = int(ok.argmin())  # the first False, or 0 when none is
    return good if not ok[good] else k


def _frames_at(buf, pos: int, good: int, lay: _Layout, heads, head, uniform: bool) -> list[Frame]:
    """:class:`Frame` objects of the ``good`` accepted frames at ``pos``: one copy of the
    samples for them all, fields as lists, one object per frame and no other per-frame work.

    ``heads`` views the run (None for a lone frame); ``head`` holds the first frame's
    fields unpacked, which a ``uniform`` run's frames share but for sequence and time.
    """
    hsize, n_s, n_c = lay.header_size, lay.n_samples, lay.n_channels
    _v, _c, _s, seq, ts, rate_mhz, board_id, flags, time_fix = head
    if heads is None:
        samples = np.ndarray((n_s, n_c), "<i4", buf, pos + hsize).astype(np.int32)
        if lay.version == VERSION_2:
            return [Frame(seq, ts, rate_mhz / 1000.0, samples, VERSION_2, board_id, flags,
                          _TIME_FIX_NAMES[time_fix])]
        return [Frame(seq, ts, rate_mhz / 1000.0, samples)]
    # one copy, native byte order, owning its memory; a frame's samples are views of it
    samples = np.ndarray((good, n_s, n_c), "<i4", buf, pos + hsize, (lay.size, 4 * n_c, 4)).astype(np.int32)
    h = heads[:good]
    seq, ts = h["sequence"].tolist(), h["timestamp_us"].tolist()
    if uniform:
        rate, board_id, flags = repeat(rate_mhz / 1000.0), repeat(board_id), repeat(flags)
        time_fix = repeat(_TIME_FIX_NAMES[time_fix])
    else:
        rate = (h["rate_mhz"] / 1000.0).tolist()
        if lay.version == VERSION_2:
            board_id, flags = h["board_id"].tolist(), h["flags"].tolist()
            time_fix = map(_TIME_FIX_NAMES.__getitem__, h["time_fix"].tolist())
    if lay.version == VERSION_2:
        return list(map(Frame, seq, ts, rate, samples, repeat(VERSION_2), board_id, flags, time_fix))
    return list(map(Frame, seq, ts, rate, samples))


def _batch_at(buf, pos: int, good: int, lay: _Layout, heads, head, uniform: bool) -> list:
    """The ``good`` accepted frames at ``pos`` as one :class:`FrameBatch`."""
    # A copy of the bytes, viewed: a structured array's own copy() goes field by field.
    return [FrameBatch(np.frombuffer(buf[pos:pos + good * lay.size], dtype=lay.records), lay.version)]


@dataclass
class FrameBatch:
    """Consecutive frames of one shape decoded at once (arrays, no per-frame objects).

    Attributes
    ----------
    records : numpy.ndarray
        Structured array (:func:`frame_dtype`), one element per frame; ``records["samples"]``
        is ``(n_frames, n_samples, n_channels)`` int32 counts.
    version : int
        1 or 2.
    """

    records: np.ndarray
    version: int

    def __len__(self) -> int:
        return len(self.records)

    def frames(self) -> list[Frame]:
        """The batch as :class:`Frame` objects."""
        r = self.records
        samples = r["samples"].astype(np.int32)  # one copy, native byte order, owns its memory
        seq = r["sequence"].tolist()
        ts = r["timestamp_us"].tolist()
        rate = (r["rate_mhz"] / 1000.0).tolist()
        if self.version == VERSION_2:
            fix = [TIME_FIX.get(x, "unknown") for x in r["time_fix"].tolist()]
            return list(map(Frame, seq, ts, rate, samples, repeat(VERSION_2), r["board_id"].tolist(),
                            r["flags"].tolist(), fix))
        return list(map(Frame, seq, ts, rate, samples))


@dataclass
class DecoderStats:
    """Counters of a :class:`FrameDecoder`; all monotonically increasing.

    ``overlaps`` counts frames refused because they end inside the next frame (a frame
    cut short that borrowed its successor's first bytes); ``length_errors`` headers whose
    CRC passed but whose length was proved wrong by a whole frame inside the awaited span.
    """

    frames: int = 0
    bytes_in: int = 0
    bytes_discarded: int = 0
    crc_errors: int = 0
    header_errors: int = 0
    overlaps: int = 0
    length_errors: int = 0
    last_error: str = ""

    def to_dict(self) -> dict:
        return {
            "frames": self.frames, "bytes_in": self.bytes_in,
            "bytes_discarded": self.bytes_discarded, "crc_errors": self.crc_errors,
            "header_errors": self.header_errors, "overlaps": self.overlaps,
            "length_errors": self.length_errors, "last_error": self.last_error,
        }


_INCOMPLETE = object()


class FrameDecoder:
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
        self._log = LimitedLog(log)

    @property
    def pending(self) -> int:
        """Bytes buffered, waiting for the rest of a frame."""
        return len(self._buf)

    def _error(self, kind: str, message: str) -> None:
        self.stats.last_error = message
        self._log(logging.WARNING, kind, "%s", message)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames completed by them (possibly none)."""
        self.stats.bytes_in += len(data)
        self._buf += data
        return self._parse(False, _frames_at)

    def flush(self) -> list[Frame]:
        """The line went quiet: release a frame held back only because the bytes after it
        (needed to rule out that it borrowed them) have not come."""
        return self._parse(True, _frames_at)

    def feed_batches(self, data: bytes) -> list[FrameBatch]:
        """Like :meth:`feed`, but frames come as :class:`FrameBatch` arrays (fast path)."""
        self.stats.bytes_in += len(data)
        self._buf += data
        return self._parse(False, _batch_at)

    # ---------------------------------------------------------------- parsing
    def _header(self, buf, pos: int):
        """Header at ``pos``: ``_INCOMPLETE``, a problem string, or its fields
        ``(version, n_channels, n_samples, sequence, timestamp_us, rate_mhz, board_id,
        flags, time_fix)``."""
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
        (version, n_channels, n_samples, seq, ts, rate_mhz, board, flags, time_fix,
         reserved, crc16) = fields
        if header_crc(buf[pos + 2:pos + hsize - 2]) != crc16:
            return "header CRC"
        if not 1 <= n_channels <= MAX_CHANNELS:
            return f"n_channels {n_channels}"
        if not 1 <= n_samples <= MAX_SAMPLES:
            return f"n_samples {n_samples}"
        if not MIN_RATE_MHZ <= rate_mhz <= MAX_RATE_MHZ:
            return f"rate_mhz {rate_mhz}"
        if version == VERSION_2 and (flags & ~FLAGS_KNOWN or time_fix not in TIME_FIX or reserved):
            return f"v2 flags {flags:#x} time_fix {time_fix} reserved {reserved}"
        return version, n_channels, n_samples, seq, ts, rate_mhz, board, flags, time_fix

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

    def _run(self, buf, pos: int, lay: _Layout):
        """The run of frames of one shape starting at ``pos`` (a valid header).

        Returns ``(good, heads, uniform)``: how many of its frames from the first are
        valid, the run viewed in place (``None`` for a lone frame), and whether the run's
        frames all share the first one's fixed fields. A view made with ``np.ndarray``
        does not pin the bytearray: it is used only before :meth:`_parse` resizes it.
        """
        size = lay.size
        k = (len(buf) - pos) // size
        if k > 1:
            heads = np.ndarray((k,), lay.heads, buf, pos)
            lead, fixed = heads["lead"], heads["fixed"]
            if not (np.count_nonzero(lead != lay.lead_bytes) or np.count_nonzero(fixed != fixed[0])):
                return _run_checks(buf, pos, lay, heads, True), heads, True
            # sync, version, n_channels, n_samples: the run ends where they change
            same = (lead == lay.lead_bytes).all(axis=1)
            del lead, fixed
            first_other = int(same.argmin())
            if not same[first_other]:
                k = first_other
            if k > 1:
                heads = heads[:k]
                return _run_checks(buf, pos, lay, heads, False), heads, False
            del heads
        # one frame, its header checked by _header: only the CRC-32 is left
        with memoryview(buf) as view:
            crc = zlib.crc32(view[pos + 2:pos + size - 4])
        return int(crc == CRC.unpack_from(buf, pos + size - 4)[0]), None, True

    def _parse(self, final: bool, emit) -> list:
        """Decode what the buffer holds; ``emit`` turns accepted frames into the output."""
        buf = self._buf
        stats = self.stats
        out: list = []
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
                self._resync("header", f"serial frame header rejected ({head}); resyncing")
                pos += 1
                continue
            lay = _layout(head[0], head[2], head[1])
            size = lay.size
            if n - pos < size:
                if self._proved_wrong(buf, pos):
                    stats.length_errors += 1
                    self._resync("length", f"serial frame header claims {size} bytes but a whole "
                                           "frame follows inside them; resyncing")
                    pos += 1
                    continue
                break
            good, heads, uniform = self._run(buf, pos, lay)
            if not good:
                # The first frame of the run fails its CRC: drop one byte, resync (the
                # frame's bytes may hold the start of the next frame).
                stats.crc_errors += 1
                self._resync("crc", f"serial frame seq={head[3]} failed CRC; dropped, resyncing",
                             header=False)
                pos += 1
                continue
            # The last good frame: does it end inside the next one? (When a frame of the
            # run failed, the next starts with a sync exactly there: no.)
            borrow = self._borrows(buf, pos + good * size, final)
            if borrow is not False:
                good -= 1  # refused, or held for the bytes that tell
            if good:
                out += emit(buf, pos, good, lay, heads, head, uniform)
                stats.frames += good
                self.bytes_accepted += good * size
                pos += good * size
            heads = None  # no view of the buffer outlives this run
            if borrow:
                stats.overlaps += 1
                self._resync("overlap", "serial frame ends inside the next frame (cut short, it "
                                        "borrowed the next frame's first bytes); dropped", header=False)
                pos += 1
            elif borrow is None:
                break
        if pos:
            del buf[:pos]
        if len(buf) > self._max_buffer:  # cannot happen with the bounds above; belt and braces
            stats.bytes_discarded += len(buf)
            buf.clear()
        return out

    def _resync(self, kind: str, message: str, header: bool = True) -> None:
        """Count a rejected header or frame and its one dropped byte."""
        if header:
            self.stats.header_errors += 1
        self.stats.bytes_discarded += 1
        self._error(kind, message)
