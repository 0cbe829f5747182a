"""A station-day read a few hours at a time, with the same samples and record as read whole.

Reading a station-day whole holds all of it at once (a 200 Hz day: 207 MB of float32
samples, and ObsPy's copies of the last channel file on top). An SDS day of miniSEED is
instead read in pieces of :data:`READ_PIECE_S` (:func:`host_training.recordings.reader.read_records`
with a ``window``: ObsPy decodes only the records that hold the piece's samples), each
read :data:`PAD_S` beyond its ends and cut to them by sample index, exactly as the day is
cut from a whole read. The pieces are one record's samples only where the whole read
would give one record with the same samples, and every piece shows it:

* every file is an SDS day file of miniSEED whose samples lie within the day and
  :data:`PAD_S` (nothing before or after it that a whole read would join or split off);
* no QuakeML origins (the picks they give depend on a record's span);
* each piece holds one record, nothing skipped, and it continues the last piece's record
  sample for sample (same rate, channels, units, files and notes);
* no note of a step that is not sample by sample (a merged gap, a resampling, a response
  removed, a differentiation, a trim to a common span);
* the record runs as the node's unbroken stream (:func:`.stream.continuous`) at a rate the
  node takes without decimating, with no time shift, and no missing component drawn as
  self-noise.

Anything else raises :class:`ReadWhole` and the station-day is read whole. A piece's
samples at a boundary lie within :data:`PAD_S` of it, longer than the reader's longest
merged gap (10 s) and a miniSEED record, so a gap anywhere shows in some piece.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

# Samples read at a time, s: a 200 Hz piece is 35 MB of float32. Each piece costs ObsPy a
# bisection of each file's records: a 100 Hz day's reads take 0.64 s of CPU in 4 h pieces,
# 0.85 s in 2 h; a 200 Hz station-day peaks at 239 MiB (213 MiB in 2 h, 305 MiB in 6 h).
READ_PIECE_S = 4 * 3600.0
PAD_S = 60.0  # read beyond each end of a piece, s (> the reader's 10 s merged gap, > a record)
# Notes of reader steps that are not sample by sample: pieces would differ from the whole.
NOT_PIECEWISE = ("merged", "resampled", "response", "differentiated", "trimmed", "gap")


class ReadWhole(Exception):
    """This station-day must be read whole to get the same record; the message says why."""


def why_read_whole(day, settings, day_s: float) -> str | None:
    """Why ``day`` cannot be read in pieces (from its files' first and last records), or None."""
    from obspy.io.mseed.util import get_start_and_end_time

    from host_training.recordings.formats.obspy_formats import is_mseed

    from .archive import _sds_days

    if settings.quakeml or day.metadata:
        return "StationXML/QuakeML among the sources"
    for path in map(Path, day.files):
        if _sds_days(path.name) is None or not is_mseed(path):
            return f"{path.name} is not an SDS day file of miniSEED"
        try:
            start, end = get_start_and_end_time(str(path))
        except Exception:  # a damaged file: the whole read says what is wrong with it
            return f"{path.name}: first or last record unreadable"
        if start.timestamp < day.start_s - PAD_S or end.timestamp > day.start_s + day_s + PAD_S:
            return f"{path.name} holds samples beyond the day"
    return None


def trimmed(record, start_s: float, end_s: float):
    """The part of ``record`` with sample times in ``[start_s, end_s)``, or None."""
    rate = record.sampling_rate_hz
    first_s = record.starttime.timestamp
    first = max(0, int(np.ceil((start_s - first_s) * rate - 1e-6)))
    stop = min(record.data.shape[1], int(np.ceil((end_s - first_s) * rate - 1e-6)))
    if stop - first <= 0:
        return None
    if first == 0 and stop == record.data.shape[1]:
        return record
    return replace(record, data=record.data[:, first:stop], starttime=record.starttime + first / rate)


def _same_record(a, b) -> bool:
    keys = ("station", "sampling_rate_hz", "present", "channels", "units", "files", "actions", "part",
            "kind", "picks")
    return [getattr(a, k) for k in keys] == [getattr(b, k) for k in keys] and a.data.dtype == b.data.dtype


def day_pieces(day, settings, window_s: float, day_s: float, piece_s: float = READ_PIECE_S):
    """Yield ``(whole, piece, beyond)``: the day's one record as read whole (its first piece
    untrimmed, without samples), each piece of its samples in the day, and whether the record
    holds samples outside the day (so far).

    Raises
    ------
    ReadWhole
        Where the pieces would not be one record's samples as a whole read gives them.
    """
    from host_training.recordings.reader import read_records
    from host_training.recordings.record import RecordError

    whole, next_s, beyond = None, None, False
    end_s = day.start_s + day_s
    for lo in np.arange(day.start_s, end_s, piece_s):
        hi = min(end_s, lo + piece_s)
        where = f"{day.key}: the piece at {lo - day.start_s:.0f} s"
        try:
            records, skipped = read_records(
                list(day.files), units=settings.units, inventory=settings.inventory, catalog=settings.catalog,
                min_duration_s=window_s, nan_gaps=True, float32_where_exact=True,
                window=(lo - PAD_S, hi + PAD_S))
        except RecordError as exc:
            raise ReadWhole(f"{where}: {exc}") from None
        bad = [why for _, why in skipped if "no samples in the window" not in why]
        if bad:
            raise ReadWhole(f"{where}: {bad[0]}")
        records = [r for r in records if ".".join(r.station.split(".")[:2]) == day.station]
        parts = [p for p in (trimmed(r, lo, hi) for r in records) if p is not None]
        if not parts:
            continue
        if len(parts) > 1 or any(w in a for a in parts[0].actions for w in NOT_PIECEWISE):
            raise ReadWhole(f"{where}: {len(parts)} record(s), {'; '.join(parts[0].actions)}")
        piece = parts[0]
        if whole is None:
            whole = replace(records[0], data=np.empty((records[0].data.shape[0], 0), records[0].data.dtype))
        elif next_s is None or abs(piece.starttime.timestamp - next_s) * piece.sampling_rate_hz > 1e-3 \
                or not _same_record(whole, piece):
            raise ReadWhole(f"{where} does not continue the record before it")
        beyond |= trimmed(records[0], day.start_s, end_s) is not records[0]
        # None: the record ended inside this piece; a later piece with samples is a new record
        next_s = piece.starttime.timestamp + piece.data.shape[1] / piece.sampling_rate_hz
        next_s = next_s if next_s > hi - 0.5 / piece.sampling_rate_hz else None
        yield whole, piece, beyond


def day_record(whole, start, n_samples: int, beyond_day: bool, day: str):
    """The day's record as a whole read and its trim to the day give it (first sample at
    ``start``, ``n_samples`` long), for its row and truth: its samples ran piece by piece, so
    ``data`` is a read-only broadcast of zeros with the day's shape (only its span is read)."""
    record = replace(whole, starttime=start, data=np.broadcast_to(np.zeros((1, 1), dtype=whole.data.dtype),
                                                                  (whole.data.shape[0], n_samples)))
    if beyond_day:
        record = replace(record, actions=record.actions + [f"trimmed to {day}"])
    return record
