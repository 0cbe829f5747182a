"""Traces grouped into station records: one station, one instrument, one span of time.

Traces of one station that overlap (or follow within ``max_gap_s``: gaps are merged later)
are one record; a longer pause starts a new record, a longer gap in one channel alone splits
the record there too, and two recordings of one channel over the same time from different
folders are two records.
"""

from __future__ import annotations

import math
from pathlib import Path

from .formats.sac_headers import keep_sac_reference
from .orientation import instrument_code


def channel_key(tr) -> str:
    """The channel a trace belongs to; a trace without a code is its file's own channel."""
    return tr.stats.channel.strip() or f"<{tr.stats.get('path', '')}>"


def group_traces(traces, max_gap_s: float = 10.0) -> list[list]:
    """Traces in records: same network, station, location, instrument, overlapping in time.

    Traces of one station that overlap (or follow within ``max_gap_s``: gaps are merged
    later) are one record; a longer pause starts a new record. A longer gap in one
    channel alone splits the record there too (:func:`split_at_gaps`): the time of the
    gap is a record without that channel, so no sample of it is made up.
    """
    by_station = {}
    for tr in traces:
        s = tr.stats
        by_station.setdefault((s.network, s.station, s.location, instrument_code(tr)), []).append(tr)
    groups = []
    for key in sorted(by_station):
        members = sorted(by_station[key], key=lambda t: t.stats.starttime)
        current, end = [], None
        for tr in members:
            if current and tr.stats.starttime - end > max_gap_s:
                groups.append(current)
                current, end = [], None
            current.append(tr)
            end = tr.stats.endtime if end is None else max(end, tr.stats.endtime)
        if current:
            groups.append(current)
    return [piece for group in groups for part in split_duplicates(group)
            for piece in split_at_gaps(part, max_gap_s)]


def split_at_gaps(group: list, max_gap_s: float) -> list[list]:
    """The traces of one record cut at every gap longer than ``max_gap_s`` (s) in any channel.

    Interpolating tens of seconds of made-up samples would put invented motion in front
    of the model; ObsPy keeps such a trace as separate traces. The record's time is cut at
    each long gap's edges: before the gap, the gap itself (the other channels, the gapped
    one missing) and after it. Each piece is a view of the samples (no copy) with its own
    start time and a ``stats.gap_note`` that the record reports.
    """
    cuts, notes = _long_gaps(group, max_gap_s)
    if not cuts:
        return [group]
    cuts.sort()
    edges = [None, *(c for i, c in enumerate(cuts) if i == 0 or c - cuts[i - 1] > 1e-6), None]
    parts = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        part = [piece for piece in (_slice_span(tr, lo, hi) for tr in group) if piece is not None]
        if part:
            parts.append(part)
    for k, part in enumerate(parts):
        for tr in part:
            tr.stats.gap_part = (k + 1, len(parts))
            tr.stats.gap_note = (f"split at gap(s) longer than {max_gap_s:g} s ({'; '.join(notes)}): "
                                 f"part {k + 1} of {len(parts)}, nothing interpolated")
    return parts


def _long_gaps(group: list, max_gap_s: float) -> tuple[list, list[str]]:
    """``(cut times, notes)`` at the edges of every gap longer than ``max_gap_s`` in any channel."""
    by_channel = {}
    for tr in group:
        by_channel.setdefault(channel_key(tr), []).append(tr)
    cuts, notes = [], []
    for _, pieces in sorted(by_channel.items()):
        pieces = sorted(pieces, key=lambda t: t.stats.starttime)
        end = pieces[0].stats.endtime
        for tr in pieces[1:]:
            gap = tr.stats.starttime - end
            if gap > max_gap_s:
                # Half-open spans [cut, next cut): the last sample before the gap stays
                # in the part before it, the first after it starts the part after it.
                cuts += [end + 0.5 * tr.stats.delta, tr.stats.starttime]
                notes.append(f"{gap:.1f} s in {tr.id} from {end.strftime('%H:%M:%S.%f')[:-4]}")
            end = max(end, tr.stats.endtime)
    return cuts, notes


def _slice_span(tr, lo, hi):
    """A trace holding the samples of ``tr`` with ``lo <= t < hi`` (None: open end), or None.

    The data is a view (a day-long record is not copied); the header is the trace's own.
    """
    from obspy import Trace

    t0, fs, n = tr.stats.starttime, tr.stats.sampling_rate, tr.stats.npts
    i0 = 0 if lo is None else min(n, max(0, math.ceil((lo - t0) * fs - 1e-6)))
    i1 = n if hi is None else min(n, max(0, math.ceil((hi - t0) * fs - 1e-6)))
    if i1 <= i0:
        return None
    if i0 == 0 and i1 == n:
        return tr
    keep_sac_reference(tr)  # SAC picks count from it, not from the new start
    stats = tr.stats.copy()
    stats.starttime = t0 + i0 / fs
    stats.npts = i1 - i0  # a header given with the data keeps its own npts (and endtime)
    return Trace(data=tr.data[i0:i1], header=stats)


def split_duplicates(group: list) -> list[list]:
    """One group per folder when a channel overlaps itself across folders.

    Two recordings of one station over the same time (two events' folders, a copy in
    another folder) are two records, never merged into one.
    """
    by_channel = {}
    for tr in group:
        by_channel.setdefault(channel_key(tr), []).append(tr)
    clash = False
    for pieces in by_channel.values():
        pieces = sorted(pieces, key=lambda t: t.stats.starttime)
        for a, b in zip(pieces, pieces[1:], strict=False):
            if b.stats.starttime < a.stats.endtime and \
                    Path(getattr(a.stats, "path", "")).parent != Path(getattr(b.stats, "path", "")).parent:
                clash = True
    if not clash:
        return [group]
    by_folder = {}
    for tr in group:
        by_folder.setdefault(str(Path(getattr(tr.stats, "path", "")).parent), []).append(tr)
    return [by_folder[k] for k in sorted(by_folder)]
