"""Station-days of an archive: SDS trees and folders of anything the record reader reads.

An SDS file (``NET.STA.LOC.CHA.TYPE.YEAR.DOY``, in ``YEAR/NET/STA/CHA.TYPE/``) names its
station and day; any other file is placed by its headers (ObsPy, headers only), or, for
the text formats only the record reader knows, by reading it. A file that spans midnight
belongs to every day it touches. A station-day is the unit of work: read, run through the
node and written on its own, so memory is bounded by one station-day and a run can resume.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

SDS_NAME = re.compile(r"^(?P<net>[^.]*)\.(?P<sta>[^.]+)\.(?P<loc>[^.]*)\.(?P<cha>[^.]+)\."
                      r"(?P<type>[A-Z])\.(?P<year>\d{4})\.(?P<doy>\d{3})$")


@dataclass(frozen=True)
class StationDay:
    """One station's data of one UTC day.

    Attributes
    ----------
    station : str
        ``NET.STA``.
    day : str
        ``YYYY-MM-DD`` (UTC).
    files : tuple of str
        Waveform files holding samples of that station and day.
    metadata : tuple of str
        StationXML / QuakeML files found among the sources (responses, origins).
    """

    station: str
    day: str
    files: tuple
    metadata: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.station}/{self.day}"

    @property
    def start_s(self) -> float:
        """Midnight starting the day, UTC seconds since the epoch."""
        return datetime.fromisoformat(self.day).replace(tzinfo=timezone.utc).timestamp()


def _days(start_s: float, end_s: float) -> list[str]:
    """UTC days touched by samples from ``start_s`` to ``end_s`` (inclusive), ISO dates."""
    first = datetime.fromtimestamp(start_s, tz=timezone.utc).date()
    last = datetime.fromtimestamp(max(start_s, end_s), tz=timezone.utc).date()
    return [(first + timedelta(days=k)).isoformat() for k in range((last - first).days + 1)]


def _sds_days(name: str) -> list[tuple[str, str]] | None:
    m = SDS_NAME.match(name)
    if m is None:
        return None
    try:
        day = date(int(m["year"]), 1, 1) + timedelta(days=int(m["doy"]) - 1)
    except ValueError:
        return None
    return [(f"{m['net']}.{m['sta']}", day.isoformat())]


def _header_days(path: Path, units: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """``([(station, day)], None)`` from a file's headers, or ``([], reason)``."""
    import obspy

    try:
        stream = obspy.read(str(path), headonly=True)
        return sorted({(f"{tr.stats.network}.{tr.stats.station}", d) for tr in stream
                       for d in _days(tr.stats.starttime.timestamp, tr.stats.endtime.timestamp)}), None
    except Exception:
        pass
    from host_training.recordings.reader import read_records  # the text formats ObsPy lacks

    records, skipped = read_records([str(path)], units=units, nan_gaps=True)
    if not records:
        return [], skipped[0][1] if skipped else "no record in this file"
    return sorted({(".".join(r.station.split(".")[:2]), d) for r in records
                   for d in _days(r.starttime.timestamp, r.endtime.timestamp)}), None


def find_station_days(sources, units: str | None = None) -> tuple[list[StationDay], list[tuple[str, str]]]:
    """The station-days of ``sources`` (files, globs, folders, SDS roots), in station and day order.

    Returns
    -------
    days : list of StationDay
    skipped : list of (str, str)
        ``(path, one-line reason)``: paths that do not exist, files no reader can place.
    """
    from host_training.recordings.files import expand_sources

    files, metadata, skipped = expand_sources(sources)
    by_day: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in files:
        places = _sds_days(path.name)
        if places is None:
            places, why = _header_days(path, units)
            if why:
                skipped.append((str(path), why))
        for key in places:
            by_day[key].append(str(path))
    meta = tuple(sorted(str(p) for p in metadata))
    days = [StationDay(station, day, tuple(sorted(paths)), meta)
            for (station, day), paths in sorted(by_day.items())]
    return days, skipped
