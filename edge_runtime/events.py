"""Event output: append-only JSON lines that a full disk or a crash cannot half-write.

Every record is one JSON object on one line ending in ``\\n``; a reader tells a whole
record from a fragment by the newline and the JSON parse. The writer keeps the byte
offset of the end of the last whole, fsynced record ("good offset") and writes each
batch at that offset: a short write (disk full) is truncated back to it before anything
else is written, so a fragment is never followed by another record. Events that cannot
be written are moved to a disk queue (:class:`edge_runtime.spool.Spool`) that survives
restarts, and retried on a timer (:meth:`JsonlWriter.tick`), not only when the line is
quiet.

On start (:meth:`JsonlWriter.start`) the file is read back: a torn last line (power cut
or SIGKILL inside a write) is kept aside in ``<events>.torn-<time>`` and cut off, and a
``trigger`` left without its closing ``event`` by a crash gets a closing record marked
``"closed_by": "restart"``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from .event_record import event_id, iso_utc, with_iso_times
from .sink import Consumer
from .spool import Spool, fsync_folder

log = logging.getLogger(__name__)

__all__ = ["EventFile", "JsonlWriter", "default_fallback_spool", "iso_utc", "target_problem",
           "with_iso_times"]


def default_fallback_spool(path: Path) -> Path:
    """Second spool folder, on another file system than a card that may be full.

    ``$RUNTIME_DIRECTORY`` (systemd ``RuntimeDirectory=``, RAM under /run: survives a
    restart of the node with ``RuntimeDirectoryPreserve=yes``, not a reboot), else
    ``$STATE_DIRECTORY``, else the system's temporary folder; the name encodes the event
    file's path so two nodes never share a queue.
    """
    base = (os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
            or os.environ.get("STATE_DIRECTORY", "").split(":")[0])
    if not base:
        import tempfile  # only here: it pulls in shutil, bz2, lzma and random (0.5 MiB resident)

        base = tempfile.gettempdir()
    tag = str(path.resolve()).strip("/").replace("/", "_")
    return Path(base) / "seismictorch-spool" / tag


def target_problem(path: Path) -> str | None:
    """Why events can never be written to ``path`` as it stands (None if they can be)."""
    if path.is_dir():
        return f"{path} is a folder, not a file"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a regular file, not a folder"
            break
    return None


class JsonlWriter:
    """Append events to a JSON-lines file, one fsynced batch per call.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created.
    max_backlog : int
        Events kept in memory when neither the file nor a spool takes them; beyond it
        the oldest are dropped and counted in ``dropped``.
    spools : list of str or Path, optional
        Disk queues tried in order for events the file does not take. Default:
        ``<events>.spool/`` beside the file, then :func:`default_fallback_spool`.
    retry_s, max_retry_s : float
        First and longest wait between retries of held events, in s (doubling).
    """

    def __init__(self, path, max_backlog: int = 10000, spools=None,
                 retry_s: float = 1.0, max_retry_s: float = 5.0):
        self.path = Path(path)
        self.backlog: list[str] = []
        self.max_backlog = max_backlog
        if spools is None:
            spools = [self.path.with_name(self.path.name + ".spool"), default_fallback_spool(self.path)]
        self.spools = [Spool(s) for s in spools]
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.written = 0
        self.dropped = 0
        self.spooled = 0  # records put into a spool over the run
        self.torn_kept = 0  # torn lines found at start and kept aside
        self.closed_on_start = 0  # events left open by a crash and closed at start
        self.failing = False
        self._good: int | None = None  # end of the last whole record written
        self._torn = False  # a failed write may have left bytes past _good
        self._wait_s = retry_s
        self._next_retry = 0.0
        self._maybe_spooled = True  # spools may hold records (of an earlier run): look once

    # ---------------------------------------------------------------- queries
    @property
    def held(self) -> int:
        """Events not in the event file yet (memory plus spools)."""
        return len(self.backlog) + sum(len(s) for s in self.spools)

    def where_held(self) -> list[str]:
        """Places holding events that are not in the event file yet."""
        out = [str(s.folder) for s in self.spools if len(s)]
        if self.backlog:
            out.append("memory")
        return out

    def report_held(self) -> int:
        """At shutdown: log loudly where events not in the file are kept; return their count.

        Events in a spool are written by the next start. Events only in memory (no
        spool would take them) are written into the log itself, one line each, so the
        journal keeps them.
        """
        if self.backlog:
            # Last chance for a disk queue before the process ends.
            self._failed(OSError("shutting down"), time.monotonic())
        n = self.held
        if not n:
            return 0
        for spool in self.spools:
            if len(spool):
                log.error("%d events could not be written to %s; they are kept in %s and will be "
                          "written there by the next start", len(spool), self.path, spool.folder)
        for line in self.backlog:
            log.error("event NOT WRITTEN anywhere (no disk would take it), kept only in this log: %s",
                      line)
        return n

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Check the target, read the file back and repair it, then write spooled events.

        Raises
        ------
        ValueError
            When the target can never be written as it stands (a folder in place of
            the file, a regular file in place of a parent folder).
        """
        problem = target_problem(self.path)
        if problem:
            raise ValueError(f"events {self.path}: {problem}")
        try:
            self.repair()
        except OSError as exc:
            log.error("%s: cannot read back the event file (%s); it is left as it is",
                      self.path, exc.strerror or exc)
        held = sum(len(s) for s in self.spools)
        if held:
            log.warning("%s: %d events held from an earlier run in %s; writing them", self.path,
                        held, ", ".join(self.where_held()))
        self.flush()

    def repair(self, close_open: bool = True) -> None:
        """Keep a torn last line aside; close events left open by a crash.

        Parameters
        ----------
        close_open : bool
            Append a closing record for every ``trigger`` with no ``event`` of the same
            station and start, in the file or in a spool (only at start: while the node
            runs, its own open event is not a crash's).
        """
        if self.path.exists() and not self.path.is_file():  # a device (/dev/full, a FIFO)
            self._good = 0
            return
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._good = 0
            return
        end = raw.rfind(b"\n") + 1
        tail = raw[end:]
        records = []
        for line in raw[:end].splitlines():
            try:
                rec = json.loads(line)
                records.append(rec if isinstance(rec, dict) else None)
            except ValueError:
                records.append(None)
        if tail.strip():
            self._keep_aside(tail, end)
        else:
            self._good = end
            if end != len(raw):  # trailing blanks only: cut them so records stay whole
                self._truncate(end)
        bad = sum(r is None for r in records)
        if bad:
            log.warning("%s: %d lines are not whole JSON records; kept (readers skip them)",
                        self.path, bad)
        if not close_open:
            return
        open_ = {}
        spooled = [rec for s in self.spools for _, rec in s.pending()]
        for rec in records + spooled:
            if not rec:
                continue
            key = (rec.get("station"), rec.get("start_us"))
            if rec.get("type") == "trigger":
                open_[key] = rec
            elif rec.get("type") == "event":
                open_.pop(key, None)
        for trig in open_.values():
            rec = dict(trig)
            rec.update(type="event", closed_by="restart", incomplete=True,
                       note="the node stopped during this event (crash or power loss); closed "
                            "on restart from its trigger record")
            start = trig.get("start_us")
            if isinstance(start, int) and iso_utc(start):
                rec["event_id"] = event_id(trig.get("station"), start)
            self.backlog.append(json.dumps(rec, sort_keys=True))
            self.closed_on_start += 1
        if open_:
            log.warning("%s: %d events left open by a crash; closing them (closed_by=restart)",
                        self.path, len(open_))

    def _keep_aside(self, tail: bytes, end: int) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.torn-{stamp}-{os.getpid()}")
        try:
            with open(aside, "wb") as fh:
                fh.write(tail)
                fh.flush()
                os.fsync(fh.fileno())
            fsync_folder(aside.parent)
        except OSError as exc:
            # Nowhere to keep it: end it with a newline so it stands alone (readers skip
            # it) and nothing is fused to it; no byte is deleted.
            log.error("%s: torn last line (%d bytes) could not be kept aside (%s); ending it "
                      "with a newline instead", self.path, len(tail), exc.strerror or exc)
            self._good = end + len(tail)
            self._torn = False
            self._write_at(b"\n")
            self.torn_kept += 1
            return
        log.warning("%s: torn last line (%d bytes, a write cut by a crash) kept in %s", self.path,
                    len(tail), aside)
        self.torn_kept += 1
        self._good = end
        self._truncate(end)

    def _truncate(self, size: int) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ write
    def write(self, event: dict) -> bool:
        """Queue one event and try to write everything held; True when all is in the file."""
        self.backlog.append(json.dumps(with_iso_times(event), sort_keys=True))
        if len(self.backlog) > self.max_backlog:
            self.backlog.pop(0)
            self.dropped += 1
            log.error("%s: more than %d events held in memory; oldest dropped (%d so far)",
                      self.path, self.max_backlog, self.dropped)
        return self.flush()

    def tick(self, now: float | None = None) -> None:
        """Retry held events when their retry time has come; call it every loop turn."""
        now = time.monotonic() if now is None else now
        if now >= self._next_retry and (self.backlog or self._maybe_spooled):
            self.flush(now)

    def flush(self, now: float | None = None) -> bool:
        """Write spooled then held events to the file; spool what the file refuses."""
        now = time.monotonic() if now is None else now
        spooled = [(s, rid, rec) for s in self.spools for rid, rec in s.pending()] \
            if self._maybe_spooled else []
        self._maybe_spooled = bool(spooled)
        if not spooled and not self.backlog:
            return True
        lines = [json.dumps(rec, sort_keys=True) for _, _, rec in spooled]
        try:
            if spooled:
                present = self._tail_lines()
                keep = [i for i, line in enumerate(lines) if line not in present]
                lines = [lines[i] for i in keep]  # already written before a crash: not twice
            self._append(("\n".join(lines + self.backlog) + "\n").encode()
                         if lines or self.backlog else b"")
        except OSError as exc:
            self._failed(exc, now)
            return False
        n = len(lines) + len(self.backlog)
        for spool, rid, _ in spooled:
            spool.done(rid)
        self._maybe_spooled = False
        if self.failing:
            log.warning("%s: writable again; wrote %d held events", self.path, n)
        self.failing = False
        self.written += n
        self.backlog.clear()
        self._wait_s = self.retry_s
        return True

    def _failed(self, exc: OSError, now: float) -> None:
        # Move what memory holds to a disk queue, so a restart does not lose it.
        where = "memory"
        for spool in self.spools:
            try:
                while self.backlog:
                    spool.put(json.loads(self.backlog[0]))
                    self.backlog.pop(0)
                    self.spooled += 1
                    self._maybe_spooled = True
                where = str(spool.folder)
                break
            except OSError:
                continue
        if not self.failing:
            log.error("%s: cannot write events (%s); %d held in %s, retrying every %.0f-%.0f s",
                      self.path, exc.strerror or exc, self.held, where, self.retry_s, self.max_retry_s)
        self.failing = True
        self._next_retry = now + self._wait_s
        self._wait_s = min(2 * self._wait_s, self.max_retry_s)

    def _tail_lines(self, n_bytes: int = 1 << 18) -> set[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - n_bytes))
                return {line.decode("utf-8", "replace") for line in fh.read().splitlines()}
        except OSError:
            return set()

    def _append(self, data: bytes) -> None:
        if not data:
            return
        problem = target_problem(self.path)
        if problem:
            raise OSError(20, problem)  # ENOTDIR: one clear reason in the log line
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        if created:
            self._good, self._torn = 0, False
        elif self._good is None or (not self._torn and self.path.stat().st_size != self._good):
            # Not read back yet, or changed behind our back: find its last whole record.
            self.repair(close_open=False)
        self._write_at(data)
        if created:
            fsync_folder(self.path.parent)

    def _write_at(self, data: bytes) -> None:
        """Write ``data`` at the good offset and fsync; on failure cut back to it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size != self._good:
                if self._torn or size > self._good:
                    # Bytes of our own failed write: the same records are still held.
                    os.ftruncate(fd, self._good)
                else:  # the file was cut or replaced behind our back: append to what is there
                    self._good = size
            self._torn = False
            if self._good and os.pread(fd, 1, self._good - 1) != b"\n":
                data = b"\n" + data  # never fuse a record to a fragment we could not cut off
            view, offset = memoryview(data), self._good
            try:
                while view:
                    n = os.pwrite(fd, view, offset)
                    view, offset = view[n:], offset + n
                os.fsync(fd)
            except OSError:
                self._torn = True
                try:
                    os.ftruncate(fd, self._good)
                    os.fsync(fd)
                    self._torn = False
                except OSError:
                    pass
                raise
            self._good = offset
        finally:
            os.close(fd)


class EventFile(Consumer):
    """The event file as an output of the sink: every trigger and event, one JSON line each.

    Parameters
    ----------
    writer : JsonlWriter
        Started (:meth:`JsonlWriter.start`) by the caller.
    """

    name = "events"

    def __init__(self, writer: JsonlWriter):
        self.writer = writer

    def on_trigger(self, record: dict) -> None:
        self.writer.write(record)

    on_event = on_trigger

    def tick(self, now_s: float) -> None:
        self.writer.tick(now_s)  # held events retried on a timer, also while data flows

    def counters(self) -> dict:
        w = self.writer
        return {"events_written": w.written, "events_held": w.held, "events_held_in": w.where_held(),
                "events_spooled": w.spooled, "events_torn_kept": w.torn_kept,
                "events_closed_on_start": w.closed_on_start}

    def close(self) -> None:
        self.writer.flush()
        self.writer.report_held()  # says loudly where events that are not in the file are kept
