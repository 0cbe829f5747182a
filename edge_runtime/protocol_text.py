"""Text mode of the acquisition board's serial line: one line of integer counts per sample.

``c0,c1,c2\n``, comma-separated int32 ADC counts, one line per sample, with an optional
NMEA-style ``*HH`` checksum (XOR of the bytes before ``*``); the board sends no time, so
the node stamps it. Specified in ``docs/serial-protocol.md`` beside the binary frames of
:mod:`edge_runtime.protocol`, whose :class:`~edge_runtime.protocol.Frame` this decoder
returns. Like that module it does no I/O: bytes in, frames out.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import numpy as np

from .logs import LimitedLog
from .protocol import MAX_CHANNELS, Frame

log = logging.getLogger(__name__)


def nmea_checksum(text: bytes) -> int:
    """XOR of the bytes (the NMEA 0183 sentence checksum)."""
    c = 0
    for b in text:
        c ^= b
    return c


def encode_text_lines(samples, checksum: bool = False) -> bytes:
    """Text mode: one ``c0,c1,...\\n`` line of integer counts per sample.

    Parameters
    ----------
    samples : array_like
        ``(n_samples, n_channels)`` integer ADC counts.
    checksum : bool
        Append ``*HH`` (NMEA XOR of the text before ``*``) to every line.
    """
    counts = np.asarray(samples)
    if counts.ndim != 2 or not 1 <= counts.shape[1] <= MAX_CHANNELS:
        raise ValueError(f"samples must be (n_samples, 1..{MAX_CHANNELS}), got shape {counts.shape}")
    if counts.dtype.kind == "f" and not np.all(np.isfinite(counts)):
        raise ValueError("samples hold NaN or inf")
    lines = []
    for row in counts.astype(np.int64):
        text = ",".join(map(str, row.tolist())).encode()
        lines.append(text + (b"*%02X" % nmea_checksum(text) if checksum else b"") + b"\n")
    return b"".join(lines)


_LINE = re.compile(rb"^\s*(-?\d{1,10}(?:\s*,\s*-?\d{1,10})*)\s*(?:\*([0-9A-Fa-f]{2}))?\s*$")


@dataclass
class TextStats:
    """Counters of a :class:`TextDecoder`."""

    lines: int = 0
    line_errors: int = 0
    frames: int = 0
    bytes_in: int = 0
    bytes_accepted: int = 0
    bytes_discarded: int = 0
    last_error: str = ""

    def to_dict(self) -> dict:
        return {"lines": self.lines, "line_errors": self.line_errors, "frames": self.frames,
                "bytes_in": self.bytes_in, "bytes_accepted": self.bytes_accepted,
                "bytes_discarded": self.bytes_discarded, "last_error": self.last_error}


TEXT_CHECKSUM_MODES = ("off", "auto", "required")


class TextDecoder:
    """Text mode: one ``c0,c1,c2`` line of integer counts per sample, for the simplest boards.

    A line with the wrong number of fields, anything but integers (``nan`` included),
    a value outside int32, a bad ``*HH`` checksum or more than ``max_line`` bytes is
    dropped and counted; an overlong line is dropped whole, up to its newline, however
    the reads cut it. A line without ``*HH`` is dropped too when ``checksum`` is
    ``"required"``, or ``"auto"`` once a line with a valid checksum has been seen (a
    line cut short loses its suffix and would otherwise pass with cut values); the
    line after such a line is dropped as well, since it may be the tail of a line that
    noise split in two (the XOR checksum cannot see a lost head whose bytes XOR to 0).

    Samples are grouped ``samples_per_frame`` at a time into
    :class:`Frame` objects with a local sequence number; the board sends no time, so the
    first sample is stamped with the node's clock and later ones at the nominal rate,
    re-anchored when the clock and the count drift apart by more than ``max_drift_s``
    (``time_fix`` is ``"node"``). Text mode cannot tell a lost line from no line; a
    dropped line shifts the samples after it by one period. Every byte is accounted for:
    ``bytes_in == bytes_accepted + bytes_discarded + len(unfinished line)``.

    Parameters
    ----------
    n_channels : int
        Fields per line.
    sampling_rate_hz : float
        The board's sampling rate, Hz.
    checksum : str
        ``"off"`` (a ``*HH`` is checked when present, never required), ``"auto"`` (required
        once one has been seen; the default) or ``"required"``.
    """

    def __init__(self, n_channels: int, sampling_rate_hz: float, samples_per_frame: int = 10,
                 max_line: int = 128, max_drift_s: float = 1.0, clock=time.time,
                 checksum: str = "auto"):
        if checksum not in TEXT_CHECKSUM_MODES:
            raise ValueError(f"checksum {checksum!r} not one of {', '.join(TEXT_CHECKSUM_MODES)}")
        if not 1 <= n_channels <= MAX_CHANNELS:
            raise ValueError(f"n_channels={n_channels} outside 1..{MAX_CHANNELS}")
        if not sampling_rate_hz > 0:
            raise ValueError(f"sampling_rate_hz must be > 0, got {sampling_rate_hz}")
        self.n_channels = n_channels
        self.rate = float(sampling_rate_hz)
        self.samples_per_frame = samples_per_frame
        self.max_line = max_line
        self.max_drift_s = max_drift_s
        self.clock = clock
        self.checksum = checksum
        self.checksum_seen = False  # a line with a valid *HH has come
        self.stats = TextStats()
        self._buf = bytearray()
        self._skipping = False  # inside an overlong line: drop up to its newline
        self._after_cut = False  # the last line lacked a required checksum
        self._rows: list[list[int]] = []
        self._sequence = 0
        self._anchor_us: float | None = None
        self._count = 0  # samples since the anchor
        self._log = LimitedLog(log)

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line plus samples of an unfinished frame."""
        return len(self._buf) + len(self._rows)

    def _bad(self, line: bytes, why: str) -> None:
        self.stats.line_errors += 1
        self.stats.bytes_discarded += len(line) + 1
        self.stats.last_error = f"text line {bytes(line[:40])!r}: {why}"
        self._log(logging.WARNING, "text", "%s; dropped", self.stats.last_error)

    def _line(self, line: bytes) -> None:
        required = self.checksum == "required" or (self.checksum == "auto" and self.checksum_seen)
        tail, self._after_cut = self._after_cut, False
        if required and b"*" not in line and line.strip():
            self._after_cut = True  # a head cut from its checksum: what follows may be its tail
        m = _LINE.match(line)
        if not m:
            if line.strip():
                self._bad(line, "not a line of integer counts")
            else:
                self.stats.bytes_discarded += len(line) + 1
            return
        body, check = m.group(1), m.group(2)
        if tail:
            self._bad(line, "follows a line without its checksum: may be that line's tail")
            return
        if check is None:
            if required:
                self._bad(line, "no *HH checksum (required" + (" once seen)" if self.checksum == "auto"
                                                               else ")"))
                return
        elif int(check, 16) != nmea_checksum(line[:line.index(b"*")].strip()):
            self._bad(line, "checksum mismatch")
            return
        else:
            self.checksum_seen = True
        values = [int(v) for v in body.split(b",")]
        if len(values) != self.n_channels:
            self._bad(line, f"{len(values)} fields, expected {self.n_channels}")
            return
        if any(not -2**31 <= v < 2**31 for v in values):
            self._bad(line, "value outside int32")
            return
        self.stats.lines += 1
        self.stats.bytes_accepted += len(line) + 1
        if not self._rows:
            now_us = self.clock() * 1e6
            predicted = None if self._anchor_us is None else self._anchor_us + self._count * 1e6 / self.rate
            if predicted is None or abs(now_us - predicted) > self.max_drift_s * 1e6:
                self._anchor_us, self._count = now_us, 0
        self._rows.append(values)

    def _frame(self) -> Frame:
        rows = np.asarray(self._rows, dtype=np.int32)
        t_us = int(round(self._anchor_us + self._count * 1e6 / self.rate))
        frame = Frame(self._sequence, t_us, self.rate, rows, "text", None, 0, "node")
        self._sequence = (self._sequence + 1) % 2**32
        self._count += len(self._rows)
        self._rows = []
        self.stats.frames += 1
        return frame

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames completed by them."""
        self.stats.bytes_in += len(data)
        if self._skipping:  # the rest of an overlong line, whatever read it comes in
            i = data.find(b"\n")
            self.stats.bytes_discarded += len(data) if i < 0 else i + 1
            if i < 0:
                return []
            data, self._skipping = data[i + 1:], False
        self._buf += data
        out = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > self.max_line:
                    self._bad(self._buf, f"longer than {self.max_line} bytes")
                    self.stats.bytes_discarded -= 1  # no newline consumed
                    self._buf.clear()
                    self._skipping = True
                break
            line = bytes(self._buf[:i])
            del self._buf[:i + 1]
            if len(line) > self.max_line:
                self._bad(line, f"longer than {self.max_line} bytes")
                continue
            self._line(line)
            if len(self._rows) >= self.samples_per_frame:
                out.append(self._frame())
        return out

    def flush(self) -> list[Frame]:
        """The line went quiet: hand over a partly filled frame."""
        return [self._frame()] if self._rows else []
