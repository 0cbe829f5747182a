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


def node_triggers(folders: dict, net) -> tuple[int, int]:
    """Triggers of all nodes: ``(during an earthquake at that station, outside any)``."""
    quake_windows = {
        code: [(q.p_s[i] - 3, q.p_s[i] + 45) for q in net.quakes if i in q.p_s]
        for i, code in enumerate(net.codes)
    }
    during = outside = 0
    for code, folder in folders.items():
        path = Path(folder) / "events.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        for rec in (json.loads(line) for line in lines if line.strip()):
            if rec.get("type") != "trigger":
                continue
            t = (rec["start_us"] - T0_US) / 1e6
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
        median_alert_latency_s=med("alert_latency_s"),
        median_alert_after_fourth_p_s=med("after_fourth_p_s"),
    )
    return dict(summary=summary, quakes=rows)


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
