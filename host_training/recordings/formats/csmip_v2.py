"""CSMIP V2: the processed records of CESMD (strongmotioncenter.org), one block per channel.

ObsPy does not read it. Each channel is a block that begins ``Corrected accelerogram``:
text lines with ``Start time: 12/20/22, 10:34: 1.0 UTC``, ``Station No. 89486
40.585N, 124.146W`` and ``Chan  1: 180 Deg`` (or ``Up``), integer and real headers,
then ``10100 points of accel data equally spaced at 0.010 sec, in cm/sec2. (8f10.5)``
and the samples in fixed-width columns (velocity and displacement follow; not read).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..conversion import file_header_units
from ..orientation import component_of_angles
from .base import UNITS_IN_HEADER, FormatError, RecordingFormat, head_bytes

LABEL = "CSMIP V2"
_V2_START = re.compile(r"Start time:\s*(\d+)/(\d+)/(\d+),\s*(\d+):\s*(\d+):\s*([\d.]+)\s*UTC", re.I)
_V2_DATA = re.compile(r"^\s*(\d+)\s+points of accel data equally spaced at\s*([\d.]+)\s*sec,\s*in\s*"
                      r"([^\s.(]+)[^(]*\(\s*(\d+)\s*f\s*(\d+)\.\d+\s*\)", re.I)


def is_csmip_v2(path: Path) -> bool:
    """Whether the file begins ``Corrected accelerogram`` (a CSMIP V2 file)."""
    head = head_bytes(path, 64)
    return head is not None and b"\0" not in head and \
        head.lstrip().lower().startswith(b"corrected accelerogram")


def read_csmip_v2(path: Path):
    """A CSMIP ``.v2`` file as a Stream, one trace per channel block (see the module docstring).

    Returns None when the file is not CSMIP V2; raises :class:`FormatError` when damaged.
    """
    from obspy import Stream

    if not is_csmip_v2(path):
        return None
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    starts = [i for i, line in enumerate(lines) if line.lstrip().lower().startswith("corrected accelerogram")]
    stream = Stream()
    for k, first in enumerate(starts):
        block = lines[first:starts[k + 1] if k + 1 < len(starts) else len(lines)]
        stream += _channel(block, k, path)
    return stream


def _channel(block: list[str], k: int, path: Path):
    """The trace of channel block ``k`` (0-based) of a CSMIP V2 file."""
    from obspy import Trace, UTCDateTime

    text = "\n".join(block[:30])
    m = _V2_START.search(text)
    data_at = next((i for i, line in enumerate(block) if _V2_DATA.match(line)), None)
    if m is None or data_at is None:
        raise FormatError(f"CSMIP V2 channel block {k + 1} without a start time or an "
                          "acceleration data line")
    month, day, year, hour, minute = (int(x) for x in m.groups()[:5])
    year += 2000 if year < 70 else 1900 if year < 100 else 0
    start = UTCDateTime(year, month, day, hour, minute) + float(m.group(6))
    npts, dt, units, per_line, width = _V2_DATA.match(block[data_at]).groups()
    npts, dt, per_line, width = int(npts), float(dt), int(per_line), int(width)
    values = []
    for line in block[data_at + 1:]:
        if len(values) >= npts or "points of" in line or "end-of-data" in line.lower():
            break
        try:
            values += [float(line[j:j + width]) for j in range(0, len(line.rstrip()), width)]
        except ValueError:
            raise FormatError(f"CSMIP V2 channel block {k + 1}: a sample that is not a number "
                              f"({line.strip()[:40]!r})") from None
    if len(values) < npts or dt <= 0:
        raise FormatError(f"CSMIP V2 channel block {k + 1} holds {len(values)} samples, its "
                          f"header says {npts}")
    station = re.search(r"Station No\.\s*(\w+)", text)
    chan = re.search(r"Chan\s+(\d+):\s*(\d+|Up|Down|Dwn|Vert)", block[0] + "\n" + text, re.I)
    tr = Trace(np.array(values[:npts]))
    tr.stats.update(dict(network="CE", station=(station.group(1) if station else path.stem)[:16],
                         sampling_rate=round(1.0 / dt, 6), starttime=start, channel=""))
    sac = {}
    if chan and chan.group(2).isdigit():
        sac = {"cmpinc": 90.0, "cmpaz": float(chan.group(2)) % 360.0}
    elif chan:
        sac = {"cmpinc": 0.0, "cmpaz": 0.0}
    coords = re.search(r"(\d+\.\d+)\s*([NS]),\s*(\d+\.\d+)\s*([EW])", text)
    if coords:
        sac["stla"] = float(coords.group(1)) * (1 if coords.group(2) == "N" else -1)
        sac["stlo"] = float(coords.group(3)) * (1 if coords.group(4) == "E" else -1)
    tr.stats.sac = sac
    tr.stats.channel = component_of_angles(sac.get("cmpaz"), sac.get("cmpinc")) or ""  # "Chan 1: 180 Deg"
    tr.stats._format = "CSMIP"
    tr.stats.file_units = units.lower().replace("sec", "s")
    return tr


FORMAT = RecordingFormat(
    name="CSMIP", label=LABEL, is_format=is_csmip_v2, read=read_csmip_v2, units=UNITS_IN_HEADER,
    units_of=lambda tr: file_header_units(tr, LABEL), kind="earthquake")
