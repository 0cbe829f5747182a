"""Station records from real waveform files: anything ObsPy reads, made physical.

Files are read by the first format of the registry that recognises them
(:mod:`host_training.recordings.formats.registry`): ObsPy's formats (SAC, miniSEED, GSE2,
K-NET/KiK-net, ...) and the strong-motion text formats it lacks (PEER AT2, CSMIP V2, ESM,
COSMOS).

A *record* (:class:`~host_training.recordings.record.Record`) is one station's (network,
station, location, instrument) acceleration over one span of time: up to three components
in the model's order (E, N, Z), in m/s^2, on one sample grid, with the P/S picks known for
it and a list of what was done to get there. Readers of real files meet one-component and
two-component records, channel codes of every kind (``HNZ``, ``HN1``, ``EW``, ``UD``,
``Q``), components that start a few ms apart, gaps, counts with a StationXML response, gal,
velocity, and records from before 2000; :func:`read_records` handles each and says what it
did, and refuses with a one-line reason what it cannot make physical (it never guesses
units).

The steps, one module each: files and metadata (:mod:`.files`), traces read and cleaned
(:mod:`.traces`), grouped into station records (:mod:`.grouping`), and each record built
(:mod:`.build`: channels merged, components by :mod:`.orientation`, units by
:mod:`.conversion`, common span, picks and kind by :mod:`.picks`); a catalog CSV
(:mod:`.catalog`) gives units, kinds and picks.

Example
-------
>>> from host_training.recordings.reader import read_records
>>> records, skipped = read_records(["/data/quakes/"], units="gal")  # doctest: +SKIP
>>> rec = records[0]; rec.data.shape, rec.present, rec.picks  # doctest: +SKIP
((3, 6000), (True, True, False), {'P': Pick(...)})
"""

from __future__ import annotations

import logging
from pathlib import Path

from .build import build_record
from .catalog import catalog_row_of, read_catalog
from .conversion import normalize_units
from .files import expand_sources, load_metadata
from .grouping import group_traces
from .record import Record, RecordError, short_reason
from .traces import read_traces

log = logging.getLogger(__name__)


def read_records(sources, *, units: str | None = None, inventory=None, events=None,
                 catalog=None, min_duration_s: float = 0.0, max_gap_s: float = 10.0,
                 nan_gaps: bool = False, float32_where_exact: bool = False,
                 window: tuple[float, float] | None = None,
                 ) -> tuple[list[Record], list[tuple[str, str]]]:
    """Records from files, globs and folders: the reader behind replay-test and ``prepare``.

    Parameters
    ----------
    sources : list of str or Path
        Waveform files (any format ObsPy reads; extensions are not trusted, case does
        not matter), glob patterns and folders (searched recursively). StationXML and
        QuakeML files found among them are used as ``inventory`` and ``events``.
    units : str, optional
        Units of every record (``counts``, ``gal``, ``m/s2``, ``g``, ``cm/s`` ...),
        overriding catalog and headers.
    inventory : str, Path or obspy.Inventory, optional
        StationXML: responses for counts, coordinates for TauP.
    events : str, Path or list of obspy Event, optional
        QuakeML: origins for TauP picks.
    catalog : str, Path or list of CatalogRow, optional
        Catalog CSV (see :func:`~host_training.recordings.catalog.read_catalog`).
    min_duration_s : float
        Records shorter than this (s) are refused (one model window).
    max_gap_s : float
        Longest gap (s) merged within a record (linear interpolation, reported in the
        record's ``actions``). A longer gap, in all channels or in one alone, splits the
        record as ObsPy's ``Stream`` keeps such traces apart: one record before the gap,
        one for the gap itself holding the other channels (the gapped one missing, as
        any missing component), one after it, each with its own start time and an action
        saying so. Nothing is classified from invented samples, and every caller sees
        ordinary records. Picks stay the event's absolute times, so a part may hold its
        P (or S) outside its span: after its end for the part before the event, which
        ``tools.replay.score.truth_of`` scores as noise; ``prepare`` then finds no window
        around the pick and skips the part, rather than picking a P of its own. A later part
        that starts after the P is scored as unknown (the event is scored in the part
        that holds its P); ``Record.part`` says which part a record is.
    nan_gaps : bool
        NaN/inf or masked samples are gaps (replay, scoring) instead of a reason to refuse
        the trace (training data).
    float32_where_exact : bool
        A record read as float32 m/s^2 keeps float32 samples (exactly the values float64
        would hold, half the memory: a 200 Hz day is 207 MB instead of 415 MB); others are
        float64 as always.
    window : (float, float), optional
        ``(start, end)`` UTC seconds: records of the samples between them alone (nearest
        sample at each end); of a miniSEED file only the records holding them are decoded,
        so a long file can be read in pieces with bounded memory.

    Returns
    -------
    records : list of Record
        Sorted by start time.
    skipped : list of (str, str)
        ``(path or record id, one-line reason)`` for every file or record not used.
    """
    skipped = []
    if units is not None:
        units = normalize_units(units, "--units")
    files, meta_files, missing = expand_sources(sources)
    skipped += missing
    found_inventory, found_events, bad_meta = load_metadata(meta_files)
    skipped += bad_meta
    inventory = _inventory(inventory, found_inventory)
    events = _events(events) + found_events
    if isinstance(catalog, (str, Path)):
        catalog = read_catalog(catalog)
    catalog = list(catalog or [])
    traces, bad = read_traces(files, nan_gaps, window)
    skipped += bad
    records = []
    for group in group_traces(traces, max_gap_s):
        record, reason = _record_of(group, units, inventory, events, catalog, min_duration_s,
                                    float32_where_exact)
        if reason is not None:
            skipped.append(reason)
        else:
            records.append(record)
    records.sort(key=lambda r: (r.starttime, r.id))
    return records, skipped


def _inventory(inventory, found):
    """The caller's inventory (a StationXML path read here) plus the one found among the sources."""
    from obspy import read_inventory

    if isinstance(inventory, (str, Path)):
        try:
            inventory = read_inventory(str(inventory))
        except Exception as exc:
            raise RecordError(f"{inventory}: not a readable StationXML file ({short_reason(exc)})") from None
    if found is not None:
        inventory = found if inventory is None else inventory + found
    return inventory


def _events(events) -> list:
    """The caller's events as a list (a QuakeML path read here)."""
    from obspy import read_events

    if isinstance(events, (str, Path)):
        try:
            events = list(read_events(str(events)))
        except Exception as exc:
            raise RecordError(f"{events}: not a readable QuakeML file ({short_reason(exc)})") from None
    return list(events or [])


def _record_of(group, units, inventory, events, catalog, min_duration_s: float,
               float32_where_exact: bool = False):
    """``(record, None)`` of one group of traces, or ``(None, (where, reason))``."""
    label = f"{group[0].id[:-1] if len(group[0].stats.channel) == 3 else group[0].id} " \
            f"at {group[0].stats.starttime.strftime('%Y-%m-%dT%H:%M:%S')}"
    where = ", ".join(sorted({tr.stats.path for tr in group}))
    try:
        row = catalog_row_of([tr.stats.path for tr in group], catalog)
        record = build_record(group, units=units, inventory=inventory, events=events,
                              catalog_row=row, copy=False, float32_where_exact=float32_where_exact)
        if record.duration_s < min_duration_s:
            raise RecordError(f"record is {record.duration_s:.2f} s long, shorter than one "
                              f"window ({min_duration_s:g} s)")
    except RecordError as exc:
        return None, (where if where else label, f"{label}: {exc}")
    except Exception as exc:  # a damaged header nobody foresaw: one line, the rest go on
        log.debug("reading %s", label, exc_info=True)
        return None, (where if where else label, f"{label}: cannot be read "
                                                  f"({type(exc).__name__}: {short_reason(exc)})")
    return record, None
