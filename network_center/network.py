"""The centre's state: picks kept once, associated into events that are declared and updated.

:class:`Network` takes the nodes' messages (:meth:`Network.message`) and, on a sliding
window of data time, associates the picks (:meth:`Network.associate`):

* a pick is kept once per ``(station, pick_id)``: a redelivered copy (the node re-sent its
  queue after a broker restart) or an older revision is counted and dropped; a higher
  revision replaces the pick (its onset moved);
* each pick is weighed by its node's clock (``time_fix`` of the pick): ``gps``, ``ntp``
  and ``node`` count fully; ``free``/``unknown`` are left out of association and location
  (``time_fix_policy = "exclude"``) or kept with weight ``downweight`` in the location;
* the window is ``window_s`` of data time ending at the newest well-timed pick, so picks
  arriving out of order or late (a node's queue sent after an outage) are associated when
  they come; a pick older than that when it arrives is counted ``picks_too_late``;
* every association run finds the window's events again; an event sharing picks with a
  known one (or with its origin within ``MATCH_S`` and ``MATCH_KM``) is that event, so an
  event is declared once and then updated (``version`` + 1) when more stations report or
  a pick moved; a run that sees fewer picks of it (the window cut it) changes nothing.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from .associate import Associator, near_fresh
from .locate import locate
from .magnitude import network_magnitude
from .stations import Stations, clock_weight, station_code

log = logging.getLogger(__name__)

MATCH_S = 4.0  # origins closer in time than this ...
MATCH_KM = 25.0  # ... and in space than this are one event
KEEP_EVENTS = 500
NEAREST_FACTOR = 2  # see Network._nearest_agree
ATTACH_ABOVE_PICKS = 100  # a larger window's picks join known events before PyOcto (Network._attach)
MAX_PAIR_KM = 100.0  # stations farther apart than this are not checked against each other before PyOcto


def _iso(t_s: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t_s, timezone.utc).isoformat(timespec="milliseconds")


class Network:
    """Stations, picks and events of one network (see the module notes).

    Parameters
    ----------
    config : CenterConfig
    clock : callable
        Wall clock, s (for station health ages).
    """

    def __init__(self, config, clock=time.time):
        self.config = config
        self.clock = clock
        self.stations = Stations()
        self.picks: dict[tuple, dict] = {}
        self.events: list[dict] = []
        self.associator = Associator(config)
        self.head_s: float | None = None  # newest well-timed pick, data time
        self.dirty = False
        self.last_run_s = 0.0
        self._last_dense: tuple | None = None  # (key, revision) of the picks PyOcto last saw
        self._covered = 0  # stations the travel times were last sized for
        self.counters = dict(
            messages=0,
            picks=0,
            picks_duplicate=0,
            picks_revised=0,
            picks_bad_clock=0,
            picks_too_late=0,
            picks_unlocated=0,
            bad_messages=0,
            events=0,
            events_rejected=0,
            events_rejected_quiet=0,
            events_rejected_uncertain=0,
            updates=0,
            association_runs=0,
            association_s=0.0,
        )
        if config.stationxml:
            self.stations.from_stationxml(config.stationxml)

    # ------------------------------------------------------------------ messages
    def message(self, topic: str, payload: bytes) -> None:
        """One MQTT message from a node (``<prefix>/pick``, ``/health``, ``/status``, others ignored)."""
        self.counters["messages"] += 1
        kind = topic.rsplit("/", 1)[-1]
        if kind == "status":
            prefix = topic.rsplit("/", 1)[0]
            code = prefix.rsplit("/", 1)[-1]
            self.stations.get(code).status = payload.decode(errors="replace")[:16]
            return
        if kind not in ("pick", "health"):
            return
        try:
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self.counters["bad_messages"] += 1
            return
        if kind == "health":
            self.stations.from_health(body, self.clock())
        else:
            self.pick(body)

    def pick(self, pick: dict) -> bool:
        """Keep one pick message; False when it was a duplicate, an old revision or unusable."""
        try:
            key = (station_code(pick), str(pick["pick_id"]))
            revision = int(pick.get("revision", 1))
            time_s = int(pick["time_us"]) / 1e6
            phase = str(pick["phase"]).upper()[:1]
        except (KeyError, TypeError, ValueError):
            self.counters["bad_messages"] += 1
            return False
        old = self.picks.get(key)
        if old is not None and old["revision"] >= revision:
            self.counters["picks_duplicate"] += 1
            return False
        self.counters["picks_revised" if old is not None else "picks"] += 1
        weight = clock_weight(pick.get("time_fix"), self.config.time_fix_policy, self.config.downweight)
        if weight < 1:
            self.counters["picks_bad_clock"] += 1
        if weight > 0 and self.head_s is not None and time_s < self.head_s - self.config.window_s:
            self.counters["picks_too_late"] += 1
        self.picks[key] = {
            **pick,
            "station": key[0],
            "phase": phase,
            "time_s": time_s,
            "revision": revision,
            "weight": weight,
            "key": key,
        }
        sta = self.stations.get(key[0])
        sta.picks += 1
        if weight >= 1:
            self.head_s = time_s if self.head_s is None else max(self.head_s, time_s)
        self.dirty = True
        return True

    # ------------------------------------------------------------------ association
    def due(self, now_s: float) -> bool:
        return self.dirty and now_s - self.last_run_s >= self.config.associate_every_s

    def associate(self, now_s: float | None = None) -> list[dict]:
        """Run the associator over the window; the events declared or updated (new versions)."""
        now_s = self.clock() if now_s is None else now_s
        self.last_run_s = now_s
        self.dirty = False
        if self.head_s is None:
            return []
        self._forget(self.head_s - 2 * self.config.window_s)
        stations = {
            s.code: (*self.stations.xy_km(s.latitude, s.longitude), s.elevation_m)
            for s in self.stations.located()
        }
        window = [
            p
            for p in self.picks.values()
            if p["weight"] > 0
            and p["station"] in stations
            and p["time_s"] >= self.head_s - self.config.window_s
        ]
        window.sort(key=lambda p: p["time_s"])
        if len(stations) != self._covered:
            self.associator.cover(np.array([xyz[:2] for xyz in stations.values()], float).reshape(-1, 2))
            self._covered = len(stations)
        changed = []
        large = len(window) > ATTACH_ABOVE_PICKS
        if large:
            changed = self._attach(window, stations)
            taken = set().union(*(ev["_keys"] for ev in self.events)) if self.events else set()
            window = [p for p in window if p["key"] not in taken]
        window = self._dense(window, stations)
        started = time.perf_counter()
        # PyOcto searches the volume its stations span: only the stations of the window's
        # picks, so 1,000 nodes cost what the few dozen that saw something cost (2.4 s a run
        # over a 470 km network, measured, against well under 0.1 s over an earthquake's area).
        dense = tuple((p["key"], p["revision"]) for p in window)
        if dense == self._last_dense:  # the same picks as the last run: PyOcto finds the same
            return changed
        seen, self._last_dense = set(self._last_dense or ()), dense
        if large and seen:
            window = self._near_fresh(window, stations, seen)
            if not window:
                return changed
        picked = {p["station"] for p in window}
        found = self.associator.run({c: stations[c] for c in sorted(picked)}, window)
        self.counters["association_runs"] += 1
        for octo, indices in found:
            picks = [window[i] for i in indices]
            if len({p["station"] for p in picks}) < self.config.min_stations:
                continue
            event = self._event(octo, picks, stations)
            if event is not None:
                changed.append(public(event))
        self.counters["association_s"] += time.perf_counter() - started
        return changed

    def _attach(self, window: list[dict], stations: dict) -> list[dict]:
        """Picks that fit a known event join it before PyOcto runs; the events that changed.

        Only for a window of more than ``ATTACH_ABOVE_PICKS`` picks (an earthquake seen by
        hundreds of stations): PyOcto, which associates every pick of the window at every
        run, took 1.8-2.4 s a run over the 600 picks of one such earthquake. A pick joins an
        event when its onset is within ``tolerance_s`` of the event's predicted arrival at
        its station (and the station has no pick of that phase in the event yet); the event
        is then relocated with its picks, and the picks of known events stay out of the next
        PyOcto run (scautoloc and binder associate to known origins first in the same way).
        A pick of the event revised to an onset that no longer fits is left out (the event
        keeps its last version). Fewer picks all go to PyOcto at every run, which weighs
        them together (on the 12-station network, joining by fit alone moved one epicentre
        from 1.0 to 3.2 km and made one false event of the picks left over).
        """
        if self.associator.travel is None or not self.events:
            return []
        tolerance_s = self.config.tolerance_s
        taken = set().union(*(ev["_keys"] for ev in self.events))
        free = [p for p in window if p["key"] not in taken]
        changed = []
        for ev in self.events:
            own = [p for p in window if p["key"] in ev["_keys"]]
            if not own:
                continue
            have = {(p["station"], p["phase"]) for p in own}
            cand = [p for p in free if (p["station"], p["phase"]) not in have]
            fits = self._fits(ev, own + cand, stations, tolerance_s)
            own, fits = [p for p in own if fits[p["key"]]], [p for p in cand if fits[p["key"]]]
            signature = sorted((p["key"], p["revision"]) for p in own)
            if not fits and signature == ev["_signature"]:
                continue
            octo = {"x": ev["_x"], "y": ev["_y"], "z": ev["depth_km"], "time": ev["_t"]}
            event = self._event(octo, own + fits, stations)
            if event is not None:
                changed.append(public(event))
                free = [p for p in free if p["key"] not in event["_keys"]]
        return changed

    def _near_fresh(self, window: list[dict], stations: dict, seen: set) -> list[dict]:
        """The picks of ``window`` new since the last run (not in ``seen``) and those within
        ``MAX_PAIR_KM`` and the slowest S across it of one of them: what PyOcto needs to see.

        Only for a window of more than ``ATTACH_ABOVE_PICKS`` picks: an event that the last
        run did not find needs a new pick, and its picks lie near that one; the others, found
        or rejected before, are not searched again. Over 1,000 nodes the window's background
        false triggers pass the pair check before PyOcto (a dozen P picks within 100 km and
        20 s of each) and PyOcto took 0.5 s a run over the 150-200 of them, at every run of an
        earthquake's burst. No new pick (older ones left the window): an empty list.
        """
        fresh = np.flatnonzero([(p["key"], p["revision"]) not in seen for p in window])
        if not fresh.size:
            return []
        vs = min(r[2] for r in self.config.layers)
        xy = np.array([stations[p["station"]][:2] for p in window], float)
        times = np.array([p["time_s"] for p in window])
        keep = near_fresh(xy, times, fresh, MAX_PAIR_KM, MAX_PAIR_KM / vs + 2 * self.config.tolerance_s)
        return [window[i] for i in keep]

    def _fits(self, ev: dict, picks: list[dict], stations: dict, tolerance_s: float) -> dict:
        """``key -> bool``: the pick's onset within ``tolerance_s`` of ``ev``'s predicted arrival."""
        out = {}
        for phase in ("P", "S"):
            some = [p for p in picks if p["phase"] == phase]
            if not some:
                continue
            xy = np.array([stations[p["station"]][:2] for p in some], float)
            d = np.hypot(*(xy - (ev["_x"], ev["_y"])).T)
            predicted = ev["_t"] + self.associator.travel(phase, d, ev["depth_km"])
            out.update(
                {p["key"]: abs(p["time_s"] - t) <= tolerance_s for p, t in zip(some, predicted, strict=True)}
            )
        return out

    def _dense(self, window: list[dict], stations: dict) -> list[dict]:
        """The picks of ``window`` (sorted by time) that could make an event: only those go to PyOcto.

        Two P onsets of one earthquake at stations ``d`` km apart differ by at most ``d / vp``
        (the wave front crosses no faster): a P pick counts when ``min_p_picks`` P picks
        (itself included) on distinct stations within ``MAX_PAIR_KM`` are that close in time to
        it; then every pick of those stations from its time to the slowest S across the pair
        is kept. Lone false triggers never reach the associator.
        """
        if len(window) < self.config.min_picks:
            return []
        vp = min(r[1] for r in self.config.layers)
        vs = min(r[2] for r in self.config.layers)
        slack = 2 * self.config.tolerance_s
        times = np.array([p["time_s"] for p in window])
        xy = np.array([stations[p["station"]][:2] for p in window], float)
        is_p = np.array([p["phase"] == "P" for p in window])
        codes = np.array([p["station"] for p in window])
        keep = np.zeros(len(window), bool)
        need = max(self.config.min_p_picks, 2)
        for i in np.flatnonzero(is_p):
            lo, hi = np.searchsorted(
                times, [times[i] - MAX_PAIR_KM / vp - slack, times[i] + MAX_PAIR_KM / vs + slack]
            )
            d = np.hypot(*(xy[lo:hi] - xy[i]).T)
            near = (d <= MAX_PAIR_KM) & (np.abs(times[lo:hi] - times[i]) <= d / vp + slack) & is_p[lo:hi]
            if len(set(codes[lo:hi][near])) < need:
                continue
            mates = set(codes[lo:hi][near])
            late = times[lo:hi] <= times[i] + d / vs + MAX_PAIR_KM / vs + slack
            keep[lo:hi] |= np.isin(codes[lo:hi], list(mates)) & late
        return [p for p, k in zip(window, keep, strict=True) if k]

    def _forget(self, before_s: float) -> None:
        for key in [k for k, p in self.picks.items() if p["time_s"] < before_s]:
            del self.picks[key]
        del self.events[:-KEEP_EVENTS]

    def _match(self, keys: set, x_km: float, y_km: float, t_s: float) -> dict | None:
        best, overlap = None, 0
        for ev in self.events:
            shared = len(keys & ev["_keys"])
            if shared > overlap:
                best, overlap = ev, shared
        if best is not None:
            return best
        for ev in self.events:
            if abs(ev["_t"] - t_s) < MATCH_S and np.hypot(ev["_x"] - x_km, ev["_y"] - y_km) < MATCH_KM:
                return ev
        return None

    def _event(self, octo: dict, picks: list[dict], stations: dict) -> dict | None:
        """Locate, size and declare or update one associated event; None when nothing changed."""
        loc = self._locate(octo, picks, stations)
        codes = list(stations)
        xy = np.array([stations[c][:2] for c in codes], float)
        dist = dict(zip(codes, np.hypot(xy[:, 0] - loc.x_km, xy[:, 1] - loc.y_km).tolist(), strict=True))
        if not self._nearest_agree(dist, picks):
            self.counters["events_rejected"] += 1
            return None
        able, quiet = self._quiet(loc, picks, dist)
        if self._too_quiet(able, quiet):
            self.counters["events_rejected"] += 1
            self.counters["events_rejected_quiet"] += 1
            return None
        if not self._well_located(loc):
            self.counters["events_rejected"] += 1
            self.counters["events_rejected_uncertain"] += 1
            return None
        keys = {p["key"] for p in picks}
        known = self._match(keys, loc.x_km, loc.y_km, loc.time_s)
        signature = sorted((p["key"], p["revision"]) for p in picks)
        if known is not None:
            if len(keys) < len(known["_keys"]) or signature == known["_signature"]:
                return None
        event = self._describe(loc, picks, stations, known)
        event.update(
            _keys={p["key"] for p in picks}, _signature=signature, _t=loc.time_s, _x=loc.x_km, _y=loc.y_km
        )
        if known is None:
            self.events.append(event)
            self.counters["events"] += 1
        else:
            known.clear()
            known.update(event)
            event = known
            self.counters["updates"] += 1
        return event

    def _nearest_agree(self, dist: dict, picks: list[dict]) -> bool:
        """Whether ``min_stations`` of the ``NEAREST_FACTOR * min_stations`` stations nearest the
        epicentre (``dist``: station -> epicentral distance, km) are among the event's: an
        earthquake reaches the nearest stations first and strongest, while four false triggers
        far apart can always be fitted by some hypocentre."""
        codes = list(dist)
        order = np.argsort(np.array([dist[c] for c in codes]))
        nearest = {codes[i] for i in order[: NEAREST_FACTOR * self.config.min_stations]}
        return len(nearest & {p["station"] for p in picks}) >= self.config.min_stations

    def _quiet(self, loc, picks: list[dict], dist: dict) -> tuple[int, int]:
        """``(able, quiet)``: the stations able to pick (:meth:`_can_pick`) no farther from the
        epicentre than the event's ``min_p_picks``-th nearest P station, and how many of them
        have no pick at all from their predicted P to their predicted S (``tolerance_s`` either
        side).

        An earthquake's waves reach the stations nearest it first and strongest: a station
        nearer than four that picked its P and that picked nothing is evidence against it.
        Four single-station false triggers (door slams, trucks) that happen to fit a
        hypocentre leave the stations between them quiet. Measured through real nodes on the
        12-station network (docs/network-center.md): 36 of 39 such false events had 3 to 7
        quiet stations, 38 to 58 % of those able; of 31 earthquakes M3.1-4.5 none had more
        than 2 (29 %), most none.
        """
        travel = self.associator.travel
        p_codes = {p["station"] for p in picks if p["phase"] == "P"}
        if travel is None or len(p_codes) < self.config.min_p_picks:
            return 0, 0
        reach = sorted(dist[c] for c in p_codes)[self.config.min_p_picks - 1]
        now_s, own = self.clock(), {p["station"] for p in picks}
        near = [c for c, d in dist.items() if d <= reach and self._can_pick(c, now_s)]
        others = [c for c in near if c not in own]
        if not others:
            return len(near), 0
        d = np.array([dist[c] for c in others])
        tol = self.config.tolerance_s
        first = loc.time_s + travel("P", d, loc.depth_km) - tol
        last = loc.time_s + travel("S", d, loc.depth_km) + tol
        onsets: dict[str, list] = {c: [] for c in others}
        for p in self.picks.values():
            if p["station"] in onsets:
                onsets[p["station"]].append(p["time_s"])
        spans = zip(others, first, last, strict=True)
        quiet = sum(not any(a <= t <= b for t in onsets[c]) for c, a, b in spans)
        return len(near), quiet

    def _can_pick(self, code: str, now_s: float) -> bool:
        """Whether a station could have picked now: online, heard from within
        ``health_timeout_s`` and with a clock whose picks count (a station known only from
        StationXML, or gone quiet itself, says nothing by its silence)."""
        sta = self.stations.by_code.get(code)
        return (
            sta is not None
            and sta.status != "offline"
            and sta.heard_from(now_s, self.config.health_timeout_s)
            and clock_weight(sta.time_fix, self.config.time_fix_policy, self.config.downweight) > 0
        )

    def _too_quiet(self, able: int, quiet: int) -> bool:
        """``quiet_stations`` or more quiet stations, and at least ``quiet_fraction`` of those able."""
        c = self.config
        return c.quiet_stations > 0 and quiet >= c.quiet_stations and quiet >= c.quiet_fraction * able

    def _well_located(self, loc) -> bool:
        """Epicentre and origin time known within ``max_horizontal_uncertainty_km`` and
        ``max_origin_time_uncertainty_s`` (0: no limit; an unbounded one is never declared).
        Chance coincidences of single-station triggers that PyOcto associates fit a hypocentre
        poorly: through real nodes, most of their first versions had origin times uncertain by
        1-50 s and epicentres by 10-180 km, the earthquakes' at most 1.3 s and 6.6 km
        (docs/network-center.md)."""
        c = self.config
        horizontal = float(np.hypot(loc.sigma_x_km, loc.sigma_y_km))
        if not (np.isfinite(horizontal) and np.isfinite(loc.sigma_time_s)):
            return False  # the locator could not bound it: never declared, limits or not
        return (c.max_horizontal_uncertainty_km <= 0 or horizontal <= c.max_horizontal_uncertainty_km) and (
            c.max_origin_time_uncertainty_s <= 0 or loc.sigma_time_s <= c.max_origin_time_uncertainty_s
        )

    def _locate(self, octo: dict, picks: list[dict], stations: dict):
        xy = np.array([stations[p["station"]][:2] for p in picks], float)
        return locate(
            self.associator.travel,
            np.array([p["phase"] for p in picks]),
            xy,
            np.array([p["time_s"] for p in picks]),
            np.array([p["weight"] for p in picks]),
            (octo["x"], octo["y"], octo["z"], octo["time"]),
            self.config.max_depth_km,
            self.config.pick_sigma_s,
        )

    def _describe(self, loc, picks: list[dict], stations: dict, known: dict | None) -> dict:
        """The event message: hypocentre, uncertainties, magnitude and the picks it rests on."""
        lat, lon = self.stations.lat_lon(loc.x_km, loc.y_km)
        xy = np.array([stations[p["station"]][:2] for p in picks], float)
        hypo_km = np.hypot(np.hypot(xy[:, 0] - loc.x_km, xy[:, 1] - loc.y_km), loc.depth_km)
        p_all = [i for i, p in enumerate(picks) if p["phase"] == "P"]
        # A pick's onset comes before its 3 s amplitudes (amplitude_final false): the
        # relations hold for the full window, so only final amplitudes give a magnitude.
        p_only = [i for i in p_all if picks[i].get("amplitude_final", True) is not False]
        mag, mag_sigma, n_mag = network_magnitude(
            [picks[i].get("pd_m") for i in p_only],
            hypo_km[p_only],
            self.config.magnitude_relation,
            [picks[i]["weight"] for i in p_only],
        )
        ready_s = max(p["time_s"] + float(p.get("amplitude_window_s") or 0.0) for p in picks)
        event_id = (
            known["event_id"]
            if known
            else "nc" + _iso(loc.time_s)[:23].replace("-", "").replace(":", "").replace(".", "")
        )
        return {
            "type": "network_event",
            "event_id": event_id,
            "version": (known["version"] + 1) if known else 1,
            "origin_time_us": int(round(loc.time_s * 1e6)),
            "origin_time": _iso(loc.time_s),
            "origin_time_uncertainty_s": round(loc.sigma_time_s, 3),
            "latitude": round(lat, 5),
            "longitude": round(lon, 5),
            "depth_km": round(loc.depth_km, 2),
            "horizontal_uncertainty_km": round(float(np.hypot(loc.sigma_x_km, loc.sigma_y_km)), 2),
            "depth_uncertainty_km": round(loc.sigma_depth_km, 2),
            "rms_s": round(loc.rms_s, 3),
            "magnitude": mag,
            "magnitude_uncertainty": mag_sigma,
            "magnitude_type": "Mpd",
            "magnitude_method": self.config.magnitude_relation,
            "magnitude_stations": n_mag,
            "magnitude_status": _magnitude_status(mag, len(p_only), len(p_all)),
            "n_stations": len({p["station"] for p in picks}),
            "n_picks": len(picks),
            "picks_complete_us": int(round(ready_s * 1e6)),
            "picks": [
                {
                    "station": p["station"],
                    "pick_id": p["pick_id"],
                    "revision": p["revision"],
                    "phase": p["phase"],
                    "time_us": int(round(p["time_s"] * 1e6)),
                    "weight": p["weight"],
                    "residual_s": round(float(r), 3),
                    "distance_km": round(float(d), 2),
                    "pd_m": p.get("pd_m"),
                    "pa_mps2": p.get("pa_mps2"),
                    "amplitude_final": p.get("amplitude_final", True) is not False,
                }
                for p, r, d in zip(picks, loc.residuals_s, hypo_km, strict=False)
            ],
        }


def _magnitude_status(magnitude: float | None, n_final: int, n_p: int) -> str:
    """``pending`` (no P pick's amplitudes complete yet: no magnitude), ``provisional`` (some
    P picks' amplitudes still to come: it may change) or ``complete`` (every P pick's in)."""
    if magnitude is None and n_final < n_p:
        return "pending"
    return "complete" if n_final == n_p else "provisional"


def public(event: dict) -> dict:
    """The event without the centre's private keys (those starting with ``_``)."""
    return {k: v for k, v in event.items() if not k.startswith("_")}
