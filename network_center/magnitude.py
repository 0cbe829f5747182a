"""Magnitude from the peak displacement of the first seconds after P (``pd``), per relation.

Each node sends, with its P pick, ``pd_m``: the peak vertical displacement in the 3 s
after the onset, integrated twice from acceleration and high-passed at 0.075 Hz after
each integration (Wu & Kanamori, 2005; ``docs/mqtt.md``). With the hypocentral distance
``R`` from the network location, a station's magnitude is read off a published
``Pd``-magnitude-distance regression; the event's magnitude is the median of its
stations', and its uncertainty the stations' scatter (the median absolute deviation
scaled to a standard deviation, over the square root of their number, with the
relation's own scatter as a floor).

Relations (``[magnitude] relation``), ``Pd`` in cm and ``R`` in km:

* ``kuyuk-allen-2013``: ``M = 1.23 log10(Pd) + 1.38 log10(R) + 5.39`` (sigma 0.31), from
  Japan, Taiwan and California records: Kuyuk, H. S., and R. M. Allen (2013), A global
  approach to provide magnitude estimates for earthquake early warning alerts, GRL 40,
  6329-6333.
* ``wu-zhao-2006``: ``log10(Pd) = -3.463 + 0.729 M - 1.374 log10(R)`` (sigma 0.32), from
  Southern California: Wu, Y.-M., and L. Zhao (2006), Magnitude estimation using the
  first three seconds P-wave amplitude in earthquake early warning, GRL 33, L16312.
"""

from __future__ import annotations

import numpy as np

# name -> (function of (log10 Pd in cm, log10 R in km) -> M, the relation's own scatter)
RELATIONS = {
    "kuyuk-allen-2013": (lambda log_pd, log_r: 1.23 * log_pd + 1.38 * log_r + 5.39, 0.31),
    "wu-zhao-2006": (lambda log_pd, log_r: (log_pd + 3.463 + 1.374 * log_r) / 0.729, 0.32),
}
MIN_DISTANCE_KM = 1.0  # the relations hold from a few km; closer, R is clamped


def station_magnitudes(pd_m, hypocentral_km, relation: str = "kuyuk-allen-2013") -> np.ndarray:
    """Magnitude at each station from its ``pd`` (m) and hypocentral distance (km)."""
    function, _ = RELATIONS[relation]
    pd_cm = np.asarray(pd_m, float) * 100.0
    r = np.maximum(np.asarray(hypocentral_km, float), MIN_DISTANCE_KM)
    return function(np.log10(pd_cm), np.log10(r))


def network_magnitude(
    pd_m, hypocentral_km, relation: str = "kuyuk-allen-2013", weights=None
) -> tuple[float | None, float | None, int]:
    """The event's magnitude, its uncertainty and the stations it rests on.

    Parameters
    ----------
    pd_m : array_like
        Peak displacement of each station's P pick, m (``None``/0/NaN: left out).
    hypocentral_km : array_like
        Distance of each station from the hypocentre, km.
    relation : str
        A key of :data:`RELATIONS`.
    weights : array_like, optional
        Stations with weight below 1 (a doubtful clock) count only when nothing better is there.

    Returns
    -------
    magnitude, uncertainty : float or None
        None when no station has a usable ``pd``.
    n_stations : int
    """
    pd = np.array([np.nan if v is None else v for v in pd_m], float)
    r = np.asarray(hypocentral_km, float)
    good = np.isfinite(pd) & (pd > 0) & np.isfinite(r)
    if weights is not None:
        full = good & (np.asarray(weights, float) >= 1.0)
        good = full if full.any() else good
    if not good.any():
        return None, None, 0
    m = station_magnitudes(pd[good], r[good], relation)
    centre = float(np.median(m))
    spread = 1.4826 * float(np.median(np.abs(m - centre))) if m.size > 1 else 0.0
    sigma = max(spread, RELATIONS[relation][1]) / np.sqrt(m.size)
    return round(centre, 2), round(float(sigma), 2), int(m.size)
