"""A bank of layered-earth Green's functions, computed once and cached on disk.

The physics-based generator (:mod:`host_training.synthetic.physics`) builds earthquake records from Green's
functions of random 1-D crustal models, so that P, S and surface waves, their timing and
their amplitude ratios come out of wave propagation instead of being drawn by hand.
Green's functions are computed with PyGRT (``pip install pygrt-kit``: generalized
reflection-transmission coefficients and discrete wavenumber integration, C code), for
an explosion (EX) and the three fundamental double couples (DD, DS, SS), at a free-surface
receiver. A record for any focal mechanism and azimuth is then a weighted sum of the ten
stored traces (:func:`displacement_zrt`), a few microseconds of numpy.

Why PyGRT and not pyprop8 (both full-wave, layered half-space): measured here, same
model, 24 distances of 1-200 km, 2048 samples at 40 Hz, one core, PyGRT computed all 15
elementary Green's functions (any mechanism and azimuth afterwards) in 81 s; pyprop8
needed 33 s for one moment tensor, so about 200 s for the six a bank needs. PyGRT also
takes a Q per layer (pyprop8 is elastic: attenuation would have to be faked afterwards),
starts each trace shortly before the first P (``ref_first_p``), so short traces cover
200 km, and writes the first P and S travel times into each trace's header: exact picks.

Bank layout: ``gf[model, depth, distance, component, sample]`` float32, components in
:data:`GF_COMPONENTS`, displacement in cm for a 1e20 dyne-cm source with a delta-function
moment history (PyGRT's convention; :func:`displacement_zrt` converts to m and any moment).
Sample 0 is ``pre_p_s`` before the first P arrival.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.helpformat import HelpFormatter

log = logging.getLogger(__name__)

GF_COMPONENTS = ("EXZ", "EXR", "DDZ", "DDR", "DSZ", "DSR", "DST", "SSZ", "SSR", "SST")
DEFAULT_DISTANCES_KM = (1.0, 1.6, 2.6, 4.2, 6.9, 11.1, 18.0, 29.2, 47.3, 76.6, 124.0, 200.0)


def default_cache_dir() -> Path:
    """Folder of cached banks: ``$SEISMICTORCH_CACHE/greens`` or ``~/.cache/seismictorch/greens``."""
    root = os.environ.get("SEISMICTORCH_CACHE") or Path.home() / ".cache" / "seismictorch"
    return Path(root) / "greens"


@dataclass(frozen=True)
class BankConfig:
    """What a bank holds; its hash names the cache file.

    Attributes
    ----------
    n_models : int
        Random 1-D velocity models.
    depths_per_model : int
        Source depths per model, drawn in ``depth_range_km``.
    depth_range_km : tuple of float
        Source depth range in km.
    distances_km : tuple of float
        Epicentral distances in km (the same for every model and depth).
    dt_s : float
        Sample interval in s (0.025 s: 40 Hz, the model input rate; content up to 20 Hz).
    nt : int
        Samples per trace.
    pre_p_s : float
        Time before the first P arrival at which each trace starts, s.
    seed : int
        Seed of the velocity models and depths.
    dwm_length : float
        PyGRT's ``Length``: the wavenumber step is ``2 pi / (dwm_length * max distance)``;
        0 lets PyGRT choose. The step makes the source periodic, with images at
        ``dwm_length * max distance``; 4 keeps the nearest image's waves out of a 35 s
        trace at 200 km (within 1.3 % of PyGRT's own choice there, 0.1 % within 50 km)
        and is about 4 times faster. Left out of the cache key when 0, so banks cached
        before it existed keep their names.
    """

    n_models: int = 16
    depths_per_model: int = 2
    depth_range_km: tuple = (2.0, 18.0)
    distances_km: tuple = DEFAULT_DISTANCES_KM
    dt_s: float = 0.025
    nt: int = 1400
    pre_p_s: float = 4.0
    seed: int = 0
    dwm_length: float = 0.0

    def __post_init__(self):
        checks = [("n_models", self.n_models >= 1), ("depths_per_model", self.depths_per_model >= 1),
                  ("distances_km", len(self.distances_km) >= 1 and min(self.distances_km) > 0),
                  ("dt_s", self.dt_s > 0), ("nt", self.nt >= 64), ("pre_p_s", self.pre_p_s > 0),
                  ("dwm_length", self.dwm_length == 0 or self.dwm_length >= 2),
                  ("depth_range_km", 0 < self.depth_range_km[0] <= self.depth_range_km[1])]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"Green's function bank setting {name}={getattr(self, name)!r} "
                                 "is not allowed")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["depth_range_km"] = list(self.depth_range_km)
        d["distances_km"] = list(self.distances_km)
        if not d["dwm_length"]:  # PyGRT's own choice: the key of the banks made before the option
            del d["dwm_length"]
        return d

    def key(self) -> str:
        raw = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


# Named banks. "full": the generator's default (384 traces per elementary source, about 25
# CPU-minutes on a free core, 45 on a shared machine). "small": the quick start's (make demo)
# 8 models x 2 depths at the same 12 distances, 1-200 km, 40 Hz (content to 20 Hz), 35 s
# traces, with dwm_length 4: about 12 CPU-s per model and depth, 3-4 CPU-minutes in all.
# "tiny": one model, one depth, three distances, 12.5 s traces: seconds, for tests (dwm_length 6:
# in traces this short the images' waves wrap around, damped, into the trace; 4 gives 4 % at 40 km).
BANK_PRESETS = {
    "full": {},
    "small": dict(n_models=8, depths_per_model=2, dwm_length=4.0),
    "tiny": dict(n_models=1, depths_per_model=1, depth_range_km=(8.0, 8.0), distances_km=(5.0, 15.0, 40.0),
                 nt=500, dwm_length=6.0),
}


def preset_config(name: str, **overrides) -> "BankConfig":
    """The :class:`BankConfig` of a named preset (:data:`BANK_PRESETS`), with ``overrides``."""
    if name not in BANK_PRESETS:
        raise ValueError(f"unknown Green's function bank preset {name!r}; known: {', '.join(BANK_PRESETS)}")
    return BankConfig(**{**BANK_PRESETS[name], **overrides})


def nafe_drake_density(vp_kmps):
    """Density in g/cm^3 from Vp in km/s (Brocher 2005, Nafe-Drake curve)."""
    v = np.asarray(vp_kmps, dtype=float)
    return 1.6612 * v - 0.4721 * v**2 + 0.0671 * v**3 - 0.0043 * v**4 + 0.000106 * v**5


def random_velocity_model(rng: np.random.Generator) -> np.ndarray:
    """A random continental crust over a mantle half-space.

    Returns
    -------
    numpy.ndarray
        ``(n_layers, 6)``: thickness (km; 0 for the half-space), Vp, Vs (km/s),
        density (g/cm^3), Qp, Qs. The top layer is weathered rock (Vs >= 1.6 km/s);
        softer sediments are the site term of the generator, which keeps the wavenumber
        integration cheap.
    """
    rows = []
    # (thickness range km, Vp range km/s, Vp/Vs range, Qs range)
    spec = [((0.5, 3.0), (3.6, 5.0), (1.80, 2.05), (40, 150)),
            ((6.0, 14.0), (5.6, 6.2), (1.68, 1.80), (150, 400)),
            ((6.0, 14.0), (6.2, 6.7), (1.70, 1.78), (300, 600)),
            ((5.0, 12.0), (6.7, 7.2), (1.72, 1.80), (400, 800)),
            ((0.0, 0.0), (7.8, 8.2), (1.74, 1.80), (600, 1000))]
    for (h_lo, h_hi), (vp_lo, vp_hi), (r_lo, r_hi), (q_lo, q_hi) in spec:
        h = rng.uniform(h_lo, h_hi)
        vp = rng.uniform(vp_lo, vp_hi)
        vs = vp / rng.uniform(r_lo, r_hi)
        qs = float(np.exp(rng.uniform(np.log(q_lo), np.log(q_hi))))
        rows.append([round(h, 2), round(vp, 3), round(vs, 3), round(float(nafe_drake_density(vp)), 3),
                     round(2.0 * qs, 1), round(qs, 1)])
    return np.array(rows)


@dataclass
class GreensBank:
    """Precomputed Green's functions (see the module docstring for the layout)."""

    config: BankConfig
    models: np.ndarray        # (n_models, n_layers, 6)
    depths_km: np.ndarray     # (n_models, n_depths)
    distances_km: np.ndarray  # (n_distances,)
    gf: np.ndarray            # (n_models, n_depths, n_distances, 10, nt) float32
    t_p: np.ndarray           # first P, s after sample 0
    t_s: np.ndarray           # first S, s after sample 0
    vs_source: np.ndarray     # (n_models, n_depths) shear velocity at the source, km/s
    meta: dict = field(default_factory=dict)

    @property
    def sampling_rate_hz(self) -> float:
        return 1.0 / self.config.dt_s

    @property
    def shape(self) -> tuple:
        return self.gf.shape[:3]

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, config=json.dumps(self.config.to_dict()), models=self.models,
                            depths_km=self.depths_km, distances_km=self.distances_km, gf=self.gf,
                            t_p=self.t_p, t_s=self.t_s, vs_source=self.vs_source,
                            meta=json.dumps(self.meta))
        os.replace(tmp, path)
        return path

    def shard(self, models) -> "GreensBank":
        """The part of the bank holding the velocity models ``models`` (indices)."""
        m = np.asarray(models)
        return GreensBank(self.config, self.models[m], self.depths_km[m], self.distances_km, self.gf[m],
                          self.t_p[m], self.t_s[m], self.vs_source[m], dict(self.meta, shard=m.tolist()))

    @classmethod
    def merge(cls, shards) -> "GreensBank":
        """Join shards written by :meth:`shard` (in model order) back into one bank."""
        shards = sorted(shards, key=lambda b: b.meta.get("shard", [0])[0])
        meta = {k: v for k, v in shards[0].meta.items() if k != "shard"}
        cat = lambda name: np.concatenate([getattr(b, name) for b in shards])  # noqa: E731
        return cls(shards[0].config, cat("models"), cat("depths_km"), shards[0].distances_km, cat("gf"),
                   cat("t_p"), cat("t_s"), cat("vs_source"), meta)

    @classmethod
    def load(cls, path) -> "GreensBank":
        with np.load(path, allow_pickle=False) as z:
            raw = json.loads(str(z["config"]))
            raw["depth_range_km"] = tuple(raw["depth_range_km"])
            raw["distances_km"] = tuple(raw["distances_km"])
            return cls(BankConfig(**raw), z["models"], z["depths_km"], z["distances_km"], z["gf"],
                       z["t_p"], z["t_s"], z["vs_source"], json.loads(str(z["meta"])))


def _layer_at(model: np.ndarray, depth_km: float) -> int:
    tops = np.r_[0.0, np.cumsum(model[:-1, 0])]
    return int(np.searchsorted(tops, depth_km, side="right") - 1)


def read_sac(path) -> tuple[np.ndarray, dict]:
    """Samples and the float header words ``b``, ``t0``, ``t1`` of a little-endian SAC file.

    PyGRT writes binary SAC; reading it here keeps the bank builder free of ObsPy, so it
    runs wherever numpy and pygrt-kit do.
    """
    raw = Path(path).read_bytes()
    floats = np.frombuffer(raw[:280], dtype="<f4")
    ints = np.frombuffer(raw[280:440], dtype="<i4")
    npts = int(ints[9])
    if ints[6] != 6 or len(raw) < 632 + 4 * npts:
        raise ValueError(f"{path}: not a little-endian SAC v6 file of {npts} samples")
    data = np.frombuffer(raw[632:632 + 4 * npts], dtype="<f4")
    return data, {"delta": float(floats[0]), "b": float(floats[5]), "t0": float(floats[10]),
                  "t1": float(floats[11])}


@contextlib.contextmanager
def _console_to(path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, which PyGRT's C
    code and its ``grt`` child write to) to the file ``path`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(path, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _compute_one(model: np.ndarray, depth_km: float, config: BankConfig, threads: int):
    """Green's functions of one model and source depth at every bank distance."""
    import pygrt

    work = Path(tempfile.mkdtemp(prefix="seismictorch-grt-"))
    try:
        model_file = work / "model.txt"
        np.savetxt(model_file, model, fmt="%.4f")
        m = pygrt.PyModel1D(grn=work / "grn", modelpath=model_file)
        with _console_to(work / "grt.log"):  # its every-run "skip low frequency" warning hid the progress
            try:
                m.greenfn(depsrc=float(depth_km), deprcv=0.0,
                          dists=np.asarray(config.distances_km, dtype=float), nt=config.nt, dt=config.dt_s,
                          delayT0=-config.pre_p_s, ref_first_p=True, gf_source=["EX", "DC"], nthreads=threads,
                          print_log=False, Length=float(config.dwm_length))
            except Exception as exc:  # noqa: BLE001 - re-raised with what PyGRT printed
                failure = exc
            else:
                failure = None
        said = (work / "grt.log").read_text(errors="replace").strip()
        if failure is not None:
            raise RuntimeError(f"PyGRT failed for depth {depth_km} km: {failure}; "
                               f"it printed: {said[-2000:]}") from failure
        if said:
            log.debug("PyGRT, depth %s km: %s", depth_km, said)
        dirs = {}
        for d in (work / "grn").iterdir():
            if d.is_dir():
                dirs[float(d.name.rsplit("_", 1)[1])] = d
        out = np.zeros((len(config.distances_km), len(GF_COMPONENTS), config.nt), dtype=np.float32)
        t_p = np.zeros(len(config.distances_km))
        t_s = np.zeros(len(config.distances_km))
        for k, dist in enumerate(config.distances_km):
            folder = dirs[min(dirs, key=lambda x: abs(x - dist))]
            for c, name in enumerate(GF_COMPONENTS):
                data, head = read_sac(folder / f"{name}.sac")
                n = min(config.nt, data.size)
                out[k, c, :n] = data[:n]
                if c == 0:
                    t_p[k] = head["t0"] - head["b"]
                    t_s[k] = head["t1"] - head["b"]
        return out, t_p, t_s
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compute_star(args):
    return _compute_one(*args)


def build_bank(config: BankConfig = BankConfig(), cache_dir=None, progress: bool = False,
               threads: int = 1, jobs: int = 1) -> GreensBank:
    """The bank of ``config``, from the cache when there, else computed and cached.

    Parameters
    ----------
    config : BankConfig
        What to compute; seeded, so the same config always gives the same bank.
    cache_dir : str or Path, optional
        Where banks are kept (default :func:`default_cache_dir`); the file is
        ``greens-<hash of config>.npz``, written under a temporary name and renamed.
    progress : bool
        tqdm bar over (model, depth) pairs.
    threads : int
        OpenMP threads of each PyGRT run.
    jobs : int
        PyGRT runs at a time (processes).
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"greens-{config.key()}.npz"
    if path.is_file():
        try:
            return GreensBank.load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable bank (%s); computing it again", path, exc)
    rng = np.random.default_rng(config.seed)
    models = np.stack([random_velocity_model(rng) for _ in range(config.n_models)])
    lo, hi = config.depth_range_km
    # 0.1 km steps for crustal sources; metres for shallow ones (0.1 km would put a 20-150 m
    # shot at 0 or 100 m).
    depths = np.round(rng.uniform(lo, hi, (config.n_models, config.depths_per_model)), 1 if lo >= 1.0 else 3)
    nd = len(config.distances_km)
    gf = np.zeros((config.n_models, config.depths_per_model, nd, len(GF_COMPONENTS), config.nt), np.float32)
    t_p = np.zeros((config.n_models, config.depths_per_model, nd))
    t_s = np.zeros_like(t_p)
    vs_source = np.zeros((config.n_models, config.depths_per_model))
    pairs = [(i, j) for i in range(config.n_models) for j in range(config.depths_per_model)]
    tasks = [(models[i], depths[i, j], config, threads) for i, j in pairs]
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = list(tqdm(pool.imap(_compute_star, tasks), total=len(tasks),
                                desc="Green's functions (model, depth)", disable=not progress))
    else:
        results = (_compute_star(t) for t in tqdm(tasks, desc="Green's functions (model, depth)",
                                                 disable=not progress))
    for (i, j), (g, tp, ts) in zip(pairs, results, strict=True):
        gf[i, j], t_p[i, j], t_s[i, j] = g, tp, ts
        vs_source[i, j] = models[i][_layer_at(models[i], depths[i, j]), 2]
    bank = GreensBank(config, models, depths, np.asarray(config.distances_km, float), gf, t_p, t_s, vs_source,
                      meta=dict(code="pygrt-kit", version=_pygrt_version()))
    bank.save(path)
    return bank


def _pygrt_version() -> str:
    try:
        import pygrt

        return str(pygrt.__version__)
    except Exception:  # noqa: BLE001 - provenance only
        return "unknown"


def radiation(strike_deg, dip_deg, rake_deg, azimuth_deg):
    """Double-couple weights of the DD, DS, SS Green's functions (PyGRT's convention).

    Returns
    -------
    a0, a1, a2, a4, a5 : float
        Z and R: ``a0*DD + a1*DS + a2*SS``; T: ``a4*DST + a5*SST``.
    """
    s, d, r = np.radians([strike_deg, dip_deg, rake_deg])
    th = np.radians(azimuth_deg) - s
    sd, cd, sr, cr = np.sin(d), np.cos(d), np.sin(r), np.cos(r)
    s2d, c2d = 2 * sd * cd, 2 * cd * cd - 1
    st, ct = np.sin(th), np.cos(th)
    s2t, c2t = 2 * st * ct, 2 * ct * ct - 1
    a0 = 0.5 * s2d * sr
    a1 = cd * cr * ct - c2d * sr * st
    a2 = 0.5 * s2d * sr * c2t + sd * cr * s2t
    a4 = -c2d * sr * ct - cd * cr * st
    a5 = sd * cr * c2t - 0.5 * s2d * sr * s2t
    return a0, a1, a2, a4, a5


def displacement_zrt(gf: np.ndarray, strike_deg: float, dip_deg: float, rake_deg: float,
                     azimuth_deg: float, moment_dyncm: float = 1e20, isotropic: float = 0.0) -> np.ndarray:
    """Vertical, radial and transverse displacement for one mechanism.

    Parameters
    ----------
    gf : numpy.ndarray
        ``(10, nt)`` Green's functions of one bank node (:data:`GF_COMPONENTS`).
    strike_deg, dip_deg, rake_deg : float
        Double-couple fault plane, degrees.
    azimuth_deg : float
        Source-to-station azimuth, degrees clockwise from north.
    moment_dyncm : float
        Scalar moment in dyne-cm.
    isotropic : float
        Weight of an added explosion (0 for a pure double couple).

    Returns
    -------
    numpy.ndarray
        ``(3, nt)`` displacement in m, rows Z (up), R (away from the source), T
        (clockwise), for a delta-function moment history.
    """
    a0, a1, a2, a4, a5 = radiation(strike_deg, dip_deg, rake_deg, azimuth_deg)
    g = np.asarray(gf, dtype=np.float64)
    z = a0 * g[2] + a1 * g[4] + a2 * g[7] + isotropic * g[0]
    r = a0 * g[3] + a1 * g[5] + a2 * g[8] + isotropic * g[1]
    t = a4 * g[6] + a5 * g[9]
    return np.stack([z, r, t]) * (1e-20 * moment_dyncm * 0.01)  # cm -> m


def zrt_to_enz(zrt: np.ndarray, azimuth_deg: float) -> np.ndarray:
    """Rotate ``(Z, R, T)`` rows to ``(E, N, Z)`` for a source-to-station azimuth in degrees."""
    az = np.radians(azimuth_deg)
    z, r, t = zrt
    e = r * np.sin(az) + t * np.cos(az)
    n = r * np.cos(az) - t * np.sin(az)
    return np.stack([e, n, z])


def bank_path(config: BankConfig, cache_dir=None) -> Path:
    """Where :func:`build_bank` keeps the bank of ``config``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache_dir / f"greens-{config.key()}.npz"


def main(argv=None) -> int:
    """``python -m host_training.synthetic.greens``: build (or import shards of) a bank."""
    import argparse
    import sys

    p = argparse.ArgumentParser(description="Build the Green's function bank of the synthetic generator.",
                                formatter_class=HelpFormatter)
    p.add_argument("--preset", default="full", choices=list(BANK_PRESETS),
                   help="named bank: full (the generator's default), small (make demo), tiny (tests)")
    p.add_argument("--n-models", type=int, default=None, help="override the preset's velocity models")
    p.add_argument("--depths-per-model", type=int, default=None, help="override the preset's source depths")
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed (0)")
    p.add_argument("--jobs", type=int, default=1, help="PyGRT processes at a time")
    p.add_argument("--cache-dir", default=None, help=f"default {default_cache_dir()}")
    p.add_argument("--shards", type=int, default=0, help="also write the bank as N shard files here")
    p.add_argument("--shard-dir", default=".", help="folder of the shard files")
    p.add_argument("--import-shards", nargs="*", default=None, help="join these shard files into the cache")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in (("n_models", args.n_models), ("depths_per_model", args.depths_per_model),
                                   ("seed", args.seed)) if v is not None}
    try:
        config = preset_config(args.preset, **overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.import_shards:
        try:
            bank = GreensBank.merge([GreensBank.load(f) for f in args.import_shards])
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(bank.save(bank_path(bank.config, args.cache_dir)))
        return 0
    bank = build_bank(config, args.cache_dir, progress=True, jobs=args.jobs)
    print(bank_path(config, args.cache_dir), bank.gf.shape)
    if args.shards:
        folder = Path(args.shard_dir)
        for k, models in enumerate(np.array_split(np.arange(config.n_models), args.shards)):
            bank.shard(models).save(folder / f"greens-{config.key()}-part{k}.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
