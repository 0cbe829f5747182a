"""Physics-based synthetic windows: Green's functions + Brune sources + measured-noise models.

Earthquake records are sums of layered-earth Green's functions (:mod:`.greens`, PyGRT) for
a random focal mechanism, azimuth, depth, distance and crustal model, convolved with a
causal Brune source of the drawn magnitude and stress drop, filtered by a site
resonance and by kappa; noise and sensors come from :mod:`.noise`. One or two components
of many windows, of every class, are dead (zeros), self-noise only or copies: that is
how real 1- and 2-component records replay, and what the parametric generator
(:mod:`.parametric`) never showed. Every function takes a ``numpy.random.Generator``.

The recipe
----------
:func:`physics_dataset`'s defaults follow the recipe the seed's STEAD windows were cut by
(Clements 2023, ``SEED_NOTES.md``): epicentral distance < 100 km, a clear onset above the
noise (the recipe's 40 dB as an option, 20 dB by default: see ``snr_min_db``), 2 s windows
centred on the P and on the S arrival +/- up to 0.8 s, noise windows from noise records. Two
more rules make the P and S labels mean one thing each, as the recipe intends: a P window
never holds the S onset and an S window never holds the P onset (``min_sp_s``), and only
windows at the arrivals are labelled (``coda_fraction`` 0). Each rule removes windows whose
label the waveform cannot decide: with an S-P time shorter than the window, a P window
shifted left and an S window shifted right are the same samples; an event below the noise
has no onset to label; a window in the S coda has no onset and looks like a P coda.
Measured with the seed's EarthquakeCNN on the unfiltered set (the old defaults,
``snr_min_db=12, coda_fraction=0.3, max_distance_km=200, min_sp_s=0``): P windows holding
the S onset were 55 % right against 83 % for the others, P windows at 200 km 59 %, coda
windows 79 %. Old-style sets are still made with those settings.

``snr_min_db``
    A P or S window's filtered peak over the noise rms (live components, transients and the
    digitizer's rounding counted as noise), in dB (``20 log10``), must reach this; weaker
    events are made stronger (see ``raise_magnitude``) so that no label marks an invisible
    phase. 20 dB (peak 10 x rms, where Gaussian noise peaks at 3-4 x rms in a window): an
    onset any analyst sees. The first version used 12 dB (x 4: at the noise's own peaks).
    The recipe's STEAD clean subset used 40 dB; a model trained only on that (102,000
    windows, 16 epochs) scored 0.952 on its own test split against 0.927 at 20 dB, but
    called 84-91 % of P windows below 20 dB noise, 121 of 208 real P windows noise (80 at
    20 dB) and missed one real one-component record that the 20 dB model and the first
    version detect: a node needs the weak events.
``coda_fraction``
    Fraction of events that give one more S-class window 1-10 s after S (sustained shaking
    is not noise), when it stands out of the noise; these come on top of ``n_windows``
    (column ``window``: onset, coda or noise). 0 by default: the recipe labels windows at
    the arrivals only.
``min_sp_s``
    Smallest S-P time in s (bank nodes of shorter S-P are not drawn). Default
    ``window_s / 2 + max_shift_s + 0.1`` (1.9 s): the S onset then always lies after the end
    of every P window and the P onset before the start of every S window; the causal
    high-pass of the node's preprocessing moves no energy ahead of an onset.
``raise_magnitude``
    How an event below ``snr_min_db`` is made visible. False (default): its amplitude is
    scaled up (to 0-6 dB above the threshold), as for a closer or quieter station, so the
    magnitude and with it the source spectrum (Brune corner 0.05-30 Hz) keep their drawn
    distribution (M1-7 uniform). True (the first version): the magnitude is raised (up to
    M7.5, then scaled); at 40 dB that left the median event at M6.8 and a model trained on
    it called 70 % of M < 3 P windows noise.
``s_contrast_min``
    The S onset's peak must be this many times the P coda's peak before it, on the live
    components (:func:`onset_contrast`); events that fail are drawn again. 2 (6 dB): an S
    arrival an analyst would pick. Without it 42 % of vertical-only and 10 % of
    single-horizontal S windows had no visible S onset.
``p_contrast_min``
    The first P onset must stand out of the noise before it, as an analyst's P pick of
    weight > 0.75 (the recipe's ``p_weight``) does: in the P window as the node sees it
    (noise + event, its filter chain, P at the centre), the peak over the first 0.5 s after
    the P time must be this many times the peak over the 0.9 s before it, on the live
    components (:func:`p_onset_contrast`); events that fail are drawn again, as for S. 2
    (6 dB), the factor of the S rule: Gaussian noise peaks at 3-4 x its rms in a second, so
    the first swing reaches 6-8 x the noise rms and leaves the noise band where an analyst
    times it to a sample or two (an impulsive pick). The ``snr_min_db`` rule alone does not
    ask this: a window's peak may be a later, larger P phase (at 50-80 km a weak refracted
    first P before the direct one), and a weak first P followed by a larger arrival looks
    like an S.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .noise import (
    TRANSIENT_KINDS,
    ambient_noise,
    draw_sensor,
    modulate,
    record_start,
    record_with_sensor,
    sensor_noise,
    transient,
)

CHANNEL_SETS = {  # live components (indices into E, N, Z) and their probability given "dead"
    "EN": ((0, 1), 0.27), "EZ": ((0, 2), 0.09), "NZ": ((1, 2), 0.09),
    "Z": ((2,), 0.2), "E": ((0,), 0.175), "N": ((1,), 0.175),
}
DEAD_MODES = {"zero": 0.7, "self_noise": 0.15, "copy": 0.15}
MAX_MAGNITUDE = 7.5


def _magnitude_to_moment_dyncm(magnitude: float) -> float:
    """Hanks & Kanamori (1979): M0 in dyne-cm."""
    return 10.0 ** (1.5 * magnitude + 16.1)


def brune_corner_hz(moment_dyncm: float, stress_drop_bar: float, vs_kmps: float) -> float:
    """Brune (1970) corner frequency in Hz (Boore 2003's constant)."""
    return 4.906e6 * vs_kmps * (stress_drop_bar / moment_dyncm) ** (1.0 / 3.0)


def band_taper(freqs_hz, nyquist_hz: float, fraction: float = 0.2) -> np.ndarray:
    """Gain 1 below ``(1 - fraction) * nyquist_hz``, a cosine down to 0 at ``nyquist_hz`` (and beyond)."""
    f = np.asarray(freqs_hz, dtype=float)
    lo = (1.0 - fraction) * nyquist_hz
    x = np.clip((f - lo) / max(nyquist_hz - lo, 1e-12), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def earthquake_ground_motion(rng: np.random.Generator, bank, fs: float = 100.0,
                             magnitude: float | None = None, node=None, params: dict | None = None):
    """Noise-free 3-component ground acceleration of one earthquake at one station.

    Parameters
    ----------
    bank : GreensBank
        Precomputed Green's functions.
    fs : float
        Output sampling rate in Hz (the bank's traces are resampled by FFT).
    magnitude : float, optional
        Moment magnitude; uniform in [1, 7] when omitted.
    node : tuple of int, optional
        ``(model, depth, distance)`` indices into the bank; random when omitted.
    params : dict, optional
        Mechanism, azimuth, stress drop, site and kappa to reuse (e.g. to redo an event
        at another magnitude); drawn when omitted.

    Returns
    -------
    data : numpy.ndarray
        ``(3, n)`` acceleration in m/s^2, (E, N, Z).
    p_s, s_s : float
        First P and S arrival in s after the first sample (from the bank's ray tracing).
    params : dict
        Everything drawn, for the metadata.
    """
    from .greens import displacement_zrt, zrt_to_enz

    if node is None:
        node = tuple(int(rng.integers(0, k)) for k in bank.shape)
    i, j, k = node
    p = dict(params or {})
    if not p:
        p = dict(strike=rng.uniform(0, 360), dip=float(np.degrees(np.arccos(rng.uniform(0, 0.98)))),
                 rake=rng.uniform(-180, 180), azimuth=rng.uniform(0, 360),
                 stress_drop_bar=float(np.exp(rng.uniform(np.log(3.0), np.log(300.0)))),
                 site_f0_hz=float(np.exp(rng.uniform(np.log(0.8), np.log(12.0)))),
                 site_gain=float(np.exp(rng.uniform(0.0, np.log(5.0)))), site_q=rng.uniform(1.5, 5.0),
                 kappa_s=float(np.exp(rng.uniform(np.log(0.005), np.log(0.06)))))
    magnitude = float(rng.uniform(1.0, 7.0)) if magnitude is None else float(magnitude)
    m0 = _magnitude_to_moment_dyncm(magnitude)
    fc = brune_corner_hz(m0, p["stress_drop_bar"], float(bank.vs_source[i, j]))
    zrt = displacement_zrt(bank.gf[i, j, k], p["strike"], p["dip"], p["rake"], p["azimuth"], m0)
    enz = zrt_to_enz(zrt, p["azimuth"])
    dt = bank.config.dt_s
    nt = enz.shape[-1]
    nfft = 2 * nt  # zero padding: the source and site filters must not wrap around
    f = np.fft.rfftfreq(nfft, dt)
    w = 2j * np.pi * f
    # u = G * M(t); causal Brune moment rate M0 / (1 + i f/fc)^2, so a = d/dt (G * Mdot).
    source = w / (1.0 + 1j * f / fc) ** 2
    kappa = 1.0 / (1.0 + 1j * f * np.pi * p["kappa_s"])  # causal high-frequency decay
    x = f / p["site_f0_hz"]
    resonance = (1j * x / p["site_q"]) / (1.0 - x**2 + 1j * x / p["site_q"])  # damped oscillator, causal
    site_h = 1.0 + (p["site_gain"] - 1.0) * resonance
    site_v = 1.0 + (np.sqrt(p["site_gain"]) - 1.0) * resonance  # H/V > 1 near the site frequency
    spec = np.fft.rfft(enz, nfft, axis=-1) * (source * kappa)[None]
    spec[:2] *= site_h
    spec[2] *= site_v
    # The bank holds nothing above its Nyquist frequency (20 Hz at 40 Hz), and its top bins
    # carry the aliasing of the wavenumber integration. Copied up unchanged into a finer
    # spectrum, the Nyquist bin (the real cosine that alternates sign every sample) became a
    # constant 20 Hz tone in every upsampled earthquake record and the cut-off a ringing edge:
    # a cosine taper over the top 20 % of the band ends the spectrum at zero instead.
    spec *= band_taper(f, 0.5 / dt)[None]
    n_out = int(round(nfft * dt * fs))
    full = np.zeros((3, n_out // 2 + 1), dtype=complex)
    m = min(full.shape[-1], spec.shape[-1])
    full[:, :m] = spec[:, :m]
    data = np.fft.irfft(full, n_out, axis=-1) * (n_out / nfft)
    data = data[:, : int(round(nt * dt * fs))]
    p.update(magnitude=magnitude, moment_dyncm=m0, corner_hz=fc, model=i,
             depth_km=float(bank.depths_km[i, j]), distance_km=float(bank.distances_km[k]))
    return data, float(bank.t_p[i, j, k]), float(bank.t_s[i, j, k]), p


def _draw_channels(rng: np.random.Generator, dead_fraction: float):
    if rng.uniform() >= dead_fraction:
        return "ENZ", "none"
    names = list(CHANNEL_SETS)
    prob = np.array([CHANNEL_SETS[c][1] for c in names])
    live = names[int(rng.choice(len(names), p=prob / prob.sum()))]
    modes = list(DEAD_MODES)
    mode = modes[int(rng.choice(len(modes), p=np.array(list(DEAD_MODES.values()))))]
    return live, mode


def apply_channels(rng: np.random.Generator, data: np.ndarray, live: str, mode: str, sensor, fs: float):
    """Replace the components not in ``live`` (letters of "ENZ") as a dead or missing channel.

    ``zero``: zeros, as a replay fills a missing component; ``self_noise``: a channel that
    reads only the part's self-noise and a constant; ``copy``: a copy of a live component.
    """
    out = data.copy()
    alive = ["ENZ".index(c) for c in live]
    for c in range(3):
        if c in alive:
            continue
        if mode == "zero":
            out[c] = 0.0
        elif mode == "self_noise":
            counts, _ = sensor.digitize(sensor.self_noise(rng, data.shape[-1], fs) + rng.uniform(-0.5, 0.5))
            out[c] = counts / sensor.counts_per_mps2
        elif mode == "copy":
            out[c] = data[int(rng.choice(alive))]
        else:
            raise ValueError(f"unknown dead-channel mode {mode!r}; known: {', '.join(DEAD_MODES)}")
    return out


def _snr(signal_w, noise_w, fs, live, lsb_mps2: float = 0.0):
    """Filtered peak of ``signal_w`` over the filtered rms of the record's noise, live components.

    The noise is ``noise_w`` (ground and sensor noise) plus the digitizer's: rounding to counts
    adds white noise of variance ``lsb_mps2**2 / 12``, which the node's chain passes in
    proportion to its operator's energy. A 16-bit +/-2 g recorder counts in steps of
    6e-4 m/s^2, above the ground noise of most sites: without this term an event "20 dB
    above the noise" could be a fraction of one count, a window of zeros labelled P.
    """
    from edge_runtime.preprocess import filter_windows

    idx = ["ENZ".index(c) for c in live]
    s = filter_windows(signal_w[idx], fs)
    n = filter_windows(noise_w[idx], fs)
    q_var = lsb_mps2**2 / 12.0 * _white_noise_gain(signal_w.shape[-1], fs)
    return float(np.abs(s).max() / max(np.sqrt(np.mean(n**2) + q_var), 1e-20))


@functools.lru_cache(maxsize=4)
def _white_noise_gain(n_in: int, fs: float) -> float:
    """Variance of the node's filtered window per unit variance of white input noise
    (mean energy of a row of its chain operator), for windows of ``n_in`` samples at ``fs`` Hz."""
    from edge_runtime.preprocess import PreprocessConfig, linear_operator

    op = linear_operator(n_in, fs, PreprocessConfig())
    return float(np.sum(op**2)) / op.shape[0]


def physics_dataset(n_windows: int = 100_000, seed: int = 0, fs: float = 100.0, window_s: float = 2.0,
                    max_shift_s: float = 0.8, bank=None, dead_fraction: float = 0.55,
                    transient_fraction: float = 0.6, snr_min_db: float = 20.0, coda_fraction: float = 0.0,
                    class_fractions=(1 / 3, 1 / 3, 1 / 3), max_distance_km: float = 100.0,
                    min_sp_s: float | None = None, s_contrast_min: float = 2.0, raise_magnitude: bool = False,
                    p_contrast_min: float = 2.0, progress: bool = False):
    """Labelled P / S / noise windows from the physics-based generator.

    The defaults follow the recipe the seed's STEAD windows were cut by; each rule and the
    measurement behind its default is in the module docstring ("The recipe").

    Parameters
    ----------
    n_windows : int
        About this many windows (P and S come in pairs from one event).
    seed : int
        Seed of everything random here (the bank has its own seed).
    fs, window_s : float
        Sampling rate of the windows in Hz; window length in s.
    max_shift_s : float
        P and S windows are centred on the arrival +/- up to this many s.
    bank : GreensBank, optional
        Default: :func:`greens.build_bank` of the default :class:`greens.BankConfig` (cached).
    dead_fraction : float
        Fraction of records (all classes) with one or two dead / missing components.
    transient_fraction : float
        Fraction of noise windows holding a non-seismic transient (hard negatives).
    snr_min_db : float
        Least filtered peak of a P or S window over the noise rms, dB (``20 log10``).
    coda_fraction : float
        Fraction of events that give one more S-class window 1-10 s after S.
    class_fractions : tuple of float
        Wanted fractions of P, S (onset), noise windows.
    max_distance_km : float
        Largest epicentral distance of an event (bank distances up to this), km.
    min_sp_s : float, optional
        Smallest S-P time in s; default ``window_s / 2 + max_shift_s + 0.1``; 0 keeps every node.
    raise_magnitude : bool
        Make a weak event visible by raising its magnitude (True) or scaling it (False).
    s_contrast_min, p_contrast_min : float
        Least S-onset-over-P-coda and first-P-over-noise peak ratios (0: no rule).

    Returns
    -------
    WindowDataset
        Metadata per window: label, split, source (earthquake or the noise kind), record,
        sensor, channels (live components), dead_mode, p_sample / s_sample (arrival in
        samples from the window start, -1 when outside), magnitude, distance_km, depth_km,
        velocity_model, snr, clipped samples.
    """
    from tqdm import tqdm

    from ..datasets.window_dataset import WindowDataset, assign_splits
    from .greens import build_bank

    if n_windows < 3:
        raise ValueError(f"n_windows={n_windows}: at least 3 windows are needed")
    bank = bank if bank is not None else build_bank(progress=progress)
    min_sp_s = window_s / 2 + max_shift_s + 0.1 if min_sp_s is None else float(min_sp_s)
    recipe = _Recipe(bank=bank, nodes=eligible_nodes(bank, max_distance_km, min_sp_s), fs=fs,
                     window_s=window_s, n=int(round(window_s * fs)), max_shift_s=max_shift_s,
                     snr_min=10.0 ** (snr_min_db / 20.0), s_contrast_min=s_contrast_min,
                     p_contrast_min=p_contrast_min, raise_magnitude=raise_magnitude,
                     coda_fraction=coda_fraction, dead_fraction=dead_fraction,
                     transient_fraction=transient_fraction)
    rng = np.random.default_rng(seed)
    fp, fsw, fn = np.asarray(class_fractions, float) / np.sum(class_fractions)
    n_events = max(1, int(round(n_windows * max(fp, fsw))))
    n_noise = max(1, n_windows - 2 * n_events) if fp == fsw else max(1, int(round(n_windows * fn)))
    event_split = assign_splits(rng, n_events)
    noise_split = assign_splits(rng, n_noise)
    waveforms = np.empty((n_events * 3 + n_noise, 3, recipe.n), dtype=np.float32)
    rows = []
    for e in tqdm(range(n_events), desc="synthetic earthquakes", disable=not progress):
        _event_windows(rng, recipe, f"eq{e:06d}", event_split[e], waveforms, rows)
    for r in tqdm(range(n_noise), desc="synthetic noise", disable=not progress):
        _noise_window(rng, recipe, f"noise{r:06d}", noise_split[r], waveforms, rows)
    return WindowDataset(waveforms[: len(rows)].astype(np.float64), fs, rows)


@dataclass(frozen=True)
class _Recipe:
    """The settings of :func:`physics_dataset` its steps share (see there)."""

    bank: object
    nodes: np.ndarray  # eligible (model, depth, distance) indices
    fs: float
    window_s: float
    n: int  # samples per window
    max_shift_s: float
    snr_min: float  # amplitude ratio
    s_contrast_min: float
    p_contrast_min: float
    raise_magnitude: bool
    coda_fraction: float
    dead_fraction: float
    transient_fraction: float


def _background(rng: np.random.Generator, r: _Recipe) -> np.ndarray:
    """Ambient ground noise of one window, amplitude-modulated half of the time."""
    x = ambient_noise(rng, 2 * r.n, r.fs)[:, :r.n]
    return modulate(rng, x, r.fs) if rng.uniform() < 0.5 else x


def _archive_start(rng: np.random.Generator, data: np.ndarray, fs: float) -> np.ndarray:
    """A processed record starting inside the window (5 % of the windows, all classes)."""
    return record_start(rng, data, fs) if rng.uniform() < 0.05 else data


def _cut(sig: np.ndarray, centre_s: float, r: _Recipe) -> tuple[np.ndarray, int]:
    """The window of ``sig`` centred at ``centre_s`` and its first sample."""
    start = int(round(centre_s * r.fs)) - r.n // 2
    return sig[:, start:start + r.n], start


def _phase_noise(rng: np.random.Generator, r: _Recipe, sensor, centres: dict) -> tuple[dict, dict]:
    """``(transient kind or "", noise window)`` per phase: ground and sensor noise, and a
    transient on top of a phase (10 %) that the phase must stand out of."""
    extras = {lab: str(rng.choice(TRANSIENT_KINDS)) if rng.uniform() < 0.1 else "" for lab in centres}
    noise_w = {lab: _background(rng, r) + sensor_noise(rng, sensor, (3, r.n), r.fs) for lab in centres}
    for lab, kind in extras.items():
        if kind:
            noise_w[lab] = noise_w[lab] + transient(rng, kind, r.n, r.fs, rng.uniform(0, r.window_s))
    return extras, noise_w


def _made_visible(rng: np.random.Generator, r: _Recipe, event: tuple, node, centres: dict, noise_w: dict,
                  live: str, sensor) -> tuple:
    """The event scaled (a closer or quieter station in effect) or, as the first version did,
    raised in magnitude first, until both phases stand ``snr_min`` out of their noise:
    ``(ground, t_p, t_s, params, snr)``."""
    ground, t_p, t_s, par = event
    lsb = 1.0 / sensor.counts_per_mps2

    def phase_snr(ground):
        return min(_snr(_cut(ground, centres[lab], r)[0], noise_w[lab], r.fs, live, lsb) for lab in centres)

    snr, tries = phase_snr(ground), 0
    while r.raise_magnitude and snr < r.snr_min and par["magnitude"] < MAX_MAGNITUDE and tries < 4:
        bump = (np.log10(r.snr_min / max(snr, 1e-6)) + rng.uniform(0.0, 0.5)) / 0.75
        ground, t_p, t_s, par = earthquake_ground_motion(
            rng, r.bank, r.fs, min(par["magnitude"] + bump, MAX_MAGNITUDE), node=node, params=par)
        snr, tries = phase_snr(ground), tries + 1
    if snr < r.snr_min:
        scale = r.snr_min / max(snr, 1e-12) * rng.uniform(1.0, 2.0)
        ground = ground * scale
        par["scaled"] = float(scale)
        snr = phase_snr(ground)
    return ground, t_p, t_s, par, snr


def _draw_event(rng: np.random.Generator, r: _Recipe, sensor, live: str) -> tuple:
    """An event whose S onset stands out of the P coda and whose first P stands out of the
    noise on the live components, as an analyst's picks of weight > 0.75 do (the recipe's clean
    subset); on a vertical-only record S often does not (SV is weak there): another event is
    drawn then. Checked before and after the amplitude is raised (the corner frequency moves
    with the magnitude). Returns ``(ground, t_p, t_s, params, centres, extras, noise_w, snr,
    p_contrast)``."""
    for _ in range(MAX_EVENT_DRAWS):
        node = tuple(int(v) for v in r.nodes[int(rng.integers(0, len(r.nodes)))])
        ground, t_p, t_s, par = earthquake_ground_motion(rng, r.bank, r.fs, node=node)
        if onset_contrast(ground, t_s, r.fs, live) < r.s_contrast_min:
            continue
        centres = {"P": t_p + rng.uniform(-r.max_shift_s, r.max_shift_s),
                   "S": t_s + rng.uniform(-r.max_shift_s, r.max_shift_s)}
        extras, noise_w = _phase_noise(rng, r, sensor, centres)
        ground, t_p, t_s, par, snr = _made_visible(rng, r, (ground, t_p, t_s, par), node, centres, noise_w,
                                                   live, sensor)
        p_contrast = p_onset_contrast(ground, t_p, noise_w["P"], r.fs, live, r.window_s)
        if onset_contrast(ground, t_s, r.fs, live) >= r.s_contrast_min and p_contrast >= r.p_contrast_min:
            return ground, t_p, t_s, par, centres, extras, noise_w, snr, p_contrast
    raise RuntimeError(f"no event of the bank has an S onset {r.s_contrast_min} times its P coda and a "
                       f"first P {r.p_contrast_min} times the noise on components {live} in "
                       f"{MAX_EVENT_DRAWS} draws; lower s_contrast_min or p_contrast_min")


def _add_coda(rng: np.random.Generator, r: _Recipe, ground, t_s: float, sensor, live: str, centres: dict,
              noise_w: dict) -> None:
    """Sustained shaking after S (long strong motion of large events) is no noise: some events
    give one more S-class window in the coda, where it stands out (added to ``centres``)."""
    coda_end = ground.shape[-1] / r.fs - 0.6 * r.window_s
    if rng.uniform() < r.coda_fraction and coda_end > t_s + 1.5:
        c = rng.uniform(t_s + 1.0, min(t_s + 10.0, coda_end))
        noise_c = _background(rng, r) + sensor_noise(rng, sensor, (3, r.n), r.fs)
        if _snr(_cut(ground, c, r)[0], noise_c, r.fs, live, 1.0 / sensor.counts_per_mps2) >= r.snr_min:
            centres["S coda"], noise_w["S coda"] = c, noise_c


def _event_windows(rng: np.random.Generator, r: _Recipe, record: str, split: str, waveforms: np.ndarray,
                   rows: list) -> None:
    """The P, S (and S coda) windows of one earthquake into ``waveforms`` and ``rows``."""
    sensor = draw_sensor(rng)
    live, mode = _draw_channels(rng, r.dead_fraction)
    ground, t_p, t_s, par, centres, extras, noise_w, snr, p_contrast = _draw_event(rng, r, sensor, live)
    _add_coda(rng, r, ground, t_s, sensor, live, centres, noise_w)
    contrast = onset_contrast(ground, t_s, r.fs, live)
    for lab, centre in centres.items():
        w, start = _cut(ground, centre, r)
        data, clipped = record_with_sensor(rng, w + noise_w[lab], r.fs, sensor, self_noise=False)
        waveforms[len(rows)] = _archive_start(rng, apply_channels(rng, data, live, mode, sensor, r.fs), r.fs)
        rows.append(dict(label=lab[0], window="coda" if "coda" in lab else "onset",
                         split=split, source="earthquake", record=record,
                         sp_s=round(t_s - t_p, 3), snr_db=round(20.0 * np.log10(max(snr, 1e-12)), 1),
                         s_contrast=round(contrast, 2), p_contrast=round(p_contrast, 2),
                         sensor=sensor.name, channels=live, dead_mode=mode, transient=extras.get(lab, ""),
                         center_s=round(centre, 3), p_sample=_in_window(t_p, start, r.fs, r.n),
                         s_sample=_in_window(t_s, start, r.fs, r.n), snr=round(snr, 2), clipped=clipped,
                         magnitude=round(par["magnitude"], 2), distance_km=par["distance_km"],
                         depth_km=par["depth_km"], velocity_model=par["model"],
                         stress_drop_bar=round(par["stress_drop_bar"], 1)))


def _noise_window(rng: np.random.Generator, r: _Recipe, record: str, split: str, waveforms: np.ndarray,
                  rows: list) -> None:
    """One noise window (ambient, or holding a non-seismic transient) into ``waveforms`` and ``rows``."""
    sensor = draw_sensor(rng)
    live, mode = _draw_channels(rng, r.dead_fraction)
    ground = _background(rng, r)
    kind = "ambient"
    if rng.uniform() < r.transient_fraction:
        kind = str(rng.choice(TRANSIENT_KINDS))
        ground = ground + transient(rng, kind, r.n, r.fs, rng.uniform(-0.2, 1.2) * r.window_s)
    data, clipped = record_with_sensor(rng, ground, r.fs, sensor)
    waveforms[len(rows)] = _archive_start(rng, apply_channels(rng, data, live, mode, sensor, r.fs), r.fs)
    rows.append(dict(label="noise", window="noise", split=split, source=kind, record=record,
                     sensor=sensor.name, channels=live, dead_mode=mode, p_sample=-1, s_sample=-1,
                     transient=kind if kind != "ambient" else "", clipped=clipped))


MAX_EVENT_DRAWS = 50


def onset_contrast(ground: np.ndarray, t_s: float, fs: float, live: str = "ENZ",
                   before_s: tuple = (1.0, 0.1), after_s: float = 1.0) -> float:
    """How far an onset stands out of what precedes it on the live components.

    Parameters
    ----------
    ground : numpy.ndarray
        ``(3, n)`` noise-free acceleration, m/s^2 (E, N, Z).
    t_s : float
        Onset time in s after the first sample.
    live : str
        Components to look at (letters of "ENZ").
    before_s : tuple of float
        The window before the onset, from ``t_s - before_s[0]`` to ``t_s - before_s[1]``
        (the 0.1 s gap: the pulse starts a few samples ahead of the ray-theory time).
    after_s : float
        Length of the window after the onset, s.

    Returns
    -------
    float
        Peak |ground| after the onset over peak |ground| before it (inf when nothing precedes).
    """
    idx = ["ENZ".index(c) for c in live]
    i0 = int(round(t_s * fs))
    pre = np.abs(ground[idx, max(0, i0 - int(before_s[0] * fs)): max(0, i0 - int(before_s[1] * fs))])
    post = np.abs(ground[idx, i0: i0 + int(after_s * fs)])
    peak_pre = float(pre.max()) if pre.size else 0.0
    return float(post.max()) / peak_pre if peak_pre > 0 else float("inf")


def p_onset_contrast(ground: np.ndarray, t_p: float, noise: np.ndarray, fs: float, live: str = "ENZ",
                     window_s: float = 2.0, after_s: float = 0.5) -> float:
    """How far the first P onset stands out of the noise before it, as the node sees the window.

    The P window is cut with the P time at its centre, the noise added, and both passed
    through the node's filter chain (:func:`edge_runtime.preprocess.filter_windows`); then
    :func:`onset_contrast` compares the first ``after_s`` after P with the 0.9 s before it.

    Parameters
    ----------
    ground : numpy.ndarray
        ``(3, n)`` noise-free acceleration, m/s^2 (E, N, Z).
    t_p : float
        First P time in s after the first sample of ``ground``.
    noise : numpy.ndarray
        ``(3, window_s * fs)`` noise of the window, m/s^2.
    fs : float
        Sampling rate of ``ground`` and ``noise``, Hz.
    live : str
        Components to look at (letters of "ENZ").
    window_s : float
        Window length, s.
    after_s : float
        Part after the P time that counts as the onset, s (the first swings an analyst weighs).

    Returns
    -------
    float
        Peak |filtered record| after the P time over the peak before it.
    """
    from edge_runtime.preprocess import filter_windows

    n = noise.shape[-1]
    i0 = int(round(t_p * fs)) - n // 2
    w = np.zeros((3, n))
    src = ground[:, max(0, i0): max(0, i0 + n)]
    w[:, max(0, -i0): max(0, -i0) + src.shape[-1]] = src
    x = filter_windows(w + noise, fs)
    return onset_contrast(x, window_s / 2, x.shape[-1] / window_s, live, after_s=after_s)


def eligible_nodes(bank, max_distance_km: float = 100.0, min_sp_s: float = 0.0) -> np.ndarray:
    """``(model, depth, distance)`` bank indices with distance <= ``max_distance_km`` and S-P >= ``min_sp_s``.

    Raises
    ------
    ValueError
        When no node of the bank qualifies (names the bank's ranges).
    """
    ok = (bank.distances_km <= max_distance_km)[None, None, :] & (bank.t_s - bank.t_p >= min_sp_s)
    nodes = np.argwhere(ok)
    if not len(nodes):
        sp = bank.t_s - bank.t_p
        raise ValueError(f"no Green's function of the bank has distance <= {max_distance_km} km and "
                         f"S-P >= {min_sp_s:.2f} s (bank: {bank.distances_km.min():g}-"
                         f"{bank.distances_km.max():g} km, S-P {sp.min():.2f}-{sp.max():.2f} s)")
    return nodes


def _in_window(t, start, fs, n):
    i = int(round(t * fs)) - start
    return i if 0 <= i < n else -1


def dataset_card(ds) -> dict:
    """Counts per class, source, split, sensor and live channels of a generated dataset."""
    from collections import Counter

    card = {"windows": len(ds), "sampling_rate_hz": ds.sampling_rate_hz}
    for col in ("label", "split", "source", "sensor", "channels", "dead_mode"):
        card[col] = dict(sorted(Counter(str(r.get(col, "")) for r in ds.metadata).items()))
    card["label_by_channels"] = dict(sorted(Counter(f"{r['label']}/{r.get('channels', '')}"
                                                    for r in ds.metadata).items()))
    mags = np.array([float(r["magnitude"]) for r in ds.metadata if r.get("magnitude") not in (None, "")])
    dist = np.array([float(r["distance_km"]) for r in ds.metadata if r.get("distance_km") not in (None, "")])
    if mags.size:
        for name, v in (("magnitude", mags), ("distance_km", dist)):
            card[name] = dict(min=float(v.min()), median=float(np.median(v)), max=float(v.max()))
    return card
