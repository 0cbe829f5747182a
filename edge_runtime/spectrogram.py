"""Spectrogram images of 3-component records for ``SpectrogramCNN``, in numpy only.

The seed drew each component with ``scipy.signal.spectrogram`` (``nperseg=256``,
``noverlap=128``), ``plt.pcolormesh(10 log10 Sxx, cmap='gray')``, saved a PNG to memory,
decoded it with OpenCV, resized it to 150 x 100 and stacked the components (Z, X, Y).
That needs a plotting backend and OpenCV on the node and costs about 0.1 s per 480 s
record. This module computes the same picture directly:

1. **Power spectral density** exactly as ``scipy.signal.spectrogram`` with its defaults
   and the seed's segments: periodic Tukey window (alpha 0.25) of ``nperseg`` samples,
   ``noverlap`` samples of overlap, constant detrend of each segment, one-sided density
   scaling, in (m/s^2)^2/Hz. Tested against SciPy.
2. **dB** ``10 log10 Sxx``, re 1 (m/s^2)^2/Hz.
3. **Orientation** as the seed's picture: frequency up (row 0 = Nyquist), time to the
   right (column 0 = first segment).
4. **Resize** to ``height x width`` (100 x 150) with the seed's geometry
   (``resize="seed"``, the default): each spectrogram cell is painted as a block of
   pixels onto the seed's canvas, the axes of matplotlib's default 6.4 x 4.8 in figure at
   100 dpi cropped by ``bbox_inches='tight'`` (496 x 369 px, cell edges rounded to whole
   pixels as Agg draws them), then shrunk by bilinear interpolation with half-pixel
   centres and clamped edges, the convention of ``cv2.resize(..., INTER_LINEAR)``. Both
   steps are linear, so they are one cached matrix per axis, applied to the dB values.
   Why not a plain bilinear resize: the cells of a spectrogram are noisy (one segment's
   periodogram, +/- 5.6 dB), and an image that samples other cells than the seed's
   correlates with it at only about 0.9. ``resize="bilinear"`` resizes directly.
5. **Grey levels** from a FIXED dynamic range ``[db_min, db_max]`` (default -140 to
   +20 dB re 1 (m/s^2)^2/Hz, 0.63 dB per level), clipped, rounded to uint8. The seed's
   matplotlib autoscale mapped each image's own minimum and maximum to black and white,
   so the same ground motion gave different grey levels next to a louder or quieter bin,
   and the deepest (random) notch of the image set the scale. -140 dB lies below the
   self-noise of the quietest MEMS part (ADXL355, about -90 dB) with room for the
   spectral notches of a segment; +20 dB is above the PSD of a 2 g record.
6. **Stacking** (Z, E, N) along axis 0, the seed's (Z, X, Y), for an input
   ``(3, 100, 150)``; :func:`to_model_input` scales uint8 to float32 in [0, 1]
   (``x / 255``), what ``SpectrogramCNN`` is trained on.

Records arrive as ``(3, n)`` acceleration in m/s^2, components (E, N, Z) like every
window in this project.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

from .preprocess import tukey

# Seed's (Z, X, Y) stacking of an (E, N, Z) record.
STACK_ORDER = (2, 0, 1)
RESIZE_METHODS = ("seed", "bilinear")
# The seed's canvas in pixels: the default axes (0.775 x 0.77 of a 640 x 480 px figure)
# cropped to whole pixels; rows start 0.6 px below the top edge of the axes.
SEED_CANVAS_ROWS, SEED_CANVAS_HEIGHT_PX, SEED_CANVAS_ROW_OFFSET_PX = 369, 369.6, -0.6
SEED_CANVAS_COLS, SEED_CANVAS_WIDTH_PX = 496, 496.0


@dataclass(frozen=True)
class SpectrogramConfig:
    """Parameters of a spectrogram image and of the record it is made from.

    Attributes
    ----------
    sampling_rate_hz : float
        Rate the record is brought to before the spectrogram, Hz (records at another
        rate are resampled, so frequency rows mean the same on every node).
    nperseg, noverlap : int
        Segment length and overlap in samples (the seed's 256 and 128).
    tukey_alpha : float
        Shape of the segment window (SciPy's default 0.25).
    db_min, db_max : float
        Fixed dynamic range of the grey levels, dB re 1 (m/s^2)^2/Hz.
    height, width : int
        Image size in pixels: frequency rows, time columns.
    resize : str
        ``"seed"`` (the seed's canvas, then bilinear) or ``"bilinear"``; see the module doc.
    record_s : float
        Length of the record a node classifies, s.
    pre_s : float
        Part of the record before the event's onset (P pick or trigger), s.
    """

    sampling_rate_hz: float = 100.0
    nperseg: int = 256
    noverlap: int = 128
    tukey_alpha: float = 0.25
    db_min: float = -140.0
    db_max: float = 20.0
    height: int = 100
    width: int = 150
    resize: str = "seed"
    record_s: float = 60.0
    pre_s: float = 15.0

    def __post_init__(self):
        checks = {
            "sampling_rate_hz": self.sampling_rate_hz > 0,
            "nperseg": int(self.nperseg) == self.nperseg and self.nperseg >= 2,
            "noverlap": int(self.noverlap) == self.noverlap and 0 <= self.noverlap < self.nperseg,
            "tukey_alpha": 0.0 <= self.tukey_alpha <= 1.0,
            "db_max": self.db_max > self.db_min,
            "height": int(self.height) == self.height and self.height >= 1,
            "width": int(self.width) == self.width and self.width >= 1,
            "resize": self.resize in RESIZE_METHODS,
            "record_s": self.record_s * self.sampling_rate_hz >= self.nperseg,
            "pre_s": 0.0 <= self.pre_s < self.record_s,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"spectrogram setting {bad[0]}={getattr(self, bad[0])!r} is out of range")

    @property
    def record_samples(self) -> int:
        return int(round(self.record_s * self.sampling_rate_hz))

    @property
    def pre_samples(self) -> int:
        return int(round(self.pre_s * self.sampling_rate_hz))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "SpectrogramConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown spectrogram settings {sorted(unknown)}")
        return cls(**raw)


@lru_cache(maxsize=8)
def tukey_window(n: int, alpha: float = 0.25) -> np.ndarray:
    """Periodic Tukey window, ``scipy.signal.get_window(('tukey', alpha), n)``.

    SciPy's spectral functions use the periodic ("fftbins") form: the symmetric window
    of ``n + 1`` points without its last point.
    """
    w = tukey(n + 1, alpha)[:-1]
    w.setflags(write=False)
    return w


def spectrogram(x: np.ndarray, fs: float, nperseg: int = 256, noverlap: int = 128,
                tukey_alpha: float = 0.25, dtype=np.float64):
    """Power spectral density of overlapping segments, as ``scipy.signal.spectrogram``.

    Same result as ``scipy.signal.spectrogram(x, fs, nperseg=nperseg, noverlap=noverlap)``
    (window ``('tukey', 0.25)``, ``detrend='constant'``, ``scaling='density'``,
    one-sided, ``mode='psd'``).

    Parameters
    ----------
    x : numpy.ndarray
        ``(..., n)`` samples, e.g. acceleration in m/s^2.
    fs : float
        Sampling rate in Hz.
    dtype : numpy dtype
        float64 (SciPy's result to rounding) or float32 (half the memory traffic; what
        the image uses, whose grey levels are 0.63 dB apart).

    Returns
    -------
    frequencies : numpy.ndarray
        ``(nperseg // 2 + 1,)`` Hz.
    times : numpy.ndarray
        ``(n_segments,)`` segment centres in s after the first sample.
    sxx : numpy.ndarray
        ``(..., n_frequencies, n_segments)`` PSD in units of x^2/Hz.
    """
    x = np.asarray(x, dtype=np.float64)
    if dtype != np.float64:
        # The record's own mean (gravity on Z) out first, in float64: each segment loses
        # its mean anyway, and in float32 a 9.81 m/s^2 offset would swamp mm/s^2 signals.
        x = (x - x.mean(axis=-1, keepdims=True)).astype(dtype)
    n = x.shape[-1]
    if n < nperseg:
        raise ValueError(f"record of {n} samples is shorter than one segment ({nperseg})")
    step = nperseg - noverlap
    n_seg = (n - noverlap) // step
    segments = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=-1)[..., ::step, :][..., :n_seg, :]
    window = tukey_window(nperseg, tukey_alpha)
    rows = int(np.prod(segments.shape[:-1]))
    # The FFT runs in float64 whatever dtype is (numpy's float32 FFT is several times
    # slower), on one 2-D block (N-D input is slower too), in per-thread work buffers:
    # fresh multi-megabyte arrays per call cost more in page faults than the arithmetic.
    windowed = _work_buffer("windowed", (rows, nperseg), np.float64).reshape(segments.shape)
    np.subtract(segments, segments.mean(axis=-1, keepdims=True), out=windowed)  # detrend='constant'
    windowed *= window
    spec = np.fft.rfft(windowed.reshape(rows, nperseg), axis=-1,
                       out=_work_buffer("spec", (rows, nperseg // 2 + 1), np.complex128))
    sxx = np.square(spec.real, dtype=dtype)
    sxx += np.square(spec.imag, out=_work_buffer("imag2", spec.shape, np.float64))
    sxx = sxx.reshape(segments.shape[:-1] + (-1,))
    sxx *= sxx.dtype.type(1.0 / (fs * np.sum(window ** 2)))
    # One-sided density: double all bins but DC (and Nyquist for an even segment).
    sxx[..., 1: None if nperseg % 2 else -1] *= 2.0
    frequencies = np.fft.rfftfreq(nperseg, 1.0 / fs)
    times = (np.arange(n_seg) * step + nperseg / 2) / fs
    return frequencies, times, np.swapaxes(sxx, -1, -2)


_WORK = threading.local()
WORK_BUFFER_MAX_BYTES = 16 * 2**20  # larger blocks (host batches) are allocated per call


def _work_buffer(name: str, shape: tuple, dtype) -> np.ndarray:
    """A per-thread scratch array reused from call to call (contents undefined)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    if size > WORK_BUFFER_MAX_BYTES:
        return np.empty(shape, dtype)
    buffers = _WORK.__dict__.setdefault("buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.nbytes < size or buf.dtype != dtype:
        buf = buffers[name] = np.empty(max(size // dtype.itemsize, 1), dtype)
    return buf[: int(np.prod(shape))].reshape(shape)


@lru_cache(maxsize=16)
def _linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` bilinear interpolation, half-pixel centres, clamped edges.

    Output pixel ``i`` samples the input at ``(i + 0.5) n_in / n_out - 0.5``, as
    ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` does (no anti-aliasing when
    shrinking).
    """
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    m.setflags(write=False)
    return m


@lru_cache(maxsize=16)
def _paint_matrix(n_cells: int, n_pixels: int, length_px: float, offset_px: float) -> np.ndarray:
    """``(n_pixels, n_cells)`` 0/1: which cell each canvas pixel shows.

    ``n_cells`` equal cells span ``length_px`` pixels; the edge between cells ``k-1`` and
    ``k`` falls on pixel ``round(k * length_px / n_cells + offset_px)``, as Agg draws
    the seed's pcolormesh.
    """
    edges = np.round(np.arange(1, n_cells) * length_px / n_cells + offset_px)
    cell = np.searchsorted(edges, np.arange(n_pixels), side="right")
    m = np.zeros((n_pixels, n_cells))
    m[np.arange(n_pixels), np.minimum(cell, n_cells - 1)] = 1.0
    return m


@lru_cache(maxsize=16)
def _resize_matrices(n_rows: int, n_cols: int, height: int, width: int, method: str):
    """Row and column matrices ``(height, n_rows)``, ``(n_cols, width)`` of a resize."""
    if method == "bilinear":
        wy = _linear_resize_matrix(n_rows, height)
        wx = _linear_resize_matrix(n_cols, width)
    else:
        wy = _linear_resize_matrix(SEED_CANVAS_ROWS, height) @ _paint_matrix(
            n_rows, SEED_CANVAS_ROWS, SEED_CANVAS_HEIGHT_PX, SEED_CANVAS_ROW_OFFSET_PX)
        wx = _linear_resize_matrix(SEED_CANVAS_COLS, width) @ _paint_matrix(
            n_cols, SEED_CANVAS_COLS, SEED_CANVAS_WIDTH_PX, 0.0)
    wx = np.ascontiguousarray(wx.T)
    wy.setflags(write=False)
    wx.setflags(write=False)
    return wy, wx


def _taps(m: np.ndarray):
    """A sparse interpolation matrix as ``(index, weight)`` arrays ``(n_out, k)``."""
    k = max(1, int((m != 0).sum(axis=1).max()))
    index = np.zeros((m.shape[0], k), dtype=np.intp)
    weight = np.zeros((m.shape[0], k))
    for i, row in enumerate(m):
        nz = np.flatnonzero(row)
        index[i, :nz.size], weight[i, :nz.size] = nz, row[nz]
    return index, weight


@lru_cache(maxsize=16)
def _resize_taps(n_rows: int, n_cols: int, height: int, width: int, method: str, flip_rows: bool):
    wy, wx = _resize_matrices(n_rows, n_cols, height, width, method)
    if flip_rows:
        wy = wy[:, ::-1]
    return _taps(wy), _taps(wx.T)


def resize_image(image: np.ndarray, height: int, width: int, method: str = "bilinear",
                 flip_rows: bool = False) -> np.ndarray:
    """Resize the last two axes of ``image`` to ``(height, width)`` (see module doc).

    Rows are taken top first, as in a picture: with ``method="seed"`` row 0 of
    ``image`` is painted at the top of the seed's canvas. ``flip_rows`` reverses the
    rows of ``image`` first (a spectrogram's row 0 is its lowest frequency).
    """
    (iy, wy), (ix, wx) = _resize_taps(image.shape[-2], image.shape[-1], height, width, method, flip_rows)
    # Each output pixel mixes at most a few input cells: gather them instead of
    # multiplying by mostly-zero matrices (20 M multiply-adds for a 480 s record).
    # Time first: it shrinks most (374 segments of a 480 s record to 150 columns).
    cols = np.einsum("...rwk,wk->...rw", image[..., ix], wx.astype(image.dtype))
    return np.einsum("...hkw,hk->...hw", cols[..., iy, :], wy.astype(image.dtype))


def resample(x: np.ndarray, n_out: int) -> np.ndarray:
    """Fourier resampling along the last axis to ``n_out`` samples (``scipy.signal.resample``)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if n == n_out:
        return x
    spec = np.fft.rfft(x, axis=-1)
    m = min(n, n_out)
    keep = m // 2 + 1
    out = np.zeros(x.shape[:-1] + (n_out // 2 + 1,), dtype=complex)
    out[..., :keep] = spec[..., :keep]
    if m % 2 == 0:  # the shorter length's Nyquist bin, handled as scipy.signal.resample does
        out[..., m // 2] *= 2.0 if n_out < n else 0.5
    return np.fft.irfft(out, n_out, axis=-1) * (n_out / n)


def to_db_image(sxx: np.ndarray, config: SpectrogramConfig) -> np.ndarray:
    """``(..., F, T)`` PSD -> ``(..., height, width)`` uint8 grey levels, frequency up."""
    floor = sxx.dtype.type(10.0 ** (config.db_min / 10.0))
    db = np.log10(np.maximum(sxx, floor))
    db *= 10.0
    # Frequency up, as drawn: the highest frequency is the first row of the picture.
    image = resize_image(db, config.height, config.width, config.resize, flip_rows=True)
    scale = 255.0 / (config.db_max - config.db_min)
    image -= config.db_min
    image *= scale
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def spectrogram_images(records: np.ndarray, fs: float,
                       config: SpectrogramConfig = SpectrogramConfig()) -> np.ndarray:
    """Spectrogram images of 3-component records.

    Parameters
    ----------
    records : numpy.ndarray
        ``(N, 3, n)`` or ``(3, n)`` acceleration in m/s^2, components (E, N, Z). Any length
        of at least one segment; the images of records of ``config.record_s`` are what a
        model of this config was trained on.
    fs : float
        Sampling rate of ``records`` in Hz; resampled to ``config.sampling_rate_hz``
        when different.
    config : SpectrogramConfig

    Returns
    -------
    numpy.ndarray
        ``(N, 3, height, width)`` (or ``(3, height, width)``) uint8, stacked (Z, E, N).
    """
    records = np.asarray(records, dtype=np.float64)
    if records.ndim not in (2, 3) or records.shape[-2] != 3:
        raise ValueError(f"records of shape {records.shape}: expected (N, 3, n) or (3, n)")
    if not np.isfinite(records).all():
        raise ValueError("record holds NaN or infinite samples")
    if fs <= 0:
        raise ValueError(f"sampling rate {fs!r} Hz must be positive")
    if fs != config.sampling_rate_hz:
        n_out = int(round(records.shape[-1] * config.sampling_rate_hz / fs))
        records = resample(records, n_out)
    _, _, sxx = spectrogram(records[..., STACK_ORDER, :], config.sampling_rate_hz,
                            config.nperseg, config.noverlap, config.tukey_alpha, dtype=np.float32)
    return to_db_image(sxx, config)


def spectrogram_image(record: np.ndarray, fs: float,
                      config: SpectrogramConfig = SpectrogramConfig()) -> np.ndarray:
    """``(3, height, width)`` uint8 image of one ``(3, n)`` record (see :func:`spectrogram_images`)."""
    record = np.asarray(record)
    if record.ndim != 2:
        raise ValueError(f"record of shape {record.shape}: expected (3, n)")
    return spectrogram_images(record, fs, config)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (``x / 255``), the input of ``SpectrogramCNN``."""
    return np.asarray(images, dtype=np.float32) * np.float32(1.0 / 255.0)
