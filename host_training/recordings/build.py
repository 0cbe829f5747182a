"""One station record from the traces of one station and span: the reader's steps, in order.

:func:`build_record` runs them: take the traces (:func:`own_traces`), one trace per
channel with short gaps interpolated (:func:`merge_channels`), the channels as E, N, Z
(:func:`~.orientation.assign_components`) and horizontals rotated to E and N
(:func:`~.orientation.rotate_horizontals`), one sampling rate (:func:`resample_to_one_rate`),
physical units (:func:`~.conversion.convert_components`), the common span on one grid
(:func:`trim_to_common_span`), the samples as ``(3, n)`` (:func:`stack_components`), the
units checked (:func:`~.conversion.check_plausible`), dead channels dropped
(:func:`drop_dead_channels`), then picks and kind (:func:`~.picks.picks_and_kind`).
Every step says what it did in the record's ``actions``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .catalog import CatalogRow
from .conversion import check_plausible, convert_components
from .formats.registry import format_of
from .formats.sac_headers import keep_sac_reference
from .grouping import channel_key
from .orientation import assign_components, instrument_code, rotate_horizontals
from .picks import picks_and_kind
from .record import COMPONENTS, Record, RecordError


def build_record(traces, *, units=None, inventory=None, events=(), catalog=None,
                 catalog_row: CatalogRow | None = None, max_components: int = 3,
                 copy: bool = True, float32_where_exact: bool = False) -> Record:
    """One :class:`~.record.Record` from the traces of one station and time span.

    ``float32_where_exact``: the record's samples stay float32 when every component was
    read as float32 m/s^2 (the same values as float64, half the memory of a long record).

    Raises
    ------
    RecordError
        With the one-line reason when it cannot be made physical.
    """
    files = sorted({tr.stats.path for tr in traces if "path" in tr.stats})
    traces, actions = own_traces(traces, copy)
    traces = merge_channels(traces, actions)
    slots = assign_components(traces, inventory, actions)
    rotate_horizontals(slots, actions)
    resample_to_one_rate(slots, actions)
    labels = convert_components(slots, units, catalog_row, inventory, format_of, actions,
                                keep_float32=float32_where_exact)
    start, rate, pieces = trim_to_common_span(slots, actions)
    data, present, channels = stack_components(slots, pieces)
    check_plausible(data, labels)
    drop_dead_channels(data, present, channels, actions)
    first = next(iter(slots.values()))
    s = first.stats
    record = Record(
        id=f"{s.network}.{s.station}.{s.location}.{instrument_code(first)}".rstrip(".") +
           f"_{start.strftime('%Y%m%dT%H%M%S')}",
        station=f"{s.network}.{s.station}.{s.location}", starttime=start,
        sampling_rate_hz=rate, data=data, present=tuple(present), channels=tuple(channels),
        units="; ".join(sorted(labels)), files=files, actions=actions,
        part=next((tuple(tr.stats.gap_part) for tr in traces if tr.stats.get("gap_part")), None))
    record.picks, record.kind = picks_and_kind(list(slots.values()), record, catalog_row,
                                               events, inventory)
    return record


def own_traces(traces, copy: bool) -> tuple[list, list[str]]:
    """The traces to change in place (copies unless ``copy`` is False, as
    :func:`~.reader.read_records` hands over its own: that spares a copy of a day-long record)
    and the notes of their reading (named channels, splits at gaps) as the first actions."""
    traces = [tr.copy() for tr in traces] if copy else list(traces)
    for tr in traces:
        tr.stats.path = getattr(tr.stats, "path", "")
        keep_sac_reference(tr)  # trimmed to the common span below: picks keep their times
    actions = sorted({tr.stats.channel_note for tr in traces if tr.stats.get("channel_note")})
    actions += sorted({tr.stats.gap_note for tr in traces if tr.stats.get("gap_note")})
    return traces, actions


def merge_channels(traces, actions: list) -> list:
    """One trace per channel: pieces of one channel merged, gaps interpolated (linear).

    Raises
    ------
    RecordError
        When a channel changes sampling rate, or two files overlap with different samples.
    """
    from obspy import Stream

    by_channel = {}
    for tr in traces:
        by_channel.setdefault(channel_key(tr), []).append(tr)
    merged = []
    for channel, pieces in sorted(by_channel.items()):
        rates = {p.stats.sampling_rate for p in pieces}
        if len(rates) > 1:
            raise RecordError(f"channel {channel} changes sampling rate ({sorted(rates)} Hz)")
        if len(pieces) == 1:
            merged.append(pieces[0])
            continue
        check_overlaps(channel, pieces)
        st = Stream(pieces)
        gaps = st.get_gaps()
        for tr in st:
            tr.data = tr.data.astype(np.float64)
        st.merge(method=1, fill_value="interpolate")
        if len(st) != 1:
            raise RecordError(f"channel {channel} could not be merged into one trace")
        holes = [g[6] for g in gaps if g[6] > 0]
        if holes:
            actions.append(f"{channel}: merged {len(holes)} gap(s) of {sum(holes):.3f} s "
                           "(linear interpolation)")
        else:
            actions.append(f"{channel}: merged {len(pieces)} pieces")
        merged.append(st[0])
    return merged


def check_overlaps(channel: str, pieces: list) -> None:
    """Refuse two files whose samples of one channel overlap in time and disagree.

    A re-sent miniSEED record repeats the same samples (merged quietly); different
    samples at the same time are two recordings under one channel id (two stations
    without a station code, an event copied over another), never to be mixed.
    """
    pieces = sorted(pieces, key=lambda t: t.stats.starttime)
    for a, b in zip(pieces, pieces[1:], strict=False):
        if b.stats.starttime > a.stats.endtime or a.stats.get("path") == b.stats.get("path"):
            continue
        x = a.slice(b.stats.starttime, a.stats.endtime, nearest_sample=True).data.astype(np.float64)
        y = b.slice(b.stats.starttime, a.stats.endtime, nearest_sample=True).data.astype(np.float64)
        n = min(len(x), len(y))
        scale = max(float(np.max(np.abs(x[:n]))) if n else 0.0, 1e-12)
        if n and not np.allclose(x[:n], y[:n], rtol=0.0, atol=1e-6 * scale):
            raise RecordError(f"channel {channel}: {Path(a.stats.path).name} and "
                              f"{Path(b.stats.path).name} overlap in time with different samples "
                              "(two recordings under one station and channel code?); give them "
                              "station codes or read them apart")


def resample_to_one_rate(slots: dict, actions: list) -> None:
    """Components at a lower rate resampled (Lanczos, a = 8) to the highest, in place."""
    rates = {tr.stats.sampling_rate for tr in slots.values()}
    if len(rates) <= 1:
        return
    top = max(rates)
    for tr in slots.values():
        if tr.stats.sampling_rate != top:
            actions.append(f"{tr.stats.channel}: resampled {tr.stats.sampling_rate:g} -> {top:g} Hz")
            tr.data = tr.data.astype(np.float64)
            tr.interpolate(top, method="lanczos", a=8)


def common_span(traces) -> tuple[object, object]:
    """Common span on the grid of the earliest trace; ``RecordError`` without overlap.

    The start is the first sample of the earliest trace's grid at or after the latest
    start (within half a sample), so a component a few ms late is the one moved.
    """
    ref = min(traces, key=lambda tr: tr.stats.starttime).stats
    latest = max(tr.stats.starttime for tr in traces)
    end = min(tr.stats.endtime for tr in traces)
    k = math.ceil((latest - ref.starttime) * ref.sampling_rate - 0.5)
    start = ref.starttime + k / ref.sampling_rate
    if end <= start:
        raise RecordError("components do not overlap in time")
    return start, end


def trim_to_common_span(slots: dict, actions: list) -> tuple[object, float, dict]:
    """Every component trimmed to the common span, on one grid (nearest sample).

    Returns
    -------
    start : obspy.UTCDateTime
        Time of the first common sample.
    rate : float
        Sampling rate in Hz.
    pieces : dict
        ``{component: float64 samples}`` (float32 where the conversion kept them so).
    """
    start, end = common_span(list(slots.values()))
    rate = float(next(iter(slots.values())).stats.sampling_rate)
    pieces = {}
    for c, tr in slots.items():
        before = (tr.stats.starttime, tr.stats.endtime)
        tr.trim(start, end, nearest_sample=True)
        offset = tr.stats.starttime - start
        if abs(offset) > 1e-6:
            actions.append(f"{tr.stats.channel}: aligned by {-offset * 1e3:+.1f} ms to the common "
                           "grid (nearest sample)")
        trimmed = (tr.stats.starttime - before[0]) + (before[1] - tr.stats.endtime)
        if trimmed > 1.5 / rate:
            actions.append(f"{tr.stats.channel}: trimmed {trimmed:.3f} s to the common span")
        pieces[c] = np.asarray(tr.data, dtype=np.float32 if tr.data.dtype == np.float32 else np.float64)
    return start, rate, pieces


def stack_components(slots: dict, pieces: dict) -> tuple[np.ndarray, list, list]:
    """``(data (3, n) m/s^2 E/N/Z, present, channels)``; a missing component is zeros.

    The samples then live in ``data`` only: ``pieces`` and the traces' data are emptied
    (the memory of long records); only the traces' headers are read from here on.
    """
    n = min(len(p) for p in pieces.values())
    data = np.zeros((3, n), dtype=np.result_type(*pieces.values()))  # float32 only if all are
    present = []
    channels = []
    for i, c in enumerate(COMPONENTS):
        if c in pieces:
            data[i] = pieces[c][:n]
            pieces[c] = None
            slots[c].data = np.empty(0)
        present.append(c in pieces)
        channels.append(slots[c].stats.channel if c in slots else None)
    return data, present, channels


def drop_dead_channels(data: np.ndarray, present: list, channels: list, actions: list) -> None:
    """A component whose samples are all equal beside live ones is replayed as missing, in place."""
    flat = [present[i] and np.ptp(data[i]) == 0.0 for i in range(len(COMPONENTS))]
    if any(flat) and not all(f or not p for f, p in zip(flat, present, strict=True)):
        for i in np.flatnonzero(flat):
            present[i] = False
            data[i] = 0.0
            actions.append(f"{channels[i]}: every sample equal (dead channel), replayed as missing")
