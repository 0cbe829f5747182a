"""The original's training-time augmentations as small composable callables.

SeisBench-style (``seisbench.generate.augmentation``): each augmentation validates its
settings in ``__init__``, acts in ``__call__`` and describes itself in ``__str__``; unlike
SeisBench every draw comes from the ``numpy.random.Generator`` passed in, so a training
run is reproducible from its seed.

Every augmentation acts on a batch of windows ``(N, C, W)`` (components, samples:
SeisBench's ``"NCW"``); :class:`Compose` also takes the model-input layout
``(N, 1, W, C)`` that the trainer feeds EarthquakeCNN and re-normalizes each window to
max |x| = 1 afterwards, as the node's chain (:mod:`edge_runtime.preprocess`) would.

The seed's recipe (SEED_NOTES.md): shift the event by up to 80 samples, add noise, drop
channels and adjust the amplitude of the rest (``adjust_amplitude_for_multichannels``),
multiply or divide the amplitude by U(1, 3).
"""

from __future__ import annotations

import numpy as np


def _rate(name, value):
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}={value!r}: a probability in [0, 1] is expected")
    return float(value)


class TimeShift:
    """Shift each window in time by up to ``max_shift_s``, filling the gap by reflection.

    Parameters
    ----------
    max_shift_s : float
        Largest shift in s (0.8 s: the seed's 80 samples at 100 Hz).
    sampling_rate_hz : float
        Sampling rate of the windows this acts on (40 Hz for model inputs).
    rate : float
        Probability that a window is shifted.
    """

    def __init__(self, max_shift_s: float = 0.8, sampling_rate_hz: float = 40.0, rate: float = 0.5):
        if max_shift_s < 0 or sampling_rate_hz <= 0:
            raise ValueError(f"TimeShift: max_shift_s={max_shift_s} must be >= 0 and "
                             f"sampling_rate_hz={sampling_rate_hz} > 0")
        self.max_shift_s, self.sampling_rate_hz = max_shift_s, sampling_rate_hz
        self.rate = _rate("rate", rate)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = x.shape[-1]
        max_shift = min(int(round(self.max_shift_s * self.sampling_rate_hz)), n - 1)
        out = x.copy()
        if max_shift == 0:
            return out
        shifts = rng.integers(-max_shift, max_shift + 1, len(x))
        shifts[rng.uniform(size=len(x)) >= self.rate] = 0
        for i in np.flatnonzero(shifts):
            s = int(shifts[i])
            padded = np.pad(x[i], [(0, 0), (abs(s), abs(s))], mode="reflect" if abs(s) < n else "edge")
            out[i] = padded[:, abs(s) - s: abs(s) - s + n]
        return out

    def __str__(self):
        return (f"TimeShift(max_shift_s={self.max_shift_s}, sampling_rate_hz={self.sampling_rate_hz}, "
                f"rate={self.rate})")


class AddNoise:
    """Add white Gaussian noise of rms U(0, ``max_ratio``) times each window's peak.

    Components that are exactly zero (dead or missing channels) stay zero unless
    ``noise_dead`` is set: a replayed missing channel is zeros, not noise.
    """

    def __init__(self, max_ratio: float = 0.2, rate: float = 0.5, noise_dead: bool = False):
        if max_ratio < 0:
            raise ValueError(f"AddNoise: max_ratio={max_ratio} must be >= 0")
        self.max_ratio, self.rate, self.noise_dead = max_ratio, _rate("rate", rate), noise_dead

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        peak = np.max(np.abs(x), axis=(-2, -1), keepdims=True)
        on = rng.uniform(size=(len(x), 1, 1)) < self.rate
        ratio = rng.uniform(0, self.max_ratio, (len(x), 1, 1)) * on
        noise = rng.standard_normal(x.shape) * ratio * peak
        if not self.noise_dead:
            noise *= np.any(x != 0, axis=-1, keepdims=True)
        return x + noise

    def __str__(self):
        return f"AddNoise(max_ratio={self.max_ratio}, rate={self.rate}, noise_dead={self.noise_dead})"


def adjust_amplitude_for_multichannels(x: np.ndarray) -> np.ndarray:
    """The seed's amplitude adjustment: scale by ``n_components / n_live_components`` per window."""
    live = np.count_nonzero(np.max(np.abs(x), axis=-1) > 0, axis=-1)
    factor = np.where(live > 0, x.shape[-2] / np.maximum(live, 1), 1.0)
    return x * factor[:, None, None]


class DropChannels:
    """Zero one or two live components of a window (a dead or missing channel), then adjust.

    At least one live component is always kept.

    Parameters
    ----------
    rate : float
        Probability that a window loses channels.
    two_fraction : float
        Of those, the fraction that lose two components (one left) instead of one.
    adjust : bool
        Apply :func:`adjust_amplitude_for_multichannels` afterwards (the seed does).
    """

    def __init__(self, rate: float = 0.4, two_fraction: float = 0.5, adjust: bool = True):
        self.rate, self.two_fraction = _rate("rate", rate), _rate("two_fraction", two_fraction)
        self.adjust = adjust

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = x.copy()
        for i in np.flatnonzero(rng.uniform(size=len(x)) < self.rate):
            # Only live components can die, and one always stays: a window of zeros is no
            # phase and no noise the node would classify (it skips dead windows).
            live = np.flatnonzero(np.any(x[i] != 0, axis=-1))
            n_drop = min(2 if rng.uniform() < self.two_fraction else 1, len(live) - 1)
            if n_drop > 0:
                out[i, rng.choice(live, n_drop, replace=False)] = 0.0
        return adjust_amplitude_for_multichannels(out) if self.adjust else out

    def __str__(self):
        return f"DropChannels(rate={self.rate}, two_fraction={self.two_fraction}, adjust={self.adjust})"


class ScaleAmplitude:
    """The seed's ``scale_amplitude``: with probability ``rate`` multiply by U(1, 3), with
    probability ``rate`` divide by U(1, 3), else leave the window as it is.

    After the node's per-window normalization a pure scaling changes nothing; it matters
    in combination with absolute-level steps (noise added afterwards, clipping).
    """

    def __init__(self, rate: float = 0.25, low: float = 1.0, high: float = 3.0):
        if not 0 < low <= high:
            raise ValueError(f"ScaleAmplitude: need 0 < low <= high, got {low}, {high}")
        if rate > 0.5:
            raise ValueError(f"ScaleAmplitude: rate={rate} must be <= 0.5 (up and down each get it)")
        self.rate, self.low, self.high = _rate("rate", rate), low, high

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(size=len(x))
        f = rng.uniform(self.low, self.high, len(x))
        factor = np.where(u < self.rate, f, np.where(u < 2 * self.rate, 1.0 / f, 1.0))
        return x * factor[:, None, None]

    def __str__(self):
        return f"ScaleAmplitude(rate={self.rate}, low={self.low}, high={self.high})"


class OneOf:
    """Apply one of ``augmentations`` per batch, drawn with ``probabilities``."""

    def __init__(self, augmentations, probabilities=None):
        self.augmentations = list(augmentations)
        if not self.augmentations:
            raise ValueError("OneOf needs at least one augmentation")
        p = np.ones(len(self.augmentations)) if probabilities is None else np.asarray(probabilities, float)
        if p.shape != (len(self.augmentations),) or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(f"OneOf: probabilities {probabilities!r} do not fit "
                             f"{len(self.augmentations)} augmentations")
        self.probabilities = p / p.sum()

    def __call__(self, x, rng):
        return self.augmentations[int(rng.choice(len(self.augmentations), p=self.probabilities))](x, rng)

    def __str__(self):
        return f"OneOf([{', '.join(map(str, self.augmentations))}])"


class Compose:
    """Apply augmentations in order: ``Compose([...])(x, rng)``.

    Parameters
    ----------
    augmentations : list of callables
        Each ``f(x (N, C, W), rng) -> x``.
    layout : str
        ``"N1WC"``: model inputs ``(N, 1, W, C)`` (the trainer's); ``"NCW"``: raw windows.
    renormalize : bool
        Divide each window by its max |x| afterwards (the node's last step).
    """

    def __init__(self, augmentations, layout: str = "N1WC", renormalize: bool = True):
        if layout not in ("N1WC", "NCW"):
            raise ValueError(f"layout {layout!r}: expected 'N1WC' or 'NCW'")
        self.augmentations, self.layout, self.renormalize = list(augmentations), layout, renormalize

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(x)
        dtype = x.dtype
        ncw = np.swapaxes(x[:, 0], -1, -2) if self.layout == "N1WC" else x
        ncw = ncw.astype(np.float64)
        for aug in self.augmentations:
            ncw = aug(ncw, rng)
        if self.renormalize:
            peak = np.max(np.abs(ncw), axis=(-2, -1), keepdims=True)
            ncw = ncw / np.where(peak > 0, peak, 1.0)
        if self.layout == "N1WC":
            return np.ascontiguousarray(np.swapaxes(ncw, -1, -2)[:, None]).astype(dtype)
        return ncw.astype(dtype)

    def __str__(self):
        return f"Compose([{', '.join(map(str, self.augmentations))}], layout={self.layout!r})"


AUGMENTATIONS = {"time_shift": TimeShift, "add_noise": AddNoise, "drop_channels": DropChannels,
                 "scale_amplitude": ScaleAmplitude}
ALIASES = {"shift": "time_shift", "noise": "add_noise", "drop": "drop_channels", "scale": "scale_amplitude"}
DEFAULT_AUGMENTATIONS = ["time_shift", "add_noise", "drop_channels", "scale_amplitude"]


def build(names, seed: int = 0, layout: str = "N1WC", sampling_rate_hz: float = 40.0) -> Compose:
    """The named augmentations, in order, with the seed's settings.

    ``seed`` is accepted for the trainer's signature; the draws come from the generator
    passed to each call. ``sampling_rate_hz`` is that of the windows (40 Hz model inputs).
    """
    del seed
    chain = []
    for name in names:
        key = ALIASES.get(name, name)
        if key not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)} "
                             f"(or {', '.join(ALIASES)})")
        cls = AUGMENTATIONS[key]
        chain.append(cls(sampling_rate_hz=sampling_rate_hz) if cls is TimeShift else cls())
    return Compose(chain, layout=layout)
