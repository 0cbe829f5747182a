"""PEER AT2: the accelerograms of the PEER NGA database (NGA-West2, FEMA P695), in g.

ObsPy does not read it. Four header lines: the database, ``event, date, station,
component`` (an azimuth such as ``009``, or ``UP``/``DWN``/``V`` for the vertical),
``ACCELERATION TIME SERIES IN UNITS OF G`` and ``NPTS= 2999, DT= .0100 SEC`` (or the
older ``2999 0.0100 NPTS, DT``); then the samples, in g. The start time is the record's
date at 00:00 UTC (the file gives no time of day); the samples stay in the file's units
(``stats.file_units``) until the record converts them.

Example
-------
>>> from host_training.recordings.formats.peer_at2 import read_peer_at2
>>> stream = read_peer_at2(Path("RSN953_NORTHR_MUL009.AT2"))  # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..conversion import file_header_units
from ..orientation import component_of_angles
from .base import UNITS_IN_HEADER, FormatError, RecordingFormat, head_bytes

LABEL = "PEER AT2"
_AT2_NPTS = re.compile(r"NPTS\s*=\s*(\d+)", re.IGNORECASE)
_AT2_DT = re.compile(r"DT\s*=\s*([0-9.Ee+-]+)", re.IGNORECASE)
_AT2_OLD = re.compile(r"^\s*(\d+)\s+([0-9.Ee+-]+)\s+NPTS\s*,\s*DT", re.IGNORECASE)


def _header(path: Path) -> tuple[list[str], int, float] | None:
    """``(header lines, NPTS, DT s)`` of an AT2 file, None when the file is not AT2."""
    head = head_bytes(path, 2048)
    if head is None or b"\0" in head:
        return None
    lines = head.decode("latin-1").splitlines()
    if len(lines) < 5 or "ACCELERATION" not in lines[2].upper():
        return None
    m_n, m_dt, m_old = _AT2_NPTS.search(lines[3]), _AT2_DT.search(lines[3]), _AT2_OLD.match(lines[3])
    if m_old:
        return lines, int(m_old.group(1)), float(m_old.group(2))
    if m_n and m_dt:
        return lines, int(m_n.group(1)), float(m_dt.group(1))
    return None


def is_peer_at2(path: Path) -> bool:
    """Whether the file is a PEER AT2 accelerogram (its four header lines)."""
    return _header(path) is not None


def read_peer_at2(path: Path):
    """A PEER NGA ``.AT2`` accelerogram as a Stream (see the module docstring).

    Returns None when the file is not AT2; raises :class:`FormatError` when it is AT2 but
    damaged.
    """
    from obspy import Stream, Trace, UTCDateTime

    header = _header(path)
    if header is None:
        return None
    lines, npts, dt = header
    units = lines[2].upper()
    file_units = "g" if "UNITS OF G" in units else "cm/s2" if ("CM/S" in units or "GAL" in units) else None
    if file_units is None:
        raise FormatError(f"PEER file with units {lines[2].strip()!r}: only g or cm/s^2 are known")
    try:
        text = Path(path).read_text(encoding="latin-1").splitlines()[4:]
        data = np.array(" ".join(text).replace("D", "E").split(), dtype=np.float64)
    except ValueError:
        raise FormatError("PEER AT2 file with a sample that is not a number") from None
    if len(data) < npts:
        raise FormatError(f"PEER AT2 file holds {len(data)} samples, its header says NPTS={npts}")
    if dt <= 0:
        raise FormatError(f"PEER AT2 file with DT={dt}")
    fields = [f.strip() for f in lines[1].split(",")]
    component = fields[-1] if len(fields) >= 2 else ""
    start = UTCDateTime(1970, 1, 1)
    for cell in fields:
        date = re.search(r"\b(\d{1,2})/(\d{1,2})/(\d{2,4})\b", cell)
        if date:
            month, day, year = (int(x) for x in date.groups())
            year += 1900 if year < 100 else 0
            try:
                start = UTCDateTime(year, month, day)
            except ValueError:
                pass
    station = re.sub(r"[^A-Za-z0-9]", "", fields[2] if len(fields) >= 4 else path.stem)[:16] or "AT2"
    tr = Trace(data[:npts])
    tr.stats.update(dict(station=station, network="PE", sampling_rate=round(1.0 / dt, 6),
                         starttime=start, channel=""))
    comp = component.upper().replace("-", "")
    sac = {}
    if comp in ("UP", "DWN", "DN", "V", "VER", "VERT", "Z"):
        sac = {"cmpinc": 0.0, "cmpaz": 0.0}
    elif re.fullmatch(r"\d{1,3}", comp):
        sac = {"cmpinc": 90.0, "cmpaz": float(comp) % 360.0}
    tr.stats.sac = sac
    tr.stats.channel = component_of_angles(sac.get("cmpaz"), sac.get("cmpinc")) or ""  # the azimuth names it
    tr.stats._format = "AT2"
    tr.stats.file_units = file_units
    return Stream([tr])


FORMAT = RecordingFormat(
    name="AT2", label=LABEL, is_format=is_peer_at2, read=read_peer_at2, units=UNITS_IN_HEADER,
    units_of=lambda tr: file_header_units(tr, LABEL), kind="earthquake")
