"""Event output: append-only JSON lines that survive a full disk."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)


def iso_utc(time_us: int) -> str | None:
    """Microseconds since the epoch to an ISO-8601 UTC string (None if not representable)."""
    try:
        return datetime.fromtimestamp(time_us / 1e6, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError):
        return None


def with_iso_times(event: dict) -> dict:
    out = dict(event)
    for key in [k for k in event if k.endswith("_us")]:
        out[key[:-3]] = None if event[key] is None else iso_utc(event[key])
    return out


class JsonlWriter:
    """Append events to a JSON-lines file, one flushed and fsynced line per event.

    A write that fails (disk full, card removed) is logged once per failure streak and
    the event is kept in memory; every later write retries the backlog first, so nothing
    is lost while the process lives.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created.
    max_backlog : int
        Events kept in memory while writes fail; beyond it the oldest are dropped and
        counted in ``dropped``.
    """

    def __init__(self, path, max_backlog: int = 10000):
        self.path = Path(path)
        self.backlog: list[str] = []
        self.max_backlog = max_backlog
        self.written = 0
        self.dropped = 0
        self.failing = False

    def write(self, event: dict) -> bool:
        self.backlog.append(json.dumps(with_iso_times(event), sort_keys=True))
        if len(self.backlog) > self.max_backlog:
            self.backlog.pop(0)
            self.dropped += 1
        return self.flush()

    def flush(self) -> bool:
        if not self.backlog:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("\n".join(self.backlog) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if not self.failing:
                log.error("%s: cannot write events (%s); keeping %d in memory and retrying",
                          self.path, exc.strerror or exc, len(self.backlog))
            self.failing = True
            return False
        if self.failing:
            log.info("%s: writable again; wrote %d held events", self.path, len(self.backlog))
        self.failing = False
        self.written += len(self.backlog)
        self.backlog.clear()
        return True
