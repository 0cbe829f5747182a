"""Window preprocessing shared by training and the node (numpy only).

One implementation, imported by ``host_training`` and run live by the node, so the
windows a model was trained on and the windows it sees in the field are made by the
same code.

A window is an array of shape ``(n_components, n_samples)`` of ground acceleration in
m/s^2, components ordered as documented in the model metadata (X, Y, Z by default).
The chain, per window and per component, follows the seed (SEED_NOTES.md):

1. linear detrend (least-squares line removed),
2. Tukey taper, ``alpha = 0.05`` (fraction of the window inside the cosine lobes),
3. causal Butterworth high-pass, 0.5 Hz, 4 corners, started from rest,
4. FFT resampling to 80 samples (40 Hz for a 2 s window),
5. normalize by max |x| over the window,
6. ``quantize`` to int16 by per-window max-abs scaling,
7. normalize again (done by the caller, or inside an int16-input model).

Steps 1-4 are linear in the samples of a fixed-length window, so their composition is
one ``(n_out, n_in)`` matrix, built once per window geometry and cached: a few thousand
multiply-adds per component instead of four passes, exact to rounding. Each step is also
available on its own and is tested against its SciPy/ObsPy counterpart.

Two corrections to the seed, both deliberate:

* the seed's ``normalize`` divided by ``np.max(x)``, not ``np.max(np.abs(x))``: a window
  whose largest excursion is negative was scaled wrongly (even sign-flipped). Here the
  scale is always max |x|;
* the seed filtered whole traces for training and single windows live. Here both sides
  run this per-window chain, so the transient of the filter started from rest is part of
  what the model learns.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

INT16_MAX = int(np.iinfo(np.int16).max)


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the window chain, as written into ONNX metadata.

    Attributes
    ----------
    window_s : float
        Window length in s.
    target_rate_hz : float
        Sampling rate of the model input in Hz (40 Hz: 80 samples in 2 s).
    taper_alpha : float
        Tukey taper shape parameter (fraction of the window that is tapered).
    highpass_hz : float
        High-pass corner frequency in Hz.
    highpass_corners : int
        Butterworth order of the high-pass (ObsPy's ``corners``).
    """

    window_s: float = 2.0
    target_rate_hz: float = 40.0
    taper_alpha: float = 0.05
    highpass_hz: float = 0.5
    highpass_corners: int = 4

    @property
    def n_out(self) -> int:
        """Samples per component at the model input."""
        return int(round(self.window_s * self.target_rate_hz))

    def n_in(self, sampling_rate_hz: float) -> int:
        """Samples per component of a raw window at ``sampling_rate_hz``."""
        return int(round(self.window_s * sampling_rate_hz))

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- linear steps


def detrend(x: np.ndarray) -> np.ndarray:
    """Remove the least-squares line from the last axis (``scipy.signal.detrend``)."""
    x = np.asarray(x, dtype=np.float64)
    return x @ _detrend_matrix(x.shape[-1]).T


def tukey(n_samples: int, alpha: float) -> np.ndarray:
    """Tukey window of ``n_samples`` points (``scipy.signal.windows.tukey``, symmetric)."""
    if n_samples <= 1:
        return np.ones(n_samples)
    if alpha <= 0:
        return np.ones(n_samples)
    if alpha >= 1:
        return np.hanning(n_samples)
    n = np.arange(n_samples)
    width = int(np.floor(alpha * (n_samples - 1) / 2.0))
    w = np.ones(n_samples)
    n1 = n[: width + 1]
    w[: width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * n1 / alpha / (n_samples - 1))))
    n3 = n[n_samples - width - 1 :]
    w[n_samples - width - 1 :] = 0.5 * (
        1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * n3 / alpha / (n_samples - 1)))
    )
    return w


def butter_highpass_sos(corners: int, freq_hz: float, sampling_rate_hz: float) -> np.ndarray:
    """Digital Butterworth high-pass as second-order sections, numpy only.

    Same design as ``scipy.signal.iirfilter(..., btype='highpass', ftype='butter',
    output='zpk')`` followed by ``zpk2sos``, which is what ObsPy's ``highpass`` uses:
    analog prototype, frequency pre-warping, bilinear transform.

    Parameters
    ----------
    corners : int
        Filter order.
    freq_hz : float
        Corner frequency in Hz; must be below the Nyquist frequency.
    sampling_rate_hz : float
        Sampling rate in Hz.

    Returns
    -------
    numpy.ndarray
        ``(n_sections, 6)`` array of ``[b0, b1, b2, a0, a1, a2]`` rows.
    """
    nyquist = 0.5 * sampling_rate_hz
    if not 0 < freq_hz < nyquist:
        raise ValueError(f"high-pass corner {freq_hz} Hz must lie in (0, {nyquist}) Hz")
    wn = freq_hz / nyquist
    fs = 2.0
    warped = 2 * fs * np.tan(np.pi * wn / fs)
    # Analog low-pass prototype, then low-pass -> high-pass.
    m = np.arange(-corners + 1, corners, 2)
    p = -np.exp(1j * np.pi * m / (2 * corners))
    k = 1.0
    k_hp = k * np.real(1.0 / np.prod(-p))
    p_hp = warped / p
    z_hp = np.zeros(corners, dtype=complex)
    # Bilinear transform.
    fs2 = 2.0 * fs
    p_d = (fs2 + p_hp) / (fs2 - p_hp)
    k_d = k_hp * np.real(np.prod(fs2 - z_hp) / np.prod(fs2 - p_hp))
    # Pair conjugate poles into biquads; the analog zeros at s = 0 all map to z = 1.
    upper = p_d[np.imag(p_d) > 1e-12]
    real_poles = np.sort(np.real(p_d[np.abs(np.imag(p_d)) <= 1e-12]))
    sections = []
    for pole in sorted(upper, key=lambda q: np.abs(q)):
        a = np.real(np.poly([pole, np.conj(pole)]))
        sections.append(np.r_[1.0, -2.0, 1.0, a])
    if real_poles.size:
        a = np.r_[1.0, -real_poles[0], 0.0]
        sections.insert(0, np.r_[1.0, -1.0, 0.0, a])
    sos = np.array(sections)
    sos[-1, :3] *= k_d
    return sos


def sosfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Filter along the last axis with second-order sections, started from rest.

    A plain-Python recursion over samples: fine for building matrices once; the live
    path never calls it (it uses :func:`linear_operator`).
    """
    y = np.array(x, dtype=np.float64, copy=True)
    for b0, b1, b2, a0, a1, a2 in sos:
        b0, b1, b2, a1, a2 = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0
        out = np.empty_like(y)
        z1 = np.zeros(y.shape[:-1])
        z2 = np.zeros(y.shape[:-1])
        for i in range(y.shape[-1]):
            xi = y[..., i]
            yi = b0 * xi + z1
            z1 = b1 * xi - a1 * yi + z2
            z2 = b2 * xi - a2 * yi
            out[..., i] = yi
        y = out
    return y


def highpass(x: np.ndarray, freq_hz: float, sampling_rate_hz: float, corners: int = 4):
    """Causal Butterworth high-pass of the last axis (ObsPy ``highpass``, zerophase off)."""
    x = np.asarray(x, dtype=np.float64)
    h = _highpass_matrix(x.shape[-1], float(freq_hz), float(sampling_rate_hz), int(corners))
    return x @ h.T


def resample(x: np.ndarray, n_out: int) -> np.ndarray:
    """FFT resampling of the last axis to ``n_out`` samples (``scipy.signal.resample``)."""
    x = np.asarray(x, dtype=np.float64)
    return x @ _resample_matrix(x.shape[-1], int(n_out)).T


def _resample_direct(x: np.ndarray, n_out: int) -> np.ndarray:
    n_in = x.shape[-1]
    spectrum = np.fft.rfft(x, axis=-1)
    out = np.zeros(x.shape[:-1] + (n_out // 2 + 1,), dtype=complex)
    n = min(n_in, n_out)
    nyq = n // 2 + 1
    out[..., :nyq] = spectrum[..., :nyq]
    # The Nyquist bin of the shorter length is shared by +/- frequencies: split or join
    # it as SciPy does, so the result is identical.
    if n % 2 == 0:
        if n_out < n_in:
            out[..., n // 2] *= 2.0
        elif n_in < n_out:
            out[..., n // 2] *= 0.5
    return np.fft.irfft(out, n_out, axis=-1) * (float(n_out) / float(n_in))


# --------------------------------------------------------------------------- matrices


# Small caches: a node sees one or two window geometries, and an (n, n) matrix at a
# high sampling rate is large; the node bounds the rates it accepts (NodeConfig).
@functools.lru_cache(maxsize=4)
def _detrend_matrix(n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    basis = np.stack([t, np.ones(n)], axis=1)  # (n, 2)
    projection = basis @ np.linalg.pinv(basis)
    m = np.eye(n) - projection
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=4)
def _highpass_matrix(n: int, freq_hz: float, sampling_rate_hz: float, corners: int):
    sos = butter_highpass_sos(corners, freq_hz, sampling_rate_hz)
    impulse = np.zeros(n)
    impulse[0] = 1.0
    h = sosfilt(sos, impulse)
    # Causal LTI from rest: lower-triangular Toeplitz of the impulse response.
    idx = np.arange(n)
    lag = idx[:, None] - idx[None, :]
    m = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=4)
def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    m = _resample_direct(np.eye(n_in), n_out).T  # columns are responses to unit samples
    m = np.ascontiguousarray(m)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=4)
def _linear_operator(n_in, sampling_rate_hz, n_out, alpha, freq_hz, corners):
    # The step matrices are built by the same functions, uncached (``__wrapped__``): the
    # node keeps only their (n_out, n_in) product, not three (n_in, n_in) matrices it
    # never uses again (0.75 MiB at 100 Hz, 19 MiB at the 1 kHz limit).
    d = _detrend_matrix.__wrapped__(n_in)
    t = np.diag(tukey(n_in, alpha))
    h = _highpass_matrix.__wrapped__(n_in, freq_hz, sampling_rate_hz, corners)
    r = _resample_matrix.__wrapped__(n_in, n_out)
    m = r @ h @ t @ d
    m.setflags(write=False)
    return m


def linear_operator(n_in: int, sampling_rate_hz: float, config: PreprocessConfig) -> np.ndarray:
    """Matrix of the linear chain detrend -> taper -> high-pass -> resample.

    Parameters
    ----------
    n_in : int
        Samples per component of the raw window.
    sampling_rate_hz : float
        Sampling rate of the raw window in Hz.
    config : PreprocessConfig
        Chain parameters.

    Returns
    -------
    numpy.ndarray
        ``(config.n_out, n_in)`` float64 array ``M``; a window ``x`` of shape
        ``(..., n_in)`` maps to ``x @ M.T``.
    """
    return _linear_operator(
        int(n_in), float(sampling_rate_hz), config.n_out, float(config.taper_alpha),
        float(config.highpass_hz), int(config.highpass_corners),
    )


# --------------------------------------------------------------------------- non-linear steps


def filter_windows(windows, sampling_rate_hz: float, config: PreprocessConfig = PreprocessConfig()):
    """Apply the linear chain to raw windows.

    Parameters
    ----------
    windows : array_like
        ``(..., n_components, n_in)`` acceleration in m/s^2.
    sampling_rate_hz : float
        Sampling rate of ``windows`` in Hz.

    Returns
    -------
    numpy.ndarray
        ``(..., n_components, config.n_out)`` filtered acceleration in m/s^2 (float64).
    """
    windows = np.asarray(windows, dtype=np.float64)
    n_in = windows.shape[-1]
    m_t = linear_operator(n_in, sampling_rate_hz, config).T
    # One matrix product over every window and component, not one per window: four times
    # faster for a batch; a batch's rows round like any other batch of the same size.
    return (windows.reshape(-1, n_in) @ m_t).reshape(windows.shape[:-1] + (m_t.shape[1],))


def max_abs(windows: np.ndarray) -> np.ndarray:
    """Peak |x| of each window over components and samples, shape ``(..., 1, 1)``."""
    return np.max(np.abs(windows), axis=(-2, -1), keepdims=True)


def normalize(windows: np.ndarray) -> np.ndarray:
    """Divide each window by its max |x| (all-zero windows are returned unchanged).

    Fixes the seed, which divided by ``np.max(x)`` and so mis-scaled windows whose
    largest excursion is negative.
    """
    windows = np.asarray(windows, dtype=np.float64)
    scale = max_abs(windows)
    scale = np.where(scale > 0, scale, 1.0)
    return windows / scale


def quantize(windows: np.ndarray, dtype=np.int16) -> np.ndarray:
    """The seed's ``quantize``: per-window max-abs scaling to the full integer range.

    Each window is scaled so that its max |x| maps to ``iinfo(dtype).max`` (32767 for
    int16) and truncated toward zero, as the seed's ``astype`` does. The seed's docstring
    said [-127, 127]; the code, and this function, use the whole int16 range. Unlike the
    seed, an all-zero window gives zeros instead of dividing by zero.
    """
    windows = np.asarray(windows, dtype=np.float64)
    scale = max_abs(windows)
    factor = np.where(scale > 0, np.iinfo(dtype).max / np.where(scale > 0, scale, 1.0), 0.0)
    return (windows * factor).astype(dtype)


def dequantize(windows_int16: np.ndarray) -> np.ndarray:
    """The seed's final normalize of an int16 window: float32 in [-1, 1]."""
    return normalize(np.asarray(windows_int16, dtype=np.float64)).astype(np.float32)


def prepare_windows(windows, sampling_rate_hz: float, config: PreprocessConfig = PreprocessConfig()):
    """Raw windows to the seed's int16 model representation.

    Parameters
    ----------
    windows : array_like
        ``(..., n_components, n_in)`` acceleration in m/s^2.
    sampling_rate_hz : float
        Sampling rate in Hz.

    Returns
    -------
    int16 : numpy.ndarray
        ``(..., n_components, n_out)`` int16 windows (steps 1-6).
    peak_mps2 : numpy.ndarray
        ``(...)`` peak |acceleration| of the filtered window in m/s^2, before
        normalization: the amplitude used for the PGA gate and the seed's window drops.
    """
    filtered = filter_windows(windows, sampling_rate_hz, config)
    peak = max_abs(filtered)[..., 0, 0]
    return quantize(normalize(filtered)), peak


class WindowPreparer:
    """:func:`prepare_windows` for the node's hot path: same numbers, less overhead.

    The matrix of the current geometry is looked up once, not per call, and the two
    max-abs passes of ``quantize(normalize(x))`` are one: after dividing by its peak
    the window's max |x| is exactly 1.0 (IEEE division by a positive number is
    monotonic and ``p / p == 1``), so quantize's factor is exactly 32767. The int16
    windows are bit-identical to :func:`prepare_windows` (tests/test_preprocess.py).

    Parameters
    ----------
    config : PreprocessConfig
        Chain parameters (from the model metadata).
    """

    def __init__(self, config: PreprocessConfig = PreprocessConfig()):
        self.config = config
        self._key = None
        self._mt = None
        self.builds = 0  # geometries looked up: the node frees the build's temporaries after one

    def operator_t(self, n_in: int, sampling_rate_hz: float) -> np.ndarray:
        """Transposed chain matrix ``(n_in, n_out)`` for this geometry (cached)."""
        key = (n_in, sampling_rate_hz)
        if key != self._key:
            self._mt = linear_operator(n_in, sampling_rate_hz, self.config).T
            self._key = key
            self.builds += 1
        return self._mt

    def __call__(self, windows: np.ndarray, sampling_rate_hz: float):
        """``(N, n_components, n_in)`` m/s^2 -> (``(N, n_components, n_out)`` int16, ``(N,)`` peak m/s^2)."""
        n, n_components, n_in = windows.shape
        # One matrix product for the whole batch, as :func:`filter_windows`.
        flat = (windows.reshape(-1, n_in) @ self.operator_t(n_in, sampling_rate_hz)).reshape(n, -1)
        shape = (n, n_components, flat.shape[1] // n_components)
        if n == 1:  # the node's usual case: scalar arithmetic, no temporaries
            p = max(float(flat.max()), -float(flat.min()))
            if p > 0:
                flat /= p
                flat *= float(INT16_MAX)
            else:
                flat *= 0.0
            return flat.astype(np.int16).reshape(shape), np.array([p])
        peak = np.maximum(flat.max(axis=1), -flat.min(axis=1))  # max |x| without an abs() copy
        scale = peak.copy()
        scale[peak <= 0] = 1.0
        flat /= scale[:, None]
        return self._to_model_layout(flat.reshape(shape), np.where(peak > 0, float(INT16_MAX), 0.0)), peak

    @staticmethod
    def _to_model_layout(normalized: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """``(N, C, n_out)`` normalized windows times ``factor`` ``(N,)``, truncated to int16, as
        an ``(N, C, n_out)`` view of ``(N, n_out, C)`` memory: the model's own layout (time, then
        component), so :func:`to_model_input` passes it on without a copy. The same values as
        ``(normalized * factor).astype(int16)``: the product is taken in float64 and cast per
        element; one component at a time is several times faster than a transposing copy."""
        n, n_components, n_out = normalized.shape
        out = np.empty((n, n_out, n_components), dtype=np.int16)
        for c in range(n_components):
            np.multiply(normalized[:, c, :], factor[:, None], out=out[:, :, c], casting="unsafe")
        return out.transpose(0, 2, 1)


def to_model_input(windows_int16: np.ndarray, dtype=np.float32) -> np.ndarray:
    """``(N, n_components, n_samples)`` int16 windows to the seed layout ``(N, 1, n_samples, n_components)``.

    With ``dtype=np.float32`` the seed's final normalize is applied (values in [-1, 1]);
    with ``dtype=np.int16`` the counts are passed through for int16-input models, which
    do that normalize inside the graph.
    """
    w = np.asarray(windows_int16)
    if np.dtype(dtype) == np.int16:
        x = w if w.dtype == np.int16 else w.astype(np.int16)
    elif w.dtype == np.int16 and w.ndim == 3 and w.shape[0] == 1 and np.dtype(dtype) == np.float32:
        # One window (the node's case): one division, transposed on the way, into the
        # model's layout. Dividing in float32 gives exactly dequantize()'s float64 division
        # rounded to float32: counts and scale are integers exact in float32, and a
        # correctly rounded 53-bit quotient rounded again to 24 bits equals the correctly
        # rounded 24-bit one (53 >= 2 * 24 + 2; Figueroa 1995). tests/test_preprocess.py
        # checks every int16 value. max |count|: abs wraps -32768 to itself, which reads
        # as 32768 unsigned.
        scale = int(np.abs(w).view(np.uint16).max()) or 1
        x = w[0].T.astype(np.float32, order="C")  # exact: int16 fits float32
        x /= np.float32(scale)
        return x[None, None]
    else:
        x = dequantize(w).astype(dtype)
    return np.ascontiguousarray(np.swapaxes(x, -1, -2)[:, None, :, :])


# Peak filtered acceleration of a window, m/s^2, at or below which the sensor is taken as dead
# or disconnected: the node does not classify such a window, the host does not train on it.
DEAD_PEAK_MPS2 = 1e-8
# The seed's "2 g" upper drop, written with g = 9.81 (not G_MPS2 = 9.80665 of sensors.py): kept to
# the digit, as every dataset's keep mask and every trained model so far used it.
CLIP_PEAK_MPS2 = 2.0 * 9.81


def amplitude_ok(peak_mps2, min_mps2: float = DEAD_PEAK_MPS2, max_mps2: float = CLIP_PEAK_MPS2):
    """The seed's window drops: keep windows with ``min < peak < max`` (m/s^2)."""
    peak = np.asarray(peak_mps2)
    return (peak > min_mps2) & (peak < max_mps2)
