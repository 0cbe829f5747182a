"""SAC records: write synthetic records with their picks, read station records back.

Pick convention (SAC's own): header ``a`` holds the P arrival with ``ka = 'P'``, header
``t0`` the S arrival with ``kt0 = 'S'``, both in s relative to the reference time.
Absolute pick time = reference time + pick = ``starttime - b + pick``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PICK_HEADERS = {"P": ("a", "ka"), "S": ("t0", "kt0")}
# Channel codes: H = high sample rate, N = accelerometer; E, N, Z components.
CHANNELS = ("HNE", "HNN", "HNZ")
# Accepted component sets, each in the order the model takes them (horizontals, vertical).
COMPONENT_ORDERS = (("E", "N", "Z"), ("X", "Y", "Z"), ("1", "2", "Z"))


def order_components(traces) -> list | None:
    """The three traces of a record in model order (E, N, Z), or None if not a full set.

    The component is the last letter of the channel code (HNE, HLX, HH1, ...).
    """
    by_comp = {tr.stats.channel[-1:]: tr for tr in traces}
    if len(traces) != 3 or len(by_comp) != 3:
        return None
    for order in COMPONENT_ORDERS:
        if all(c in by_comp for c in order):
            return [by_comp[c] for c in order]
    return None


@dataclass
class StationRecord:
    """Three components of one station over one time span.

    Attributes
    ----------
    stream : obspy.Stream
        Traces ordered (E, N, Z), acceleration in m/s^2.
    picks : dict
        Phase name -> ``obspy.UTCDateTime`` read from the pick headers.
    name : str
        A label for the record (folder or file stem).
    """

    stream: object
    picks: dict = field(default_factory=dict)
    name: str = ""

    @property
    def starttime(self):
        return self.stream[0].stats.starttime

    @property
    def sampling_rate_hz(self) -> float:
        return float(self.stream[0].stats.sampling_rate)

    def data(self) -> np.ndarray:
        """``(3, n_samples)`` float64 acceleration in m/s^2, (E, N, Z)."""
        n = min(tr.stats.npts for tr in self.stream)
        return np.stack([tr.data[:n].astype(np.float64) for tr in self.stream])


def write_record(data: np.ndarray, sampling_rate_hz: float, starttime, folder, station="DEMO",
                 network="XX", picks: dict | None = None, kind: str = "") -> list:
    """Write a ``(3, n)`` m/s^2 record as three SAC files (E, N, Z) with pick headers.

    Parameters
    ----------
    data : numpy.ndarray
        ``(3, n_samples)`` acceleration in m/s^2, components (E, N, Z).
    sampling_rate_hz : float
        Sampling rate in Hz.
    starttime : obspy.UTCDateTime
        Time of the first sample.
    folder : str or Path
        Output folder, created if needed.
    picks : dict, optional
        ``{"P": seconds_after_start, "S": seconds_after_start}``.
    kind : str
        Stored in ``kevnm`` (``earthquake``, ``traffic``, ...).

    Returns
    -------
    list of Path
    """
    from obspy import Trace
    from obspy.io.sac import SACTrace

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for comp, channel in zip(data, CHANNELS, strict=True):
        tr = Trace(np.asarray(comp, dtype=np.float32))
        tr.stats.network, tr.stats.station, tr.stats.channel = network, station, channel
        tr.stats.sampling_rate = sampling_rate_hz
        tr.stats.starttime = starttime
        sac = SACTrace.from_obspy_trace(tr)
        sac.kevnm = kind[:16] or None
        # Picks are relative to the reference time, which SAC keeps to the millisecond;
        # b holds the rest, so a pick s after the first sample is b + s.
        for phase, seconds in (picks or {}).items():
            value_key, name_key = PICK_HEADERS[phase]
            setattr(sac, value_key, sac.b + float(seconds))
            setattr(sac, name_key, phase)
        path = folder / f"{network}.{station}..{channel}.SAC"
        sac.write(str(path))
        paths.append(path)
    return paths


def read_picks(trace) -> dict:
    """Absolute P/S times from a SAC trace's pick headers (only those that are set)."""
    sac = getattr(trace.stats, "sac", None) or {}
    reference = trace.stats.starttime - float(sac.get("b", 0.0))
    picks = {}
    for phase, (value_key, _) in PICK_HEADERS.items():
        value = sac.get(value_key)
        if value is not None and value != -12345.0:  # -12345 is SAC's "undefined"
            picks[phase] = reference + float(value)
    return picks


def read_records(folder, pattern: str = "*.SAC") -> tuple[list, dict]:
    """Read every 3-component station record below ``folder``.

    Files are grouped by (folder, network, station, location, start time); a group
    without exactly one E/N/Z (or X/Y/Z, 1/2/Z) triple is skipped. A file ObsPy cannot
    read is skipped with a one-line error naming it, and counted.

    Returns
    -------
    records : list of StationRecord
    counts : dict
        ``read``, ``corrupt`` and ``incomplete`` counts.
    """
    from obspy import Stream, read

    groups = defaultdict(list)
    counts = {"read": 0, "corrupt": 0, "incomplete": 0}
    for path in sorted(Path(folder).rglob(pattern)):
        try:
            tr = read(str(path), format="SAC")[0]
        except Exception as exc:  # ObsPy raises many types on damaged files
            counts["corrupt"] += 1
            log.error("%s: not a readable SAC file (%s); skipped", path, exc)
            continue
        counts["read"] += 1
        s = tr.stats
        groups[(str(path.parent), s.network, s.station, s.location, str(s.starttime))].append(tr)
    records = []
    for (parent, net, sta, _loc, _), traces in sorted(groups.items()):
        ordered = order_components(traces)
        if ordered is None:
            counts["incomplete"] += 1
            log.error("%s: %s.%s has channels %s, need one each of E, N, Z (or X, Y, Z); skipped",
                      parent, net, sta, sorted(tr.stats.channel for tr in traces))
            continue
        stream = Stream(ordered)
        picks = {}
        for tr in stream:
            picks.update(read_picks(tr))
        records.append(StationRecord(stream, picks, name=Path(parent).name))
    return records, counts
