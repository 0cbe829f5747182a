"""Record-level examples of earthquakes and active sources for ``SpectrogramCNN``.

A record is what the node classifies once it has declared an event: ``record_s`` of
3-component acceleration (m/s^2, components E, N, Z) with the onset ``pre_s`` after the
first sample (see :class:`edge_runtime.spectrogram.SpectrogramConfig`). Labels are the
two classes of :data:`host_training.models.SOURCE_CLASSES`:

``earthquake``
    A local earthquake from :func:`host_training.synthetic.parametric.earthquake`: P on the
    vertical, S two to five times larger on the horizontals 1.5-10 s later, a long coda;
    a share of them (shallow events) with a weak, late surface-wave train.
``active_source``
    * ``explosion``: a shallow explosive source (quarry blast, construction or
      exploration shot) at 0.3-25 km. Its moment tensor is isotropic, so it radiates P
      and no S: an impulsive, compressional onset (first motion up on Z, away from the
      source on the radial), little S (converted energy, 3-30 % of P), and a dominant,
      dispersed fundamental-mode Rayleigh wave (Rg) on Z and the radial, none on the
      transverse, arriving at 1.2-3 km/s. Half of them ripple-fired (5-30 delays of
      17-60 ms), which combs their spectrum.
    * ``hammer``: sledgehammer shots on a plate at 2-150 m: a very impulsive,
      10-45 Hz onset, ground roll at 150-500 m/s, gone within a second; usually
      repeated (1-10 shots, 2-8 s apart) for stacking.
    * ``vibroseis``: linear sweeps (from 2-10 Hz to 35-45 Hz over 6-16 s, 1-3 sweeps,
      3-6 s of listening between) at 50 m - 2 km, mostly vertical and radial.

Amplitudes of both classes overlap (peak 0.02-1 m/s^2 for all but vibroseis), so the
class is in the spectrum and its evolution, not in the level. Backgrounds are the
generator's MEMS self-noise, drift and gravity, with vehicle traffic in a fifth of the
records of either class.

The synthetic building blocks come from :mod:`host_training.synthetic.parametric`; each source
kind is one function ``f(rng, n, fs, onset_s) -> (data, params)`` in
:data:`SOURCE_GENERATORS`, so a physics-based generator (Green's functions,
:mod:`host_training.synthetic.greens`) replaces one entry without touching the rest.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.sensors import G_MPS2

from . import parametric as synth

ACTIVE_KINDS = ("explosion", "hammer", "vibroseis")
# Share of each active-source kind in the active_source class.
ACTIVE_MIX = {"explosion": 0.5, "hammer": 0.25, "vibroseis": 0.25}
P_KMPS, S_KMPS = 6.0, 3.5


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(np.abs(x).max(), 1e-30)


def _wavelet_train(rng, n, fs, t0_s, band, rise_s, decay_s, n_components=1):
    """Band-limited, impulsive burst starting at ``t0_s``: ``(n_components, n)``, peak 1."""
    t = np.arange(n) / fs - t0_s
    burst = synth._band_noise(rng, n, fs, *band, n_components=n_components)
    return _unit(synth._envelope(t, rise_s, decay_s) * burst)


def _rayleigh(rng, n, fs, t0_s, f_lo, f_hi, duration_s):
    """Dispersed Rayleigh wave from ``t0_s``: ``(vertical, radial)``, peak 1.

    Normal dispersion: long periods travel faster, so the instantaneous frequency rises
    from ``f_lo`` to ``f_hi`` over ``duration_s``; the radial leads the vertical by 90
    degrees (retrograde ellipse), with a horizontal-to-vertical ratio of 0.6-0.9.
    """
    t = np.arange(n) / fs - t0_s
    inside = (t >= 0) & (t <= duration_s)
    tt = np.clip(t, 0, duration_s)
    freq = f_lo + (f_hi - f_lo) * tt / duration_s
    phase = 2 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * np.pi)
    env = np.where(inside, np.clip(np.sin(np.pi * tt / duration_s), 0.0, None) ** 0.7, 0.0)
    return env * np.sin(phase), rng.uniform(0.6, 0.9) * env * np.cos(phase)


def _enz(vertical, radial, transverse, baz_rad):
    """Rotate (Z, R, T) traces to (E, N, Z) for a back-azimuth in radians."""
    az = baz_rad + np.pi  # source-to-station azimuth
    east = radial * np.sin(az) + transverse * np.cos(az)
    north = radial * np.cos(az) - transverse * np.sin(az)
    return np.stack([east, north, vertical])


def _ripple(rng, data, fs):
    """Ripple firing: the sum of delayed copies of the single-shot record (in place)."""
    n_holes = int(rng.integers(5, 31))
    delay = rng.uniform(0.017, 0.060)
    shifts = np.rint(np.arange(n_holes) * delay * fs * rng.uniform(0.9, 1.1, n_holes)).astype(int)
    shifts[0] = 0
    single = data.copy()
    data[:] = 0.0
    for s, w in zip(shifts, rng.uniform(0.7, 1.0, n_holes), strict=True):
        data[:, s:] += w * single[:, :data.shape[1] - s]
    return dict(ripple_holes=n_holes, ripple_delay_s=round(delay, 4))


def explosion(rng, n, fs, onset_s):
    """Shallow explosive source at 0.3-25 km (isotropic moment tensor); see module doc."""
    distance_km = synth._loguniform(rng, 0.3, 25.0)
    vr = rng.uniform(1.2, 3.0)
    s_lag = distance_km * (1 / S_KMPS - 1 / P_KMPS)
    r_lag = distance_km * (1 / vr - 1 / P_KMPS)
    baz = rng.uniform(0, 2 * np.pi)
    # P: compressional, impulsive, high frequencies survive at short range.
    p_band = (rng.uniform(2.0, 6.0), rng.uniform(15.0, 30.0))
    # P: a compressional pulse (first motion up on Z, away from the source on R), then a
    # band-limited P coda; high frequencies survive at short range.
    width = 1.0 / (np.pi * rng.uniform(6.0, 15.0))
    t = np.arange(n) / fs - onset_s - 1.5 * width
    pulse = np.exp(-(t / width) ** 2)
    coda = _wavelet_train(rng, n, fs, onset_s + 2.5 * width, p_band, rng.uniform(0.003, 0.03),
                          rng.uniform(0.3, 1.5))[0]
    p = _unit(pulse + rng.uniform(0.3, 0.7) * coda)
    incidence = rng.uniform(0.15, 0.5)  # radial / vertical of the P onset
    # Little S: converted energy only, any polarization.
    s = _wavelet_train(rng, n, fs, onset_s + s_lag, (1.5, rng.uniform(6.0, 12.0)), 0.1,
                       rng.uniform(0.5, 2.0), n_components=3) * rng.uniform(0.03, 0.3)
    # Rg: dominant, low frequency, longer with distance.
    f_lo = rng.uniform(0.5, 2.0) + 2.0 / (1.0 + distance_km)
    f_hi = f_lo + rng.uniform(1.0, 6.0)
    rg_z, rg_r = _rayleigh(rng, n, fs, onset_s + r_lag, f_lo, f_hi,
                           rng.uniform(1.5, 3.0) + 0.4 * distance_km)
    rg_amp = rng.uniform(1.0, 4.0)
    vertical = p + rg_amp * rg_z + s[2]
    radial = incidence * p + rg_amp * rg_r + s[0]
    transverse = s[1] + 0.03 * rg_amp * rng.standard_normal() * rg_r  # scattering only
    data = _enz(vertical, radial, transverse, baz)
    params = dict(distance_km=round(distance_km, 3), rg_velocity_kmps=round(vr, 3),
                  rg_band_hz=(round(f_lo, 2), round(f_hi, 2)), rg_to_p=round(rg_amp, 3))
    if rng.uniform() < 0.5:
        params.update(_ripple(rng, data, fs))
    return _unit(data), params


def hammer(rng, n, fs, onset_s):
    """Sledgehammer shots at 2-150 m; see module doc."""
    distance_m = synth._loguniform(rng, 2.0, 150.0)
    n_shots = int(rng.integers(1, 11))
    interval = rng.uniform(2.0, 8.0)
    baz = rng.uniform(0, 2 * np.pi)
    vertical, radial, transverse = np.zeros(n), np.zeros(n), np.zeros(n)
    roll_lag = distance_m * (1 / rng.uniform(150.0, 500.0) - 1 / rng.uniform(800.0, 2000.0))
    for k in range(n_shots):
        t0 = onset_s + k * interval * rng.uniform(0.9, 1.1)
        if t0 > n / fs - 0.5:
            break
        strength = rng.uniform(0.5, 1.0)
        p = _wavelet_train(rng, n, fs, t0, (rng.uniform(8.0, 15.0), rng.uniform(35.0, 45.0)),
                           rng.uniform(0.002, 0.01), rng.uniform(0.03, 0.15))[0]
        f0 = rng.uniform(8.0, 25.0)
        roll_z, roll_r = _rayleigh(rng, n, fs, t0 + roll_lag, f0, f0 + rng.uniform(2.0, 10.0),
                                   rng.uniform(0.2, 0.8))
        roll_amp = rng.uniform(1.0, 3.0)
        vertical += strength * (p + roll_amp * roll_z)
        radial += strength * (0.4 * p + roll_amp * roll_r)
        transverse += strength * 0.1 * p * rng.standard_normal()
    data = _enz(vertical, radial, transverse, baz)
    return _unit(data), dict(distance_km=round(distance_m / 1000, 4), n_shots=n_shots,
                             shot_interval_s=round(interval, 2))


def vibroseis(rng, n, fs, onset_s):
    """Linear vibroseis sweeps at 50 m - 2 km; see module doc."""
    distance_km = synth._loguniform(rng, 0.05, 2.0)
    f0, f1 = rng.uniform(2.0, 10.0), rng.uniform(35.0, min(45.0, 0.45 * fs))
    sweep_s = rng.uniform(6.0, 16.0)
    n_sweeps = int(rng.integers(1, 4))
    listen_s = rng.uniform(3.0, 6.0)
    baz = rng.uniform(0, 2 * np.pi)
    t_all = np.arange(n) / fs
    vertical, radial = np.zeros(n), np.zeros(n)
    # Higher frequencies are attenuated with distance (Q ~ 20-50 near the surface).
    q = rng.uniform(20.0, 50.0)
    travel_s = distance_km / rng.uniform(0.3, 2.0)
    for k in range(n_sweeps):
        t = t_all - (onset_s + k * (sweep_s + listen_s))
        inside = (t >= 0) & (t <= sweep_s)
        tt = np.clip(t, 0, sweep_s)
        freq = f0 + (f1 - f0) * tt / sweep_s
        taper = np.clip(np.minimum(tt, sweep_s - tt) / 0.3, 0, 1)
        amp = np.exp(-np.pi * freq * travel_s / q)
        phase = 2 * np.pi * (f0 * tt + 0.5 * (f1 - f0) / sweep_s * tt**2)
        wave = np.where(inside, taper * amp * np.sin(phase), 0.0)
        vertical += wave
        radial += rng.uniform(0.2, 0.7) * np.roll(wave, int(rng.integers(1, 20)))
    transverse = 0.05 * radial * rng.standard_normal()
    data = _enz(vertical, radial, transverse, baz)
    return _unit(data), dict(distance_km=round(distance_km, 4), sweep_hz=(round(f0, 1), round(f1, 1)),
                             sweep_s=round(sweep_s, 2), n_sweeps=n_sweeps)


def earthquake(rng, n, fs, onset_s):
    """Local earthquake with its P at ``onset_s``; a third with a late surface-wave train.

    Returned as the signal alone (the background is added by :func:`source_record`).
    """
    rec = synth.earthquake(rng, duration_s=n / fs, fs=fs, p_s=onset_s, pga_mps2=1.0, sigma_mps2=0.0)
    data = rec.data.copy()
    data[2] -= G_MPS2
    data -= data[:, : max(1, int(onset_s * fs) - 1)].mean(axis=-1, keepdims=True)  # remove drift
    params = dict(sp_s=round(rec.params["sp_s"], 3), backazimuth_deg=round(rec.params["backazimuth_deg"], 1))
    if rng.uniform() < 0.33:
        distance_km = rec.params["sp_s"] / (1 / S_KMPS - 1 / P_KMPS)
        rz, rr = _rayleigh(rng, n, fs, onset_s + distance_km * (1 / 3.0 - 1 / P_KMPS),
                           rng.uniform(0.3, 0.8), rng.uniform(1.0, 3.0), rng.uniform(5.0, 15.0))
        amp = rng.uniform(0.05, 0.3)
        baz = np.radians(rec.params["backazimuth_deg"])
        data += amp * _enz(rz, rr, np.zeros(n), baz)
        params["surface_wave_to_s"] = round(amp, 3)
    return _unit(data), params


SOURCE_GENERATORS = {"earthquake": earthquake, "explosion": explosion, "hammer": hammer,
                     "vibroseis": vibroseis}


# ---------------------------------------------------------------- Green's function sources
# Earthquakes (double couples, 2-18 km deep, 1-200 km) and shallow explosions (isotropic
# moment tensor, 20-145 m deep, 0.5-30 km) from wave propagation in random layered
# crusts (host_training.synthetic.greens, PyGRT), continued above the banks' 20 Hz by
# broadband(). Hammer shots and vibroseis sweeps stay parametric: their 10-45 Hz content
# is mostly above the banks' band.

def shallow_bank_config():
    """Bank of shallow sources for explosions: 20-150 m deep, 0.5-30 km away.

    Quarry blasts, construction and exploration shots are fired in holes of a few to tens
    of metres; at such depths the fundamental-mode Rayleigh wave (Rg) is excited up to
    several Hz, which a source a few hundred metres deep no longer does. Eight random
    crusts, two depths each (a 45 CPU-second PyGRT run per pair on one core).
    """
    from .greens import BankConfig

    return BankConfig(n_models=8, depths_per_model=2, depth_range_km=(0.02, 0.15),
                      distances_km=(0.5, 0.8, 1.3, 2.0, 3.2, 5.0, 8.0, 12.5, 20.0, 30.0), seed=17)


def legacy_shallow_bank_config():
    """The first explosion bank (3 crusts, 200-400 m deep): kept to read records made with it."""
    from .greens import BankConfig

    return BankConfig(n_models=3, depths_per_model=1, depth_range_km=(0.05, 0.4),
                      distances_km=(0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 25.0), seed=13)


def _place(data, n, fs, t_first_s, onset_s):
    """Shift ``data`` so its first arrival ``t_first_s`` lands at ``onset_s`` in ``n`` samples;
    the end of the bank's trace is tapered (1 s) rather than cut."""
    taper = np.ones(data.shape[-1])
    m = min(int(fs), data.shape[-1])
    taper[-m:] = 0.5 * (1 + np.cos(np.pi * np.arange(m) / m))
    data = data * taper
    out = np.zeros((3, n))
    shift = int(round((onset_s - t_first_s) * fs))
    src0, dst0 = max(0, -shift), max(0, shift)
    k = min(data.shape[-1] - src0, n - dst0)
    if k > 0:
        out[:, dst0:dst0 + k] = data[:, src0:src0 + k]
    return out


def _lowpass_gain(f, f_max_hz):
    """1 below 0.75 ``f_max_hz``, a cosine roll-off to 0 at ``f_max_hz``."""
    lo = 0.75 * f_max_hz
    return np.where(f <= lo, 1.0, 0.5 * (1 + np.cos(np.pi * np.clip((f - lo) / (f_max_hz - lo), 0, 1))))


def _band_limit(data, fs, f_max_hz):
    """Cosine roll-off from 0.75 ``f_max_hz`` to ``f_max_hz``, nothing above.

    A bank's content ends at its Nyquist; the Nyquist bin copied into a finer grid is a
    tone through the whole trace, and a brick-wall cut spreads the energy next to it over
    the whole record (sinc tails), so the edge is smooth.
    """
    n = data.shape[-1]
    spec = np.fft.rfft(data, 2 * n, axis=-1)  # padded: the filter's tails must not wrap around
    f = np.fft.rfftfreq(2 * n, 1.0 / fs)
    return np.fft.irfft(spec * _lowpass_gain(f, f_max_hz), 2 * n, axis=-1)[..., :n]


def _smooth_envelope(x, fs, window_s=0.25):
    """Envelope of each row: |analytic signal|, smoothed over ``window_s`` (moving RMS)."""
    n = x.shape[-1]
    spec = np.fft.fft(x, axis=-1)
    h = np.zeros(n)
    h[0] = 1.0
    h[1:(n + 1) // 2] = 2.0
    if n % 2 == 0:
        h[n // 2] = 1.0
    power = np.abs(np.fft.ifft(spec * h, axis=-1)) ** 2
    m = max(1, int(window_s * fs))
    kernel = np.ones(m) / m
    return np.sqrt(np.apply_along_axis(np.convolve, -1, power, kernel, mode="same"))


def broadband(rng, data, fs, f_max_hz, corner_hz, kappa_s, q_path=300.0, travel_s=0.0):
    """Continue band-limited ground acceleration above the bank's ``f_max_hz`` (hybrid broadband).

    The Green's functions end at their Nyquist (20 Hz), but the ground does not: a near
    earthquake or blast shakes up to kappa's limit (tens of Hz). As in hybrid broadband
    simulation (deterministic low frequencies, stochastic high frequencies), the high band
    is random-phase noise under the envelope of the record's own top band
    (0.35-0.75 ``f_max_hz``), so it follows P, S, Rg and coda in time, with the spectral
    shape of the source (``f^2 / (1 + (f/fc)^2)`` in acceleration), kappa
    (``1 / (1 + i pi kappa f)``) and path attenuation ``exp(-pi f travel_s / q_path)``
    relative to that band, level-matched there and cross-faded where the bank's band
    rolls off.

    Parameters
    ----------
    data : numpy.ndarray
        ``(3, n)`` acceleration (m/s^2) band-limited by :func:`_band_limit` at ``f_max_hz``.
    fs : float
        Sampling rate in Hz.
    corner_hz, kappa_s : float
        Source corner frequency (Hz) and site kappa (s).
    q_path, travel_s : float
        Path quality factor and travel time (s) of the dominant waves.

    Returns
    -------
    numpy.ndarray
        ``(3, n)`` acceleration with content up to the Nyquist of ``fs``.
    """
    n = data.shape[-1]
    if f_max_hz >= 0.5 * fs:
        return data
    nfft = 2 * n
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    lo, hi = 0.35 * f_max_hz, 0.75 * f_max_hz
    ref = (f >= lo) & (f <= hi)
    # A Hann-shaped band: a box would ring (sinc tails) seconds ahead of the first arrival.
    band = np.where(ref, np.sin(np.pi * np.clip((f - lo) / (hi - lo), 0, 1)) ** 2, 0.0)
    x_spec = np.fft.rfft(data, nfft, axis=-1)
    env = _smooth_envelope(np.fft.irfft(x_spec * band, nfft, axis=-1)[:, :n], fs)
    noise = env * rng.standard_normal(data.shape)
    n_spec = np.fft.rfft(noise, nfft, axis=-1)
    shape = f**2 / (1.0 + (f / corner_hz) ** 2) / np.abs(1.0 + 1j * np.pi * kappa_s * f)
    shape = shape * np.exp(-np.pi * f * travel_s / q_path)
    level = np.sqrt(np.mean(np.abs(x_spec[:, ref]) ** 2, axis=-1)
                    / np.maximum(np.mean(np.abs(n_spec[:, ref] * shape[ref]) ** 2, axis=-1), 1e-300))
    high = (1.0 - _lowpass_gain(f, f_max_hz)) * shape
    out = np.fft.irfft(x_spec + level[:, None] * n_spec * high, nfft, axis=-1)[:, :n]
    return out


def site_response(rng, f):
    """Horizontal and vertical transfer functions of a random soil site (damped resonance).

    The same site model as the earthquakes'
    (:func:`host_training.synthetic.physics.earthquake_ground_motion`): a resonance at
    0.8-12 Hz with a horizontal gain of 1-5 (its square root on the vertical), so that the
    site term says nothing about the source.
    """
    f0 = float(np.exp(rng.uniform(np.log(0.8), np.log(12.0))))
    gain = float(np.exp(rng.uniform(0.0, np.log(5.0))))
    q = rng.uniform(1.5, 5.0)
    x = f / f0
    resonance = (1j * x / q) / (1.0 - x**2 + 1j * x / q)
    return (1.0 + (gain - 1.0) * resonance, 1.0 + (np.sqrt(gain) - 1.0) * resonance,
            dict(site_f0_hz=round(f0, 2), site_gain=round(gain, 2)))


def _scatter(rng, x, fs, tau_s):
    """``x`` convolved with a causal random scattering kernel (white noise under exp(-t/tau_s)),
    of unit energy: the same arrivals, their phase scrambled over ~``tau_s``."""
    m = max(2, int(4 * tau_s * fs))
    kernel = rng.standard_normal(m) * np.exp(-np.arange(m) / (tau_s * fs))
    kernel /= np.sqrt(np.sum(kernel**2))
    return np.convolve(x, kernel)[: x.shape[-1]]


def earthquake_greens(rng, n, fs, onset_s, bank):
    """An earthquake (M 2-5, Brune source, site and kappa) from the Green's function bank,
    continued above the bank's band by :func:`broadband`."""
    from .physics import earthquake_ground_motion

    data, t_p, t_s, p = earthquake_ground_motion(rng, bank, fs, magnitude=rng.uniform(2.0, 5.0))
    f_max = 0.95 * bank.sampling_rate_hz / 2
    data = _band_limit(data, fs, f_max)
    q_path = float(np.exp(rng.uniform(np.log(150.0), np.log(600.0))))
    data = broadband(rng, data, fs, f_max, p["corner_hz"], p["kappa_s"], q_path, t_s)
    params = dict(sp_s=round(t_s - t_p, 3), distance_km=round(p["distance_km"], 2),
                  depth_km=round(p["depth_km"], 2), magnitude=round(p["magnitude"], 2),
                  corner_hz=round(p["corner_hz"], 2), generator="greens")
    return _unit(_place(data, n, fs, t_p, onset_s)), params


def explosion_greens(rng, n, fs, onset_s, bank):
    """A shallow explosion: the bank's isotropic (EX) Green's functions at a random crust,
    depth and distance, a site, kappa, scattering into the transverse, and the high band.

    Source: a step in moment with a corner of 2-20 Hz (chemical shots of tens of kg to
    tens of tonnes), kappa 0.005-0.06 s as the earthquakes'; acceleration is the second
    time derivative of displacement for that moment history, computed in the frequency
    domain as in :func:`host_training.synthetic.physics.earthquake_ground_motion`. An isotropic
    source in a layered earth radiates no SH, but real shots show transverse motion from
    scattering and near-source cracking: here the radial convolved with a random
    scattering kernel, 10-50 % of its amplitude. Half ripple-fired.
    """
    from .greens import zrt_to_enz

    i, k = int(rng.integers(0, bank.shape[0])), int(rng.integers(0, bank.shape[2]))
    j = int(rng.integers(0, bank.shape[1]))
    g = np.asarray(bank.gf[i, j, k], dtype=np.float64)
    dt = bank.config.dt_s
    t_ratio = rng.uniform(0.1, 0.5)
    transverse = t_ratio * _scatter(rng, g[1], 1.0 / dt, rng.uniform(0.2, 1.5))
    zrt = np.stack([g[0], g[1], transverse])  # EXZ, EXR, scattered
    azimuth = rng.uniform(0, 360)
    enz = zrt_to_enz(zrt, azimuth)
    nt = enz.shape[-1]
    nfft = 2 * nt
    f = np.fft.rfftfreq(nfft, dt)
    fc = float(np.exp(rng.uniform(np.log(2.0), np.log(20.0))))
    kappa_s = float(np.exp(rng.uniform(np.log(0.005), np.log(0.06))))
    w = 2j * np.pi * f
    source = w / (1.0 + 1j * f / fc) ** 2  # a = d/dt (G * moment rate), G for a delta moment history
    site_h, site_v, site = site_response(rng, f)
    spec = np.fft.rfft(enz, nfft, axis=-1) * (source / (1.0 + 1j * f * np.pi * kappa_s))[None]
    spec[:2] *= site_h
    spec[2] *= site_v
    n_out = int(round(nfft * dt * fs))
    full = np.zeros((3, n_out // 2 + 1), dtype=complex)
    m = min(full.shape[-1], spec.shape[-1])
    full[:, :m] = spec[:, :m]
    full[:, f.size - 1:] = 0.0  # not the bank's Nyquist bin (a tone through the whole trace)
    data = np.fft.irfft(full, n_out, axis=-1)[:, : int(round(nt * dt * fs))]
    f_max = 0.95 / (2 * dt)
    data = _band_limit(data, fs, f_max)
    distance_km = float(bank.distances_km[k])
    q_path = float(np.exp(rng.uniform(np.log(30.0), np.log(150.0))))  # Rg lives in the weak top layer
    data = broadband(rng, data, fs, f_max, fc, kappa_s, q_path, distance_km / 2.0)
    data = _place(data, n, fs, float(bank.t_p[i, j, k]), onset_s)
    params = dict(distance_km=round(distance_km, 2), depth_km=round(float(bank.depths_km[i, j]), 3),
                  corner_hz=round(fc, 2), kappa_s=round(kappa_s, 4), transverse_ratio=round(t_ratio, 3),
                  **site, generator="greens")
    if rng.uniform() < 0.5:
        params.update(_ripple(rng, data, fs))
    return _unit(data), params


def greens_generators(cache_dir=None, progress: bool = False, jobs: int = 1) -> dict:
    """:data:`SOURCE_GENERATORS` with earthquakes and explosions from Green's function banks.

    The banks are computed once (PyGRT; the explosions' :func:`shallow_bank_config` takes
    about 12 CPU-minutes, the earthquakes' about 45) and cached
    (:func:`host_training.synthetic.greens.build_bank`); ``jobs`` PyGRT processes at a time.
    """
    from functools import partial

    from .greens import BankConfig, build_bank

    quakes = build_bank(BankConfig(), cache_dir=cache_dir, progress=progress, jobs=jobs)
    shallow = build_bank(shallow_bank_config(), cache_dir=cache_dir, progress=progress, jobs=jobs)
    return {**SOURCE_GENERATORS, "earthquake": partial(earthquake_greens, bank=quakes),
            "explosion": partial(explosion_greens, bank=shallow)}


def _either(rng, n, fs, onset_s, first, second, first_fraction):
    return (first if rng.uniform() < first_fraction else second)(rng, n, fs, onset_s)


def mixed_generators(greens: dict, greens_fraction: float = 0.5) -> dict:
    """Earthquakes and explosions from ``greens`` (:func:`greens_generators`) for
    ``greens_fraction`` of the records, parametric for the rest; hammer and vibroseis as
    they are. Training on both keeps a model right on either kind of record."""
    from functools import partial

    out = dict(greens)
    for kind in ("earthquake", "explosion"):
        out[kind] = partial(_either, first=greens[kind], second=SOURCE_GENERATORS[kind],
                            first_fraction=greens_fraction)
    return out


PGA_RANGE_MPS2 = {"earthquake": (0.03, 1.0), "explosion": (0.02, 1.0), "hammer": (0.02, 1.0),
                  "vibroseis": (0.01, 0.3)}


def source_record(rng, kind: str, record_s: float = 60.0, fs: float = 100.0, onset_s: float = 15.0,
                  pga_mps2: float | None = None, traffic_prob: float = 0.2, generators=None):
    """One record of a source kind on a MEMS background.

    Parameters
    ----------
    kind : str
        ``earthquake`` or one of :data:`ACTIVE_KINDS`.
    record_s : float
        Record length in s.
    fs : float
        Sampling rate in Hz.
    onset_s : float
        First arrival in s after the first sample.
    pga_mps2 : float, optional
        Peak acceleration of the signal in m/s^2; log-uniform in
        :data:`PGA_RANGE_MPS2` when omitted.
    traffic_prob : float
        Probability of vehicle passages in the background.
    generators : dict, optional
        Replaces :data:`SOURCE_GENERATORS` (a physics-based generator, a test double).

    Returns
    -------
    data : numpy.ndarray
        ``(3, n)`` acceleration in m/s^2 (E, N, Z), gravity on Z.
    params : dict
        What was drawn (provenance), including ``pga_mps2`` and ``noise_rms_mps2``.
    """
    generators = generators or SOURCE_GENERATORS
    if kind not in generators:
        raise ValueError(f"unknown source kind {kind!r}; known: {sorted(generators)}")
    n = int(round(record_s * fs))
    signal_unit, params = generators[kind](rng, n, fs, onset_s)
    pga = synth._loguniform(rng, *PGA_RANGE_MPS2.get(kind, (0.02, 1.0))) if pga_mps2 is None else pga_mps2
    data, sigma = synth.background(rng, n, fs)
    data += pga * signal_unit
    if rng.uniform() < traffic_prob:
        params["traffic_passages"] = len(synth.add_traffic(rng, data, fs, int(rng.integers(1, 3))))
    params.update(pga_mps2=round(pga, 6), noise_rms_mps2=round(sigma, 6))
    return data, params


def source_dataset(n_records: int = 400, seed: int = 0, fs: float = 100.0, config=None,
                   onset_jitter_s: float = 2.0, active_fraction: float = 0.5, generators=None,
                   progress: bool = False):
    """Labelled earthquake / active-source records, split by record.

    Parameters
    ----------
    n_records : int
        Records in all; ``active_fraction`` of them active sources, mixed as
        :data:`ACTIVE_MIX`.
    seed : int
        Seed of everything random here.
    fs : float
        Sampling rate in Hz.
    config : edge_runtime.spectrogram.SpectrogramConfig, optional
        Gives ``record_s`` and ``pre_s``; the default config when omitted.
    onset_jitter_s : float
        The onset lies ``pre_s`` +/- this after the first sample, as a node's trigger
        does not fall exactly on the first arrival.
    generators : dict, optional
        Replaces :data:`SOURCE_GENERATORS`.

    Returns
    -------
    host_training.datasets.record_dataset.RecordDataset
    """
    from tqdm import tqdm

    from edge_runtime.spectrogram import SpectrogramConfig

    from ..datasets.record_dataset import RecordDataset
    from ..datasets.window_dataset import assign_splits

    if n_records < 2:
        raise ValueError(f"n_records={n_records}: need at least 2 (one per class)")
    config = config or SpectrogramConfig()
    rng = np.random.default_rng(seed)
    n_active = int(round(active_fraction * n_records))
    kinds = ["earthquake"] * (n_records - n_active) + list(
        rng.choice(ACTIVE_KINDS, size=n_active, p=[ACTIVE_MIX[k] for k in ACTIVE_KINDS]))
    kinds = [str(k) for k in rng.permutation(kinds)]
    # Stratified split: each class is split 70/15/15 on its own.
    splits = [None] * n_records
    for label_kinds in (("earthquake",), ACTIVE_KINDS):
        idx = [i for i, k in enumerate(kinds) if k in label_kinds]
        for i, s in zip(idx, assign_splits(rng, len(idx)), strict=True):
            splits[i] = s
    records, rows = [], []
    for i in tqdm(range(n_records), desc="source records", disable=not progress):
        kind = kinds[i]
        onset = config.pre_s + rng.uniform(-onset_jitter_s, onset_jitter_s)
        data, params = source_record(rng, kind, config.record_s, fs, onset, generators=generators)
        records.append(data.astype(np.float32))
        rows.append(dict(label="earthquake" if kind == "earthquake" else "active_source",
                         split=splits[i], source=kind, source_id=f"{kind}{i:05d}",
                         station_code="SYNTH", trace_p_arrival_sample=int(round(onset * fs)),
                         trace_s_arrival_sample=(int(round((onset + params["sp_s"]) * fs))
                                                 if "sp_s" in params else None),
                         pick_source="synthetic onset",
                         **{k: (v if not isinstance(v, tuple) else "/".join(map(str, v)))
                            for k, v in params.items()}))
    return RecordDataset(np.stack(records).astype(np.float64), fs, rows, spectrogram=config)
