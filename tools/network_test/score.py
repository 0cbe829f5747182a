"""Scores of a network test: declared events against the synthetic truth, single-station triggers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from network_center.stations import EARTH_RADIUS_KM

from .run import T0_US

MATCH_S, MATCH_KM = 5.0, 30.0


def _km(lat1, lon1, lat2, lon2) -> float:
    k = np.pi / 180.0 * EARTH_RADIUS_KM
    return float(np.hypot((lon2 - lon1) * k * np.cos(np.radians((lat1 + lat2) / 2)), (lat2 - lat1) * k))


def node_triggers(folders: dict, net, bad: set = frozenset(), clock_offset_s: float = 0.0) -> tuple[int, int]:
    """Triggers of the nodes' own detectors (their event files): ``(during an earthquake at
    that station, outside any)``; a bad clock's offset is taken off its times."""
    quake_windows = _quake_windows(net)
    during = outside = 0
    for code, folder in folders.items():
        path = Path(folder) / "events.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        for rec in (json.loads(line) for line in lines if line.strip()):
            if rec.get("type") != "trigger":
                continue
            t = (rec["start_us"] - T0_US) / 1e6 - (clock_offset_s if code in bad else 0.0)
            if any(a <= t <= b for a, b in quake_windows[code]):
                during += 1
            else:
                outside += 1
    return during, outside


def score(net, versions: list[dict]) -> dict:
    """The summary (keys of the issue) and per-earthquake rows."""
    first, final = {}, {}
    for ev in versions:
        first.setdefault(ev["event_id"], ev)
        final[ev["event_id"]] = ev
    used, rows = set(), []
    for q in net.quakes:
        origin_us = T0_US + q.time_s * 1e6
        best = None
        for eid, ev in final.items():
            if eid in used or abs(ev["origin_time_us"] - origin_us) / 1e6 > MATCH_S:
                continue
            d = _km(q.latitude, q.longitude, ev["latitude"], ev["longitude"])
            if d <= MATCH_KM and (best is None or d < best[1]):
                best = (eid, d)
        p_sorted = sorted(q.p_s.values())
        row = dict(
            time_s=round(q.time_s, 2),
            latitude=round(q.latitude, 5),
            longitude=round(q.longitude, 5),
            depth_km=q.depth_km,
            magnitude=q.magnitude,
            declared=best is not None,
            fourth_p_s=round(p_sorted[3] - q.time_s, 2) if len(p_sorted) >= 4 else None,
        )
        if best is not None:
            eid, d = best
            used.add(eid)
            ev, ev1 = final[eid], first[eid]
            latency = ev1["picks_complete_us"] / 1e6 - (T0_US / 1e6 + q.time_s)
            row.update(
                event_id=eid,
                epicentre_error_km=round(d, 2),
                depth_error_km=round(abs(ev["depth_km"] - q.depth_km), 2),
                origin_time_error_s=round(abs(ev["origin_time_us"] - origin_us) / 1e6, 3),
                magnitude_estimate=ev["magnitude"],
                magnitude_error=None
                if ev["magnitude"] is None
                else round(abs(ev["magnitude"] - q.magnitude), 2),
                n_stations=ev["n_stations"],
                versions=ev["version"],
                first_magnitude_status=ev1.get("magnitude_status"),
                alert_latency_s=round(latency, 2),
                after_fourth_p_s=None if row["fourth_p_s"] is None else round(latency - row["fourth_p_s"], 2),
            )
        rows.append(row)
    hit = [r for r in rows if r["declared"]]
    per_quake = events_per_quake(net, final)
    for row, n in zip(rows, per_quake, strict=True):
        row["network_events"] = n

    def med(key):
        values = [r[key] for r in hit if r.get(key) is not None]
        return round(float(np.median(values)), 3) if values else None

    summary = dict(
        events=len(net.quakes),
        declared=len(hit),
        median_epicentre_error_km=med("epicentre_error_km"),
        median_depth_error_km=med("depth_error_km"),
        median_origin_time_error_s=med("origin_time_error_s"),
        median_magnitude_error=med("magnitude_error"),
        false_network_events=len(final) - len(used),
        doubled_events=sum(max(0, n - 1) for n in per_quake),
        median_alert_latency_s=med("alert_latency_s"),
        median_alert_after_fourth_p_s=med("after_fourth_p_s"),
    )
    return dict(summary=summary, quakes=rows)


def events_per_quake(net, final: dict) -> list[int]:
    """Network events (final versions) whose origin is within 5 s and 30 km of each true
    earthquake; an event near two earthquakes counts for the nearer. More than one is a
    doubled earthquake (those extra events are also false network events)."""
    counts = [0] * len(net.quakes)
    for ev in final.values():
        near = [
            (_km(q.latitude, q.longitude, ev["latitude"], ev["longitude"]), k)
            for k, q in enumerate(net.quakes)
            if abs(ev["origin_time_us"] - (T0_US + q.time_s * 1e6)) / 1e6 <= MATCH_S
        ]
        near = [(d, k) for d, k in near if d <= MATCH_KM]
        if near:
            counts[min(near)[1]] += 1
    return counts


def _quake_windows(net) -> dict:
    """``code -> [(from, to)]``, s of record: 3 s before to 45 s after each earthquake's P there."""
    return {
        code: [(q.p_s[i] - 3, q.p_s[i] + 45) for q in net.quakes if i in q.p_s]
        for i, code in enumerate(net.codes)
    }


def arrivals(recorded: list, net, bad: set, clock_offset_s: float) -> dict:
    """What reached the centre, from the pick messages the broker delivered (``(wall s, pick)``
    in arrival order, :class:`~tools.network_test.run.PickRecorder`).

    A single-station trigger is one trigger of a node (its picks share ``event_start_us``)
    whose first onset, on the true clock (a bad clock's offset taken off), is outside every
    earthquake window at that station (3 s before to 45 s after its P). A pick arrived out
    of order when its onset is earlier than that of a pick (any station) that came before
    it; its lateness is how much earlier, s of data time (stamped clocks, as the centre sees them).
    """
    windows = _quake_windows(net)
    seen, first_onset, time_fix = {}, {}, {}
    newest = None
    out_of_order, lateness = 0, 0.0
    for _, pick in recorded:
        code = str(pick.get("station", "")).rsplit(".", 1)[-1]
        key = (code, str(pick.get("pick_id")), int(pick.get("revision", 1)))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            continue
        t_s = (int(pick["time_us"]) - T0_US) / 1e6
        trigger = (code, pick.get("event_start_us"))
        true_s = t_s - (clock_offset_s if code in bad else 0.0)
        first_onset[trigger] = min(first_onset.get(trigger, true_s), true_s)
        time_fix.setdefault(code in bad, set()).add(str(pick.get("time_fix")))
        if key[2] == 1:
            if newest is not None and t_s < newest:
                out_of_order += 1
                lateness = max(lateness, newest - t_s)
            newest = t_s if newest is None else max(newest, t_s)
    outside = [
        (code, t)
        for (code, _), t in first_onset.items()
        if not any(a <= t <= b for a, b in windows.get(code, []))
    ]
    by_kind: dict[str, int] = {}
    for code, t in outside:
        kind = _transient_at(net, code, t)
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return dict(
        pick_messages=sum(seen.values()),
        pick_messages_duplicate=sum(n - 1 for n in seen.values()),
        picks_distinct=len({k[:2] for k in seen}),
        triggers_reached_centre=len(first_onset),
        single_station_triggers=len(outside),
        single_station_triggers_by_kind=dict(sorted(by_kind.items())),
        picks_out_of_order=out_of_order,
        max_pick_lateness_s=round(lateness, 2),
        time_fix_good_clocks=sorted(time_fix.get(False, ())),
        time_fix_bad_clocks=sorted(time_fix.get(True, ())),
    )


def _transient_at(net, code: str, t_s: float) -> str:
    """The kind of the transient at ``code`` nearest a trigger at ``t_s`` within 6 s of it (a
    vehicle's centre may be seconds from its onset), or ``none`` (noise alone)."""
    near = [
        (abs(t_s - t), kind)
        for t, kind in zip(net.transients.get(code, []), net.transient_kinds.get(code, []), strict=False)
        if abs(t_s - t) <= 6.0
    ]
    return min(near)[1] if near else "none"


def bad_clock_use(versions: list[dict], bad: set) -> dict:
    """What the centre did with the bad clocks' picks: how many of them its events held
    (final versions), and with what weight."""
    final = {}
    for ev in versions:
        final[ev["event_id"]] = ev
    held = [
        p for ev in final.values() for p in ev.get("picks", [])
        if str(p["station"]).rsplit(".", 1)[-1] in bad
    ]
    return dict(
        bad_clock_picks_in_events=len(held),
        bad_clock_pick_weights=sorted({p["weight"] for p in held}),
    )


def plot(net, versions: list[dict], path: Path) -> None:
    """Map PNG: stations, true epicentres and declared ones (matplotlib, no tiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    final = {}
    for ev in versions:
        final[ev["event_id"]] = ev
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(net.lat_lon[:, 1], net.lat_lon[:, 0], "^", color="#2a2", label="stations")
    ax.plot(
        [q.longitude for q in net.quakes],
        [q.latitude for q in net.quakes],
        "*",
        ms=14,
        color="k",
        label="true epicentres",
    )
    if final:
        ax.plot(
            [e["longitude"] for e in final.values()],
            [e["latitude"] for e in final.values()],
            "o",
            mfc="none",
            mec="#d22",
            ms=10,
            label="declared",
        )
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_aspect(1 / np.cos(np.radians(net.lat_lon[:, 0].mean())))
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{len(net.codes)} stations, {len(net.quakes)} earthquakes, {len(final)} network events")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
