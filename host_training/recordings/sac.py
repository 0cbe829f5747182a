"""SAC records: write synthetic records with their picks, read station records back.

Pick convention (SAC's own): header ``a`` holds the P arrival with ``ka = 'P'``, header
``t0`` the S arrival with ``kt0 = 'S'``, both in s relative to the reference time.
Absolute pick time = reference time + pick = ``starttime - b + pick``. Readers go by
the labels, not the slots (:func:`host_training.recordings.formats.sac_headers.sac_picks`).

Units: SAC's ``idep = IACC`` means nm/s^2 (SAC manual), so records are written in
nm/s^2 with ``idep`` set, and any SAC reader gets physical units back. Reading is
:mod:`host_training.recordings.reader`; :func:`read_records` here is the folder view of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .formats.sac_headers import sac_picks
from .reader import read_records as read_station_records
from .record import COMPONENTS

log = logging.getLogger(__name__)

PICK_HEADERS = {"P": ("a", "ka"), "S": ("t0", "kt0")}
# Channel codes: H = high sample rate, N = accelerometer; E, N, Z components.
CHANNELS = ("HNE", "HNN", "HNZ")


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
        tr = Trace(np.asarray(np.asarray(comp, dtype=np.float64) * 1e9, dtype=np.float32))
        tr.stats.network, tr.stats.station, tr.stats.channel = network, station, channel
        tr.stats.sampling_rate = sampling_rate_hz
        tr.stats.starttime = starttime
        sac = SACTrace.from_obspy_trace(tr)
        sac.kevnm = kind[:16] or None
        sac.idep = "iacc"  # nm/s^2
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
    """Absolute P/S times (``UTCDateTime``) from a SAC trace's labelled pick headers."""
    return {phase: pick.time for phase, pick in sac_picks(trace).items()}


def read_records(folder, pattern: str = "*") -> tuple[list, dict]:
    """Every station record below ``folder`` (see :func:`.reader.read_records`).

    Returns
    -------
    records : list of StationRecord
        Traces ordered (E, N, Z) in m/s^2, picks as ``UTCDateTime``, named by the
        record id.
    counts : dict
        ``records`` read, ``skipped`` files or records (each logged with its reason).
    """
    from obspy import Stream, Trace

    folder = Path(folder)
    source = str(folder / "**" / pattern) if pattern != "*" else str(folder)
    records, skipped = read_station_records([source])
    for where, why in skipped:
        log.error("%s: %s; skipped", where, why)
    out = []
    for rec in records:
        traces = []
        for comp, data, channel in zip(COMPONENTS, rec.data, rec.channels, strict=True):
            tr = Trace(data.copy())
            tr.stats.update(dict(network=rec.station.split(".")[0], station=rec.station.split(".")[1],
                                 channel=channel or f"HN{comp}", sampling_rate=rec.sampling_rate_hz,
                                 starttime=rec.starttime))
            traces.append(tr)
        out.append(StationRecord(Stream(traces), {k: p.time for k, p in rec.picks.items()},
                                 name=rec.id))
    return out, {"records": len(out), "skipped": len(skipped)}
