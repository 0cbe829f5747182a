"""Turning long traces into labelled windows: checks, units, resampling, cutting, splits.

Plain functions over ``(3, n_samples)`` arrays shared by the ``prepare`` readers
(:mod:`.stead`, :mod:`.seisbench_io`, :mod:`.sac_folders`).
"""

from __future__ import annotations

import hashlib
import zlib
from fractions import Fraction

import numpy as np

# Order-of-magnitude sensitivities used only when no response is known (counts per m/s
# for velocity sensors, counts per m/s^2 for accelerometers), by SEED band+instrument code.
# Broadband ~1500 V/(m/s) x ~6e5 counts/V; short period ~170 V/(m/s) x ~6e5 counts/V;
# strong motion (EpiSensor-class, 5 V/g) x ~4e5 counts/V. Amplitudes from these are
# good to a factor of a few: the model input is max-abs normalized per window, so the
# class does not depend on them, only the amplitude gates (1e-8 < peak < 19.62 m/s^2) do.
NOMINAL_SENSITIVITY = {
    "HH": ("velocity", 1.0e9), "BH": ("velocity", 1.0e9), "EH": ("velocity", 1.0e8),
    "SH": ("velocity", 1.0e8), "HN": ("acceleration", 2.0e5), "HL": ("acceleration", 2.0e5),
    "HG": ("acceleration", 2.0e5), "BN": ("acceleration", 2.0e5),
}


def check_trace(data: np.ndarray, n_components: int = 3) -> str | None:
    """Reason a ``(n_components, n)`` trace is unusable, or None when it is fine."""
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[0] != n_components:
        return f"shape {data.shape}, expected ({n_components}, n)"
    if data.shape[1] < 2:
        return f"{data.shape[1]} samples"
    if not np.isfinite(data.sum()):  # one pass; NaN/inf anywhere makes the sum non-finite
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            return f"{bad} NaN/inf samples"
    if np.all(data.max(axis=1) == data.min(axis=1)):
        return "all components constant (dead channel)"
    return None


def velocity_to_acceleration(data: np.ndarray, fs: float) -> np.ndarray:
    """Time derivative (second-order central differences), m/s -> m/s^2."""
    return np.gradient(np.asarray(data, dtype=np.float64), 1.0 / fs, axis=-1)


def resample(data: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliased); no-op at equal rates."""
    if abs(fs_in - fs_out) < 1e-9 * fs_out:
        return np.asarray(data, dtype=np.float64)
    from scipy import signal

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return signal.resample_poly(np.asarray(data, dtype=np.float64), ratio.numerator,
                                ratio.denominator, axis=-1)


def item_rng(seed: int, key: str) -> np.random.Generator:
    """A generator seeded by the run seed and an item name: the same draws for an item
    whatever the chunking, order or resumption of the run."""
    return np.random.default_rng([int(seed), zlib.crc32(str(key).encode())])


def hash_split(key: str, seed: int, fractions=(0.7, 0.15, 0.15)) -> str:
    """Split of a group (event, record) from a hash of its key: streaming and stable.

    Every window of a group gets the same split without a pass over the whole data set;
    ``prepare merge`` re-splits exactly by event, date or station.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    bounds = np.cumsum(fractions) / np.sum(fractions)
    return ("train", "val", "test")[int(np.searchsorted(bounds, u, side="right"))]


def cut_at(data: np.ndarray, center_sample: float, n: int):
    """Window of ``n`` samples centred at ``center_sample``; (window, start) or (None, start)."""
    start = int(round(center_sample)) - n // 2
    if start < 0 or start + n > data.shape[-1]:
        return None, start
    return data[..., start:start + n], start


def pick_windows(data: np.ndarray, fs: float, picks: dict, window_s: float, max_shift_s: float,
                 rng: np.random.Generator) -> list:
    """P and S windows centred at their picks plus a seeded shift of at most ``max_shift_s``.

    Parameters
    ----------
    data : numpy.ndarray
        ``(3, n)`` acceleration in m/s^2.
    fs : float
        Sampling rate in Hz.
    picks : dict
        ``{"P": sample, "S": sample}`` (float samples after the first sample; either may
        be missing).

    Returns
    -------
    list of (label, window, start_sample)
        Windows that fit inside the trace.
    """
    n = int(round(window_s * fs))
    out = []
    for label in ("P", "S"):
        if picks.get(label) is None:
            continue
        shift = rng.uniform(-max_shift_s, max_shift_s) * fs if max_shift_s > 0 else 0.0
        window, start = cut_at(data, picks[label] + shift, n)
        if window is not None:
            out.append((label, window, start))
    return out


def noise_windows(data: np.ndarray, fs: float, window_s: float, count: int, rng,
                  end_sample: int | None = None) -> list:
    """``count`` windows at seeded random positions before ``end_sample`` (default: the end).

    Returns a list of ``("noise", window, start_sample)``.
    """
    n = int(round(window_s * fs))
    end = data.shape[-1] if end_sample is None else min(int(end_sample), data.shape[-1])
    if end < n:
        return []
    starts = rng.integers(0, end - n + 1, size=count)
    return [("noise", data[..., s:s + n], int(s)) for s in starts]


def sta_lta(x: np.ndarray, fs: float, sta_s: float = 1.0, lta_s: float = 5.0) -> np.ndarray:
    """Classic STA/LTA of a 1-D characteristic function (ObsPy's ``classic_sta_lta``)."""
    from obspy.signal.trigger import classic_sta_lta

    return classic_sta_lta(np.asarray(x, dtype=np.float64), int(round(sta_s * fs)),
                           int(round(lta_s * fs)))


def composite(data: np.ndarray) -> np.ndarray:
    """Vector sum of the components after removing each one's mean."""
    x = np.asarray(data, dtype=np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    return np.sqrt(np.sum(x * x, axis=0))
