"""The node's raw counts as miniSEED in an SDS archive (``[archive] path``).

SDS (SeisComP Data Structure) is the layout SeisComP, ObsPy
(``obspy.clients.filesystem.sds.Client``) and most data centres read: one file per
channel and day, ``YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY``, each a sequence of
miniSEED records. The records are the 512-byte Steim-2 records of
:class:`~edge_runtime.network.miniseed.RecordPacker` (libmseed through ``pymseed``).

What a seismologist needs from it:

* the counts the node accepted, exactly: the sink hands over m/s^2 (``counts /
  counts_per_mps2`` in float64), and ``rint(m/s^2 * counts_per_mps2)`` gives the counts
  back without error (two roundings of relative size 2**-53 move an int32 count by
  less than 1e-6);
* a record never spans midnight (a frame crossing it is split, the day's last record
  closed partly filled), a gap or a rate change closes the record under way so the
  next one starts at the gap, and a stop (SIGTERM) packs and writes what is held;
* a restart appends to the same day file (a torn last record, from a power cut in the
  middle of a write, is cut off first);
* ``quota_mb``: the oldest days are deleted once the tree is larger; the day being
  written is always kept (a quota smaller than a day is logged once);
* a full or failing disk is logged once with its cause; the records wait in memory
  (at most :data:`BACKLOG_RECORDS`, the oldest dropped and counted beyond) and the
  write is retried every :data:`RETRY_S`, while the node goes on classifying: the
  archive runs behind a :class:`~edge_runtime.sink.Queued` worker.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import time
from collections import deque
from pathlib import Path

import numpy as np

from ..sink import Consumer, Queued
from .miniseed import RECORD_LENGTH, RecordPacker, record_info
from .stationxml import station_identity

log = logging.getLogger(__name__)

US_PER_DAY = 86_400_000_000

#: Records kept in memory while the disk refuses them (512 bytes each: 4 MB, about 45
#: minutes of three 100 Hz channels of noise).
BACKLOG_RECORDS = 8192

#: Wait between two attempts to write to a disk that failed, s.
RETRY_S = 5.0

#: A day file's name: NET.STA.LOC.CHA.TYPE.YEAR.DOY.
SDS_NAME = re.compile(r"^[^.]*\.[^.]+\.[^.]*\.[^.]+\.[A-Z]\.(\d{4})\.(\d{3})$")


def sds_path(root: Path, network: str, station: str, location: str, channel: str, start_ns: int) -> Path:
    """The SDS day file of a record that starts at ``start_ns`` (UTC ns since 1970)."""
    day = time.gmtime(start_ns // 1_000_000_000)
    year, doy = day.tm_year, day.tm_yday
    return (root / f"{year:04d}" / network / station / f"{channel}.D"
            / f"{network}.{station}.{location}.{channel}.D.{year:04d}.{doy:03d}")


def to_counts(samples_mps2: np.ndarray, counts_per_mps2: float) -> np.ndarray:
    """The int32 counts the node divided by ``counts_per_mps2`` (exact for float64 input)."""
    return np.rint(np.asarray(samples_mps2, dtype=np.float64) * counts_per_mps2).astype(np.int32)


def split_at_midnight(t0_us: int, rate_hz: float, n_samples: int) -> list[tuple[int, int, int]]:
    """Where a frame's samples change UTC day.

    Parameters
    ----------
    t0_us : int
        Time of the first sample, UTC us since 1970.
    rate_hz : float
        Sampling rate, Hz.
    n_samples : int

    Returns
    -------
    list of (start_us, first, stop)
        Parts ``samples[first:stop]`` within one day each, ``start_us`` their first
        sample's time (rounded to the microsecond). A sample at midnight starts the new day.
    """
    parts, first, start_us = [], 0, int(t0_us)
    period_us = 1e6 / rate_hz
    while first < n_samples:
        midnight_us = (start_us // US_PER_DAY + 1) * US_PER_DAY
        stop = first + math.ceil((midnight_us - start_us) / period_us - 1e-6)
        stop = min(max(stop, first + 1), n_samples)
        parts.append((start_us, first, stop))
        start_us = int(round(t0_us + stop * period_us))
        first = stop
    return parts


class DayFiles:
    """Open SDS day files, appended whole records at a time.

    A write that fails part-way is cut back off the file, so a file only ever holds whole
    records; a file found with a torn last record (the node was killed in a write) is
    cut back to whole records when it is opened.
    """

    def __init__(self, root: Path):
        self.root = root
        self._fds: dict[Path, int] = {}
        self.torn_cut = 0  # files whose torn last record was cut off

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            torn = os.fstat(fd).st_size % RECORD_LENGTH
            if torn:
                log.warning("%s: last record torn (%d bytes); cut off before appending", path, torn)
                os.ftruncate(fd, os.fstat(fd).st_size - torn)
                self.torn_cut += 1
            self._fds[path] = fd
        return fd

    def append(self, path: Path, record: bytes) -> None:
        """Append one record to ``path``; on failure the file is as before and OSError is raised."""
        fd = self._fd(path)
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, record)
            if written != len(record):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(record)} bytes)")
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            self.close(path)
            raise

    def keep_day(self, year: int, doy: int) -> None:
        """Close the files of other days than ``year``.``doy`` (a day that ended)."""
        suffix = f".{year:04d}.{doy:03d}"
        for path in [p for p in self._fds if not p.name.endswith(suffix)]:
            self.close(path)

    def close(self, path: Path | None = None) -> None:
        """Sync and close ``path``, or every open file."""
        for p in [path] if path is not None else list(self._fds):
            fd = self._fds.pop(p, None)
            if fd is None:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)


class Quota:
    """The size of the SDS tree under ``root``, and the deletion of its oldest days.

    Parameters
    ----------
    root : Path
    limit_bytes : int or None
        ``None``: no quota (sizes are still counted).
    """

    def __init__(self, root: Path, limit_bytes: int | None):
        self.root = root
        self.limit_bytes = limit_bytes
        self.bytes_by_day: dict[tuple[int, int], int] = {}
        self.days_deleted = 0
        self.exceeded_by_one_day = False
        for path in root.glob("*/*/*/*.D/*"):
            match = SDS_NAME.match(path.name)
            if match and path.is_file():
                self.add((int(match[1]), int(match[2])), path.stat().st_size)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_day.values())

    def add(self, day: tuple[int, int], n_bytes: int) -> None:
        self.bytes_by_day[day] = self.bytes_by_day.get(day, 0) + n_bytes

    def enforce(self, current_day: tuple[int, int]) -> None:
        """Delete whole days, oldest first, until the tree fits; never ``current_day`` or later."""
        if self.limit_bytes is None:
            return
        total = self.total_bytes
        while total > self.limit_bytes:
            oldest = min(self.bytes_by_day)
            if oldest >= current_day:
                if not self.exceeded_by_one_day:
                    log.warning("archive %s: the day being written (%d.%03d, %d bytes) is larger than "
                                "quota_mb = %g on its own; it is kept, older days are gone", self.root,
                                *current_day, total, self.limit_bytes / 1e6)
                    self.exceeded_by_one_day = True
                return
            total -= self._delete_day(oldest)

    def _delete_day(self, day: tuple[int, int]) -> int:
        year, doy = day
        freed = 0
        for path in self.root.glob(f"{year:04d}/*/*/*.D/*.{year:04d}.{doy:03d}"):
            try:
                size = path.stat().st_size
                path.unlink()
                freed += size
            except OSError as exc:
                log.error("archive: cannot delete %s (%s)", path, exc.strerror or exc)
            for folder in list(path.parents)[:4]:  # CHA.D, STA, NET, YEAR once empty
                try:
                    folder.rmdir()
                except OSError:
                    break
        log.info("archive %s: day %d.%03d deleted (%d bytes) to stay within quota_mb", self.root, year, doy,
                 freed)
        self.days_deleted += 1
        return self.bytes_by_day.pop(day)


class SdsArchive(Consumer):
    """The node's samples as miniSEED day files in an SDS tree.

    Run it behind :class:`~edge_runtime.sink.Queued` (as the output registry does):
    writing, packing and deleting happen on the worker's thread.

    Parameters
    ----------
    root : str or Path
        The SDS root folder (created).
    identity : StationIdentity
        Codes of the records (:mod:`edge_runtime.network.stationxml`).
    counts_per_mps2 : float
        The node's scale, counts per m/s^2 (to give the sink's m/s^2 back as counts).
    quota_mb : float, optional
        Largest size of the tree, MB (1e6 bytes).
    clock : callable
        Monotonic clock, s (the retry timer).
    """

    name = "archive"
    joins_frames = True  # the packer keeps one stretch per gap: where frames were cut is lost

    def __init__(self, root, identity, counts_per_mps2: float, quota_mb: float | None = None,
                 clock=time.monotonic):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"archive folder {self.root}: cannot create ({exc.strerror or exc})") from None
        self.identity = identity
        self.counts_per_mps2 = counts_per_mps2
        self.clock = clock
        self.packer = RecordPacker(identity.network, identity.station, identity.location, identity.channels)
        self.files = DayFiles(self.root)
        self.quota = Quota(self.root, None if quota_mb is None else int(quota_mb * 1e6))
        self.backlog: deque[bytes] = deque()
        self._next_us: float | None = None  # where the samples held would continue
        self._rate_hz: float | None = None
        self._day: int | None = None  # UTC day (since 1970) of the samples held
        self._current_day = (0, 0)  # (year, doy) of the newest record written
        self._disk_error: str | None = None  # the cause, while writes fail
        self._retry_at = 0.0
        self.counts = {"archive_records": 0, "archive_bytes": 0, "archive_gaps": 0,
                       "archive_write_failures": 0, "archive_records_dropped": 0}

    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        counts = to_counts(samples_mps2, self.counts_per_mps2)
        records = []
        if self._next_us is not None and (rate_hz != self._rate_hz
                                          or abs(t0_us - self._next_us) > 0.5e6 / rate_hz):
            self.counts["archive_gaps"] += 1
            records += self.packer.flush()  # the next record starts at the gap
        for start_us, first, stop in split_at_midnight(t0_us, rate_hz, len(counts)):
            day = start_us // US_PER_DAY
            if self._day is not None and day != self._day:
                records += self.packer.flush()  # no record spans midnight
            self._day = day
            records += self.packer.push(start_us, rate_hz, counts[first:stop])
        self._rate_hz = rate_hz
        self._next_us = t0_us + len(counts) * 1e6 / rate_hz
        self._store(records)

    def _store(self, records: list[bytes]) -> None:
        for record in records:
            if len(self.backlog) >= BACKLOG_RECORDS:
                self.backlog.popleft()
                self.counts["archive_records_dropped"] += 1
            self.backlog.append(record)
        if self.backlog and (self._disk_error is None or self.clock() >= self._retry_at):
            self._write_backlog()

    def _write_backlog(self) -> None:
        day_before = self._current_day
        while self.backlog:
            record = self.backlog[0]
            info = record_info(record)
            path = sds_path(self.root, info.network, info.station, info.location, info.channel, info.start_ns)
            try:
                self.files.append(path, record)
            except OSError as exc:
                self._failed(path, exc)
                return
            self.backlog.popleft()
            day = time.gmtime(info.start_ns // 1_000_000_000)
            self._current_day = max(self._current_day, (day.tm_year, day.tm_yday))
            self.quota.add((day.tm_year, day.tm_yday), len(record))
            self.counts["archive_records"] += 1
            self.counts["archive_bytes"] += len(record)
        if self._disk_error is not None:
            log.info("archive %s: writing again (failed %d times: %s)", self.root,
                     self.counts["archive_write_failures"], self._disk_error)
            self._disk_error = None
        if self._current_day != day_before:
            self.files.keep_day(*self._current_day)
        self.quota.enforce(self._current_day)

    def _failed(self, path: Path, exc: OSError) -> None:
        self.counts["archive_write_failures"] += 1
        self._retry_at = self.clock() + RETRY_S
        if self._disk_error is None:
            self._disk_error = f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno, exc.errno)})"
            log.error("archive: cannot write %s: %s; %d records kept in memory (at most %d), retried every "
                      "%g s; the node goes on classifying", path, self._disk_error, len(self.backlog),
                      BACKLOG_RECORDS, RETRY_S)

    def tick(self, now_s: float) -> None:
        if self.backlog and now_s >= self._retry_at:
            self._write_backlog()

    def counters(self) -> dict:
        return {**self.counts, "archive_backlog": len(self.backlog), "archive_disk_error": self._disk_error,
                "archive_days_deleted": self.quota.days_deleted}

    def close(self) -> None:
        """Pack what is held (partly filled records) and write everything; sync the files."""
        self.backlog.extend(self.packer.flush())
        if self.backlog:
            self._write_backlog()
        if self.backlog:
            log.error("archive %s: %d records could not be written at shutdown (%s)", self.root,
                      len(self.backlog), self._disk_error)
        self.files.close()


def build_archive_output(config, components):
    """The archive of ``config`` behind its own worker thread, or None when ``[archive] path`` is unset.

    Raises
    ------
    ValueError
        Channels that do not match the model's components, a root that cannot be made, or
        the network extra missing (one line).
    """
    if not config.archive:
        return None
    archive = SdsArchive(config.archive, station_identity(config, components), config.counts_per_mps2,
                         config.archive_quota_mb)
    # 4096 frames (about 7 minutes of 10-sample frames at 100 Hz) may wait for a slow disk.
    # At SIGTERM a slow SD card gets 15 s to write what waits (systemd allows 90 s to stop);
    # only a hung one loses its backlog, said in one line.
    return Queued(archive, maxsize=4096, batch_s=1.0, close_timeout_s=15.0)
