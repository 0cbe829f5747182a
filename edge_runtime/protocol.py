"""Serial frame format of the MEMS acquisition board: encoder and decoder.

The wire format is specified in ``docs/serial-protocol.md``; this module is its only
implementation and is used on both ends (``tools.replay`` encodes, the node decodes).
It does no I/O: bytes in, frames out, so it can be fuzzed and reused over any transport.

Layout (little-endian, version 1)::

    offset  size  field
    0       2     sync            0xA5 0x5A
    2       1     version         1
    3       1     n_channels      1..MAX_CHANNELS
    4       2     n_samples       samples per channel, 1..MAX_SAMPLES
    6       4     sequence        uint32, +1 per frame, wraps at 2**32
    10      8     timestamp_us    int64, UTC microseconds of the first sample
    18      4     rate_mhz        uint32, sampling rate in mHz (100 Hz -> 100000)
    22      2     header_crc      CRC-16/CCITT-FALSE of bytes 2..21
    24      4*n   samples         int32 ADC counts, interleaved by sample (s0c0 s0c1 ...)
    24+4n   4     crc32           CRC-32 (IEEE 802.3, as zlib.crc32) of bytes 2..24+4n

The header has its own CRC so that a damaged length field is caught at once: without
it the decoder would wait for the bytes of a frame that does not exist and stall the
stream for as long as the bogus length takes to arrive.
"""

from __future__ import annotations

import binascii
import logging
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .logs import LimitedLog

log = logging.getLogger(__name__)

SYNC = b"\xa5\x5a"
VERSION = 1
HEADER = struct.Struct("<2sBBHIqIH")
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size  # 24 bytes
MAX_CHANNELS = 8
# Bounds the length a corrupted header can claim, so a bad byte never makes the
# decoder wait for megabytes that will not come.
MAX_SAMPLES = 1024
# Sanity bounds of the rate field (0.1 Hz to 100 kHz); what a node accepts is narrower
# and set in its configuration.
MIN_RATE_MHZ = 100
MAX_RATE_MHZ = 100_000_000


@dataclass(frozen=True)
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
    """

    sequence: int
    timestamp_us: int
    sampling_rate_hz: float
    samples: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[1])



def encode_frame(sequence: int, timestamp_us: int, sampling_rate_hz: float, samples) -> bytes:
    """Encode one frame.

    Parameters
    ----------
    sequence : int
        Frame counter; taken modulo 2**32.
    timestamp_us : int
        UTC time of the first sample, microseconds since the epoch.
    sampling_rate_hz : float
        Sampling rate in Hz (sent as integer mHz).
    samples : array_like
        ``(n_samples, n_channels)`` ADC counts; must fit in int32.
    """
    counts = np.asarray(samples)
    if counts.ndim != 2:
        raise ValueError(f"samples must be (n_samples, n_channels), got shape {counts.shape}")
    n_samples, n_channels = counts.shape
    if not 1 <= n_channels <= MAX_CHANNELS:
        raise ValueError(f"n_channels={n_channels} outside 1..{MAX_CHANNELS}")
    if not 1 <= n_samples <= MAX_SAMPLES:
        raise ValueError(f"n_samples={n_samples} outside 1..{MAX_SAMPLES}")
    info = np.iinfo(np.int32)
    if counts.size and (counts.min() < info.min or counts.max() > info.max):
        raise ValueError("samples do not fit in int32 ADC counts")
    rate_mhz = int(round(sampling_rate_hz * 1000))
    if not MIN_RATE_MHZ <= rate_mhz <= MAX_RATE_MHZ:
        raise ValueError(f"sampling rate {sampling_rate_hz} Hz not representable")
    fields = HEADER.pack(SYNC, VERSION, n_channels, n_samples, sequence % 2**32,
                         int(timestamp_us), rate_mhz, 0)[2:-2]
    header = fields + struct.pack("<H", header_crc(fields))
    body = header + counts.astype("<i4").tobytes()
    return SYNC + body + CRC.pack(zlib.crc32(body))


def header_crc(fields: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of the header fields."""
    return binascii.crc_hqx(fields, 0xFFFF)


@dataclass
class DecoderStats:
    """Counters of a :class:`FrameDecoder`; all monotonically increasing."""

    frames: int = 0
    bytes_in: int = 0
    bytes_discarded: int = 0
    crc_errors: int = 0
    header_errors: int = 0
    last_error: str = ""

    def to_dict(self) -> dict:
        return {
            "frames": self.frames, "bytes_in": self.bytes_in,
            "bytes_discarded": self.bytes_discarded, "crc_errors": self.crc_errors,
            "header_errors": self.header_errors, "last_error": self.last_error,
        }


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole frames back.

    Anything that is not a valid frame is dropped and counted, and decoding resumes at
    the next sync pattern, so a burst of line noise costs the frames it touched and no
    more. The decoder never raises on input.
    """

    def __init__(self, max_buffer: int = 1 << 16):
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self.stats = DecoderStats()
        self._log = LimitedLog(log)

    def _error(self, kind: str, message: str) -> None:
        self.stats.last_error = message
        self._log(logging.WARNING, kind, "%s", message)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames completed by them (possibly none)."""
        self.stats.bytes_in += len(data)
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                # Keep a trailing 0xA5: it may be the first half of the next sync.
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.stats.bytes_discarded += len(buf) - keep
                del buf[: len(buf) - keep]
                break
            if start:
                self.stats.bytes_discarded += start
                del buf[:start]
            if len(buf) < HEADER_SIZE:
                break
            (_, version, n_channels, n_samples, sequence, timestamp_us, rate_mhz,
             crc16) = HEADER.unpack_from(buf)
            problem = None
            if header_crc(bytes(buf[2:HEADER_SIZE - 2])) != crc16:
                problem = "header CRC"
            elif version != VERSION:
                problem = f"version {version}"
            elif not 1 <= n_channels <= MAX_CHANNELS:
                problem = f"n_channels {n_channels}"
            elif not 1 <= n_samples <= MAX_SAMPLES:
                problem = f"n_samples {n_samples}"
            elif not MIN_RATE_MHZ <= rate_mhz <= MAX_RATE_MHZ:
                problem = f"rate_mhz {rate_mhz}"
            if problem:
                self.stats.header_errors += 1
                self._error("header", f"serial frame header rejected ({problem}); resyncing")
                self.stats.bytes_discarded += 1
                del buf[:1]
                continue
            size = HEADER_SIZE + 4 * n_channels * n_samples + CRC.size
            if len(buf) < size:
                break
            body = bytes(buf[2 : size - CRC.size])
            (crc,) = CRC.unpack_from(buf, size - CRC.size)
            if zlib.crc32(body) != crc:
                self.stats.crc_errors += 1
                self._error("crc", f"serial frame seq={sequence} failed CRC; dropped, resyncing")
                self.stats.bytes_discarded += 1
                del buf[:1]
                continue
            samples = np.frombuffer(body, dtype="<i4", offset=HEADER_SIZE - 2)
            frames.append(Frame(
                sequence=sequence, timestamp_us=timestamp_us,
                sampling_rate_hz=rate_mhz / 1000.0,
                samples=samples.reshape(n_samples, n_channels).astype(np.int32),
            ))
            self.stats.frames += 1
            del buf[:size]
        if len(buf) > self._max_buffer:  # cannot happen with the bounds above; belt and braces
            self.stats.bytes_discarded += len(buf)
            buf.clear()
        return frames
