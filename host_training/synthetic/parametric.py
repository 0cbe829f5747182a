"""Seeded synthetic 3-component MEMS acceleration records.

Good enough to exercise the whole chain and for a model trained on it to behave
sensibly; not a substitute for STEAD or local records. Every function takes a
``numpy.random.Generator``; nothing reads global random state.

Physical picture (all amplitudes in m/s^2, components ordered E, N, Z):

* background: MEMS self-noise (white, 0.3-3 mm/s^2 rms, ADXL355-class), a slow
  thermal/tilt drift, and gravity (+9.80665 m/s^2) on Z, as a real accelerometer reads;
* P: band-limited burst (about 4-18 Hz), impulsive onset (rise 0.02-0.15 s), decay of a
  few s, polarized on the vertical;
* S: 2-5 times the P amplitude, lower band (about 1-7 Hz), slower rise, longer coda
  decay, polarized on the horizontals;
* noise-class records: ``quiet`` (background only), ``traffic`` (vehicle passages:
  emergent 8-30 Hz energy with engine harmonics, seconds long) and ``spikes`` (electronic
  glitches of 1-3 samples and knocks on the enclosure ringing at 20-40 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from edge_runtime.sensors import G_MPS2

COMPONENTS = ("E", "N", "Z")
NOISE_KINDS = ("quiet", "traffic", "spikes")


@dataclass
class Record:
    """A synthetic 3-component record.

    Attributes
    ----------
    data : numpy.ndarray
        ``(3, n_samples)`` acceleration in m/s^2, components (E, N, Z).
    sampling_rate_hz : float
        Sampling rate in Hz.
    kind : str
        ``earthquake`` or one of :data:`NOISE_KINDS`.
    p_s, s_s : float or None
        True P and S arrival in s after the first sample (earthquakes only).
    params : dict
        The drawn parameters (amplitudes, bands, ...), for provenance.
    """

    data: np.ndarray
    sampling_rate_hz: float
    kind: str
    p_s: float | None = None
    s_s: float | None = None
    params: dict = field(default_factory=dict)
    features_s: list = field(default_factory=list)  # centres of traffic passages / spikes


def _loguniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _band_noise(rng, n, fs, low_hz, high_hz, n_components=3):
    """Unit-rms band-limited Gaussian noise, ``(n_components, n)``."""
    sos = signal.butter(4, [low_hz, min(high_hz, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n_components, n + 200)), axis=-1)[:, 200:]
    return x / np.maximum(x.std(axis=-1, keepdims=True), 1e-12)


def background(rng, n, fs, sigma_mps2=None):
    """MEMS self-noise, drift and gravity, ``(3, n)`` m/s^2."""
    sigma = sigma_mps2 if sigma_mps2 is not None else _loguniform(rng, 3e-4, 3e-3)
    x = sigma * rng.standard_normal((3, n))
    # Thermal/tilt drift: a smooth random walk of a few mm/s^2 over minutes.
    walk = np.cumsum(rng.standard_normal((3, n)), axis=-1)
    walk -= walk.mean(axis=-1, keepdims=True)
    sos = signal.butter(2, 0.05, fs=fs, output="sos")
    drift = signal.sosfiltfilt(sos, walk, axis=-1)
    drift *= rng.uniform(0.5e-3, 3e-3) / max(np.abs(drift).max(), 1e-12)
    x += drift
    x[2] += G_MPS2
    return x, sigma


def _envelope(t, rise_s, decay_s):
    tp = np.clip(t, 0, None)
    env = np.where(t > 0, (1 - np.exp(-tp / rise_s)) * np.exp(-tp / decay_s), 0.0)
    return env / max(env.max(), 1e-12)


def _phase(rng, n, fs, onset_s, amp, band, rise_s, decay_s, polarization):
    t = np.arange(n) / fs - onset_s
    burst = _band_noise(rng, n, fs, *band)
    burst /= np.abs(burst).max()
    return amp * np.asarray(polarization)[:, None] * _envelope(t, rise_s, decay_s) * burst


def earthquake(rng, duration_s=40.0, fs=100.0, p_s=None, pga_mps2=None, sp_s=None, sigma_mps2=None):
    """One local earthquake on a MEMS node.

    Parameters
    ----------
    duration_s : float
        Record length in s.
    fs : float
        Sampling rate in Hz.
    p_s : float, optional
        P arrival in s after the start; drawn in [8, 12] s when omitted.
    pga_mps2 : float, optional
        Peak S-wave acceleration in m/s^2; log-uniform in [0.03, 1] when omitted.
    sp_s : float, optional
        S - P time in s; uniform in [1.5, 10] s (about 12-80 km) when omitted.
    sigma_mps2 : float, optional
        Background noise rms in m/s^2.
    """
    n = int(round(duration_s * fs))
    p_s = rng.uniform(8.0, 12.0) if p_s is None else p_s
    sp_s = rng.uniform(1.5, 10.0) if sp_s is None else sp_s
    s_s = p_s + sp_s
    pga = _loguniform(rng, 0.03, 1.0) if pga_mps2 is None else pga_mps2
    p_amp = pga / rng.uniform(2.0, 5.0)
    baz = rng.uniform(0, 2 * np.pi)
    radial = np.array([np.sin(baz), np.cos(baz)])
    h_p = rng.uniform(0.15, 0.45)
    p_pol = np.r_[h_p * radial + rng.normal(0, 0.05, 2), 1.0]
    s_pol = np.r_[np.array([np.cos(baz), -np.sin(baz)]) + rng.normal(0, 0.25, 2), rng.uniform(0.15, 0.4)]
    s_pol /= np.abs(s_pol).max()
    p_band = (rng.uniform(3.0, 6.0), rng.uniform(12.0, 20.0))
    s_band = (rng.uniform(0.8, 2.0), rng.uniform(4.0, 8.0))
    data, sigma = background(rng, n, fs, sigma_mps2)
    data += _phase(rng, n, fs, p_s, p_amp, p_band, rng.uniform(0.02, 0.15),
                   rng.uniform(1.0, 3.0) + 0.3 * sp_s, p_pol)
    data += _phase(rng, n, fs, s_s, pga, s_band, rng.uniform(0.08, 0.4),
                   rng.uniform(3.0, 10.0), s_pol)
    params = dict(pga_mps2=pga, p_amp_mps2=p_amp, sp_s=sp_s, noise_rms_mps2=sigma,
                  p_band_hz=p_band, s_band_hz=s_band, backazimuth_deg=float(np.degrees(baz)))
    return Record(data, fs, "earthquake", p_s=p_s, s_s=s_s, params=params)


def add_traffic(rng, data, fs, n_passages, t_range=None):
    """Add vehicle passages in place: emergent 8-30 Hz energy with engine harmonics.

    Returns the passage centres in s.
    """
    n = data.shape[1]
    t = np.arange(n) / fs
    lo, hi = t_range or (0.1 * n / fs, 0.9 * n / fs)
    centres = []
    for _ in range(n_passages):
        tc = rng.uniform(lo, hi)
        width = rng.uniform(1.0, 5.0)
        env = np.exp(-0.5 * ((t - tc) / width) ** 2)
        amp = _loguniform(rng, 0.005, 0.08)
        carrier = _band_noise(rng, n, fs, rng.uniform(6.0, 10.0), rng.uniform(20.0, 35.0))
        f0 = rng.uniform(10.0, 30.0) * (1 + 0.05 * np.tanh((t - tc) / width))  # Doppler sweep
        tone = np.sin(2 * np.pi * np.cumsum(f0) / fs + rng.uniform(0, 2 * np.pi, (3, 1)))
        mix = rng.uniform(0.2, 0.8)
        wave = (1 - mix) * carrier / np.abs(carrier).max() + mix * tone
        pol = np.r_[rng.uniform(0.3, 0.8, 2), 1.0]
        data += amp * pol[:, None] * env * wave
        centres.append(tc)
    return sorted(centres)


def add_spikes(rng, data, fs, n_spikes, t_range=None):
    """Add glitches (1-3 samples) and enclosure knocks (20-40 Hz ringing) in place.

    Returns the spike times in s.
    """
    n = data.shape[1]
    lo, hi = t_range or (1.0, n / fs - 1.0)
    centres = []
    for _ in range(n_spikes):
        i = int(rng.uniform(lo, hi) * fs)
        amp = _loguniform(rng, 0.01, 1.0) * rng.choice([-1, 1])
        if rng.uniform() < 0.5:  # electronic glitch on one or all channels
            width = int(rng.integers(1, 4))
            channels = [int(rng.integers(0, 3))] if rng.uniform() < 0.6 else [0, 1, 2]
            for c in channels:
                data[c, i:i + width] += amp * rng.uniform(0.5, 1.0)
        else:  # knock: damped resonance of the enclosure
            f = rng.uniform(20.0, 40.0)
            tau = rng.uniform(0.02, 0.08)
            tt = np.arange(min(int(0.3 * fs), n - i)) / fs
            ring = np.exp(-tt / tau) * np.sin(2 * np.pi * f * tt)
            pol = rng.uniform(0.2, 1.0, 3)
            data[:, i:i + tt.size] += amp * pol[:, None] * ring
        centres.append(i / fs)
    return sorted(centres)


def traffic(rng, duration_s=40.0, fs=100.0, n_passages=None, sigma_mps2=None):
    """Background plus 1-3 vehicle passages."""
    data, sigma = background(rng, int(round(duration_s * fs)), fs, sigma_mps2)
    n_passages = int(rng.integers(1, 4)) if n_passages is None else n_passages
    centres = add_traffic(rng, data, fs, n_passages)
    return Record(data, fs, "traffic", params=dict(noise_rms_mps2=sigma, n_passages=n_passages),
                  features_s=centres)


def spikes(rng, duration_s=40.0, fs=100.0, n_spikes=None, sigma_mps2=None):
    """Background plus 2-7 glitches and knocks."""
    data, sigma = background(rng, int(round(duration_s * fs)), fs, sigma_mps2)
    n_spikes = int(rng.integers(2, 8)) if n_spikes is None else n_spikes
    centres = add_spikes(rng, data, fs, n_spikes)
    return Record(data, fs, "spikes", params=dict(noise_rms_mps2=sigma, n_spikes=n_spikes),
                  features_s=centres)


def noise_mix(rng, duration_s=120.0, fs=100.0, n_passages=3, n_spikes=6, sigma_mps2=None):
    """A noise record with everything a node meets: quiet stretches, traffic, spikes.

    Traffic occupies the first half, spikes the second; no earthquake.
    """
    data, sigma = background(rng, int(round(duration_s * fs)), fs, sigma_mps2)
    half = 0.5 * duration_s
    centres = add_traffic(rng, data, fs, n_passages, (10.0, half - 5.0))
    centres += add_spikes(rng, data, fs, n_spikes, (half + 5.0, duration_s - 5.0))
    return Record(data, fs, "noise", params=dict(noise_rms_mps2=sigma, n_passages=n_passages,
                                                  n_spikes=n_spikes), features_s=centres)


def quiet(rng, duration_s=40.0, fs=100.0, sigma_mps2=None):
    """Background only."""
    n = int(round(duration_s * fs))
    data, sigma = background(rng, n, fs, sigma_mps2)
    return Record(data, fs, "quiet", params=dict(noise_rms_mps2=sigma))


NOISE_GENERATORS = {"quiet": quiet, "traffic": traffic, "spikes": spikes}


def synthetic_dataset(n_events: int = 1200, seed: int = 0, fs: float = 100.0,
                      window_s: float = 2.0, max_shift_s: float = 0.6,
                      hard_negative_fraction: float = 0.75, progress: bool = False):
    """Labelled P / S / noise windows cut from freshly generated records.

    Each earthquake record gives one P and one S window (centred on the arrival, shifted
    by up to ``max_shift_s`` so the model tolerates the sliding-window offset) and one
    pre-event noise window. Noise records (quiet, traffic, spikes) give windows centred
    near their traffic passages and spikes: the hard negatives a node meets, which is
    why they make up ``hard_negative_fraction`` of the noise class and pre-event noise
    the rest. Classes come out balanced; the split is by record.

    Parameters
    ----------
    n_events : int
        Earthquake records; the dataset has about ``3 * n_events`` windows.
    seed : int
        Seed of everything random here.
    fs : float
        Sampling rate of the raw windows in Hz.

    Returns
    -------
    WindowDataset
    """
    from tqdm import tqdm

    from ..datasets.window_dataset import WindowDataset, assign_splits, cut

    rng = np.random.default_rng(seed)
    n_noise_records = max(3, n_events)
    event_split = assign_splits(rng, n_events)
    noise_split = assign_splits(rng, n_noise_records)
    waveforms, rows = [], []

    def add(window, **row):
        waveforms.append(window.astype(np.float32))
        rows.append(row)

    for i in tqdm(range(n_events), desc="synthetic earthquakes", disable=not progress):
        rec = earthquake(rng, duration_s=45.0, fs=fs)
        name = f"eq{i:05d}"
        common = dict(record=name, split=event_split[i], source="earthquake",
                      p_s=round(rec.p_s, 3), s_s=round(rec.s_s, 3),
                      pga_mps2=round(rec.params["pga_mps2"], 5))
        for label, t in (("P", rec.p_s), ("S", rec.s_s)):
            center = t + rng.uniform(-max_shift_s, max_shift_s)
            add(cut(rec.data, fs, center, window_s), label=label, center_s=round(center, 3), **common)
        center = rng.uniform(window_s, rec.p_s - 0.5 * window_s - 0.2)
        add(cut(rec.data, fs, center, window_s), label="noise", center_s=round(center, 3), **common)
    # Noise records: mostly spikes and traffic, the windows a PGA gate lets through.
    kinds = rng.choice(NOISE_KINDS, size=n_noise_records, p=[0.1, 0.4, 0.5])
    for i in tqdm(range(n_noise_records), desc="synthetic noise", disable=not progress):
        kind = str(kinds[i])
        rec = NOISE_GENERATORS[kind](rng, duration_s=30.0, fs=fs)
        for _ in range(2):
            if rec.features_s:
                jitter = 3.0 if kind == "traffic" else 0.9
                center = rng.choice(rec.features_s) + rng.uniform(-jitter, jitter)
            else:
                center = rng.uniform(window_s, 30.0 - window_s)
            center = float(np.clip(center, window_s, 30.0 - window_s))
            add(cut(rec.data, fs, center, window_s), label="noise", center_s=round(center, 3),
                record=f"{kind}{i:05d}", split=noise_split[i], source=kind)
    # Trim the noise class to the size of the others: hard negatives, then pre-event noise.
    source = np.array([r["source"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    pre_event = np.flatnonzero((labels == "noise") & (source == "earthquake"))
    hard = np.flatnonzero(source != "earthquake")
    n_hard = min(len(hard), int(round(hard_negative_fraction * n_events)))
    chosen = np.concatenate([rng.choice(hard, n_hard, replace=False),
                             rng.choice(pre_event, min(len(pre_event), n_events - n_hard), replace=False)])
    keep = sorted(set(np.flatnonzero(labels != "noise").tolist()) | set(chosen.tolist()))
    return WindowDataset(np.stack([waveforms[i] for i in keep]).astype(np.float64), fs,
                         [rows[i] for i in keep])
