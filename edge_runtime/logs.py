"""Logging that cannot fill a node's SD card."""

from __future__ import annotations

import logging


class LimitedLog:
    """Log the first ``first`` messages of each kind, then one in ``every``.

    A node runs for months; a fault that repeats every frame must show in the log
    without writing a line per frame. The counts of every kind stay available.
    """

    def __init__(self, logger: logging.Logger, first: int = 10, every: int = 1000):
        self.logger = logger
        self.first = first
        self.every = every
        self.counts: dict[str, int] = {}

    def __call__(self, level: int, kind: str, message: str, *args, exc_info: bool = False) -> int:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        if n <= self.first or n % self.every == 0:
            self.logger.log(level, message + " (%s #%d)", *args, kind, n, exc_info=exc_info)
        return n
