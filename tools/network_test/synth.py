"""A synthetic network: station layout, earthquakes from Green's functions, noise and knocks.

Stations sit on a jittered triangular grid (``spacing_km`` apart, each moved up to a
sixth of that: neighbours 10-20 km apart at the default 15 km). Earthquakes fall inside
the network at depths and magnitudes drawn from the seed. Every station's record is

* background noise (MEMS self-noise, drift and gravity:
  :func:`host_training.synthetic.parametric.background`);
* each earthquake from the physics-based generator at that station's own distance: a
  Green's function bank per event (PyGRT, one velocity model for the whole network drawn
  from the seed, the event's depth, the stations' distances to 0.1 km; cached, so a rerun
  is quick), the event's mechanism and stress drop, the station's azimuth and site
  (:func:`host_training.synthetic.physics.earthquake_ground_motion`), placed so that its
  first P lands at the origin time plus the layered model's first-arrival time;
* single-station transients (knocks, door slams, footsteps, vehicles:
  :func:`host_training.synthetic.noise.transient`) at random times away from the earthquakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from network_center.stations import EARTH_RADIUS_KM
from network_center.velocity import first_arrival_s

FS_HZ = 100.0
LAT0, LON0 = 46.0, 7.0
TRANSIENT_KINDS = ("knock", "door", "footsteps", "vehicle")
# Transients made on 40 s around their time, not the whole record (a footstep train over an
# hour's record took 0.4 s): their random draws do not depend on the length, and they have
# died out (rings of at most 0.8 s, steps within 6 s) well inside it.
LOCAL_TRANSIENTS = ("knock", "door", "footsteps")
MAX_DISTANCE_KM = 80.0  # stations farther from an event get no waveform of it (below noise at M <= 4.5)


@dataclass
class Quake:
    """One synthetic earthquake (truth)."""

    time_s: float  # s after the start of the records
    x_km: float
    y_km: float
    depth_km: float
    magnitude: float
    latitude: float = 0.0
    longitude: float = 0.0
    p_s: dict = field(default_factory=dict)  # station -> first P, s after the start


@dataclass
class SyntheticNetwork:
    codes: list
    xy_km: np.ndarray
    lat_lon: np.ndarray
    layers: list
    quakes: list
    records: dict  # code -> (3, n) m/s^2
    transients: dict  # code -> list of times, s
    duration_s: float
    transient_kinds: dict = field(default_factory=dict)  # code -> list of kinds, as transients


def to_lat_lon(x_km, y_km):
    k = np.pi / 180.0 * EARTH_RADIUS_KM
    return LAT0 + np.asarray(y_km) / k, LON0 + np.asarray(x_km) / (k * np.cos(np.radians(LAT0)))


def layout(rng, n_stations: int, spacing_km: float = 15.0) -> np.ndarray:
    """``(n, 2)`` station positions (km) on a jittered triangular grid around the origin."""
    side = int(np.ceil(np.sqrt(n_stations))) + 1
    grid = [
        ((i + 0.5 * (j % 2)) * spacing_km, j * spacing_km * np.sqrt(3) / 2)
        for j in range(side)
        for i in range(side)
    ]
    grid = np.array(grid)
    grid -= grid.mean(axis=0)
    order = np.argsort(np.hypot(grid[:, 0], grid[:, 1]))[:n_stations]
    return grid[order] + rng.uniform(-spacing_km / 6, spacing_km / 6, (n_stations, 2))


def layers_of(bank) -> list:
    """The bank's velocity model as the centre's ``[[top_km, vp, vs], ...]``."""
    model = bank.models[0]
    tops = np.r_[0.0, np.cumsum(model[:-1, 0])]
    return [[round(float(t), 3), float(row[1]), float(row[2])] for t, row in zip(tops, model, strict=False)]


def _bank(depth_km: float, distances_km, seed: int, cache_dir=None):
    from host_training.synthetic.greens import BankConfig, build_bank

    span = max(distances_km)
    nt = int(min(max(16.0, 6.0 + span / 3.0), 40.0) / 0.025)  # P to the end of the S coda
    config = BankConfig(
        n_models=1,
        depths_per_model=1,
        depth_range_km=(depth_km, depth_km),
        distances_km=tuple(distances_km),
        nt=nt,
        dwm_length=6.0,
        seed=seed,
    )
    return build_bank(config, cache_dir=cache_dir)


def _place_quake(rng, quake: Quake, xy_km, records, seed: int, cache_dir) -> list:
    """Add ``quake`` to every near station's record; the network's layers (from its bank)."""
    from host_training.synthetic.physics import earthquake_ground_motion

    dist = np.round(np.hypot(xy_km[:, 0] - quake.x_km, xy_km[:, 1] - quake.y_km), 1)
    near = [i for i in range(len(dist)) if dist[i] <= MAX_DISTANCE_KM]
    distances = sorted({max(float(dist[i]), 0.5) for i in near})
    bank = _bank(quake.depth_km, distances, seed, cache_dir)
    layers = layers_of(bank)
    params = None
    for i in near:
        k = distances.index(max(float(dist[i]), 0.5))
        azimuth = float(np.degrees(np.arctan2(xy_km[i, 0] - quake.x_km, xy_km[i, 1] - quake.y_km)) % 360)
        site = dict(
            site_f0_hz=float(np.exp(rng.uniform(np.log(0.8), np.log(12.0)))),
            site_gain=float(np.exp(rng.uniform(0.0, np.log(3.0)))),
            site_q=rng.uniform(1.5, 5.0),
        )
        data, t_p, _t_s, drawn = earthquake_ground_motion(
            rng,
            bank,
            FS_HZ,
            quake.magnitude,
            node=(0, 0, k),
            params=None if params is None else {**params, "azimuth": azimuth, **site},
        )
        if params is None:
            params = {key: drawn[key] for key in ("strike", "dip", "rake", "stress_drop_bar", "kappa_s")}
            data, t_p, _t_s, drawn = earthquake_ground_motion(
                rng,
                bank,
                FS_HZ,
                quake.magnitude,
                node=(0, 0, k),
                params={**params, "azimuth": azimuth, **site},
            )
        travel = float(first_arrival_s(layers, "P", [dist[i]], quake.depth_km)[0])
        quake.p_s[i] = quake.time_s + travel
        start = int(round((quake.p_s[i] - t_p) * FS_HZ))
        rec = records[i]
        lo, hi = max(start, 0), min(start + data.shape[1], rec.shape[1])
        if hi > lo:
            rec[:, lo:hi] += data[:, lo - start : hi - start]
    return layers


def record_length_s(n_events: int, gap_s: float = 80.0, record_s: float = 0.0) -> float:
    """Length of every station's record, s: 40 s lead, ``gap_s`` per earthquake and a 30 s
    tail, or ``record_s`` when longer."""
    return max(40.0 + n_events * gap_s + 30.0, float(record_s))


def build_network(
    n_stations: int,
    n_events: int,
    seed: int,
    transients_per_station: int = 5,
    magnitude_range=(3.0, 4.5),
    spacing_km: float = 15.0,
    gap_s: float = 80.0,
    cache_dir=None,
    record_s: float = 0.0,
    kinds=TRANSIENT_KINDS,
) -> SyntheticNetwork:
    """The stations, earthquakes and records of one seeded synthetic network (see the module notes).

    ``n_events`` may be 0 (noise and transients only: a false-trigger run); ``record_s``
    lengthens the records (:func:`record_length_s`), the transients spread over all of it;
    each transient is one of ``kinds`` (:data:`host_training.synthetic.noise.TRANSIENT_KINDS`).
    """
    from host_training.synthetic.noise import transient
    from host_training.synthetic.parametric import background

    rng = np.random.default_rng(seed)
    xy = layout(rng, n_stations, spacing_km)
    lat, lon = to_lat_lon(xy[:, 0], xy[:, 1])
    codes = [f"N{i:03d}" for i in range(n_stations)]
    duration_s = record_length_s(n_events, gap_s, record_s)
    n = int(duration_s * FS_HZ)
    records = [background(rng, n, FS_HZ, sigma_mps2=float(rng.uniform(5e-4, 1.5e-3)))[0] for _ in codes]
    inner = 0.6 * np.abs(xy).max(axis=0)
    quakes, layers = [], [[0.0, 6.0, 3.5]]
    for e in range(n_events):
        x, y = rng.uniform(-inner, inner)
        qlat, qlon = to_lat_lon(x, y)
        quake = Quake(
            40.0 + e * gap_s + float(rng.uniform(0, 10)),
            float(x),
            float(y),
            float(np.round(rng.uniform(4.0, 15.0), 1)),
            float(np.round(rng.uniform(*magnitude_range), 2)),
            float(qlat),
            float(qlon),
        )
        layers = _place_quake(rng, quake, xy, records, seed, cache_dir)
        quakes.append(quake)
    quiet = [(q.time_s - 5, q.time_s + 45) for q in quakes]
    times, drawn = {}, {}
    for i, code in enumerate(codes):
        times[code], drawn[code] = [], []
        while len(times[code]) < transients_per_station:
            t = float(rng.uniform(10.0, duration_s - 15.0))
            if any(a <= t <= b for a, b in quiet):
                continue
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind in LOCAL_TRANSIENTS:
                lo, hi = max(0, int((t - 10.0) * FS_HZ)), min(n, int((t + 30.0) * FS_HZ))
                records[i][:, lo:hi] += transient(rng, kind, hi - lo, FS_HZ, t - lo / FS_HZ)
            else:
                records[i] += transient(rng, kind, n, FS_HZ, t)
            times[code].append(t)
            drawn[code].append(kind)
    return SyntheticNetwork(
        codes,
        xy,
        np.c_[lat, lon],
        layers,
        quakes,
        dict(zip(codes, records, strict=False)),
        times,
        duration_s,
        drawn,
    )
