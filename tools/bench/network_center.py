"""The network centre against 1,000 simulated nodes: picks per second, event latency, memory.

Stations on a 15 km grid (1,000 of them, about 470 km across) send their health, then
picks at a background rate (false triggers, ``background_per_node_h`` per node and hour)
over ``background_s`` of data time, then an M4 earthquake in the middle seen by every
station within 150 km (a P and an S pick each). The messages go through the centre's own
entry (:meth:`network_center.network.Network.message`, the JSON payloads as MQTT delivers
them) faster than real time, with an association run at most every ``associate_every_s``
of data time when a pick came, as the running centre does; only the broker's socket is
left out. Measured: picks per second of wall time through
the whole run (what the centre sustains), the wall time from the arrival of the pick that
completes the earthquake's ``min_p_picks`` to the event's declaration, and the resident
memory grown. Baseline: the same messages only parsed (``json.loads``), the floor of any centre.
"""

from __future__ import annotations

import json
import time

import numpy as np

T0_S = 1_767_225_600.0


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _messages(rng, n_nodes: int, background_s: float, per_node_h: float, config, revisions: bool):
    from network_center.velocity import first_arrival_s

    side = int(np.ceil(np.sqrt(n_nodes)))
    xy = np.array([(15.0 * (i % side), 15.0 * (i // side)) for i in range(n_nodes)])
    xy -= xy.mean(axis=0)
    k = np.pi / 180 * 6371.0
    lat, lon = 46.0 + xy[:, 1] / k, 7.0 + xy[:, 0] / (k * np.cos(np.radians(46.0)))
    health = [
        (
            f"seismictorch/XX.N{i:04d}/health",
            json.dumps(
                {
                    "network": "XX",
                    "station": f"N{i:04d}",
                    "latitude": lat[i],
                    "longitude": lon[i],
                    "time_fix": "gps",
                }
            ).encode(),
        )
        for i in range(n_nodes)
    ]
    picks = []
    n_bg = rng.poisson(n_nodes * per_node_h * background_s / 3600.0)
    for j in range(n_bg):
        i = int(rng.integers(n_nodes))
        picks.append((T0_S + rng.uniform(0, background_s), i, f"bg{j}", "P"))
    origin = T0_S + background_s + 5.0
    d = np.hypot(xy[:, 0], xy[:, 1])
    for i in np.flatnonzero(d <= 150.0):
        for phase in "PS":
            t = origin + first_arrival_s(config.layers, phase, [d[i]], 10.0)[0] + rng.normal(0, 0.05)
            picks.append((t, int(i), "eq", phase))
    out = []
    for t, i, tag, phase in picks:
        body = {
            "type": "pick",
            "network": "XX",
            "station": f"N{i:04d}",
            "pick_id": f"N{i:04d}-{tag}-{phase}",
            "revision": 1,
            "phase": phase,
            "time_us": int(t * 1e6),
            "time_fix": "gps",
            "pd_m": 1e-5,
            "amplitude_window_s": 3.0,
        }
        topic = f"seismictorch/XX.N{i:04d}/pick"
        if revisions:  # as a node sends them: the onset at once, its 3 s amplitudes 3 s later
            onset = {**body, "pd_m": 1e-6, "amplitude_window_s": 0.4, "amplitude_final": False}
            out.append((t, tag, phase, (topic, json.dumps(onset).encode())))
            body.update(revision=2, amplitude_final=True)
            out.append((t + 3.0, tag + "+", phase, (topic, json.dumps(body).encode())))
        else:
            out.append((t, tag, phase, (topic, json.dumps(body).encode())))
    out.sort(key=lambda m: m[0])
    return health, out


def _quake_found(net, origin_s: float) -> dict:
    """The earthquake as the centre has it (epicentre at 46 N, 7 E, 10 km deep, ``origin_s``),
    and the other events it declared (false: nothing else happened)."""
    quake = [e for e in net.events if abs(e["origin_time_us"] / 1e6 - origin_s) < 5.0]
    out = {"false_events": len(net.events) - len(quake)}
    if len(quake) == 1:
        ev = quake[0]
        north_km = (ev["latitude"] - 46.0) * np.pi / 180 * 6371.0
        east_km = (ev["longitude"] - 7.0) * np.pi / 180 * 6371.0 * np.cos(np.radians(46.0))
        out.update(
            quake_epicentre_error_km=round(float(np.hypot(north_km, east_km)), 2),
            quake_depth_km=ev["depth_km"],
            quake_origin_error_s=round(ev["origin_time_us"] / 1e6 - origin_s, 3),
            quake_stations=ev["n_stations"],
            quake_versions=ev["version"],
        )
    return out


def _replay(net, config, picks) -> dict:
    """Every pick through the centre, associating as the service does; wall times per phase."""
    eq_p, latency_s, last_run, fresh = 0, None, None, False
    wall = {"background": 0.0, "burst": 0.0}
    started = time.perf_counter()
    for t, tag, phase, message in picks:
        net.message(*message)
        fresh = True
        eq_p += tag == "eq" and phase == "P"
        needed = eq_p == config.min_p_picks and tag == "eq" and phase == "P" and latency_s is None
        if needed or last_run is None or t - last_run >= config.associate_every_s:
            before = time.perf_counter()
            declared = [e for e in net.associate(now_s=t) if e["n_stations"] >= config.min_stations]
            if needed or (latency_s is None and eq_p >= config.min_p_picks and declared):
                latency_s = time.perf_counter() - before if declared else None
            last_run, fresh = t, False
        now = time.perf_counter()
        wall["burst" if eq_p else "background"] += now - started
        started = now
    if fresh:
        net.associate(now_s=picks[-1][0] + 1)
    wall["burst"] += time.perf_counter() - started
    return {"wall": wall, "latency_s": latency_s}


def bench_network_center(
    rng,
    out=None,
    n_nodes: int = 1000,
    background_s: float = 120.0,
    per_node_h: float = 6.0,
    revisions: bool = False,
) -> dict:
    """One run (see the module notes); a result dict of the bench suite with the centre's figures.

    The data are published faster than real time: ``background_s`` of background picks
    and the earthquake's burst (its P and S picks over about 45 s of data time) go through
    as fast as the centre takes them, and each phase reports its data time against its
    wall time (above 1: faster than real time). ``revisions``: each pick as a node sends it,
    its onset at once (``amplitude_final`` false) and its 3 s amplitudes as revision 2 three
    seconds later: two messages a pick.
    """
    import tempfile

    from network_center.config import build_config
    from network_center.network import Network

    folder = tempfile.mkdtemp(prefix="bench-center-")
    config = build_config(
        {
            "velocity": {
                "layers": [[0.0, 5.5, 3.2], [4.0, 6.1, 3.5], [25.0, 6.8, 3.9], [35.0, 8.0, 4.5]],
                "table_dir": folder,
            }
        }
    )
    health, picks = _messages(rng, n_nodes, background_s, per_node_h, config, revisions)
    started = time.perf_counter()
    for _, _, _, (_topic, payload) in picks:
        json.loads(payload)
    baseline_s = (time.perf_counter() - started) / len(picks)
    rss0 = _rss_mb()
    net = Network(config)
    for m in health:
        net.message(*m)
    run = _replay(net, config, picks)
    wall_s = sum(run["wall"].values())
    first_eq = next(t for t, tag, _, _ in picks if tag == "eq")
    n_background = sum(1 for t, tag, _phase, _m in picks if tag != "eq" and t < first_eq)
    data = {"background": first_eq - picks[0][0], "burst": picks[-1][0] - first_eq}
    n_picks = len(picks)
    latency_s = run["latency_s"]
    return {
        "name": f"network centre, {n_nodes} nodes, {n_picks} "
        + ("onsets and amplitude revisions" if revisions else "picks")
        + f" ({background_s:.0f} s background + quake)",
        "baseline": "json.loads of each pick",
        "baseline_s": baseline_s,
        "candidate": f"Network.message + association at most every {config.associate_every_s:g} s of "
        "data time when a pick came",
        "candidate_s": wall_s / n_picks,
        "speedup": baseline_s / (wall_s / n_picks),
        "picks_per_s": round(n_picks / wall_s, 1),
        "background_picks_per_s": round(n_background / max(run["wall"]["background"], 1e-9), 1),
        "background_offered_picks_per_s": round(n_background / data["background"], 2),
        "background_x_real_time": round(data["background"] / max(run["wall"]["background"], 1e-9), 1),
        "burst_picks": n_picks - n_background,
        "burst_data_s": round(data["burst"], 1),
        "burst_wall_s": round(run["wall"]["burst"], 1),
        "event_latency_s": None if latency_s is None else round(latency_s, 3),
        "events": net.counters["events"],
        **_quake_found(net, T0_S + background_s + 5.0),
        "association_runs": net.counters["association_runs"],
        "rss_growth_mb": round(_rss_mb() - rss0, 1),
    }


if __name__ == "__main__":
    for with_revisions in (False, True):
        result = bench_network_center(np.random.default_rng(0), revisions=with_revisions)
        print(json.dumps(result, indent=2))
