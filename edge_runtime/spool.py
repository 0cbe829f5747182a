"""A disk queue that survives restarts: one fsynced file per record.

Used for events that could not be written to the event file (a full or read-only card)
and for alerts whose delivery failed (a network outage). A record is either wholly in
the queue or not at all: it is written to a temporary name, fsynced, renamed into place
and the folder fsynced, so a crash or a power cut at any moment leaves no half record
that could be mistaken for a whole one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".json"


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (the entry lives in the folder)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sequence_of(name: str) -> int:
    """The sequence number a record id starts with (0 when it starts with none)."""
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


class Spool:
    """First-in first-out queue of JSON records kept as files in ``folder``.

    Parameters
    ----------
    folder : str or Path
        Where the records live; created on the first :meth:`put`.
    max_items : int
        Records kept at most; a :meth:`put` beyond it raises ``OSError`` (the caller
        keeps the record and says so) rather than filling the card.

    Notes
    -----
    Record ids sort in the order they were put: each starts with a sequence number, one
    more than the highest in the folder, so :meth:`pending` returns the oldest first
    across restarts. Not the wall clock: a clock stepped back (NTP after a cold boot
    without a real-time clock, the common case on a Pi) must not put a later record
    before an earlier one. Ids written by older versions (nanosecond time first) sort
    before every later one, since the sequence continues from the highest.
    """

    def __init__(self, folder, max_items: int = 10000):
        self.folder = Path(folder)
        self.max_items = max_items
        self.bad = 0  # unreadable record files moved aside to folder/bad
        self._sequence = 0  # of the last record put by this process

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.folder) if n.endswith(SUFFIX))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def put(self, record: dict) -> str:
        """Store one record durably; return its id.

        Raises
        ------
        OSError
            When the record could not be stored (folder not creatable, disk full, queue
            full). Nothing partial is left behind.
        """
        text = json.dumps(record, sort_keys=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        names = self._names()
        if len(names) >= self.max_items:
            raise OSError(f"spool {self.folder} holds {self.max_items} records (its limit)")
        self._sequence = max(self._sequence, _sequence_of(names[-1]) if names else 0) + 1
        rid = f"{self._sequence:020d}-{os.getpid()}"
        tmp = self.folder / f".{rid}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.folder / (rid + SUFFIX))
            fsync_folder(self.folder)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        return rid

    def pending(self) -> list[tuple[str, dict]]:
        """All stored records ``(id, record)``, oldest first.

        A file that does not parse (it cannot be torn by :meth:`put`, but a card can
        rot) is moved to ``folder/bad`` and counted in :attr:`bad`, never deleted.
        """
        out = []
        for name in self._names():
            record = self.get(name[: -len(SUFFIX)])
            if record is not None:
                out.append((name[: -len(SUFFIX)], record))
        return out

    def ids(self) -> list[str]:
        """Ids of the stored records, oldest first (nothing read: a long queue is cheap to list)."""
        return [name[: -len(SUFFIX)] for name in self._names()]

    def get(self, rid: str) -> dict | None:
        """The record stored under ``rid``; None when it is gone (done) or unreadable.

        An unreadable file is moved to ``folder/bad`` and counted in :attr:`bad`.
        """
        path = self.folder / (rid + SUFFIX)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return None  # done() by someone else in the meantime
        except (OSError, ValueError) as exc:
            self.bad += 1
            log.error("%s: unreadable spooled record (%s); moved to %s", path, exc, self.folder / "bad")
            try:
                (self.folder / "bad").mkdir(exist_ok=True)
                os.replace(path, self.folder / "bad" / path.name)
            except OSError:
                pass
            return None
        return record

    def done(self, rid: str) -> None:
        """Remove a record once it has been delivered (no error if already gone)."""
        try:
            os.unlink(self.folder / (rid + SUFFIX))
        except FileNotFoundError:
            return
        try:
            fsync_folder(self.folder)
        except OSError:
            pass
