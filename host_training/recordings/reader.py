"""Station records from real waveform files: anything ObsPy reads, made physical.

Files are read with ObsPy (SAC, miniSEED, GSE2, K-NET/KiK-net, ...) or, for the
strong-motion text formats it lacks (PEER AT2, CSMIP V2, ESM, COSMOS), with
:mod:`host_training.data.text_formats`.

A *record* is one station's (network, station, location, instrument) acceleration over
one span of time: up to three components in the model's order (E, N, Z), in m/s^2, on
one sample grid, with the P/S picks known for it and a list of what was done to get
there. Readers of real files meet one-component and two-component records, channel
codes of every kind (``HNZ``, ``HN1``, ``EW``, ``UD``, ``Q``), components that start a
few ms apart, gaps, counts with a StationXML response, gal, velocity, and records from
before 2000; :func:`read_records` handles each and says what it did, and refuses with
a one-line reason what it cannot make physical (it never guesses units).

Example
-------
>>> from host_training.data.records import read_records
>>> records, skipped = read_records(["/data/quakes/"], units="gal")  # doctest: +SKIP
>>> rec = records[0]; rec.data.shape, rec.present, rec.picks  # doctest: +SKIP
((3, 6000), (True, True, False), {'P': Pick(...)})

Units, in order of precedence: ``units`` given by the caller (``--units``), the
``units`` column of a catalog row, the SAC ``idep`` header (IACC/IVEL, which SAC defines
as nm/s^2 and nm/s), and a StationXML response for data in counts (``remove_response``
to acceleration). Anything else is refused.

Picks, in order of precedence: a catalog CSV (``p_time``, ``s_time``), SAC pick headers
named by their labels (``ka``, ``kt0`` ... ``kt9``; ``a`` is P when unlabelled), and
travel times predicted by ObsPy TauP (ak135) from an event origin (QuakeML or SAC
``evla/evlo/evdp`` + ``o``) and the station coordinates (StationXML or SAC
``stla/stlo``).
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import glob
import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_runtime.heap import release_free_heap

from .text_formats import FORMAT_NAMES, FormatError, read_text_format

log = logging.getLogger(__name__)

COMPONENTS = ("E", "N", "Z")  # the model's channel order
G_MPS2 = 9.80665

# Acceleration units -> factor to m/s^2; velocity units -> factor to m/s (then differentiated).
ACCELERATION_UNITS = {"m/s2": 1.0, "gal": 0.01, "cm/s2": 0.01, "mm/s2": 1e-3, "nm/s2": 1e-9,
                      "g": G_MPS2, "mg": 1e-3 * G_MPS2}
VELOCITY_UNITS = {"m/s": 1.0, "cm/s": 0.01, "mm/s": 1e-3, "nm/s": 1e-9}
UNIT_CHOICES = ("counts", *ACCELERATION_UNITS, *VELOCITY_UNITS)
_UNIT_ALIASES = {"m/s^2": "m/s2", "m/s**2": "m/s2", "mps2": "m/s2", "cm/s^2": "cm/s2",
                 "nm/s^2": "nm/s2", "mm/s^2": "mm/s2", "count": "counts", "raw": "counts",
                 "cm/s/s": "cm/s2", "m/s/s": "m/s2", "gals": "gal", "cm/s2/s": "cm/s2",
                 "ms/s2": "m/s2", "cms/s2": "cm/s2", "mms/s2": "mm/s2", "m//s2": "m/s2"}
# SAC idep enumeration (SAC manual: IDISP nm, IVEL nm/s, IACC nm/s^2).
_SAC_IDEP = {5: None, 6: "nm", 7: "nm/s", 8: "nm/s2", 50: "volts"}
# No accelerograph records more than this; beyond it the units are wrong, not the shaking.
MAX_PLAUSIBLE_MPS2 = 10 * G_MPS2
# A record whose SAC idep (IACC nm/s^2, IVEL nm/s) gives a peak below this holds other units:
# 1e-6 m/s^2 is far below any accelerograph's self-noise and any earthquake record.
MIN_PLAUSIBLE_SAC_MPS2 = 1e-6
# Files in a folder that are not waveforms: skipped quietly (a file named on the command
# line is always read). Text-like ones are still read when they hold binary data (a SAC
# file named .txt); ObsPy's ASCII formats (TSPAIR, SLIST, K-NET) are read under any other name.
WAVEFORM_SUFFIXES_IGNORED = {".md", ".txt", ".csv", ".json", ".png", ".jpg", ".jpeg", ".gif",
                             ".svg", ".pdf", ".py", ".ipynb", ".sh", ".yaml", ".yml", ".html",
                             ".log", ".jsonl", ".onnx", ".pt", ".ps", ".eps", ".doc", ".docx",
                             ".xls", ".xlsx", ".odt", ".ods", ".db", ".ini", ".cfg", ".toml",
                             ".rst", ".tex", ".bib", ".npy", ".npz", ".pkl", ".h5", ".hdf5"}
_TEXT_SUFFIXES = {".txt", ".log", ".dat"}
# Archives: a clear reason instead of "not a waveform format".
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
# SEED instrument codes (second letter of a 3-letter channel code) that are not ground motion:
# mass position M, electronic test E, temperature K, pressure/infrasound D, magnetometer F,
# humidity I, wind W, rain R, water current O, tide T, bolometer U, strain V/S, tilt A,
# creep B, electric potential Q. Such channels (state of health, a Raspberry Boom's HDF) are
# left out with a warning, not replayed as a component. Seismometers (H, L), accelerometers
# (N), gravimeters (G), geophones (P) and anything unknown are kept.
NOT_GROUND_MOTION_INSTRUMENTS = set("MEKDFIWROTUVSABQ")
NOT_WAVEFORMS = "no waveforms"


class RecordError(ValueError):
    """A record or file that cannot be used; the message is the one-line reason."""


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
        ``(3, n_samples)`` float64 acceleration in m/s^2, components (E, N, Z). A missing
        component is all zeros and marked False in ``present``.
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
        longer than ``max_gap_s`` (see :func:`read_records`); None when not split.
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


# --------------------------------------------------------------------------- files


def expand_sources(sources) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """Files, globs and folders to ``(files, metadata_files, skipped)``.

    Folders are searched recursively; README/CSV/JSON/... files in them are ignored
    quietly, StationXML (``.xml``) and QuakeML (``.quakeml``, ``.qml``) are returned as
    metadata. A path that does not exist, a glob without a match and a folder
    without any candidate file are ``(source, reason)`` in ``skipped``.
    """
    files, meta, skipped = [], [], []
    for source in sources:
        source = str(source)
        # A path that exists is a path, even with [ ] in its name ("data [copy]").
        if any(ch in source for ch in "*?[") and not Path(source).exists():
            matches = [Path(p) for p in sorted(glob.glob(source, recursive=True)) if Path(p).is_file()]
            if not matches:
                skipped.append((source, "no file matches this pattern"))
            files += matches
            continue
        path = Path(source)
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")
                     and not any(part.startswith(".") for part in p.relative_to(path).parts)]
            candidates = [p for p in found if p.suffix.lower() not in WAVEFORM_SUFFIXES_IGNORED
                          or (p.suffix.lower() in _TEXT_SUFFIXES and _is_binary(p))]
            wave = [p for p in candidates if _metadata_kind(p) is None]
            meta += [p for p in candidates if _metadata_kind(p) is not None]
            if not wave:
                skipped.append((source, "folder holds no waveform files"))
            files += wave
        elif path.is_file():
            (meta if _metadata_kind(path) else files).append(path)
        else:
            skipped.append((source, "no such file or folder"))
    seen, unique = set(), []
    for p in files:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, meta, skipped


def _is_binary(path: Path) -> bool:
    """Whether a file's first 4 kB hold a NUL byte (binary data, not text)."""
    try:
        with open(path, "rb") as f:
            return b"\0" in f.read(4096)
    except OSError:
        return False


def _metadata_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in (".quakeml", ".qml"):
        return "quakeml"
    if suffix in (".dataless", ".resp") or path.name.upper().startswith("RESP."):
        return "response"  # dataless SEED or RESP: ObsPy's read_inventory reads both
    if suffix == ".xml":
        try:
            head = path.read_bytes()[:2000].lower()
        except OSError:
            return None
        if b"fdsnstationxml" in head or b"<fdsnstationxml" in head:
            return "stationxml"
        if b"quakeml" in head:
            return "quakeml"
        return "stationxml"
    return None


def load_metadata(paths) -> tuple[object, list, list[tuple[str, str]]]:
    """StationXML (or dataless SEED, RESP) and QuakeML files to ``(inventory, events, skipped)``."""
    from obspy import Inventory, read_events, read_inventory

    inventory, events, skipped = None, [], []
    for path in paths:
        kind = _metadata_kind(Path(path))
        try:
            if kind == "quakeml":
                events += list(read_events(glob.escape(str(path))))
            else:
                inv = read_inventory(glob.escape(str(path)))
                inventory = inv if inventory is None else inventory + inv
        except Exception as exc:  # ObsPy raises many types on damaged files
            skipped.append((str(path), f"not a readable {kind or 'metadata'} file "
                                       f"({_short(exc)})"))
    if inventory is not None and not isinstance(inventory, Inventory):
        inventory = Inventory(list(inventory), source="")
    return inventory, events, skipped


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def read_traces(files, nan_gaps: bool = False) -> tuple[list, list[tuple[str, str]]]:
    """Read every file with ObsPy; returns ``(traces, skipped)``; each trace knows its file.

    With ``nan_gaps`` a trace with NaN/inf or masked samples is cut there into pieces (gaps,
    merged later); without, it is refused (training data takes no repaired samples).
    """
    from obspy import read

    traces, skipped = [], []
    for path in files:
        try:
            size = Path(path).stat().st_size
        except OSError as exc:
            skipped.append((str(path), f"cannot read file ({exc.strerror or type(exc).__name__})"))
            continue
        if size == 0:
            skipped.append((str(path), "empty file (0 bytes)"))
            continue
        try:
            stream = read(glob.escape(str(path)))  # ObsPy globs a str: "[" in a name
        except TypeError:  # ObsPy found no format that fits
            try:
                stream = read_text_format(Path(path))
            except FormatError as exc:
                skipped.append((str(path), str(exc)))
                continue
            if stream is None:
                skipped.append((str(path), _unknown_format_reason(Path(path))))
                continue
        except Exception as exc:  # ObsPy raises many types on damaged files
            skipped.append((str(path), f"corrupt or unreadable waveform file ({_short(exc)})"))
            continue
        if size > TRIM_AFTER_BYTES:  # ObsPy's decoded records stay resident otherwise
            release_free_heap()
        if len(stream) == 0:
            skipped.append((str(path), "file holds no traces"))
            continue
        for tr in stream:
            if not _is_ground_motion(tr):
                log.warning("%s: %s left out: not a ground-motion channel (%s)", path, tr.id,
                            "text data" if tr.data.dtype.kind not in "iuf" else
                            f"SEED instrument code {tr.stats.channel.strip()[1]!r}")
                continue
            if tr.stats.npts < 2:
                skipped.append((str(path), f"trace {tr.id} holds {tr.stats.npts} sample(s)"))
                continue
            if not (math.isfinite(tr.stats.sampling_rate) and 1e-3 <= tr.stats.sampling_rate <= 1e6):
                skipped.append((str(path), f"trace {tr.id} has a sampling rate of "
                                           f"{tr.stats.sampling_rate:g} Hz (damaged header)"))
                continue
            tr.stats.path = str(path)
            # A rate written as a float32 interval (1/0.005 = 199.99998...) is its whole rate:
            # otherwise components of one sensor would be resampled to match each other.
            whole = round(tr.stats.sampling_rate)
            if whole and tr.stats.sampling_rate != whole and \
                    abs(tr.stats.sampling_rate / whole - 1.0) < 1e-6:
                tr.stats.sampling_rate = float(whole)
            if not tr.stats.channel.strip():
                _name_channel(tr, Path(path))
            if not tr.stats.station.strip():
                _name_station(tr, Path(path))
            _keep_sac_reference(tr)  # NaN runs cut the trace below, moving starts
            pieces, reason = _finite_pieces(tr)
            clean = len(pieces) == 1 and pieces[0] is tr
            if not nan_gaps and not clean:
                reason = reason or "holds NaN/inf or masked samples"
            if reason:
                skipped.append((str(path), f"trace {tr.id} {reason}"))
                continue
            traces += pieces
    return traces, skipped


TRIM_AFTER_BYTES = 1 << 20  # files this large leave the C heap worth giving back


_COMPONENT_TOKEN = re.compile(r"^([A-Z]{2}[ZNE123XY]|(EW|NS|UD)[12]?|[ZNE])$", re.IGNORECASE)


def _name_channel(tr, path: Path) -> None:
    """A channel code for a trace whose file has none (SAC without ``kcmpnm``).

    From the SAC ``cmpinc``/``cmpaz`` (``Z``, ``N``, ``E``), else from the file name's
    last token that reads as a component (``68150.HNE.sac``, ``napa_z.sac``); the action
    is reported with the record. Without either, the trace keeps an empty code and is
    kept apart from other files' traces (never merged with them as one channel).
    """
    az, inc = component_angles(tr)
    name, how = None, None
    if inc is not None and (inc <= 10.0 or inc >= 170.0):
        name, how = "Z", "cmpinc"
    elif inc is not None and 80.0 <= inc <= 100.0 and az is not None:
        name, how = orientation(tr), "cmpaz/cmpinc"
    else:
        for token in reversed(re.split(r"[._\-\s]+", path.stem)):
            if _COMPONENT_TOKEN.match(token):
                name, how = token.upper(), "the file name"
                break
    if name:
        tr.stats.channel = name
        tr.stats.channel_note = f"{name}: channel code empty in {path.name}, named from {how}"


def _name_station(tr, path: Path) -> None:
    """A station code for a trace whose file has none (SAC without ``kstnm``): the file
    name's last token that is not a component (``F01.HN1.sac`` -> ``F01``), so that files
    of two stations in one folder are two records, not one."""
    tokens = [t for t in re.split(r"[._\-\s]+", path.stem) if t and not _COMPONENT_TOKEN.match(t)]
    if tokens:
        tr.stats.station = tokens[-1][:16]
        note = f"station code empty in {path.name}, named {tr.stats.station} from the file name"
        tr.stats.channel_note = "; ".join(filter(None, [tr.stats.get("channel_note"), note]))


def channel_key(tr) -> str:
    """The channel a trace belongs to; a trace without a code is its file's own channel."""
    return tr.stats.channel.strip() or f"<{tr.stats.get('path', '')}>"


def _unknown_format_reason(path: Path) -> str:
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return "an archive, not a waveform file: unpack it and give the folder"
    return "corrupt, or not a waveform format ObsPy reads"


def _is_ground_motion(tr) -> bool:
    """False for text (LOG) traces and SEED state-of-health channels (mass position, ...)."""
    if tr.data.dtype.kind not in "iuf":
        return False
    channel = tr.stats.channel.strip()
    return not (len(channel) == 3 and channel.isalnum() and channel.isupper()
                and channel[:2] not in ("EW", "NS", "UD")
                and channel[1] in NOT_GROUND_MOTION_INSTRUMENTS)


def _finite_pieces(tr) -> tuple[list, str | None]:
    """A trace cut at masked or NaN/inf samples (gaps, merged later), or a reason to refuse.

    Some exporters mark gaps with NaN (or an ObsPy merge leaves a masked array); the
    finite pieces are kept as separate traces so that the record's gap handling merges
    (and reports) them like any other gap.
    """
    data = tr.data
    bad = np.ma.getmaskarray(data) | ~np.isfinite(np.ma.getdata(data))
    if not bad.any():
        return [tr], None
    if bad.all():
        return [], "holds no finite sample (all NaN/inf or masked)"
    masked = tr.copy()
    masked.data = np.ma.masked_array(np.ma.getdata(data).astype(np.float64), mask=bad)
    pieces = [p for p in masked.split() if p.stats.npts >= 2]
    for p in pieces:
        p.stats.path = tr.stats.path
        p.stats.nan_gaps = int(bad.sum())
    return pieces, None


# --------------------------------------------------------------------------- catalog


@dataclass
class CatalogRow:
    """One row of a catalog CSV: which files, what they hold, and the true arrivals."""

    pattern: str
    kind: str | None
    p_time: object = None
    s_time: object = None
    units: str | None = None
    line: int = 0


def read_catalog(path) -> list[CatalogRow]:
    """A catalog CSV: ``files`` (glob relative to the CSV), ``kind``, ``p_time``, ``s_time``.

    ``kind`` is ``earthquake``, ``noise`` or ``other``; times are ISO-8601 UTC; every
    column but ``files`` is optional, and so is a ``units`` column (its first word, e.g.
    ``gal`` in ``"gal (cm/s^2)"``). Other columns are ignored.

    Raises
    ------
    RecordError
        If the file is missing, has no ``files`` column, or a value cannot be parsed
        (the message names the line and column).
    """
    from obspy import UTCDateTime

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read catalog ({exc.__class__.__name__})") from None
    try:  # a spreadsheet's export may use ';' or tabs
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    if "files" not in columns:
        raise RecordError(f"{path}: catalog has no 'files' column (columns: {', '.join(columns)})")
    rows = []
    for i, raw in enumerate(reader, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not row.get("files"):
            continue
        kind = row.get("kind") or None
        if kind is not None:
            kind = kind.lower()
            if kind not in ("earthquake", "noise", "other"):
                raise RecordError(f"{path}:{i}: kind {kind!r} is not earthquake, noise or other")
        times = {}
        for col, aliases in (("p_time", ("p_time", "ptime", "p_arrival", "tp")),
                             ("s_time", ("s_time", "stime", "s_arrival", "ts"))):
            name = next((a for a in aliases if row.get(a)), None)
            if name:
                try:
                    value = row[name]
                    times[col] = UTCDateTime(float(value) if _is_number(value) else value)
                except Exception:
                    raise RecordError(f"{path}:{i}: {name} {row[name]!r} is not an ISO UTC time") from None
        units = None
        if row.get("units"):
            units = normalize_units(row["units"].split()[0], f"{path}:{i}: units")
        # A 'files' cell may carry a remark after the pattern ("a.mseed (+ a.xml)").
        pattern = row["files"].split(" (")[0].strip()
        rows.append(CatalogRow(str(path.parent / pattern), kind, times.get("p_time"),
                               times.get("s_time"), units, i))
    return rows


def _is_number(text: str) -> bool:
    """Whether a catalog cell is a number (epoch seconds), not an ISO time."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _catalog_row(files, rows: list[CatalogRow]) -> CatalogRow | None:
    """The catalog row whose ``files`` glob (or folder) holds one of ``files``."""
    paths = [(str(f), Path(f).resolve()) for f in files]
    for row in rows:
        pattern, folder = _resolved_pattern(row.pattern)
        for name, path in paths:
            if fnmatch.fnmatch(str(path), pattern) or fnmatch.fnmatch(name, row.pattern) \
                    or (folder is not None and folder in path.parents):
                return row
    return None


@functools.lru_cache(maxsize=4096)
def _resolved_pattern(pattern: str) -> tuple[str, Path | None]:
    """A catalog pattern resolved once (a catalog of thousands of rows meets thousands of files)."""
    resolved = Path(pattern).resolve()
    return str(resolved), (resolved if resolved.is_dir() else None)


def normalize_units(units: str, what: str = "units") -> str:
    """A unit name as one of :data:`UNIT_CHOICES` (``m/s^2`` -> ``m/s2``, ``GAL`` -> ``gal``)."""
    key = str(units).strip().lower().replace(" ", "")
    # Spellings found in strong-motion headers and catalogs: m/s², cm/sec^2, m s-2, gals.
    key = key.replace("²", "2").replace("**", "").replace("^", "").replace("/sec", "/s")
    if key.endswith("s-2"):
        key = key[:-3] + "/s2"
    key = _UNIT_ALIASES.get(key, key)
    if key not in UNIT_CHOICES:
        raise RecordError(f"{what} {units!r} unknown; use one of {', '.join(UNIT_CHOICES)}")
    return key


# --------------------------------------------------------------------------- components


def orientation(tr) -> str | None:
    """``"E"``, ``"N"``, ``"Z"`` or None (unknown) for a trace.

    SAC ``cmpinc`` (0/180: vertical, 90: horizontal) and ``cmpaz`` decide where given;
    otherwise the channel code: last letter Z/N/E, X/Y (E/N), 1/2 (N/E by the SEED
    convention that 1 is the north-most), 3 (vertical), U/V/W none; two-letter codes
    EW/NS/UD (K-NET, CWB) are read whole.
    """
    az, inc = component_angles(tr)
    if inc is not None and (inc <= 10.0 or inc >= 170.0):
        return "Z"
    if inc is not None and 80.0 <= inc <= 100.0 and az is not None:
        return "N" if min(az, 360 - az, abs(az - 180)) <= 45 else "E"
    channel = tr.stats.channel.strip().upper()
    whole = {"EW": "E", "NS": "N", "UD": "Z", "E": "E", "N": "N", "Z": "Z", "V": "Z", "U": "Z"}
    if channel in whole:
        return whole[channel]
    if channel[-2:] in ("EW", "NS", "UD"):
        return whole[channel[-2:]]
    if _kiknet_site(channel):  # KiK-net EW1/NS2/UD1: direction, then 1 borehole / 2 surface
        return whole[channel[:2]]
    code = channel[-1:]
    mapped = {"Z": "Z", "N": "N", "E": "E", "X": "E", "Y": "N", "1": "N", "2": "E", "3": "Z"}.get(code)
    if mapped is None and inc is not None and 80.0 <= inc <= 100.0:
        return None  # a horizontal of unknown azimuth
    return mapped


def component_angles(tr) -> tuple[float | None, float | None]:
    """``(azimuth, incidence)`` in degrees of a component, None where unknown.

    SAC ``cmpaz``/``cmpinc`` first; otherwise the StationXML channel's azimuth and dip
    (incidence = dip + 90: SEED dip -90 is up, SAC cmpinc 0 is up) that
    :func:`build_record` attaches as ``stats.inventory_angles``.
    """
    az, inc = sac_value(tr, "cmpaz"), sac_value(tr, "cmpinc")
    az = None if az is None else az % 360.0
    inv_az, inv_inc = tr.stats.get("inventory_angles", (None, None))
    return (az if az is not None else inv_az), (inc if inc is not None else inv_inc)


def _attach_inventory_angles(tr, inventory) -> None:
    if inventory is None:
        return
    try:
        o = inventory.get_orientation(tr.id, tr.stats.starttime)
    except Exception:  # ObsPy raises a bare Exception when the channel is not in it
        return
    az, dip = o.get("azimuth"), o.get("dip")
    tr.stats.inventory_angles = (None if az is None else float(az) % 360.0,
                                 None if dip is None else float(dip) + 90.0)


def _kiknet_site(channel: str) -> str | None:
    """``"1"`` (borehole) or ``"2"`` (surface) for a KiK-net code (EW1, NS2, UD1), else None."""
    ch = channel.strip().upper()
    return ch[2] if len(ch) == 3 and ch[:2] in ("EW", "NS", "UD") and ch[2] in "12" else None


def _instrument(tr) -> str:
    ch = tr.stats.channel.strip().upper()
    if _kiknet_site(ch):  # a KiK-net borehole and its surface sensor are two records
        return ch[2]
    return ch[:2] if len(ch) == 3 and ch[-2:] not in ("EW", "NS", "UD") else ""


def group_traces(traces, max_gap_s: float = 10.0) -> list[list]:
    """Traces in records: same network, station, location, instrument, overlapping in time.

    Traces of one station that overlap (or follow within ``max_gap_s``: gaps are merged
    later) are one record; a longer pause starts a new record. A longer gap in one
    channel alone splits the record there too (:func:`_split_at_gaps`): the time of the
    gap is a record without that channel, so no sample of it is made up.
    """
    by_station = {}
    for tr in traces:
        s = tr.stats
        by_station.setdefault((s.network, s.station, s.location, _instrument(tr)), []).append(tr)
    groups = []
    for key in sorted(by_station):
        members = sorted(by_station[key], key=lambda t: t.stats.starttime)
        current, end = [], None
        for tr in members:
            if current and tr.stats.starttime - end > max_gap_s:
                groups.append(current)
                current, end = [], None
            current.append(tr)
            end = tr.stats.endtime if end is None else max(end, tr.stats.endtime)
        if current:
            groups.append(current)
    return [piece for group in groups for part in _split_duplicates(group)
            for piece in _split_at_gaps(part, max_gap_s)]


def _split_at_gaps(group: list, max_gap_s: float) -> list[list]:
    """The traces of one record cut at every gap longer than ``max_gap_s`` (s) in any channel.

    Interpolating tens of seconds of made-up samples would put invented motion in front
    of the model; ObsPy keeps such a trace as separate traces. The record's time is cut at
    each long gap's edges: before the gap, the gap itself (the other channels, the gapped
    one missing) and after it. Each piece is a view of the samples (no copy) with its own
    start time and a ``stats.gap_note`` that :func:`build_record` reports.
    """
    by_channel = {}
    for tr in group:
        by_channel.setdefault(channel_key(tr), []).append(tr)
    cuts, notes = [], []
    for _, pieces in sorted(by_channel.items()):
        pieces = sorted(pieces, key=lambda t: t.stats.starttime)
        end = pieces[0].stats.endtime
        for tr in pieces[1:]:
            gap = tr.stats.starttime - end
            if gap > max_gap_s:
                # Half-open spans [cut, next cut): the last sample before the gap stays
                # in the part before it, the first after it starts the part after it.
                cuts += [end + 0.5 * tr.stats.delta, tr.stats.starttime]
                notes.append(f"{gap:.1f} s in {tr.id} from {end.strftime('%H:%M:%S.%f')[:-4]}")
            end = max(end, tr.stats.endtime)
    if not cuts:
        return [group]
    cuts.sort()
    edges = [None, *(c for i, c in enumerate(cuts) if i == 0 or c - cuts[i - 1] > 1e-6), None]
    parts = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        part = [piece for piece in (_slice_span(tr, lo, hi) for tr in group) if piece is not None]
        if part:
            parts.append(part)
    for k, part in enumerate(parts):
        for tr in part:
            tr.stats.gap_part = (k + 1, len(parts))
            tr.stats.gap_note = (f"split at gap(s) longer than {max_gap_s:g} s ({'; '.join(notes)}): "
                                 f"part {k + 1} of {len(parts)}, nothing interpolated")
    return parts


def _slice_span(tr, lo, hi):
    """A trace holding the samples of ``tr`` with ``lo <= t < hi`` (None: open end), or None.

    The data is a view (a day-long record is not copied); the header is the trace's own.
    """
    from obspy import Trace

    t0, fs, n = tr.stats.starttime, tr.stats.sampling_rate, tr.stats.npts
    i0 = 0 if lo is None else min(n, max(0, math.ceil((lo - t0) * fs - 1e-6)))
    i1 = n if hi is None else min(n, max(0, math.ceil((hi - t0) * fs - 1e-6)))
    if i1 <= i0:
        return None
    if i0 == 0 and i1 == n:
        return tr
    _keep_sac_reference(tr)  # SAC picks count from it, not from the new start
    stats = tr.stats.copy()
    stats.starttime = t0 + i0 / fs
    stats.npts = i1 - i0  # a header given with the data keeps its own npts (and endtime)
    return Trace(data=tr.data[i0:i1], header=stats)


def _split_duplicates(group: list) -> list[list]:
    """One group per folder when a channel overlaps itself across folders.

    Two recordings of one station over the same time (two events' folders, a copy in
    another folder) are two records, never merged into one.
    """
    by_channel = {}
    for tr in group:
        by_channel.setdefault(channel_key(tr), []).append(tr)
    clash = False
    for pieces in by_channel.values():
        pieces = sorted(pieces, key=lambda t: t.stats.starttime)
        for a, b in zip(pieces, pieces[1:], strict=False):
            if b.stats.starttime < a.stats.endtime and \
                    Path(getattr(a.stats, "path", "")).parent != Path(getattr(b.stats, "path", "")).parent:
                clash = True
    if not clash:
        return [group]
    by_folder = {}
    for tr in group:
        by_folder.setdefault(str(Path(getattr(tr.stats, "path", "")).parent), []).append(tr)
    return [by_folder[k] for k in sorted(by_folder)]


# --------------------------------------------------------------------------- units


def _sac_units(tr) -> str | None:
    sac = getattr(tr.stats, "sac", None) or {}
    idep = sac.get("idep")
    if idep is None or idep == -12345:
        return None
    return _SAC_IDEP.get(int(idep))


def to_acceleration(tr, units: str | None, inventory, unit_source: str) -> tuple[str, list[str]]:
    """Convert one trace in place to m/s^2; return ``(units label, actions)``.

    Raises
    ------
    RecordError
        When the units are unknown, not acceleration or velocity, or counts without a
        response.
    """
    actions = []
    if units is None:
        where = ("the StationXML has no response for this channel at "
                 f"{tr.stats.starttime.strftime('%Y-%m-%dT%H:%M:%S')}" if inventory is not None
                 else "no response in --inventory")
        channel = tr.stats.channel.strip().upper()
        hint = "m/s|nm/s|counts" if len(channel) == 3 and channel[1] in "HL" and \
            channel[:2] not in ("EW", "NS", "UD") else "counts|gal|m/s2|g"
        raise RecordError(f"{tr.id}: units unknown (no SAC idep, no catalog units, {where}); "
                          f"give --units {hint}")
    if units in ("nm", "volts"):
        raise RecordError(f"{tr.id}: data are {'displacement' if units == 'nm' else 'volts'} "
                          f"({unit_source}); only acceleration, velocity or counts with a "
                          "response can be replayed")
    tr.data = tr.data.astype(np.float64)
    if units == "knet":  # ObsPy puts the header's scale factor (gal per count) into calib, in m/s^2
        tr.data *= float(tr.stats.calib)
        tr.stats.calib = 1.0
        actions.append(f"{tr.stats.channel}: counts x scale factor (K-NET header) to m/s^2")
        return f"counts -> m/s2 ({unit_source})", actions
    if units == "counts":
        if inventory is None:
            raise RecordError(f"{tr.id}: data in counts but no StationXML response "
                              "(give --inventory, or --units if the data are physical)")
        try:
            how = remove_response(tr, inventory)
        except Exception as exc:  # ObsPy raises ValueError/Exception for a missing response
            raise RecordError(f"{tr.id}: data in counts and the inventory has no usable "
                              f"response for it ({_short(exc)})") from None
        actions.append(f"{tr.stats.channel}: {how} (StationXML) to m/s^2")
        return f"counts -> m/s2 ({unit_source})", actions
    if units in VELOCITY_UNITS:
        tr.data *= VELOCITY_UNITS[units]
        tr.differentiate()
        actions.append(f"{tr.stats.channel}: velocity ({units}) differentiated to acceleration")
        return f"{units} -> m/s2 ({unit_source})", actions
    tr.data *= ACCELERATION_UNITS[units]
    return f"{units} ({unit_source})", actions


_ACCELERATION_INPUT = {"M/S**2", "M/S^2", "M/S/S", "M/S2", "M/SEC**2", "M/S**2/COUNT"}


def remove_response(tr, inventory) -> str:
    """Counts to m/s^2 in place with a StationXML response; returns what was done.

    An accelerometer's response (input in m/s^2) is flat across the band the model uses,
    so the counts are divided by its overall sensitivity, as strong-motion practice does:
    no taper, so a record that begins just before P keeps its onset. Any other response
    (a seismometer, input m/s) is deconvolved to acceleration with ObsPy, on a copy
    padded with zeros (20 % each side) so that ObsPy's taper falls on the padding only.
    """
    response = inventory.get_response(tr.id, tr.stats.starttime)
    sensitivity = response.instrument_sensitivity
    if sensitivity is None or not sensitivity.value:  # some StationXML give the stages only
        try:
            response.recalculate_overall_sensitivity()
            sensitivity = response.instrument_sensitivity
        except Exception:  # ObsPy raises several types on incomplete stages
            sensitivity = None
    units = str(getattr(sensitivity, "input_units", "") or "").strip().upper().replace(" ", "")
    if not units and response.response_stages:
        units = str(response.response_stages[0].input_units or "").strip().upper().replace(" ", "")
    if units in _ACCELERATION_INPUT and sensitivity is not None and sensitivity.value:
        tr.data = tr.data / float(sensitivity.value)
        return f"divided by the sensitivity {float(sensitivity.value):.6g} counts/(m/s^2)"
    data = tr.data - np.median(tr.data)
    pad = max(16, int(0.2 * len(data)))
    padded = tr.copy()
    padded.data = np.concatenate([np.zeros(pad), data, np.zeros(pad)])
    padded.stats.response = response  # looked up at the record's time, not the padding's
    padded.stats.starttime = tr.stats.starttime - pad / tr.stats.sampling_rate
    # No water level (with output ACC it clips every frequency 1000x above the lowest one);
    # a cosine pre-filter from 0.05-0.1 Hz (below the model's high-pass) to 0.8-0.9 Nyquist.
    nyquist = 0.5 * tr.stats.sampling_rate
    padded.remove_response(output="ACC", water_level=None,
                           pre_filt=(0.05, 0.1, 0.8 * nyquist, 0.9 * nyquist))
    tr.data = padded.data[pad:pad + len(data)]
    return f"response ({units or 'input units unknown'}) removed"


def _inventory_has_response(inventory, tr) -> bool:
    if inventory is None:
        return False
    try:
        inventory.get_response(tr.id, tr.stats.starttime)
        return True
    except Exception:  # ObsPy raises a bare Exception when the channel is not in it
        return False


# --------------------------------------------------------------------------- picks


def _label_phase(label) -> str | None:
    """``"P"``/``"S"`` from a SAC pick label (``P``, ``Pn``, ``iPU0``, ``eS``), else None."""
    text = str(label or "").strip().upper()
    if not text or text.startswith("-12345"):
        return None
    if len(text) >= 2 and text[0] in "IE" and text[1] in "PS":
        text = text[1:]
    return text[0] if text[0] in "PS" else None


def sac_reference(tr):
    """The SAC reference time (``UTCDateTime``) of a trace, from which its picks count.

    SAC times are seconds after the reference, ``b`` the first sample's; once a trace is
    trimmed or cut (its start moved, ``b`` not), only the reference kept by
    :func:`_keep_sac_reference` is right.
    """
    kept = tr.stats.get("sac_reference")
    return kept if kept is not None else tr.stats.starttime - (sac_value(tr, "b") or 0.0)


def _keep_sac_reference(tr) -> None:
    """Fix a SAC trace's reference time in its header before its start is moved."""
    if tr.stats.get("sac") is not None and tr.stats.get("sac_reference") is None:
        tr.stats.sac_reference = sac_reference(tr)


def sac_picks(tr) -> dict:
    """P and S picks from one SAC trace's headers (the earliest of each phase)."""
    sac = getattr(tr.stats, "sac", None) or {}
    reference = sac_reference(tr)
    found = {}
    slots = [("a", "ka")] + [(f"t{i}", f"kt{i}") for i in range(10)]
    for value_key, label_key in slots:
        value = sac_value(tr, value_key)
        if value is None:
            continue
        phase = _label_phase(sac.get(label_key))
        if phase is None and value_key == "a" and not str(sac.get(label_key) or "").strip():
            phase = "P"  # SAC's 'a' is the first arrival
        if phase is None:
            continue
        time = reference + float(value)
        label = str(sac.get(label_key) or "").strip()
        source = f"sac {value_key}" + (f" ({label_key}={label!r})" if label else "")
        if phase not in found or time < found[phase].time:
            found[phase] = Pick(time, source)
    return found


_TAUP = {}


def _taup():
    if "ak135" not in _TAUP:
        from obspy.taup import TauPyModel

        _TAUP["ak135"] = TauPyModel("ak135")
    return _TAUP["ak135"]


def predict_picks(origin_time, ev_lat, ev_lon, depth_km, st_lat, st_lon, label: str) -> dict:
    """First P and S arrivals from ak135 (ObsPy TauP), as :class:`Pick`."""
    from obspy.geodetics import locations2degrees

    distance = locations2degrees(ev_lat, ev_lon, st_lat, st_lon)
    depth_km = max(0.0, float(depth_km))
    picks = {}
    for phase, names in (("P", ["p", "P", "Pn", "Pg", "Pdiff"]), ("S", ["s", "S", "Sn", "Sg"])):
        try:
            arrivals = _taup().get_travel_times(source_depth_in_km=depth_km,
                                                distance_in_degree=distance, phase_list=names)
        except Exception:  # TauP fails on odd geometries; fall back to crustal speeds
            arrivals = []
        if arrivals:
            t = min(a.time for a in arrivals)
        else:
            hypo_km = math.hypot(distance * 111.19, depth_km)
            t = hypo_km / (6.0 if phase == "P" else 3.5)
        picks[phase] = Pick(origin_time + t, f"taup ak135 ({label}, {distance * 111.19:.1f} km)")
    return picks


def _station_coordinates(trace, inventory):
    if inventory is not None:
        try:
            c = inventory.get_coordinates(trace.id, trace.stats.starttime)
            return c["latitude"], c["longitude"]
        except Exception:  # not in the inventory
            pass
    knet = trace.stats.get("knet") or {}
    if knet.get("stla") is not None and knet.get("stlo") is not None:
        return float(knet["stla"]), float(knet["stlo"])
    lat, lon = sac_value(trace, "stla"), sac_value(trace, "stlo")
    if lat is None or lon is None or abs(lat) > 90.0:
        return None
    return lat, lon


def _sac_origin(trace):
    values = [sac_value(trace, k) for k in ("evla", "evlo", "o")]
    if any(v is None for v in values) or abs(values[0]) > 90.0:
        return None
    depth = sac_value(trace, "evdp") or 0.0
    if depth > 1000.0:  # some writers put m in evdp
        depth /= 1000.0
    return sac_reference(trace) + values[2], values[0], values[1], depth


def taup_picks(trace, start, end, events, inventory) -> dict:
    """Predicted P/S for a record from QuakeML events or SAC event headers, else ``{}``."""
    station = _station_coordinates(trace, inventory)
    if station is None:
        return {}
    candidates = []
    for ev in events:
        origin = ev.preferred_origin() or (ev.origins[0] if ev.origins else None)
        if origin is None or origin.latitude is None or origin.longitude is None:
            continue
        depth_km = (origin.depth or 0.0) / 1000.0
        candidates.append((origin.time, origin.latitude, origin.longitude, depth_km,
                           f"QuakeML {ev.resource_id.id.split('/')[-1]}"))
    sac_origin = _sac_origin(trace)
    if sac_origin is not None:
        candidates.append((*sac_origin, "SAC evla/evlo/evdp/o"))
    knet = trace.stats.get("knet") or {}
    if all(knet.get(k) is not None for k in ("evot", "evla", "evlo")):
        candidates.append((knet["evot"], float(knet["evla"]), float(knet["evlo"]),
                           float(knet.get("evdp") or 0.0), "K-NET header origin"))
    for origin_time, lat, lon, depth_km, label in candidates:
        if not start - 1800 <= origin_time <= end:
            continue
        picks = predict_picks(origin_time, lat, lon, depth_km, *station, label)
        # A P up to 5 min before the first sample: the record starts in the event's shaking
        # (scored as starting after P).
        if start - 300.0 <= picks["P"].time <= end:
            return picks
    return {}


# --------------------------------------------------------------------------- records


def _common_span(traces) -> tuple[object, object]:
    """Common span on the grid of the earliest trace; ``RecordError`` without overlap.

    The start is the first sample of the earliest trace's grid at or after the latest
    start (within half a sample), so a component a few ms late is the one moved.
    """
    ref = min(traces, key=lambda tr: tr.stats.starttime).stats
    latest = max(tr.stats.starttime for tr in traces)
    end = min(tr.stats.endtime for tr in traces)
    k = math.ceil((latest - ref.starttime) * ref.sampling_rate - 0.5)
    start = ref.starttime + k / ref.sampling_rate
    if end <= start:
        raise RecordError("components do not overlap in time")
    return start, end


def build_record(traces, *, units=None, inventory=None, events=(), catalog=None,
                 catalog_row: CatalogRow | None = None, max_components: int = 3,
                 copy: bool = True) -> Record:
    """One :class:`Record` from the traces of one station and time span.

    Raises
    ------
    RecordError
        With the one-line reason when it cannot be made physical.
    """
    actions = []
    files = sorted({tr.stats.path for tr in traces if "path" in tr.stats})
    # The traces are changed in place; read_records hands over its own (copy=False), which
    # spares a copy of a day-long record.
    traces = [tr.copy() for tr in traces] if copy else list(traces)
    for tr in traces:
        tr.stats.path = getattr(tr.stats, "path", "")
        _keep_sac_reference(tr)  # trimmed to the common span below: picks keep their times
    actions += sorted({tr.stats.channel_note for tr in traces if tr.stats.get("channel_note")})
    actions += sorted({tr.stats.gap_note for tr in traces if tr.stats.get("gap_note")})
    # Same channel in several pieces: one trace per channel, gaps interpolated.
    by_channel = {}
    for tr in traces:
        by_channel.setdefault(channel_key(tr), []).append(tr)
    merged = []
    from obspy import Stream

    for channel, pieces in sorted(by_channel.items()):
        rates = {p.stats.sampling_rate for p in pieces}
        if len(rates) > 1:
            raise RecordError(f"channel {channel} changes sampling rate ({sorted(rates)} Hz)")
        if len(pieces) > 1:
            _check_overlaps(channel, pieces)
            st = Stream(pieces)
            gaps = st.get_gaps()
            for tr in st:
                tr.data = tr.data.astype(np.float64)
            st.merge(method=1, fill_value="interpolate")
            if len(st) != 1:
                raise RecordError(f"channel {channel} could not be merged into one trace")
            holes = [g[6] for g in gaps if g[6] > 0]
            if holes:
                actions.append(f"{channel}: merged {len(holes)} gap(s) of {sum(holes):.3f} s "
                               "(linear interpolation)")
            else:
                actions.append(f"{channel}: merged {len(pieces)} pieces")
            merged.append(st[0])
        else:
            merged.append(pieces[0])
    traces = merged
    # Components.
    for tr in traces:
        _attach_inventory_angles(tr, inventory)
    slots: dict[str, object] = {}
    unknown = []
    for tr in traces:
        comp = orientation(tr)
        if comp is None:
            unknown.append(tr)
        elif comp in slots:
            raise RecordError(f"two traces for component {comp} ({slots[comp].stats.channel}, "
                              f"{tr.stats.channel})")
        else:
            slots[comp] = tr
    for tr in unknown:
        free = [c for c in ("Z", "E", "N") if c not in slots]
        if not free:
            raise RecordError(f"more than three components ({tr.stats.channel})")
        slots[free[0]] = tr
        name = tr.stats.channel.strip() or Path(tr.stats.path).name
        actions.append(f"{name}: orientation unknown, replayed as {free[0]}")
    _rotate_horizontals(slots, actions)
    rates = {tr.stats.sampling_rate for tr in slots.values()}
    if len(rates) > 1:
        top = max(rates)
        for tr in slots.values():
            if tr.stats.sampling_rate != top:
                actions.append(f"{tr.stats.channel}: resampled {tr.stats.sampling_rate:g} -> {top:g} Hz")
                tr.data = tr.data.astype(np.float64)
                tr.interpolate(top, method="lanczos", a=8)
    # Units, per trace.
    labels = set()
    for tr in slots.values():
        source, trace_units = _units_for(tr, units, catalog_row, inventory)
        label, acts = to_acceleration(tr, trace_units, inventory, source)
        labels.add(label)
        actions += acts
    # Common span, components on one grid (nearest sample).
    start, end = _common_span(list(slots.values()))
    rate = float(next(iter(slots.values())).stats.sampling_rate)
    pieces = {}
    for c, tr in slots.items():
        before = (tr.stats.starttime, tr.stats.endtime)
        tr.trim(start, end, nearest_sample=True)
        offset = tr.stats.starttime - start
        if abs(offset) > 1e-6:
            actions.append(f"{tr.stats.channel}: aligned by {-offset * 1e3:+.1f} ms to the common "
                           "grid (nearest sample)")
        trimmed = (tr.stats.starttime - before[0]) + (before[1] - tr.stats.endtime)
        if trimmed > 1.5 / rate:
            actions.append(f"{tr.stats.channel}: trimmed {trimmed:.3f} s to the common span")
        pieces[c] = np.asarray(tr.data, dtype=np.float64)
    n = min(len(p) for p in pieces.values())
    data = np.zeros((3, n))
    present = []
    channels = []
    for i, c in enumerate(COMPONENTS):
        if c in pieces:
            data[i] = pieces[c][:n]
            pieces[c] = None  # samples now live in data only (memory of long records)
            slots[c].data = np.empty(0)  # only the headers are read from here on
        present.append(c in pieces)
        channels.append(slots[c].stats.channel if c in slots else None)
    if not np.all(np.isfinite(data)):
        raise RecordError("conversion to acceleration gave NaN/inf samples")
    # Row by row and from the extremes: a day-long record holds 10^7 samples per
    # component, and |row - median| would make two float64 temporaries of each row.
    # Rounding is monotonic, so max|x - m| is exactly max(x.max() - m, m - x.min()).
    peak = 0.0
    for row in data:
        m = np.median(row)
        peak = max(peak, float(row.max() - m), float(m - row.min()))
    if peak > MAX_PLAUSIBLE_MPS2:
        raise RecordError(f"peak acceleration {peak:.3g} m/s^2 (units {', '.join(sorted(labels))}) "
                          f"is beyond any accelerograph ({MAX_PLAUSIBLE_MPS2:.0f} m/s^2): "
                          "the units are wrong; check --units / --inventory")
    if not np.any(data):
        raise RecordError("every sample is zero (dead channel)")
    if 0.0 < peak < MIN_PLAUSIBLE_SAC_MPS2 and any("(SAC idep)" in label for label in labels):
        # SAC defines IACC as nm/s^2 and IVEL as nm/s, but many writers put m/s^2 or gal there.
        raise RecordError(f"peak acceleration {peak:.3g} m/s^2 taking SAC idep as nm (as SAC "
                          "defines it) is below any accelerograph's noise: the file likely holds "
                          "m/s^2, gal or m/s; give --units")
    flat = [present[i] and np.ptp(data[i]) == 0.0 for i in range(len(COMPONENTS))]
    if any(flat) and not all(f or not p for f, p in zip(flat, present, strict=True)):
        for i in np.flatnonzero(flat):  # a dead channel beside live ones: replayed as missing
            present[i] = False
            data[i] = 0.0
            actions.append(f"{channels[i]}: every sample equal (dead channel), replayed as missing")
    first = next(iter(slots.values()))
    s = first.stats
    instrument = _instrument(first)
    record = Record(
        id=f"{s.network}.{s.station}.{s.location}.{instrument}".rstrip(".") +
           f"_{start.strftime('%Y%m%dT%H%M%S')}",
        station=f"{s.network}.{s.station}.{s.location}", starttime=start,
        sampling_rate_hz=rate, data=data, present=tuple(present), channels=tuple(channels),
        units="; ".join(sorted(labels)), files=files, actions=actions,
        part=next((tuple(tr.stats.gap_part) for tr in traces if tr.stats.get("gap_part")), None))
    record.picks, record.kind = _picks_and_kind(list(slots.values()), record, catalog_row,
                                                events, inventory)
    return record


def _check_overlaps(channel: str, pieces: list) -> None:
    """Refuse two files whose samples of one channel overlap in time and disagree.

    A re-sent miniSEED record repeats the same samples (merged quietly); different
    samples at the same time are two recordings under one channel id (two stations
    without a station code, an event copied over another), never to be mixed.
    """
    pieces = sorted(pieces, key=lambda t: t.stats.starttime)
    for a, b in zip(pieces, pieces[1:], strict=False):
        if b.stats.starttime > a.stats.endtime or a.stats.get("path") == b.stats.get("path"):
            continue
        x = a.slice(b.stats.starttime, a.stats.endtime, nearest_sample=True).data.astype(np.float64)
        y = b.slice(b.stats.starttime, a.stats.endtime, nearest_sample=True).data.astype(np.float64)
        n = min(len(x), len(y))
        scale = max(float(np.max(np.abs(x[:n]))) if n else 0.0, 1e-12)
        if n and not np.allclose(x[:n], y[:n], rtol=0.0, atol=1e-6 * scale):
            raise RecordError(f"channel {channel}: {Path(a.stats.path).name} and "
                              f"{Path(b.stats.path).name} overlap in time with different samples "
                              "(two recordings under one station and channel code?); give them "
                              "station codes or read them apart")


def _units_for(tr, units, row, inventory) -> tuple[str, str | None]:
    if units is not None:
        return "--units", units
    if row is not None and row.units is not None:
        return f"catalog line {row.line}", row.units
    sac_units = _sac_units(tr)
    if sac_units is not None:
        return "SAC idep", sac_units
    if tr.stats.get("_format") == "KNET":
        return "K-NET scale factor", "knet"
    if tr.stats.get("_format") in FORMAT_NAMES:
        unit = tr.stats.file_units
        source = f"{FORMAT_NAMES[tr.stats._format]} header"
        return source, "g" if unit.lower() == "g" else normalize_units(unit, f"{source} units")
    if _inventory_has_response(inventory, tr):
        return "StationXML response", "counts"  # the inventory turns counts into m/s^2
    return "nothing", None


def _rotate_horizontals(slots: dict, actions: list) -> None:
    """Rotate two orthogonal horizontals with known ``cmpaz`` to E and N, in place."""
    if "E" not in slots or "N" not in slots:
        return
    az = []
    for c in ("E", "N"):
        value = component_angles(slots[c])[0]
        if value is None:
            return
        az.append(value)
    if az[0] == 90.0 and az[1] == 0.0:
        return
    diff = (az[0] - az[1]) % 180.0
    e, n = slots["E"].stats, slots["N"].stats
    same_grid = e.npts == n.npts and e.sampling_rate == n.sampling_rate and \
        abs(e.starttime - n.starttime) <= 0.5 / e.sampling_rate
    if abs(diff - 90.0) > 5.0 or not same_grid:
        actions.append(f"horizontals at azimuths {az[0]:g}/{az[1]:g} not rotated (not orthogonal "
                       "or not on one grid)")
        return
    h = [slots[c].data.astype(np.float64) for c in ("E", "N")]
    rad = np.radians(az)
    east = h[0] * np.sin(rad[0]) + h[1] * np.sin(rad[1])
    north = h[0] * np.cos(rad[0]) + h[1] * np.cos(rad[1])
    names = (slots["E"].stats.channel, slots["N"].stats.channel)
    slots["E"].data, slots["N"].data = east, north
    actions.append(f"rotated {names[1]}/{names[0]} (azimuths {az[1]:g}/{az[0]:g} deg) to N/E")


def _picks_and_kind(traces, record: Record, row, events, inventory) -> tuple[dict, str | None]:
    picks = {}
    if row is not None:
        if row.p_time is not None:
            picks["P"] = Pick(row.p_time, f"catalog line {row.line}")
        if row.s_time is not None:
            picks["S"] = Pick(row.s_time, f"catalog line {row.line}")
    if not picks:
        for tr in traces:
            for phase, pick in sac_picks(tr).items():
                if phase not in picks or pick.time < picks[phase].time:
                    picks[phase] = pick
    if not picks:
        picks = taup_picks(traces[0], record.starttime, record.endtime, events, inventory)
    kind = row.kind if row is not None else None
    if kind is None:
        sac = getattr(traces[0].stats, "sac", None) or {}
        # kevnm holds an event name in most files; only the kinds this project writes
        # (write_record: earthquake, noise and synthetic noise kinds) say what a record is.
        name = str(sac.get("kevnm") or "").strip().lower()
        if name in ("earthquake", "noise", "other"):
            kind = name
        elif name in ("quiet", "traffic", "spikes"):
            kind = "noise"
        elif "P" in picks:
            kind = "earthquake"
    if not picks:
        unnamed = sorted({k for tr in traces for k in unlabelled_picks(tr)},
                         key=lambda k: int(k[1:]))
        if unnamed:
            record.actions.append(f"SAC {', '.join(unnamed)} hold picks without a phase label: not "
                                  "used (label them P/S in kt0..kt9, or give p_time in a catalog)")
    if kind is None and traces[0].stats.get("_format") in FORMAT_NAMES:
        kind = "earthquake"  # PEER, CSMIP, ESM and COSMOS files hold earthquake accelerograms
        record.actions.append(f"kind earthquake ({traces[0].stats._format} accelerogram)")
    if kind is None:
        sac = getattr(traces[0].stats, "sac", None) or {}
        mag = sac_value(traces[0], "mag")
        noise_name = str(sac.get("kevnm") or "").strip().lower() in ("noise", "quiet", "traffic",
                                                                     "spikes")
        if unlabelled_picks(traces[0]) or (mag is not None and not noise_name):
            # Arrivals picked, or the magnitude of the event recorded: the record holds an
            # earthquake (P unknown: any event in the record detects it).
            kind = "earthquake"
            record.actions.append("kind earthquake from SAC headers (" + (
                "picks" if unlabelled_picks(traces[0]) else f"mag {float(mag):g}") + ")")
    return picks, kind


def unlabelled_picks(tr) -> list[str]:
    """SAC pick headers ``t0``..``t9`` set without a label (a phase cannot be told)."""
    sac = getattr(tr.stats, "sac", None) or {}
    return [f"t{i}" for i in range(10)
            if sac_value(tr, f"t{i}") is not None
            and not str(sac.get(f"kt{i}") or "").strip().strip("-12345")]


def sac_value(tr, key: str) -> float | None:
    """A SAC float header as a float; None when undefined (-12345) or not finite (damaged)."""
    sac = getattr(tr.stats, "sac", None) or {}
    value = sac.get(key)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value == -12345.0 or not math.isfinite(value) else value


def read_records(sources, *, units: str | None = None, inventory=None, events=None,
                 catalog=None, min_duration_s: float = 0.0, max_gap_s: float = 10.0,
                 nan_gaps: bool = False) -> tuple[list[Record], list[tuple[str, str]]]:
    """Records from files, globs and folders: the reader behind replay-test and ``prepare``.

    Parameters
    ----------
    sources : list of str or Path
        Waveform files (any format ObsPy reads; extensions are not trusted, case does
        not matter), glob patterns and folders (searched recursively). StationXML and
        QuakeML files found among them are used as ``inventory`` and ``events``.
    units : str, optional
        Units of every record (``counts``, ``gal``, ``m/s2``, ``g``, ``cm/s`` ...),
        overriding catalog and headers.
    inventory : str, Path or obspy.Inventory, optional
        StationXML: responses for counts, coordinates for TauP.
    events : str, Path or list of obspy Event, optional
        QuakeML: origins for TauP picks.
    catalog : str, Path or list of CatalogRow, optional
        Catalog CSV (see :func:`read_catalog`).
    min_duration_s : float
        Records shorter than this (s) are refused (one model window).
    max_gap_s : float
        Longest gap (s) merged within a record (linear interpolation, reported in the
        record's ``actions``). A longer gap, in all channels or in one alone, splits the
        record as ObsPy's ``Stream`` keeps such traces apart: one record before the gap,
        one for the gap itself holding the other channels (the gapped one missing, as
        any missing component), one after it, each with its own start time and an action
        saying so. Nothing is classified from invented samples, and every caller sees
        ordinary records. Picks stay the event's absolute times, so a part may hold its
        P (or S) outside its span: after its end for the part before the event, which
        ``tools.score.truth_of`` scores as noise; ``prepare`` then finds no window around
        the pick and skips the part, rather than picking a P of its own. A later part
        that starts after the P is scored as unknown (the event is scored in the part
        that holds its P); ``Record.part`` says which part a record is.
    nan_gaps : bool
        NaN/inf or masked samples are gaps (replay, scoring) instead of a reason to refuse
        the trace (training data).

    Returns
    -------
    records : list of Record
        Sorted by start time.
    skipped : list of (str, str)
        ``(path or record id, one-line reason)`` for every file or record not used.
    """
    from obspy import read_events as obspy_read_events
    from obspy import read_inventory

    skipped = []
    if units is not None:
        units = normalize_units(units, "--units")
    files, meta_files, missing = expand_sources(sources)
    skipped += missing
    found_inventory, found_events, bad_meta = load_metadata(meta_files)
    skipped += bad_meta
    if isinstance(inventory, (str, Path)):
        try:
            inventory = read_inventory(str(inventory))
        except Exception as exc:
            raise RecordError(f"{inventory}: not a readable StationXML file ({_short(exc)})") from None
    if found_inventory is not None:
        inventory = found_inventory if inventory is None else inventory + found_inventory
    if isinstance(events, (str, Path)):
        try:
            events = list(obspy_read_events(str(events)))
        except Exception as exc:
            raise RecordError(f"{events}: not a readable QuakeML file ({_short(exc)})") from None
    events = list(events or []) + found_events
    if isinstance(catalog, (str, Path)):
        catalog = read_catalog(catalog)
    catalog = list(catalog or [])
    traces, bad = read_traces(files, nan_gaps)
    skipped += bad
    records = []
    for group in group_traces(traces, max_gap_s):
        label = f"{group[0].id[:-1] if len(group[0].stats.channel) == 3 else group[0].id} " \
                f"at {group[0].stats.starttime.strftime('%Y-%m-%dT%H:%M:%S')}"
        where = ", ".join(sorted({tr.stats.path for tr in group}))
        try:
            row = _catalog_row([tr.stats.path for tr in group], catalog)
            record = build_record(group, units=units, inventory=inventory, events=events,
                                  catalog_row=row, copy=False)
            if record.duration_s < min_duration_s:
                raise RecordError(f"record is {record.duration_s:.2f} s long, shorter than one "
                                  f"window ({min_duration_s:g} s)")
        except RecordError as exc:
            skipped.append((where if where else label, f"{label}: {exc}"))
            continue
        except Exception as exc:  # a damaged header nobody foresaw: one line, the rest go on
            log.debug("reading %s", label, exc_info=True)
            skipped.append((where if where else label, f"{label}: cannot be read "
                                                       f"({type(exc).__name__}: {_short(exc)})"))
            continue
        records.append(record)
    records.sort(key=lambda r: (r.starttime, r.id))
    return records, skipped
