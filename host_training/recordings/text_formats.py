"""Strong-motion text formats ObsPy does not read: PEER AT2, CSMIP V2, ESM ASCII, COSMOS.

Strong-motion networks and databases ship accelerograms as text: the PEER NGA database
(``.AT2``, in g), CESMD's processed CSMIP files (``.v2``), the ORFEUS Engineering
Strong-Motion database (ESM ASCII) and the COSMOS format (v01.20). Each reader returns an
ObsPy Stream whose traces carry the samples in the file's units (``stats.file_units``,
converted by :mod:`host_training.data.records`), the component's azimuth/incidence as SAC
``cmpaz``/``cmpinc``, station and event coordinates as SAC ``stla/stlo/evla/evlo/evdp/o``
where the file gives them, and ``stats._format``. A reader returns None for a file of
another format and raises :class:`FormatError` (the one-line reason) for a damaged one.

Example
-------
>>> from host_training.data.text_formats import read_text_format
>>> stream = read_text_format(Path("RSN953_NORTHR_MUL009.AT2"))  # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

FORMAT_NAMES = {"AT2": "PEER AT2", "CSMIP": "CSMIP V2", "ESM": "ESM", "COSMOS": "COSMOS"}


class FormatError(ValueError):
    """A file of a known text format that cannot be read; the message is the reason."""


def read_text_format(path: Path):
    """The file as a Stream if it is one of these formats, else None."""
    for reader in (read_peer_at2, read_csmip_v2, read_esm_ascii, read_cosmos):
        stream = reader(Path(path))
        if stream is not None:
            return stream
    return None


def _component(sac: dict) -> str:
    """``Z``, ``N`` or ``E`` from an incidence and azimuth (SAC convention), else ``""``."""
    inc, az = sac.get("cmpinc"), sac.get("cmpaz")
    if inc is not None and (inc <= 10.0 or inc >= 170.0):
        return "Z"
    if az is None:
        return ""
    return "N" if min(az % 360.0, 360.0 - az % 360.0, abs(az % 360.0 - 180.0)) <= 45.0 else "E"


_AT2_NPTS = re.compile(r"NPTS\s*=\s*(\d+)", re.IGNORECASE)
_AT2_DT = re.compile(r"DT\s*=\s*([0-9.Ee+-]+)", re.IGNORECASE)
_AT2_OLD = re.compile(r"^\s*(\d+)\s+([0-9.Ee+-]+)\s+NPTS\s*,\s*DT", re.IGNORECASE)


def read_peer_at2(path: Path):
    """A PEER NGA ``.AT2`` accelerogram (the format of NGA-West2 and FEMA P695) as a Stream.

    ObsPy does not read it. Four header lines: the database, ``event, date, station,
    component`` (an azimuth such as ``009``, or ``UP``/``DWN``/``V`` for the vertical),
    ``ACCELERATION TIME SERIES IN UNITS OF G`` and ``NPTS= 2999, DT= .0100 SEC`` (or the
    older ``2999 0.0100 NPTS, DT``); then the samples, in g. The start time is the record's
    date at 00:00 UTC (the file gives no time of day); the samples stay in the file's units
    (``stats.file_units``) until the record converts them. Returns None when the file is not
    AT2; raises :class:`FormatError` when it is AT2 but damaged.
    """
    from obspy import Stream, Trace, UTCDateTime

    try:
        with open(path, "rb") as f:
            head = f.read(2048)
    except OSError:
        return None
    if b"\0" in head:
        return None
    lines = head.decode("latin-1").splitlines()
    if len(lines) < 5 or "ACCELERATION" not in lines[2].upper():
        return None
    m_n, m_dt, m_old = _AT2_NPTS.search(lines[3]), _AT2_DT.search(lines[3]), _AT2_OLD.match(lines[3])
    if m_old:
        npts, dt = int(m_old.group(1)), float(m_old.group(2))
    elif m_n and m_dt:
        npts, dt = int(m_n.group(1)), float(m_dt.group(1))
    else:
        return None
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
    tr.stats.channel = _component(sac)  # the header's azimuth names it
    tr.stats._format = "AT2"
    tr.stats.file_units = file_units
    return Stream([tr])


_V2_START = re.compile(r"Start time:\s*(\d+)/(\d+)/(\d+),\s*(\d+):\s*(\d+):\s*([\d.]+)\s*UTC", re.I)
_V2_DATA = re.compile(r"^\s*(\d+)\s+points of accel data equally spaced at\s*([\d.]+)\s*sec,\s*in\s*"
                      r"([^\s.(]+)[^(]*\(\s*(\d+)\s*f\s*(\d+)\.\d+\s*\)", re.I)


def read_csmip_v2(path: Path):
    """A CSMIP ``.v2`` file (processed records of CESMD, strongmotioncenter.org) as a Stream.

    ObsPy does not read it. Each channel is a block that begins ``Corrected accelerogram``:
    text lines with ``Start time: 12/20/22, 10:34: 1.0 UTC``, ``Station No. 89486
    40.585N, 124.146W`` and ``Chan  1: 180 Deg`` (or ``Up``), integer and real headers,
    then ``10100 points of accel data equally spaced at 0.010 sec, in cm/sec2. (8f10.5)``
    and the samples in fixed-width columns (velocity and displacement follow; not read).
    Returns None when the file is not CSMIP V2; raises :class:`FormatError` when damaged.
    """
    from obspy import Stream, Trace, UTCDateTime

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if b"\0" in head or not head.lstrip().lower().startswith(b"corrected accelerogram"):
        return None
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    starts = [i for i, line in enumerate(lines) if line.lstrip().lower().startswith("corrected accelerogram")]
    stream = Stream()
    for k, first in enumerate(starts):
        block = lines[first:starts[k + 1] if k + 1 < len(starts) else len(lines)]
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
        tr.stats.channel = _component(sac)  # the block's "Chan 1: 180 Deg" names it
        tr.stats._format = "CSMIP"
        tr.stats.file_units = units.lower().replace("sec", "s")
        stream += tr
    return stream


_ESM_TIME = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})[_T ]?(\d{2}):?(\d{2}):?(\d{2}(?:\.\d*)?)")


def read_esm_ascii(path: Path):
    """An ESM ASCII file (Engineering Strong-Motion database, ORFEUS; ITACA) as a Stream.

    ObsPy does not read it. ``KEY: value`` header lines (``EVENT_NAME``, ``EVENT_ID``,
    ``NETWORK``, ``STATION_CODE``, ``LOCATION``, ``STREAM`` such as ``HGE``, ``UNITS``,
    ``DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS``, ``SAMPLING_INTERVAL_S``, ``NDATA``, station and
    event coordinates), then one sample per line. The event's origin and the station's
    coordinates are kept for TauP picks. Returns None when the file is not ESM; raises
    :class:`FormatError` when it is but lacks what a record needs.
    """
    from obspy import Stream, Trace, UTCDateTime

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if b"\0" in head or not head.startswith(b"EVENT_NAME:"):
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
    tr.stats.sac = sac
    tr.stats._format = "ESM"
    tr.stats.file_units = header.get("UNITS") or "cm/s^2"
    return Stream([tr])


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


def read_cosmos(path: Path):
    """A COSMOS V1/V2 file (format v01.20: CESMD, NSMP, the COSMOS VDC) as a Stream.

    ObsPy does not read it. Each channel: text lines (their count in the first line;
    ``Statn No: ... Code:NP-1743``, ``Coords:``, ``Origin:``, ``Rcrd start time:``, ``Sta
    Chan 1: 90 deg``), an integer and a real header (the sampling interval is real
    value 62, in ms, as gmprocess reads it), comment lines, then ``12725 acceleration pts,
    ... units=cm/sec2 ... Format=(8F10.5)`` and the samples. Only acceleration in cm/s^2
    or g is taken (a raw V0 file in counts is refused). Returns None when not COSMOS.
    """
    from obspy import Stream, Trace, UTCDateTime

    try:
        with open(path, "rb") as f:
            head = f.read(120)
    except OSError:
        return None
    if b"\0" in head or b"(format v" not in head.lower():
        return None
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    starts = [i for i, line in enumerate(lines) if "(format v" in line.lower()]
    stream = Stream()
    for k, first in enumerate(starts):
        block = lines[first:starts[k + 1] if k + 1 < len(starts) else len(lines)]
        where = f"COSMOS channel block {k + 1}"
        if "acceleration" not in block[0].lower():
            continue  # a V2 file's velocity, displacement and spectra blocks
        n_text = re.search(r"with\s+(\d+)\s+text lines", block[0], re.I)
        text = block[:int(n_text.group(1)) if n_text else 13]
        joined = "\n".join(text)
        headers, i = {}, len(text)
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
                       o=o_time - tr.stats.starttime)
        tr.stats.sac = sac
        tr.stats.channel = _component(sac)
        tr.stats._format = "COSMOS"
        tr.stats.file_units = units.lower().replace("sec", "s")
        stream += tr
    return stream
