"""ESM ASCII: the Engineering Strong-Motion database's format (ORFEUS; ITACA), one channel a file.

ObsPy does not read it. ``KEY: value`` header lines (``EVENT_NAME``, ``EVENT_ID``,
``NETWORK``, ``STATION_CODE``, ``LOCATION``, ``STREAM`` such as ``HGE``, ``UNITS``,
``DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS``, ``SAMPLING_INTERVAL_S``, ``NDATA``, station and
event coordinates), then one sample per line. The event's origin and the station's
coordinates are kept (as SAC header fields) for TauP picks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..conversion import file_header_units
from .base import UNITS_IN_HEADER, FormatError, RecordingFormat, head_bytes

LABEL = "ESM"
_ESM_TIME = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})[_T ]?(\d{2}):?(\d{2}):?(\d{2}(?:\.\d*)?)")


def is_esm_ascii(path: Path) -> bool:
    """Whether the file begins ``EVENT_NAME:`` (an ESM ASCII file)."""
    head = head_bytes(path, 64)
    return head is not None and b"\0" not in head and head.startswith(b"EVENT_NAME:")


def read_esm_ascii(path: Path):
    """An ESM ASCII file as a Stream of one trace (see the module docstring).

    Returns None when the file is not ESM; raises :class:`FormatError` when it is but lacks
    what a record needs.
    """
    from obspy import Stream, Trace, UTCDateTime

    if not is_esm_ascii(path):
        return None
    header, values = {}, []
    for line in Path(path).read_text(encoding="latin-1").splitlines():
        key, sep, value = line.partition(":")
        if not values and sep and re.fullmatch(r"[A-Z0-9_/().^-]+", key.strip() or "-"):
            header[key.strip()] = value.strip()
        elif line.strip():
            values += line.split()
    try:
        dt = float(header["SAMPLING_INTERVAL_S"])
        npts = int(header.get("NDATA") or len(values))
        data = np.array(values[:npts], dtype=np.float64)
    except (KeyError, ValueError) as exc:
        what = exc.args[0] if isinstance(exc, KeyError) else "sample"
        raise FormatError(f"ESM file without a usable {what}") from None
    m = _ESM_TIME.search(header.get("DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS", ""))
    if m is None or dt <= 0 or len(data) < npts:
        raise FormatError("ESM file without a first-sample time, a positive SAMPLING_INTERVAL_S or "
                          f"its NDATA={npts} samples ({len(data)})")
    start = UTCDateTime(*(int(x) for x in m.groups()[:5]), 0) + float(m.group(6))
    tr = Trace(data)
    tr.stats.update(dict(network=header.get("NETWORK", ""), station=header.get("STATION_CODE", ""),
                         location=header.get("LOCATION", "").replace("--", ""),
                         channel=header.get("STREAM", ""), sampling_rate=round(1.0 / dt, 6),
                         starttime=start))
    tr.stats.sac = _coordinates(header, start)
    tr.stats._format = "ESM"
    tr.stats.file_units = header.get("UNITS") or "cm/s^2"
    return Stream([tr])


def _coordinates(header: dict, start) -> dict:
    """Station and event coordinates and the origin time as SAC header fields."""
    from obspy import UTCDateTime

    sac = {}
    for key, name in (("STATION_LATITUDE_DEGREE", "stla"), ("STATION_LONGITUDE_DEGREE", "stlo"),
                      ("EVENT_LATITUDE_DEGREE", "evla"), ("EVENT_LONGITUDE_DEGREE", "evlo"),
                      ("EVENT_DEPTH_KM", "evdp")):
        try:
            sac[name] = float(header[key])
        except (KeyError, ValueError):
            pass
    origin = _ESM_TIME.search(f"{header.get('EVENT_DATE_YYYYMMDD', '')}_"
                              f"{header.get('EVENT_TIME_HHMMSS', '')}")
    if origin:  # as SAC's o: seconds after the reference (here the first sample)
        sac["o"] = UTCDateTime(*(int(x) for x in origin.groups()[:5]), 0) + float(origin.group(6)) - start
    return sac


FORMAT = RecordingFormat(
    name="ESM", label=LABEL, is_format=is_esm_ascii, read=read_esm_ascii, units=UNITS_IN_HEADER,
    units_of=lambda tr: file_header_units(tr, LABEL), kind="earthquake")
