"""Logging that cannot fill a node's SD card: the node's one rate limiter.

Every fault that can repeat (a frame, the serial port, the disk, the status file, the
model, an alert action) is logged through a :class:`LimitedLog`. A node runs for months;
a fault that repeats every frame or every retry must show in the log without writing a
line per occurrence: the first ``first`` occurrences of a kind are logged, then at most
one line per ``interval_s`` carrying how many were suppressed meanwhile. When the fault
clears, :meth:`LimitedLog.recovered` says so once. The counts of every kind stay
available for the status file.

With the defaults (5 lines, then one per 10 min) a serial port that stays unplugged for a
day writes 5 + 144 lines, not the 8,600 a retry every 10 s would.
"""

from __future__ import annotations

import logging
import time


class LimitedLog:
    """Rate-limited logging per kind of fault.

    Parameters
    ----------
    logger : logging.Logger
        Where lines go.
    first : int
        Occurrences of a kind logged in full (with a traceback when asked) before
        limiting starts.
    interval_s : float
        Once limited, at most one line per kind per this many seconds.
    clock : callable
        Monotonic clock in s (tests drive a fake one).
    """

    def __init__(self, logger: logging.Logger, first: int = 5, interval_s: float = 600.0,
                 clock=time.monotonic):
        self.logger = logger
        self.first = first
        self.interval_s = interval_s
        self.clock = clock
        self.counts: dict[str, int] = {}  # occurrences per kind, ever
        self.lines: dict[str, int] = {}  # lines written per kind
        self._suppressed: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._streak: dict[str, int] = {}  # occurrences since the kind last recovered

    def __call__(self, level: int, kind: str, message: str, *args, exc_info: bool = False) -> int:
        """Count one occurrence of ``kind``; log it if the limiter allows. Returns the count."""
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        self._streak[kind] = self._streak.get(kind, 0) + 1
        now = self.clock()
        if n <= self.first:
            self._emit(level, kind, message + " (%s #%d)", (*args, kind, n), exc_info)
            self._next[kind] = now + self.interval_s
        elif now >= self._next.get(kind, 0.0):
            suppressed = self._suppressed.pop(kind, 0)
            self._emit(level, kind, message + " (%s #%d; %d similar suppressed, at most one line per %g s)",
                       (*args, kind, n, suppressed, self.interval_s), False)
            self._next[kind] = now + self.interval_s
        else:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
        return n

    def _emit(self, level, kind, message, args, exc_info) -> None:
        self.lines[kind] = self.lines.get(kind, 0) + 1
        self.logger.log(level, message, *args, exc_info=exc_info)

    def failing(self, kind: str) -> bool:
        """Whether ``kind`` has occurred since it last recovered."""
        return self._streak.get(kind, 0) > 0

    def recovered(self, kind: str, message: str, *args) -> None:
        """Log once that ``kind`` cleared (only if it was failing), and re-arm its limiter."""
        streak = self._streak.pop(kind, 0)
        if not streak:
            return
        self._suppressed.pop(kind, None)
        self._next.pop(kind, None)
        self._emit(logging.INFO, kind, message + " (%s cleared after %d occurrences)",
                   (*args, kind, streak), False)

    def to_dict(self) -> dict:
        """Occurrences per kind, for the status file."""
        return dict(self.counts)
