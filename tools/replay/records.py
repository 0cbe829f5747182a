"""Recorded waveforms as the node can take them: moved in time, fitted in rate, digitized.

What ``tools replay``, ``tools replay-test`` and ``tools score`` must do alike to a record
(:mod:`host_training.recordings.reader` reads it): the time shift into the node's 2000-2100
window, the node's and the model's rate limits, and the sensor's counts.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EARLIEST_S = 946_684_800.0  # the node's sanity window: 2000-01-01 ...
LATEST_S = 4_102_444_800.0  # ... to 2100-01-01
AUTO_STEP_S = 18_262 * 86_400.0  # 50 years in whole days


def time_shift_s(record, mode: str, now_s: float | None = None) -> float:
    """Seconds to add to a record's times for ``--time keep|now|auto|ISO``.

    ``auto`` keeps a record the node accepts (2000-2100) and moves any other by the
    fewest 50-year steps (whole days: the time of day and the picks' sub-second offsets
    stay) that bring it inside. The shift depends on the record alone, so ``tools
    replay`` and ``tools score`` move a record alike, and records of one night keep their
    order and spacing. ``now`` moves the record's start to now (whole seconds); an ISO
    time moves it there.
    """
    from obspy import UTCDateTime

    start = record.starttime.timestamp
    now_s = float(int(time.time() if now_s is None else now_s))
    if mode == "keep":
        return 0.0
    if mode == "auto":
        end = record.endtime.timestamp
        if EARLIEST_S <= start and end <= LATEST_S:
            return 0.0
        steps = math.ceil((EARLIEST_S - start) / AUTO_STEP_S) if start < EARLIEST_S else \
            -math.ceil((end - LATEST_S) / AUTO_STEP_S)
        return steps * AUTO_STEP_S
    if mode == "now":
        return float(round(now_s - start))
    try:
        target = UTCDateTime(mode).timestamp
    except Exception:
        raise ValueError(f"--time {mode!r}: use keep, now, auto or an ISO UTC time") from None
    return target - start


def model_info(model_path) -> dict:
    """Window length and filter of a window model, from its metadata (no session kept).

    Raises
    ------
    ValueError
        One line when the file is no model the node opens, or a model of the second stage
        (a record classifier such as SpectrogramCNN, which the node runs as
        ``--source-model``): the node refuses it as ``--model``
        (:mod:`edge_runtime.kinds` says which kinds are the first stage).
    """
    from edge_runtime.backends import OnnxBackend
    from edge_runtime.kinds import get_kind, kinds_of_stage

    try:
        backend = OnnxBackend(str(model_path))
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"--model {model_path}: the node cannot open it ({exc})") from None
    kind = get_kind(backend.metadata.model, f"--model {model_path}")
    if kind.stage != "window":
        window = ", ".join(k.name for k in kinds_of_stage("window"))
        raise ValueError(f"--model {model_path}: a {kind.name} classifies the records of declared events "
                         f"(the node's second stage, its --source-model); the node's --model is a window "
                         f"model ({window})")
    prep = backend.metadata.preprocess_config()
    return {"window_s": float(prep.window_s), "highpass_hz": float(prep.highpass_hz),
            "target_rate_hz": float(getattr(prep, "target_rate_hz", 0.0) or 0.0),
            "classes": list(backend.classes), "components": list(backend.metadata.components)}


def check_rate(record, info: dict, min_rate_hz: float = 10.0, max_rate_hz: float = 1000.0) -> None:
    """Raise ValueError when the node or the model's filter cannot take the record's rate.

    A rate above ``max_rate_hz`` is refused here; :func:`fit_rate` decimates it first.
    A rate below ``min_rate_hz`` is refused: upsampling would invent no signal, and the
    P-wave band (1-20 Hz) the model looks at is not in such a record.
    """
    rate = record.sampling_rate_hz
    if rate < min_rate_hz:
        raise ValueError(f"sampling rate {rate:g} Hz below the node's {min_rate_hz:g} Hz minimum "
                         "(too coarse for the P-wave band; not upsampled)")
    if rate > max_rate_hz:
        raise ValueError(f"sampling rate {rate:g} Hz above the node's {max_rate_hz:g} Hz maximum")
    if rate <= 2.0 * info["highpass_hz"] * 1.05:
        raise ValueError(f"sampling rate {rate:g} Hz too low for the model's "
                         f"{info['highpass_hz']:g} Hz high-pass")


def fit_rate(record, info: dict, max_rate_hz: float = 1000.0):
    """The record as the node can take it: decimated below ``max_rate_hz``, rate notes added.

    A rate above the node's maximum is brought down by the smallest integer factor with
    a zero-phase anti-alias FIR (``scipy.signal.resample_poly``, Kaiser window), as a
    seismologist would decimate a 2 kHz record; the first sample and so the picks keep
    their times. A rate below the model's input rate (``target_rate_hz``, 40 Hz) is
    replayed as it is, with a note: the node upsamples each window, and the model then
    sees no signal above the record's Nyquist frequency, a band it was not trained on.
    """
    from dataclasses import replace

    rate = record.sampling_rate_hz
    if rate > max_rate_hz:
        from scipy.signal import resample_poly  # 0.8 s to import: only where a record needs it

        factor = math.ceil(rate / max_rate_hz - 1e-9)
        data = resample_poly(np.asarray(record.data, dtype=np.float64), 1, factor, axis=1, padtype="line")
        data[~np.asarray(record.present)] = 0.0
        record = replace(record, data=data, sampling_rate_hz=rate / factor,
                         actions=record.actions + [f"decimated {rate:g} -> {rate / factor:g} Hz "
                                                   f"(factor {factor}, zero-phase anti-alias FIR): "
                                                   f"the node takes at most {max_rate_hz:g} Hz"])
    target = info.get("target_rate_hz")
    if target and record.sampling_rate_hz < target:
        record = replace(record, actions=record.actions + [
            f"{record.sampling_rate_hz:g} Hz is below the model's {target:g} Hz input rate: no "
            f"signal above {record.sampling_rate_hz / 2:g} Hz reaches the model (outside its training)"])
    return record


def node_rate_limits(node_args) -> tuple[float, float]:
    """``(min, max)`` sampling rate the node will accept, from its ``--min-rate/--max-rate``."""
    limits = {"--min-rate": 10.0, "--max-rate": 1000.0}
    args = list(node_args)
    for i, arg in enumerate(args):
        key, _, value = arg.partition("=")
        if key in limits:
            try:
                limits[key] = float(value or args[i + 1])
            except (IndexError, ValueError):
                pass
    return limits["--min-rate"], limits["--max-rate"]


DIGITIZE_CHUNK = 1 << 18  # samples per step of digitize: 2 MiB of float64 temporaries


def digitize(record, sensor, missing: str, rng, chunk: int = DIGITIZE_CHUNK) -> tuple[np.ndarray, dict]:
    """Counts the sensor would send for the record; missing axes as zeros or self-noise.

    Component by component, ``chunk`` samples at a time, into one int32 array: the
    counts are the same as digitizing the whole record at once (the sensor's rounding
    and clipping are per sample; the self-noise is drawn in the same order), but a day
    at 100 Hz no longer holds a float64 copy of the record and the float temporaries of
    the rounding (~0.8 GB over the record's own 0.2 GB).
    """
    data = record.data
    n_comp, n = data.shape
    absent = [i for i, p in enumerate(record.present) if not p]
    counts = np.empty((n_comp, n), dtype=np.int32)
    clipped = 0
    for i in range(n_comp):
        noise = i in absent and missing == "self-noise"
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            part = sensor.self_noise(rng, (stop - start,), record.sampling_rate_hz) if noise \
                else data[i, start:stop]
            counts[i, start:stop], k = sensor.digitize(part)
            clipped += k
    return counts, {"clipped": clipped, "missing": "".join("ENZ"[i] for i in absent)}


def read_waveform_records(paths, units: str | None = None, time_mode: str = "keep", catalog=None,
                          inventory=None):
    """Records ``(data_mps2, rate_hz, start_us)`` from waveform files, in time order.

    A thin wrapper of :func:`host_training.recordings.reader.read_records` (see there for
    grouping, components, units and picks); files or records it refuses are logged with
    their one-line reason and left out (``catalog`` and ``inventory`` as there: units, picks,
    responses). Missing components are zeros. ``time_mode`` moves
    each record as :func:`time_shift_s` does (``auto``: records outside
    the node's 2000-2100 window by whole 50-year steps, as ``tools score`` expects).
    Rates above the node's 1000 Hz are decimated (:func:`fit_rate`); a
    record below its 10 Hz is left out with its reason (the node would drop every frame).
    """
    from host_training.recordings.reader import read_records

    records, skipped = read_records([str(p) for p in paths], units=units, catalog=catalog,
                                    inventory=inventory, nan_gaps=True)
    for where, why in skipped:
        log.error("%s: %s; skipped", where, why)
    out = []
    for r in records:
        shift = time_shift_s(r, time_mode)
        if shift:
            log.warning("%s: moved by %+.0f s into the node's 2000-2100 window", r.id, shift)
        r = fit_rate(r, {})
        try:
            check_rate(r, {"highpass_hz": 0.0})
        except ValueError as exc:
            log.error("%s: %s; skipped", ", ".join(Path(f).name for f in r.files) or r.id, exc)
            continue
        out.append((r.data, r.sampling_rate_hz, int(round((r.starttime.timestamp + shift) * 1e6))))
    return out
