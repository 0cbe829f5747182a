"""What a recording format declares: how to recognise and read its files, and what they hold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# How a format's files give the units of their samples (RecordingFormat.units).
UNITS_IN_HEADER = "header"  # the file states them (SAC idep, a text header's units line)
UNITS_SCALE_FACTOR = "scale factor"  # counts and the factor to physical units (K-NET)
UNITS_NONE = "none"  # counts or unknown: --units, a catalog or a StationXML response decides


class FormatError(ValueError):
    """A file of a known format that cannot be read; the message is the one-line reason."""


@dataclass(frozen=True)
class RecordingFormat:
    """One waveform file format: its ``is`` / ``read`` pair and what its files hold.

    Attributes
    ----------
    name : str
        The name the reader leaves in each trace's ``stats._format`` (``"SAC"``,
        ``"MSEED"``, ``"COSMOS"``); :func:`~.registry.format_of` looks a trace up by it.
    label : str
        The name people use (``"miniSEED"``, ``"PEER AT2"``).
    is_format : callable
        ``is_format(path) -> bool``: a cheap look at the file (its first bytes).
    read : callable
        ``read(path) -> obspy.Stream``, or None when the file turns out to be of another
        format; raises :class:`FormatError` for a file of this format that is damaged.
    units : str
        Where the units of the samples come from: :data:`UNITS_IN_HEADER`,
        :data:`UNITS_SCALE_FACTOR` or :data:`UNITS_NONE`.
    units_of : callable or None
        ``units_of(trace) -> (source, units) | None``: the units a trace's header gives
        (``("SAC idep", "nm/s2")``), None when it gives none; ``units`` is then decided by
        ``--units``, a catalog or a response.
    picks : bool
        Whether its files carry phase picks (SAC ``a``, ``t0``..``t9`` with labels).
    kind : str or None
        What every file of the format holds (``"earthquake"`` for the accelerogram
        databases' formats), None when a file may hold anything.
    """

    name: str
    label: str
    is_format: Callable[[Path], bool]
    read: Callable[[Path], object]
    units: str = UNITS_NONE
    units_of: Callable[[object], tuple[str, str] | None] | None = None
    picks: bool = False
    kind: str | None = None


def head_bytes(path: Path, n: int) -> bytes | None:
    """The first ``n`` bytes of a file, None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return None
