"""Hypocentre, origin time and their uncertainties from associated picks (weighted least squares).

PyOcto's locations are those of its search grid (``min_node_size_location``, 1.5 km);
the centre refines each event with Geiger's method as solved by
:func:`scipy.optimize.least_squares`: unknowns east, north (km on the local plane),
depth (km, kept in ``[0, max_depth_km]``) and origin time (s), residuals the observed
minus predicted first-arrival times (:class:`~network_center.velocity.TravelTimes`)
over ``pick_sigma_s`` and weighted by the pick's clock weight. The uncertainties are the
square roots of the diagonal of ``s^2 (J^T J)^-1`` with ``s^2`` the reduced chi-square
(at least 1): one standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Location:
    """A refined hypocentre on the local plane."""

    x_km: float
    y_km: float
    depth_km: float
    time_s: float
    sigma_x_km: float
    sigma_y_km: float
    sigma_depth_km: float
    sigma_time_s: float
    rms_s: float
    residuals_s: np.ndarray


def predicted_s(travel, phases, station_xy, hypo) -> np.ndarray:
    """Predicted arrival times (s) of each pick for ``hypo = (x, y, z, t0)``; ``travel(phase, d, z)`` in s."""
    x, y, z, t0 = hypo
    dist = np.hypot(station_xy[:, 0] - x, station_xy[:, 1] - y)
    out = np.empty(len(phases))
    for phase in ("P", "S"):
        mask = phases == phase
        if mask.any():
            out[mask] = travel(phase, dist[mask], max(z, 0.0))
    return t0 + out


def locate(
    travel, phases, station_xy, times_s, weights, start, max_depth_km: float, pick_sigma_s: float = 0.2
) -> Location:
    """Refine ``start = (x_km, y_km, depth_km, time_s)`` on the picks (see the module notes).

    Parameters
    ----------
    travel : callable
        ``travel(phase, distance_km, depth_km)``: first-arrival times, s
        (:class:`~network_center.velocity.TravelTimes`).
    phases : array of str
        ``"P"``/``"S"`` per pick.
    station_xy : numpy.ndarray
        ``(n, 2)`` station positions on the local plane, km.
    times_s : numpy.ndarray
        Pick times, s (any common origin).
    weights : numpy.ndarray
        Per-pick weights (1 for a disciplined clock).
    """
    from scipy.optimize import least_squares

    phases = np.asarray(phases)
    sw = np.sqrt(np.asarray(weights, float)) / pick_sigma_s
    t_ref = float(np.min(times_s))
    t = np.asarray(times_s, float) - t_ref

    def residual(v):
        return sw * (t - predicted_s(travel, phases, station_xy, v))

    x0 = np.array([start[0], start[1], min(max(start[2], 0.1), max_depth_km - 0.1), start[3] - t_ref])
    lo = [-np.inf, -np.inf, 0.0, -np.inf]
    hi = [np.inf, np.inf, max_depth_km, np.inf]
    fit = least_squares(residual, x0, bounds=(lo, hi), x_scale=[5.0, 5.0, 5.0, 1.0], diff_step=1e-4)
    n = len(t)
    chi2 = float((fit.fun**2).sum())
    scale = max(chi2 / (n - 4), 1.0) if n > 4 else 1.0
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac) * scale
        sig = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        sig = np.full(4, np.nan)
    res = t - predicted_s(travel, phases, station_xy, fit.x)
    return Location(
        float(fit.x[0]),
        float(fit.x[1]),
        float(fit.x[2]),
        float(fit.x[3] + t_ref),
        float(sig[0]),
        float(sig[1]),
        float(sig[2]),
        float(sig[3]),
        float(np.sqrt(np.mean(res**2))),
        res,
    )
