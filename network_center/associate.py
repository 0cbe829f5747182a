"""Picks into events with PyOcto (Münchmeyer 2024), on the stations' local plane.

One :class:`pyocto.OctoAssociator` per station set (rebuilt when a station joins):
a homogeneous ``VelocityModel0D`` when the config gives one layer, else a
``VelocityModel1D`` on a travel-time table written from the layers
(:func:`~network_center.velocity.write_pyocto_table`, cached by the layers' hash).
The search volume is the stations' extent plus ``margin_km``, down to ``max_depth_km``.

Münchmeyer, J. (2024), PyOcto: A high-throughput seismic phase associator,
Seismica 3(1).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from .velocity import TravelTimes, write_pyocto_table

log = logging.getLogger(__name__)


def _table(config, travel: TravelTimes) -> Path:
    nx, nz = travel.grids["P"].shape
    key = hashlib.sha256(json.dumps([config.layers, nx, nz, travel.delta_km]).encode()).hexdigest()
    path = Path(config.table_dir) / f"pyocto-{key[:16]}.bin"
    if not path.is_file():
        write_pyocto_table(config.layers, path, delta_km=travel.delta_km, grids=travel.grids)
    return path


def velocity_model(config, travel: TravelTimes):
    """PyOcto's velocity model of the config's layers (its 1-D table read from disk)."""
    import pyocto

    layers = config.layers
    if len(layers) == 1:
        return pyocto.VelocityModel0D(
            p_velocity=layers[0][1], s_velocity=layers[0][2], tolerance=config.tolerance_s
        )
    return pyocto.VelocityModel1D(
        str(_table(config, travel)),
        tolerance=config.tolerance_s,
        surface_p_velocity=layers[0][1],
        surface_s_velocity=layers[0][2],
    )


def build_associator(config, station_xy: np.ndarray, travel: TravelTimes, model=None):
    """A PyOcto associator over the stations at ``station_xy`` (``(n, 2)`` km); ``model``: a
    :func:`velocity_model` to reuse (reading a network-wide table takes most of a second)."""
    import pyocto

    lo = station_xy.min(axis=0) - config.margin_km
    hi = station_xy.max(axis=0) + config.margin_km
    diagonal = float(np.hypot(*(hi - lo)))
    layers = config.layers
    model = velocity_model(config, travel) if model is None else model
    travel_s = diagonal / layers[0][2] + 5.0  # the slowest S across the volume
    return pyocto.OctoAssociator(
        xlim=(float(lo[0]), float(hi[0])),
        ylim=(float(lo[1]), float(hi[1])),
        zlim=(0.0, config.max_depth_km),
        velocity_model=model,
        time_before=travel_s,
        n_picks=config.min_picks,
        n_p_picks=config.min_p_picks,
        n_s_picks=config.min_s_picks,
        n_p_and_s_picks=config.min_p_and_s_stations,
        pick_match_tolerance=max(1.5, 1.5 * config.tolerance_s),
        min_pick_fraction=0.0,
        min_node_size=5.0,
        n_threads=1,
    )


def near_fresh(
    station_xy: np.ndarray, times_s: np.ndarray, fresh: np.ndarray, reach_km: float, reach_s: float
) -> np.ndarray:
    """Indices of the picks that could share an event with one of the ``fresh`` picks.

    Parameters
    ----------
    station_xy : numpy.ndarray
        float, ``(n, 2)``: each pick's station on the local plane, km.
    times_s : numpy.ndarray
        float, ``(n,)``: pick times, s.
    fresh : numpy.ndarray
        int: indices of the picks new since the last association run.
    reach_km, reach_s : float
        A pick is kept when its station is within ``reach_km`` of a fresh pick's and its
        time within ``reach_s`` of that pick's.

    Returns
    -------
    numpy.ndarray
        int, sorted: the fresh picks and their neighbours in space and time.
    """
    d_km = np.hypot(*(station_xy[:, None, :] - station_xy[fresh][None]).transpose(2, 0, 1))
    dt_s = np.abs(times_s[:, None] - times_s[fresh][None])
    return np.flatnonzero(((d_km <= reach_km) & (dt_s <= reach_s)).any(axis=1))


class Associator:
    """PyOcto, rebuilt when the station set changes; :meth:`run` returns events and their picks."""

    def __init__(self, config):
        self.config = config
        self._key = None
        self._octo = None
        self.runs = 0
        self.travel: TravelTimes | None = None
        self._reach_km = 0.0
        self._model = None  # PyOcto's velocity model on self.travel

    def cover(self, station_xy: np.ndarray) -> None:
        """Travel times that reach across stations at ``station_xy`` (``(n, 2)`` km): built once
        for the whole network (grown, never shrunk), not again for each subset a run sees."""
        if not len(station_xy):
            return
        reach = float(np.hypot(*(np.ptp(station_xy, axis=0) + 2 * self.config.margin_km))) + 10.0
        if self.travel is None or reach > self._reach_km:
            self._reach_km = max(reach, 2 * self._reach_km)
            self.travel = TravelTimes(self.config.layers, self._reach_km, self.config.max_depth_km + 5)
            self._key = None  # the table changed: PyOcto's associator is rebuilt on it
            self._model = velocity_model(self.config, self.travel)  # before any pick needs it

    def run(self, stations: dict, picks: list[dict]) -> list[tuple[dict, list[int]]]:
        """Associate ``picks`` (each with ``station``, ``phase``, ``time_s``) among ``stations``.

        Parameters
        ----------
        stations : dict
            ``code -> (x_km, y_km, elevation_m)``.
        picks : list of dict

        Returns
        -------
        list of (event, indices)
            PyOcto's event (``x``, ``y``, ``z`` km, ``time`` s) and the indices into ``picks``
            it holds.
        """
        import pandas as pd

        if len(picks) < self.config.min_picks:
            return []
        codes = sorted(stations)
        key = tuple((c, stations[c]) for c in codes)
        if key != self._key:
            xy = np.array([stations[c][:2] for c in codes], float)
            self.cover(xy)
            if self._model is None:
                self._model = velocity_model(self.config, self.travel)
            self._octo = build_associator(self.config, xy, self.travel, self._model)
            self._key = key
        station_df = pd.DataFrame(
            {
                "id": codes,
                "x": [stations[c][0] for c in codes],
                "y": [stations[c][1] for c in codes],
                "z": [-stations[c][2] / 1000.0 for c in codes],
            }
        )
        pick_df = pd.DataFrame(
            {
                "station": [p["station"] for p in picks],
                "phase": [p["phase"] for p in picks],
                "time": [p["time_s"] for p in picks],
            }
        )
        self.runs += 1
        events, assignments = self._octo.associate(pick_df, station_df)
        out = []
        for _, ev in events.iterrows():
            rows = assignments[assignments["event_idx"] == ev["idx"]]
            out.append(
                (
                    {
                        "x": float(ev["x"]),
                        "y": float(ev["y"]),
                        "z": float(ev["z"]),
                        "time": float(ev["time"]),
                    },
                    [int(i) for i in rows["pick_idx"]],
                )
            )
        return out
