"""Waveform files read into clean traces: ground-motion channels only, finite samples, named.

Each file is read by the first format of the registry (:mod:`.formats.registry`) that
recognises it; every trace remembers its file (``stats.path``). Channels that are not ground
motion (state of health) are left out with a warning; a trace with NaN/inf or masked samples
is cut there into pieces (gaps, merged later) or refused; a trace without a channel or
station code is named from its SAC angles or its file name.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from edge_runtime.heap import release_free_heap

from .formats.base import FormatError
from .formats.registry import read_file
from .formats.sac_headers import keep_sac_reference
from .orientation import component_angles, orientation
from .record import short_reason

log = logging.getLogger(__name__)

TRIM_AFTER_BYTES = 1 << 20  # files this large leave the C heap worth giving back
# Archives: a clear reason instead of "not a waveform format".
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
# SEED instrument codes (second letter of a 3-letter channel code) that are not ground motion:
# mass position M, electronic test E, temperature K, pressure/infrasound D, magnetometer F,
# humidity I, wind W, rain R, water current O, tide T, bolometer U, strain V/S, tilt A,
# creep B, electric potential Q. Such channels (state of health, a Raspberry Boom's HDF) are
# left out with a warning, not replayed as a component. Seismometers (H, L), accelerometers
# (N), gravimeters (G), geophones (P) and anything unknown are kept.
NOT_GROUND_MOTION_INSTRUMENTS = set("MEKDFIWROTUVSABQ")
_COMPONENT_TOKEN = re.compile(r"^([A-Z]{2}[ZNE123XY]|(EW|NS|UD)[12]?|[ZNE])$", re.IGNORECASE)


def read_traces(files, nan_gaps: bool = False, window: tuple[float, float] | None = None,
                ) -> tuple[list, list[tuple[str, str]]]:
    """Read every file; returns ``(traces, skipped)``; each trace knows its file.

    With ``nan_gaps`` a trace with NaN/inf or masked samples is cut there into pieces (gaps,
    merged later); without, it is refused (training data takes no repaired samples).
    ``window``: ``(start, end)`` UTC seconds, only the samples between them
    (:func:`~.formats.registry.read_file`).
    """
    traces, skipped = [], []
    for path in files:
        stream, reason = _read_stream(Path(path), window)
        if reason:
            skipped.append((str(path), reason))
            continue
        for tr in stream:
            pieces, reason = _clean_trace(tr, Path(path), nan_gaps)
            if reason:
                skipped.append((str(path), reason))
            traces += pieces
    return traces, skipped


def _read_stream(path: Path, window: tuple[float, float] | None = None):
    """``(stream, None)`` of one file (its ``window`` only, if given), or ``(None, one-line reason)``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or type(exc).__name__})"
    if size == 0:
        return None, "empty file (0 bytes)"
    try:
        stream = read_file(path, window)
    except FormatError as exc:
        return None, str(exc)
    except Exception as exc:  # ObsPy raises many types on damaged files
        return None, f"corrupt or unreadable waveform file ({short_reason(exc)})"
    if stream is None:
        return None, _unknown_format_reason(path)
    if size > TRIM_AFTER_BYTES:  # ObsPy's decoded records stay resident otherwise
        release_free_heap()
    if len(stream) == 0:
        return None, "file holds no traces" if window is None else "file holds no samples in the window"
    return stream, None


def _clean_trace(tr, path: Path, nan_gaps: bool) -> tuple[list, str | None]:
    """``(pieces, reason)``: the usable traces of one read trace (none for a channel left out
    or refused; ``reason`` is the refusal, None otherwise)."""
    if not is_ground_motion(tr):
        log.warning("%s: %s left out: not a ground-motion channel (%s)", path, tr.id,
                    "text data" if tr.data.dtype.kind not in "iuf" else
                    f"SEED instrument code {tr.stats.channel.strip()[1]!r}")
        return [], None
    if tr.stats.npts < 2:
        return [], f"trace {tr.id} holds {tr.stats.npts} sample(s)"
    if not (math.isfinite(tr.stats.sampling_rate) and 1e-3 <= tr.stats.sampling_rate <= 1e6):
        return [], f"trace {tr.id} has a sampling rate of {tr.stats.sampling_rate:g} Hz (damaged header)"
    tr.stats.path = str(path)
    # A rate written as a float32 interval (1/0.005 = 199.99998...) is its whole rate:
    # otherwise components of one sensor would be resampled to match each other.
    whole = round(tr.stats.sampling_rate)
    if whole and tr.stats.sampling_rate != whole and abs(tr.stats.sampling_rate / whole - 1.0) < 1e-6:
        tr.stats.sampling_rate = float(whole)
    if not tr.stats.channel.strip():
        _name_channel(tr, path)
    if not tr.stats.station.strip():
        _name_station(tr, path)
    keep_sac_reference(tr)  # NaN runs cut the trace below, moving starts
    pieces, reason = finite_pieces(tr)
    clean = len(pieces) == 1 and pieces[0] is tr
    if not nan_gaps and not clean:
        reason = reason or "holds NaN/inf or masked samples"
    if reason:
        return [], f"trace {tr.id} {reason}"
    return pieces, None


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


def _unknown_format_reason(path: Path) -> str:
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return "an archive, not a waveform file: unpack it and give the folder"
    return "corrupt, or not a waveform format ObsPy reads"


def is_ground_motion(tr) -> bool:
    """False for text (LOG) traces and SEED state-of-health channels (mass position, ...)."""
    if tr.data.dtype.kind not in "iuf":
        return False
    channel = tr.stats.channel.strip()
    return not (len(channel) == 3 and channel.isalnum() and channel.isupper()
                and channel[:2] not in ("EW", "NS", "UD")
                and channel[1] in NOT_GROUND_MOTION_INSTRUMENTS)


def finite_pieces(tr) -> tuple[list, str | None]:
    """A trace cut at masked or NaN/inf samples (gaps, merged later), or a reason to refuse.

    Some exporters mark gaps with NaN (or an ObsPy merge leaves a masked array); the
    finite pieces are kept as separate traces so that the record's gap handling merges
    (and reports) them like any other gap.
    """
    data = tr.data
    if not np.ma.isMaskedArray(data) and (data.dtype.kind in "iu" or (
            np.isfinite(data.min()) and np.isfinite(data.max()))):
        return [tr], None  # NaN or inf would show in min or max: no mask of a day-long trace
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
