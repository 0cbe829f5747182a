"""P and S picks of a record, and what it holds (earthquake, noise, other).

Picks, in order of precedence: a catalog CSV (``p_time``, ``s_time``), SAC pick headers
named by their labels (``ka``, ``kt0`` ... ``kt9``; ``a`` is P when unlabelled), and
travel times predicted by ObsPy TauP (ak135) from an event origin (QuakeML, SAC
``evla/evlo/evdp`` + ``o`` or a K-NET header) and the station coordinates (StationXML, SAC
``stla/stlo`` or a K-NET header).
"""

from __future__ import annotations

import math

from .formats.registry import format_of
from .formats.sac_headers import sac_origin, sac_picks, sac_value, unlabelled_picks
from .record import Pick

_TAUP = {}
# SAC kevnm values this project writes (sac.write_record) that name the record's kind.
_KIND_NAMES = {"earthquake": "earthquake", "noise": "noise", "other": "other", "quiet": "noise",
               "traffic": "noise", "spikes": "noise"}


def _taup():
    if "ak135" not in _TAUP:
        from obspy.taup import TauPyModel

        _TAUP["ak135"] = TauPyModel("ak135")
    return _TAUP["ak135"]


def predict_picks(origin_time, ev_lat, ev_lon, depth_km, st_lat, st_lon, label: str) -> dict:
    """First P and S arrivals from ak135 (ObsPy TauP), as :class:`~.record.Pick`."""
    from obspy.geodetics import locations2degrees

    distance = locations2degrees(ev_lat, ev_lon, st_lat, st_lon)
    depth_km = max(0.0, float(depth_km))
    picks = {}
    for phase, names in (("P", ["p", "P", "Pn", "Pg", "Pdiff"]), ("S", ["s", "S", "Sn", "Sg"])):
        try:
            arrivals = _taup().get_travel_times(source_depth_in_km=depth_km,
                                                distance_in_degree=distance, phase_list=names)
        except Exception:  # TauP fails on odd geometries; fall back to crustal speeds
            arrivals = []
        if arrivals:
            t = min(a.time for a in arrivals)
        else:
            hypo_km = math.hypot(distance * 111.19, depth_km)
            t = hypo_km / (6.0 if phase == "P" else 3.5)
        picks[phase] = Pick(origin_time + t, f"taup ak135 ({label}, {distance * 111.19:.1f} km)")
    return picks


def _station_coordinates(trace, inventory):
    if inventory is not None:
        try:
            c = inventory.get_coordinates(trace.id, trace.stats.starttime)
            return c["latitude"], c["longitude"]
        except Exception:  # not in the inventory
            pass
    knet = trace.stats.get("knet") or {}
    if knet.get("stla") is not None and knet.get("stlo") is not None:
        return float(knet["stla"]), float(knet["stlo"])
    lat, lon = sac_value(trace, "stla"), sac_value(trace, "stlo")
    if lat is None or lon is None or abs(lat) > 90.0:
        return None
    return lat, lon


def _origins(trace, events) -> list[tuple]:
    """``(time, lat, lon, depth km, label)`` of every event origin known for a trace."""
    candidates = []
    for ev in events:
        origin = ev.preferred_origin() or (ev.origins[0] if ev.origins else None)
        if origin is None or origin.latitude is None or origin.longitude is None:
            continue
        depth_km = (origin.depth or 0.0) / 1000.0
        candidates.append((origin.time, origin.latitude, origin.longitude, depth_km,
                           f"QuakeML {ev.resource_id.id.split('/')[-1]}"))
    header_origin = sac_origin(trace)
    if header_origin is not None:
        candidates.append((*header_origin, "SAC evla/evlo/evdp/o"))
    knet = trace.stats.get("knet") or {}
    if all(knet.get(k) is not None for k in ("evot", "evla", "evlo")):
        candidates.append((knet["evot"], float(knet["evla"]), float(knet["evlo"]),
                           float(knet.get("evdp") or 0.0), "K-NET header origin"))
    return candidates


def taup_picks(trace, start, end, events, inventory) -> dict:
    """Predicted P/S for a record from QuakeML events or SAC event headers, else ``{}``."""
    station = _station_coordinates(trace, inventory)
    if station is None:
        return {}
    for origin_time, lat, lon, depth_km, label in _origins(trace, events):
        if not start - 1800 <= origin_time <= end:
            continue
        picks = predict_picks(origin_time, lat, lon, depth_km, *station, label)
        # A P up to 5 min before the first sample: the record starts in the event's shaking
        # (scored as starting after P).
        if start - 300.0 <= picks["P"].time <= end:
            return picks
    return {}


def picks_and_kind(traces, record, row, events, inventory) -> tuple[dict, str | None]:
    """``(picks, kind)`` of a record built from ``traces`` (its components), its catalog
    ``row`` (or None), QuakeML ``events`` and StationXML ``inventory``; notes what could not be
    used in ``record.actions``."""
    picks = {}
    if row is not None:
        if row.p_time is not None:
            picks["P"] = Pick(row.p_time, f"catalog line {row.line}")
        if row.s_time is not None:
            picks["S"] = Pick(row.s_time, f"catalog line {row.line}")
    if not picks:
        for tr in traces:
            for phase, pick in sac_picks(tr).items():
                if phase not in picks or pick.time < picks[phase].time:
                    picks[phase] = pick
    if not picks:
        picks = taup_picks(traces[0], record.starttime, record.endtime, events, inventory)
    kind = row.kind if row is not None else None
    if kind is None:
        # kevnm holds an event name in most files; only the kinds this project writes
        # (write_record: earthquake, noise and synthetic noise kinds) say what a record is.
        kind = _KIND_NAMES.get(_kevnm(traces[0]))
        if kind is None and "P" in picks:
            kind = "earthquake"
    if not picks:
        unnamed = sorted({k for tr in traces for k in unlabelled_picks(tr)}, key=lambda k: int(k[1:]))
        if unnamed:
            record.actions.append(f"SAC {', '.join(unnamed)} hold picks without a phase label: not "
                                  "used (label them P/S in kt0..kt9, or give p_time in a catalog)")
    if kind is None:
        kind = _kind_of_format_or_headers(traces[0], record.actions)
    return picks, kind


def _kevnm(trace) -> str:
    sac = getattr(trace.stats, "sac", None) or {}
    return str(sac.get("kevnm") or "").strip().lower()


def _kind_of_format_or_headers(trace, actions: list) -> str | None:
    """``earthquake`` when the file's format holds only earthquakes (the accelerogram
    databases') or its SAC headers hold picks or a magnitude (reported in ``actions``)."""
    recording_format = format_of(trace)
    if recording_format.kind is not None:
        actions.append(f"kind {recording_format.kind} ({recording_format.name} accelerogram)")
        return recording_format.kind
    mag = sac_value(trace, "mag")
    noise_name = _kevnm(trace) in ("noise", "quiet", "traffic", "spikes")
    if unlabelled_picks(trace) or (mag is not None and not noise_name):
        # Arrivals picked, or the magnitude of the event recorded: the record holds an
        # earthquake (P unknown: any event in the record detects it).
        actions.append("kind earthquake from SAC headers (" + (
            "picks" if unlabelled_picks(trace) else f"mag {float(mag):g}") + ")")
        return "earthquake"
    return None
