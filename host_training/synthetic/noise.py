"""What a node records when there is no earthquake: models, not guesses.

* Ambient ground noise with a power spectral density between Peterson's (1993) New Low
  and New High Noise Models (ObsPy's ``get_nlnm`` / ``get_nhnm``), shaped in frequency;
* the accelerometer: self-noise density, resolution and range of a real part
  (:mod:`edge_runtime.sensors`, shared with the node and the replay tool), or a 24-bit
  strong-motion reference whose floor lies below the NLNM at the node's frequencies;
* gravity on a slightly tilted sensor and slow thermal / tilt drift;
* non-seismic transients, the hard negatives a node meets: footsteps, doors, vehicles,
  machinery hum, knocks on the enclosure, electrical spikes and steps.

All amplitudes in m/s^2, components (E, N, Z), shapes ``(3, n_samples)``. Every function
takes a ``numpy.random.Generator``.
"""

from __future__ import annotations

import functools

import numpy as np

from edge_runtime.sensors import G_MPS2, SensorModel

# A strong-motion accelerograph (24-bit, +/-2 g, floor ~0.05 ug/sqrt(Hz)): the kind of
# instrument that recorded most archived earthquakes; its noise is the ground's.
REFERENCE_SENSOR = SensorModel("reference-24bit", 2.0, 24, 2.0**23 / 2.0, 0.05, 1000.0)
SENSOR_CHOICES = {"reference-24bit": 0.4, "adxl355-2g": 0.3, "lis3dh-2g": 0.1, "adxl345-2g": 0.1,
                  "mpu6050-2g": 0.1}
TRANSIENT_KINDS = ("footsteps", "door", "vehicle", "machinery", "knock", "spike")


def get_any_sensor(name: str) -> SensorModel:
    """A part from :data:`edge_runtime.sensors.SENSORS` or the 24-bit reference."""
    if name == REFERENCE_SENSOR.name:
        return REFERENCE_SENSOR
    from edge_runtime.sensors import get_sensor

    return get_sensor(name)


def draw_sensor(rng: np.random.Generator) -> SensorModel:
    """A MEMS part of :data:`edge_runtime.sensors.SENSORS`, or a strong-motion recorder.

    Archived strong-motion records come from instruments of every age: 12- to 24-bit,
    noise floors from 0.05 to 20 ug/sqrt(Hz) (older ones lie well above the NHNM).
    """
    from dataclasses import replace

    names = list(SENSOR_CHOICES)
    p = np.array(list(SENSOR_CHOICES.values()))
    sensor = get_any_sensor(names[int(rng.choice(len(names), p=p / p.sum()))])
    if sensor is REFERENCE_SENSOR:
        bits = int(rng.choice([16, 18, 24]))
        density = float(np.exp(rng.uniform(np.log(0.05), np.log(20.0))))
        sensor = replace(sensor, name=f"strong-motion-{bits}bit", bits=bits,
                         lsb_per_g=2.0 ** (bits - 1) / 2.0, noise_ug_rthz=density)
    return sensor


def sensor_noise(rng: np.random.Generator, sensor: SensorModel, shape, fs: float) -> np.ndarray:
    """Self-noise of ``sensor``, m/s^2: white at the datasheet density, and for half the
    draws with a 1/f^a rise below a corner of 0.2-3 Hz (flicker noise of MEMS and of old
    recorders, long-period noise of processed archives)."""
    white = sensor.self_noise(rng, shape, fs)
    if rng.uniform() >= 0.5:
        return white
    n = shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / fs)
    corner, alpha = rng.uniform(0.2, 3.0), rng.uniform(1.0, 2.0)
    shape_f = np.sqrt(1.0 + (corner / np.maximum(f, f[1] if n > 1 else 1.0)) ** alpha)
    shape_f[0] = 0.0
    return np.fft.irfft(np.fft.rfft(white, axis=-1) * shape_f, n, axis=-1)


# ------------------------------------------------------------------------------ ambient noise


@functools.lru_cache(maxsize=1)
def _peterson():
    from obspy.signal.spectral_estimation import get_nhnm, get_nlnm

    pl, dl = get_nlnm()
    ph, dh = get_nhnm()
    lo, hi = np.argsort(pl), np.argsort(ph)  # ObsPy lists them from long to short periods
    return np.log10(pl[lo]), dl[lo], np.log10(ph[hi]), dh[hi]


def noise_models_db(freqs_hz):
    """NLNM and NHNM (dB re 1 (m/s^2)^2/Hz) at ``freqs_hz``; clamped beyond their range."""
    lp_l, db_l, lp_h, db_h = _peterson()
    lp = np.log10(1.0 / np.maximum(np.asarray(freqs_hz, dtype=float), 1e-6))
    return np.interp(lp, lp_l, db_l), np.interp(lp, lp_h, db_h)


def ambient_psd_db(rng: np.random.Generator, freqs_hz, level: float | None = None):
    """A random site spectrum inside the Peterson band, dB re 1 (m/s^2)^2/Hz.

    ``level`` in [0, 1] places the spectrum between the NLNM (0) and the NHNM (1); a smooth
    random ripple (cultural peaks, site resonance) of up to +/-6 dB is added and the
    result is clipped to the band.
    """
    low, high = noise_models_db(freqs_hz)
    level = rng.beta(1.2, 1.2) if level is None else float(level)
    logf = np.log10(np.maximum(freqs_hz, 1e-3))
    ripple = np.zeros_like(logf)
    for _ in range(3):
        centre, width, gain = rng.uniform(-0.5, 1.4), rng.uniform(0.05, 0.3), rng.uniform(-6, 6)
        ripple += gain * np.exp(-0.5 * ((logf - centre) / width) ** 2)
    return np.clip(low + level * (high - low) + ripple, low, high)


def ambient_noise(rng: np.random.Generator, n: int, fs: float, level: float | None = None,
                  n_components: int = 3) -> np.ndarray:
    """Gaussian ground noise with a random PSD between NLNM and NHNM.

    Parameters
    ----------
    n : int
        Samples.
    fs : float
        Sampling rate in Hz.
    level : float, optional
        Position between NLNM (0) and NHNM (1), drawn when omitted; each component gets
        its own ripple and a level within +/-0.1 of it.

    Returns
    -------
    numpy.ndarray
        ``(n_components, n)`` acceleration in m/s^2.
    """
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    level = rng.beta(1.2, 1.2) if level is None else float(level)
    out = np.empty((n_components, n))
    for c in range(n_components):
        lv = float(np.clip(level + rng.uniform(-0.1, 0.1), 0.0, 1.0))
        psd = 10.0 ** (ambient_psd_db(rng, freqs, lv) / 10.0)
        psd[0] = 0.0
        # One-sided PSD P: E|X_k|^2 = P fs n / 2 for the rfft coefficients.
        amp = np.sqrt(psd * fs * n / 2.0)
        spec = amp * (rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)) / np.sqrt(2.0)
        if n % 2 == 0:
            spec[-1] = amp[-1] * rng.standard_normal()
        out[c] = np.fft.irfft(spec, n)
    return out


def modulate(rng: np.random.Generator, x: np.ndarray, fs: float, max_sigma: float = 0.7) -> np.ndarray:
    """Make stationary noise non-stationary: multiply by a smooth random envelope.

    Real ambient noise swells and fades within seconds (wind, traffic far away, people);
    a model that has only seen stationary noise takes any swell for an onset. The
    envelope is ``exp(sigma * g(t))`` with ``g`` a unit-variance Gaussian process of
    0.3-2 s correlation time and ``sigma`` up to ``max_sigma``.
    """
    n = x.shape[-1]
    corr_s = rng.uniform(0.3, 2.0)
    k = max(3, int(corr_s * fs))
    g = np.convolve(rng.standard_normal(n + 2 * k), np.hanning(k), mode="same")[k:k + n]
    g /= max(g.std(), 1e-12)
    return x * np.exp(rng.uniform(0.1, max_sigma) * g)[None]


def record_start(rng: np.random.Generator, data: np.ndarray, fs: float) -> np.ndarray:
    """The start of an archived, processed record inside the window: zeros, then a cosine
    taper over 0.3-4 s (baseline-corrected data, so the mean is removed first)."""
    n = data.shape[-1]
    x = data - data.mean(axis=-1, keepdims=True)
    start = int(rng.uniform(-0.5, 0.8) * n)
    width = max(2, int(rng.uniform(0.3, 4.0) * fs))
    t = np.arange(n) - start
    cosine = 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0, width) / width)
    ramp = np.where(t < 0, 0.0, np.where(t >= width, 1.0, cosine))
    return x * ramp[None]


# ------------------------------------------------------------------------------ the sensor


def gravity_and_drift(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Gravity seen by a sensor tilted up to 3 degrees, plus slow thermal/tilt drift, m/s^2."""
    tilt = np.radians(rng.uniform(0, 3.0))
    az = rng.uniform(0, 2 * np.pi)
    g = G_MPS2 * np.array([np.sin(tilt) * np.sin(az), np.sin(tilt) * np.cos(az), np.cos(tilt)])
    t = np.arange(n) / fs
    # Drift over a 2-60 s time scale: a low-order random polynomial of a few 0.1 mm/s^2.
    drift = np.zeros((3, n))
    scale = 10 ** rng.uniform(-5, -3)
    for c in range(3):
        period = rng.uniform(2.0, 60.0)
        drift[c] = scale * rng.uniform(-1, 1) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return g[:, None] + drift


def record_with_sensor(rng: np.random.Generator, ground: np.ndarray, fs: float, sensor: SensorModel,
                       gravity: bool = True, self_noise: bool = True) -> tuple[np.ndarray, int]:
    """Ground acceleration as ``sensor`` reports it: + self-noise, gravity, drift, then quantized.

    Returns
    -------
    data : numpy.ndarray
        ``(3, n)`` m/s^2 (the part's counts divided by its sensitivity).
    n_clipped : int
        Samples beyond the part's range.
    """
    x = ground + sensor_noise(rng, sensor, ground.shape, fs) if self_noise else np.array(ground, dtype=float)
    if gravity:
        x = x + gravity_and_drift(rng, ground.shape[-1], fs)
    counts, n_clipped = sensor.digitize(x)
    return counts / sensor.counts_per_mps2, n_clipped


# ------------------------------------------------------------------------------ transients


def _loguniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _ring(t, f_hz, tau_s):
    tp = np.clip(t, 0, None)
    return np.where(t >= 0, np.exp(-tp / tau_s) * np.sin(2 * np.pi * f_hz * tp), 0.0)


def footsteps(rng, n, fs, t_s):
    """A person walking past: impacts every 0.45-0.7 s, 8-25 Hz, mostly vertical."""
    t = np.arange(n) / fs
    out = np.zeros((3, n))
    amp = _loguniform(rng, 3e-4, 0.05)
    f, tau = rng.uniform(8, 25), rng.uniform(0.03, 0.1)
    step = rng.uniform(0.45, 0.7)
    width = rng.uniform(1.0, 4.0)
    pol = np.r_[rng.uniform(0.2, 0.7, 2), 1.0]
    for k in np.arange(-8, 9):
        tk = t_s + k * step + rng.normal(0, 0.02)
        a = amp * np.exp(-0.5 * ((tk - t_s) / width) ** 2) * rng.uniform(0.6, 1.0)
        out += a * (pol * rng.uniform(0.7, 1.0, 3))[:, None] * _ring(t - tk, f * rng.uniform(0.9, 1.1), tau)
    return out


def door(rng, n, fs, t_s):
    """A door slamming: broadband impact, then the building rings at 3-12 Hz."""
    t = np.arange(n) / fs
    amp = _loguniform(rng, 1e-3, 0.2)
    pol = rng.uniform(0.2, 1.0, 3)
    x = _ring(t - t_s, rng.uniform(3, 12), rng.uniform(0.15, 0.8))
    x += 0.7 * _ring(t - t_s, rng.uniform(15, 40), rng.uniform(0.01, 0.05))
    return amp * pol[:, None] * x


def vehicle(rng, n, fs, t_s):
    """A vehicle passing: emergent 6-35 Hz energy with an engine tone and a Doppler sweep."""
    from scipy import signal

    t = np.arange(n) / fs
    width = rng.uniform(0.7, 4.0)
    env = np.exp(-0.5 * ((t - t_s) / width) ** 2)
    amp = _loguniform(rng, 3e-4, 0.08)
    hi = min(rng.uniform(20.0, 35.0), 0.45 * fs)
    sos = signal.butter(4, [rng.uniform(4.0, 10.0), hi], btype="bandpass", fs=fs, output="sos")
    carrier = signal.sosfilt(sos, rng.standard_normal((3, n + 200)), axis=-1)[:, 200:]
    carrier /= max(np.abs(carrier).max(), 1e-12)
    f0 = rng.uniform(8.0, 30.0) * (1 + 0.05 * np.tanh((t - t_s) / width))
    tone = np.sin(2 * np.pi * np.cumsum(f0) / fs + rng.uniform(0, 2 * np.pi, (3, 1)))
    mix = rng.uniform(0.0, 0.8)
    pol = np.r_[rng.uniform(0.3, 1.0, 2), 1.0]
    return amp * pol[:, None] * env * ((1 - mix) * carrier + mix * tone)


def machinery(rng, n, fs, t_s):
    """Machinery hum: a 5-30 Hz fundamental and harmonics, switched on at ``t_s`` or running."""
    t = np.arange(n) / fs
    amp = _loguniform(rng, 1e-4, 0.03)
    f0 = rng.uniform(5.0, 30.0)
    x = np.zeros((3, n))
    for h in range(1, 4):
        if h * f0 < 0.45 * fs:
            phase = rng.uniform(0, 2 * np.pi, (3, 1))
            x += rng.uniform(0.2, 1.0, (3, 1)) * np.sin(2 * np.pi * h * f0 * t + phase)
    x *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t)
    if rng.uniform() < 0.5:  # switch-on: spin-up over 0.2-2 s
        ramp = np.clip((t - t_s) / rng.uniform(0.2, 2.0), 0, 1)
        x *= ramp
    return amp * x


def knock(rng, n, fs, t_s):
    """A knock on the enclosure: a short impact ringing at 15-60 Hz, often large."""
    t = np.arange(n) / fs
    amp = _loguniform(rng, 3e-3, 2.0)
    x = np.zeros((3, n))
    for _ in range(int(rng.integers(1, 4))):
        tk = t_s + rng.uniform(0, 0.6)
        f = min(rng.uniform(15, 60), 0.45 * fs)
        x += rng.uniform(0.2, 1.0, (3, 1)) * _ring(t - tk, f, rng.uniform(0.01, 0.06))
    return amp * x


def spike(rng, n, fs, t_s):
    """Electrical glitches (1-3 samples) or a step (offset jump) on one or all channels."""
    x = np.zeros((3, n))
    i = int(np.clip(round(t_s * fs), 0, n - 1))
    amp = _loguniform(rng, 1e-3, 1.0) * rng.choice([-1, 1])
    channels = [int(rng.integers(0, 3))] if rng.uniform() < 0.6 else [0, 1, 2]
    if rng.uniform() < 0.75:
        for _ in range(int(rng.integers(1, 4))):
            j = int(np.clip(i + rng.integers(-int(0.5 * fs), int(0.5 * fs) + 1), 0, n - 1))
            w = int(rng.integers(1, 4))
            for c in channels:
                x[c, j:j + w] += amp * rng.uniform(0.3, 1.0)
    else:
        for c in channels:
            x[c, i:] += 0.1 * amp
    return x


TRANSIENTS = {"footsteps": footsteps, "door": door, "vehicle": vehicle, "machinery": machinery,
              "knock": knock, "spike": spike}


def transient(rng: np.random.Generator, kind: str, n: int, fs: float, t_s: float) -> np.ndarray:
    """One non-seismic transient of ``kind`` (:data:`TRANSIENT_KINDS`) centred near ``t_s``, m/s^2."""
    if kind not in TRANSIENTS:
        raise ValueError(f"unknown transient {kind!r}; known: {', '.join(TRANSIENT_KINDS)}")
    return TRANSIENTS[kind](rng, n, fs, t_s)
