"""Travel times of first P and S arrivals in a flat layered (1-D) Earth, and PyOcto's tables.

A model is a list of layers ``(top_km, vp_kmps, vs_kmps)``, top down, the last one a
half-space. The first arrival at a surface station at epicentral distance ``x`` from a
source at depth ``z`` is the earliest of

* the direct ray up through the layers above the source: the ray parameter ``p`` solves
  ``x = sum h_i p v_i / sqrt(1 - p^2 v_i^2)`` (bisection), and
  ``t = sum h_i / (v_i sqrt(1 - p^2 v_i^2))``;
* the head wave along the top of each deeper layer ``n`` faster than everything above it:
  ``t = x / v_n + sum_i k_i h_i sqrt(1/v_i^2 - 1/v_n^2)``, ``k_i`` = 2 for layers between
  the source and ``n`` (down and up), 1 above the source, valid past its critical distance.

(Shearer, *Introduction to Seismology*, ch. 4; the classic layered-Earth refraction formulas.)
The same function builds the binary travel-time table PyOcto's ``VelocityModel1D`` reads
(so no eikonal solver is needed) and gives the locator its predictions.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

BISECTIONS = 40


def layer_stack(layers, depth_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Thicknesses (km) and row indices of the layers between the surface and ``depth_km``."""
    tops = np.array([row[0] for row in layers], float)
    bottoms = np.r_[tops[1:], np.inf]
    h = np.clip(np.minimum(bottoms, depth_km) - tops, 0.0, None)
    keep = h > 0
    return h[keep], np.flatnonzero(keep)


def _direct(h: np.ndarray, v: np.ndarray, x_km: np.ndarray) -> np.ndarray:
    """Direct-ray time (s) through layers ``h`` (km) of speed ``v`` (km/s) to offsets ``x_km``."""
    if h.size == 0:
        return x_km / 1e-9
    p_max = (1.0 - 1e-12) / v.max()
    lo = np.zeros_like(x_km)
    hi = np.full_like(x_km, p_max)
    for _ in range(BISECTIONS):
        p = 0.5 * (lo + hi)
        eta = np.sqrt(1.0 - (p[:, None] * v[None]) ** 2)
        reach = (h[None] * p[:, None] * v[None] / eta).sum(axis=1)
        far = reach > x_km
        hi = np.where(far, p, hi)
        lo = np.where(far, lo, p)
    p = 0.5 * (lo + hi)
    eta = np.sqrt(1.0 - (p[:, None] * v[None]) ** 2)
    reach = (h[None] * p[:, None] * v[None] / eta).sum(axis=1)
    t = (h[None] / (v[None] * eta)).sum(axis=1)
    # Past the largest reachable offset (a grazing ray in the fastest layer), go on horizontally.
    return t + np.clip(x_km - reach, 0.0, None) * p_max


def first_arrival_s(layers, phase: str, distance_km, depth_km: float) -> np.ndarray:
    """First-arrival travel time (s) of ``phase`` ("P"/"S") to surface offsets ``distance_km``.

    Parameters
    ----------
    layers : sequence of (top_km, vp_kmps, vs_kmps)
        The 1-D model, top down; the first top is 0 (the surface).
    phase : str
        ``"P"`` or ``"S"``.
    distance_km : array_like
        Epicentral distances, km.
    depth_km : float
        Source depth below the surface, km (0 or more).
    """
    x = np.atleast_1d(np.asarray(distance_km, float))
    col = 1 if phase.upper() == "P" else 2
    speeds = np.array([row[col] for row in layers], float)
    h, rows = layer_stack(layers, max(float(depth_km), 1e-6))
    t = _direct(h, speeds[rows], x)
    tops = [row[0] for row in layers]
    for n in range(rows[-1] + 1 if rows.size else 0, len(layers)):
        vn = speeds[n]
        h_up, rows_up = layer_stack(layers, tops[n])
        v_up = speeds[rows_up]
        if v_up.max() >= vn:
            continue
        # Every layer above the refractor is crossed on the way up; the part of it below
        # the source also on the way down.
        above_source = np.clip(depth_km - np.array([tops[i] for i in rows_up]), 0.0, h_up)
        h_eff = 2.0 * h_up - above_source
        ratio = v_up / vn
        x_crit = (h_eff * ratio / np.sqrt(1.0 - ratio**2)).sum()
        head = x / vn + (h_eff * np.sqrt(1.0 / v_up**2 - 1.0 / vn**2)).sum()
        t = np.where(x >= x_crit, np.minimum(t, head), t)
    return t


def travel_time_grid(layers, phase: str, delta_km: float, xdist_km: float, zdist_km: float) -> np.ndarray:
    """``(nx, nz)`` first-arrival times (s): offsets ``i * delta_km``, source depths ``j * delta_km``."""
    nx = int(xdist_km / delta_km) + 1
    nz = int(zdist_km / delta_km) + 1
    x = np.arange(nx) * delta_km
    return np.stack([first_arrival_s(layers, phase, x, j * delta_km) for j in range(nz)], axis=1)


class TravelTimes:
    """First-arrival times interpolated (bilinear) in a grid of ``delta_km``: the locator's predictions.

    Within 2 ms of :func:`first_arrival_s` on a 0.5 km grid, and a thousand times faster.
    """

    def __init__(self, layers, xdist_km: float, zdist_km: float, delta_km: float = 0.5):
        self.delta_km = delta_km
        self.grids = {phase: travel_time_grid(layers, phase, delta_km, xdist_km, zdist_km) for phase in "PS"}

    def _cell(self, phase: str, distance_km, depth_km: float):
        grid = self.grids[phase.upper()]
        nx, nz = grid.shape
        x = np.clip(np.asarray(distance_km, float) / self.delta_km, 0, nx - 1.000001)
        z = min(max(float(depth_km) / self.delta_km, 0.0), nz - 1.000001)
        i, j = x.astype(int), int(z)
        fx, fz = x - i, z - j
        top = grid[i, j] * (1 - fx) + grid[i + 1, j] * fx
        bottom = grid[i, j + 1] * (1 - fx) + grid[i + 1, j + 1] * fx
        return grid, i, j, fx, fz, top, bottom

    def __call__(self, phase: str, distance_km, depth_km: float) -> np.ndarray:
        _, _, _, _, fz, top, bottom = self._cell(phase, distance_km, depth_km)
        return top * (1 - fz) + bottom * fz

    def with_slowness(self, phase: str, distance_km, depth_km: float):
        """Times (s) as :meth:`__call__`, and their derivatives along distance and depth (s/km)
        of the same bilinear interpolation: the locator's Jacobian without finite differences."""
        grid, i, j, fx, fz, top, bottom = self._cell(phase, distance_km, depth_km)
        along = (1 - fz) * (grid[i + 1, j] - grid[i, j]) + fz * (grid[i + 1, j + 1] - grid[i, j + 1])
        return top * (1 - fz) + bottom * fz, along / self.delta_km, (bottom - top) / self.delta_km


def write_pyocto_table(
    layers,
    path,
    delta_km: float = 0.5,
    xdist_km: float = 300.0,
    zdist_km: float = 60.0,
    grids: dict | None = None,
) -> Path:
    """PyOcto's ``VelocityModel1D`` travel-time file for ``layers``.

    The format is PyOcto's own (``VelocityModel1D.create_model``): ``nx``, ``nz`` (int32),
    ``delta`` (float64), then the P and S times as ``(nx, nz)`` float64 arrays, offset
    ``i * delta`` and depth ``j * delta`` (km), in s.
    """
    tables = [
        travel_time_grid(layers, phase, delta_km, xdist_km, zdist_km) if grids is None else grids[phase]
        for phase in "PS"
    ]
    nx, nz = tables[0].shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("iid", nx, nz, float(delta_km)))
        for table in tables:
            fh.write(np.ascontiguousarray(table, dtype=np.float64).tobytes())
    tmp.replace(path)
    return path
