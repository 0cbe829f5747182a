"""COSMOS V1/V2 (format v01.20): CESMD, NSMP and the COSMOS Virtual Data Center, in cm/s^2 or g.

ObsPy does not read it. Each channel: text lines (their count in the first line;
``Statn No: ... Code:NP-1743``, ``Coords:``, ``Origin:``, ``Rcrd start time:``, ``Sta
Chan 1: 90 deg``), an integer and a real header (the sampling interval is real
value 62, in ms, as gmprocess reads it), comment lines, then ``12725 acceleration pts,
... units=cm/sec2 ... Format=(8F10.5)`` and the samples. Only acceleration in cm/s^2
or g is taken (a raw V0 file in counts is refused).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..conversion import file_header_units
from ..orientation import component_of_angles
from .base import UNITS_IN_HEADER, FormatError, RecordingFormat, head_bytes

LABEL = "COSMOS"
_COSMOS_COUNT = re.compile(r"^\s*(\d+)\s+(Integer-header|Real-header) values follow on\s+(\d+)\s+lines,"
                           r"\s*Format\s*=\s*\(\s*(\d+)\s*[IiFf]\s*(\d+)", re.I)
_COSMOS_DATA = re.compile(r"^\s*(\d+)\s+acceleration pts,.*units\s*=\s*([^\s,(]+).*Format\s*=\s*\(\s*(\d+)"
                          r"\s*[Ff]\s*(\d+)", re.I)
_COSMOS_TIME = r"(\d+)/(\d+)/(\d+),\s*(\d+):\s*(\d+):\s*([\d.]+)"


def _fixed(lines, n: int, width: int) -> list[float]:
    """``n`` numbers from fixed-width columns (Fortran output: columns may touch)."""
    values = []
    for line in lines:
        values += [float(line[j:j + width]) for j in range(0, len(line.rstrip()), width)
                   if line[j:j + width].strip()]
        if len(values) >= n:
            break
    return values


def is_cosmos(path: Path) -> bool:
    """Whether the file's first line names a COSMOS format version (``(Format v01.20 ...``)."""
    head = head_bytes(path, 120)
    return head is not None and b"\0" not in head and b"(format v" in head.lower()


def read_cosmos(path: Path):
    """A COSMOS V1/V2 file as a Stream, one trace per acceleration block (see the module docstring).

    Returns None when not COSMOS; raises :class:`FormatError` for a damaged file.
    """
    from obspy import Stream

    if not is_cosmos(path):
        return None
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    starts = [i for i, line in enumerate(lines) if "(format v" in line.lower()]
    stream = Stream()
    for k, first in enumerate(starts):
        block = lines[first:starts[k + 1] if k + 1 < len(starts) else len(lines)]
        if "acceleration" not in block[0].lower():
            continue  # a V2 file's velocity, displacement and spectra blocks
        stream += _channel(block, f"COSMOS channel block {k + 1}", path)
    return stream


def _headers(block: list[str], where: str) -> tuple[dict, int]:
    """``({"i": integer header, "r": real header}, index of the line after them)`` of a block."""
    n_text = re.search(r"with\s+(\d+)\s+text lines", block[0], re.I)
    headers, i = {}, len(block[:int(n_text.group(1)) if n_text else 13])
    while i < len(block) and len(headers) < 2:
        m = _COSMOS_COUNT.match(block[i])
        if m:
            n, kind, n_lines, _, width = m.groups()
            try:
                headers[kind.lower()[0]] = _fixed(block[i + 1:i + 1 + int(n_lines)], int(n), int(width))
            except ValueError:
                raise FormatError(f"{where}: unreadable {kind} values") from None
            i += int(n_lines)
        i += 1
    return headers, i


def _channel(block: list[str], where: str, path: Path):
    """The trace of one acceleration block of a COSMOS file."""
    from obspy import Trace, UTCDateTime

    n_text = re.search(r"with\s+(\d+)\s+text lines", block[0], re.I)
    joined = "\n".join(block[:int(n_text.group(1)) if n_text else 13])
    headers, i = _headers(block, where)
    data_at = next((j for j in range(i, len(block)) if _COSMOS_DATA.match(block[j])), None)
    if data_at is None or "r" not in headers:
        if data_at is None and re.search(r"counts", block[0], re.I):
            raise FormatError(f"{where}: raw counts (COSMOS V0) without a response; give the "
                              "V1 or V2 file (acceleration in cm/s^2)")
        raise FormatError(f"{where}: no real header or no acceleration data line")
    npts, units, _, width = _COSMOS_DATA.match(block[data_at]).groups()
    reals = headers["r"]
    dt_ms = next((reals[j] for j in (61, 33) if len(reals) > j and reals[j] > 0), None)
    start = re.search(r"Rcrd start time:\s*" + _COSMOS_TIME, joined, re.I)
    if dt_ms is None or start is None:
        raise FormatError(f"{where}: no sampling interval (real header 62) or record start time")
    try:
        values = _fixed(block[data_at + 1:], int(npts), int(width))[:int(npts)]
    except ValueError:
        raise FormatError(f"{where}: a sample that is not a number") from None
    if len(values) < int(npts):
        raise FormatError(f"{where} holds {len(values)} samples, its header says {npts}")
    month, day, year, hour, minute = (int(x) for x in start.groups()[:5])
    tr = Trace(np.array(values))
    code = re.search(r"Code:\s*([A-Za-z0-9]{1,2})-\s*(\w+)", joined)
    tr.stats.update(dict(network=code.group(1) if code else "", sampling_rate=round(1000.0 / dt_ms, 6),
                         station=(code.group(2) if code else path.stem)[:16], channel="",
                         starttime=UTCDateTime(year, month, day, hour, minute) + float(start.group(6))))
    sac = _angles_and_coordinates(joined, tr.stats.starttime)
    tr.stats.sac = sac
    tr.stats.channel = component_of_angles(sac.get("cmpaz"), sac.get("cmpinc")) or ""
    tr.stats._format = "COSMOS"
    tr.stats.file_units = units.lower().replace("sec", "s")
    return tr


def _angles_and_coordinates(joined: str, starttime) -> dict:
    """The channel's azimuth/incidence, station coordinates and hypocentre as SAC header fields."""
    from obspy import UTCDateTime

    sac = {}
    chan = re.search(r"Sta Chan\s+\d+:\s*(\d+)\s*deg", joined, re.I)
    if chan:
        sac.update(cmpinc=90.0, cmpaz=float(chan.group(1)) % 360.0)
    elif re.search(r"Sta Chan\s+\d+:\s*(Up|Down|Vert)", joined, re.I):
        sac.update(cmpinc=0.0, cmpaz=0.0)
    coords = re.search(r"Coords:\s*(-?\d+\.\d+)\s+(-?\d+\.\d+)", joined)
    if coords:
        sac.update(stla=float(coords.group(1)), stlo=float(coords.group(2)))
    hypo = re.search(r"Hypocenter:\s*(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+H=\s*(\d+)", joined)
    origin = re.search(r"Origin:\s*" + _COSMOS_TIME, joined)
    if hypo and origin:
        o = [int(x) for x in origin.groups()[:5]]
        o_time = UTCDateTime(o[2], o[0], o[1], o[3], o[4]) + float(origin.group(6))
        sac.update(evla=float(hypo.group(1)), evlo=float(hypo.group(2)), evdp=float(hypo.group(3)),
                   o=o_time - starttime)
    return sac


FORMAT = RecordingFormat(
    name="COSMOS", label=LABEL, is_format=is_cosmos, read=read_cosmos, units=UNITS_IN_HEADER,
    units_of=lambda tr: file_header_units(tr, LABEL), kind="earthquake")
