"""A station record: one station's acceleration over one span of time, as every reader returns it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

COMPONENTS = ("E", "N", "Z")  # the model's channel order


class RecordError(ValueError):
    """A record or file that cannot be used; the message is the one-line reason."""


def short_reason(exc: Exception) -> str:
    """The first line of an exception's message (at most 120 characters), or its type's name."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


@dataclass
class Pick:
    """A phase arrival: absolute time and where it came from.

    Attributes
    ----------
    time : obspy.UTCDateTime
        Arrival time, UTC.
    source : str
        ``"sac ka"``, ``"sac t1 (kt1='S')"``, ``"catalog"``, ``"taup ak135 P"`` ...
    """

    time: object
    source: str


@dataclass
class Record:
    """One station's acceleration over one time span, ready to replay or to window.

    Attributes
    ----------
    id : str
        ``NET.STA.LOC.BI_YYYYmmddTHHMMSS`` (BI: band and instrument code of the channels).
    station : str
        ``NET.STA.LOC``.
    starttime : obspy.UTCDateTime
        Time of the first sample.
    sampling_rate_hz : float
        Sampling rate in Hz.
    data : numpy.ndarray
        ``(3, n_samples)`` float64 (float32 if read so, see ``read_records``) acceleration in
        m/s^2, components (E, N, Z). A missing component is all zeros and marked False in
        ``present``.
    present : tuple of bool
        Which of (E, N, Z) were recorded.
    channels : tuple
        Channel code used for each of (E, N, Z), None where missing.
    picks : dict
        ``"P"``/``"S"`` -> :class:`Pick`.
    kind : str or None
        ``earthquake``, ``noise`` or ``other`` when a catalog or header says, else None.
    units : str
        Where the units came from and what they were, e.g. ``"gal (catalog)"``.
    files : list of str
        Files the traces came from.
    actions : list of str
        What was done: merged gaps, trimmed, aligned, rotated, converted.
    part : tuple of int or None
        ``(k, n)``: part k of the n that a station's record was split into at gaps
        longer than ``max_gap_s`` (see :func:`~host_training.recordings.reader.read_records`);
        None when not split.
    """

    id: str
    station: str
    starttime: object
    sampling_rate_hz: float
    data: np.ndarray
    present: tuple
    channels: tuple
    picks: dict = field(default_factory=dict)
    kind: str | None = None
    units: str = ""
    files: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    part: tuple | None = None

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sampling_rate_hz

    @property
    def endtime(self):
        return self.starttime + (self.n_samples - 1) / self.sampling_rate_hz

    @property
    def n_components(self) -> int:
        return int(sum(self.present))

    def shifted(self, seconds: float) -> Record:
        """The same record and its picks moved by ``seconds`` (a copy; data shared)."""
        picks = {k: Pick(p.time + seconds, p.source) for k, p in self.picks.items()}
        return replace(self, starttime=self.starttime + seconds, picks=picks,
                       actions=self.actions + [f"shifted in time by {seconds:+.0f} s"])

    def summary(self) -> dict:
        """JSON-ready description (no samples)."""
        return {"id": self.id, "station": self.station, "starttime": str(self.starttime),
                "sampling_rate_hz": self.sampling_rate_hz, "duration_s": round(self.duration_s, 3),
                "components": "".join(c if p else "-" for c, p in zip(COMPONENTS, self.present,
                                                                      strict=True)),
                "channels": list(self.channels), "kind": self.kind, "units": self.units,
                "picks": {k: {"time": str(p.time), "source": p.source} for k, p in self.picks.items()},
                "files": self.files, "actions": self.actions}
