"""The network centre: travel times, magnitude, association with its faults, and a real Mosquitto.

Picks made from a known hypocentre with the layered model's travel times are associated
into one event near it, whatever the order, with duplicates and revisions, a node with a
bad clock and knocks on single stations; then the running centre, subscribed to a real
Mosquitto started on 127.0.0.1, declares the event once across a broker restart and
publishes it on MQTT, as QuakeML, as an alert and on its page.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from conftest import REPO
from paho.mqtt.enums import CallbackAPIVersion

from network_center.config import ConfigError, build_config, read_config
from network_center.locate import arrival_jacobian, predicted_s
from network_center.magnitude import RELATIONS, network_magnitude
from network_center.network import Network, public
from network_center.velocity import TravelTimes, first_arrival_s, write_pyocto_table

LAYERS = [[0.0, 4.0, 2.2], [2.0, 6.1, 3.5], [15.0, 6.7, 3.8], [30.0, 8.0, 4.5]]
T0_S = 1_767_225_600.0
HYPO = dict(x=3.0, y=-4.0, depth=9.0)


def _mosquitto() -> str:
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if exe is None:
        pytest.fail("the Mosquitto broker is missing: apt-get install mosquitto (make test installs it)")
    return exe


def _config(tmp_path, **sections):
    values = {
        "velocity": {"layers": LAYERS, "table_dir": str(tmp_path / "tables")},
        "outputs": {"quakeml_dir": str(tmp_path / "quakeml")},
    }
    for name, table in sections.items():
        values[name] = {**values.get(name, {}), **table}
    return build_config(values)


def _stations(n=8, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-25, 25, (n, 2))
    k = np.pi / 180 * 6371.0
    lat = 46.0 + xy[:, 1] / k
    lon = 7.0 + xy[:, 0] / (k * np.cos(np.radians(46.0)))
    return [f"S{i:02d}" for i in range(n)], lat, lon


def _health(code, lat, lon, time_fix="gps"):
    return f"seismictorch/XX.{code}/health", json.dumps(
        {
            "type": "health",
            "network": "XX",
            "station": code,
            "latitude": lat,
            "longitude": lon,
            "elevation_m": 0.0,
            "time_fix": time_fix,
        }
    ).encode()


def _picks(net: Network, codes, lat, lon, magnitude=3.5, time_fix=None, rng=None, origin_s=T0_S):
    """P and S picks of the event at HYPO, pd from the Kuyuk & Allen relation at ``magnitude``."""
    rng = rng or np.random.default_rng(1)
    out = []
    for i, code in enumerate(codes):
        x, y = net.stations.xy_km(lat[i], lon[i])
        d = float(np.hypot(x - HYPO["x"], y - HYPO["y"]))
        r = np.hypot(d, HYPO["depth"])
        pd_cm = 10 ** ((magnitude - 5.39 - 1.38 * np.log10(r)) / 1.23)
        for phase in "PS":
            t = origin_s + first_arrival_s(LAYERS, phase, [d], HYPO["depth"])[0] + rng.normal(0, 0.05)
            body = {
                "type": "pick",
                "network": "XX",
                "station": code,
                "pick_id": f"{code}-e1-{phase}",
                "revision": 1,
                "phase": phase,
                "time_us": int(round(t * 1e6)),
                "time_fix": (time_fix or {}).get(code, "gps"),
                "pd_m": pd_cm / 100 if phase == "P" else None,
                "amplitude_window_s": 3.0,
            }
            out.append((f"seismictorch/XX.{code}/pick", json.dumps(body).encode()))
    return out


def _network(tmp_path, n=8, **sections):
    net = Network(_config(tmp_path, **sections))
    codes, lat, lon = _stations(n)
    for i, code in enumerate(codes):
        net.message(*_health(code, lat[i], lon[i]))
    return net, codes, lat, lon


def _feed(net, messages) -> list[dict]:
    changed = []
    for topic, payload in messages:
        net.message(topic, payload)
        changed += net.associate(now_s=time.time())
    return changed


# ---------------------------------------------------------------- pieces
def test_layered_travel_times_match_a_half_space_and_the_head_wave():
    d = np.array([0.0, 5.0, 20.0])
    assert np.allclose(first_arrival_s([[0, 6.0, 3.5]], "P", d, 8.0), np.hypot(d, 8.0) / 6.0)
    # Two layers: far away the head wave along the faster layer arrives first.
    layers = [[0, 5.0, 3.0], [10.0, 8.0, 4.6]]
    far = first_arrival_s(layers, "P", [150.0], 5.0)[0]
    head = 150 / 8.0 + (2 * 10 - 5) * np.sqrt(1 / 25 - 1 / 64)
    assert far == pytest.approx(head, rel=1e-6)
    assert first_arrival_s(layers, "P", [150.0], 5.0)[0] < np.hypot(150, 5) / 5.0


def test_pyocto_table_has_pyocto_layout(tmp_path):
    path = write_pyocto_table(LAYERS, tmp_path / "t.bin", delta_km=1.0, xdist_km=20.0, zdist_km=10.0)
    raw = path.read_bytes()
    nx, nz, delta = struct.unpack("iid", raw[:16])
    assert (nx, nz, delta) == (21, 11, 1.0) and len(raw) == 16 + 2 * nx * nz * 8
    p = np.frombuffer(raw[16 : 16 + nx * nz * 8]).reshape(nx, nz)
    assert p[0, 0] == pytest.approx(0, abs=1e-5) and p[10, 5] == pytest.approx(
        first_arrival_s(LAYERS, "P", [10.0], 5.0)[0]
    )


def test_magnitude_relations_invert_their_own_amplitudes():
    r = np.array([10.0, 20.0, 40.0])
    pd_cm = 10 ** ((4.0 - 5.39 - 1.38 * np.log10(r)) / 1.23)
    mag, sigma, n = network_magnitude(pd_cm / 100, r, "kuyuk-allen-2013")
    assert (
        mag == pytest.approx(4.0, abs=0.01) and n == 3 and sigma == pytest.approx(0.31 / np.sqrt(3), abs=0.01)
    )
    pd_cm = 10 ** (-3.463 + 0.729 * 3.0 - 1.374 * np.log10(r))
    assert network_magnitude(pd_cm / 100, r, "wu-zhao-2006")[0] == pytest.approx(3.0, abs=0.01)
    assert network_magnitude([None, 0.0], [10, 20]) == (None, None, 0)
    assert set(RELATIONS) == {"kuyuk-allen-2013", "wu-zhao-2006"}


def test_config_mistakes_are_one_line(tmp_path):
    for values, message in [
        ({"broker": {"url": "tcp://x"}}, r"\[broker\] url = 'tcp://x': must be mqtt://"),
        ({"velocity": {"layers": [[1, 6, 3.5]]}}, r"\[velocity\] layers: must be"),
        ({"association": {"min_stations": 2}}, r"\[association\] min_stations: must be >= 3"),
        ({"association": {"min_stationz": 4}}, r"\[association\] unknown key 'min_stationz'"),
        ({"magnitude": {"relation": "ml"}}, r"\[magnitude\] relation: must be one of"),
        ({"alert": {"url": "ftp://x"}}, r"\[alert\] url: must start with http"),
        ({"association": {"window_s": "long"}}, r"\[association\] window_s = 'long': must be a float"),
        ({"association": {"quiet_fraction": 1.5}}, r"\[association\] quiet_fraction: must be in \[0, 1\]"),
        ({"association": {"max_horizontal_uncertainty_km": -1}}, r"uncertainty_km: must be >= 0"),
        ({"association": {"max_origin_time_uncertainty_s": -1}}, r"uncertainty_s: must be >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_config(values)
    path = tmp_path / "center.toml"
    path.write_text("[broker]\nqos = 5\n")
    result = subprocess.run(
        [sys.executable, "-m", "network_center", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert (
        result.returncode == 2
        and result.stderr.count("\n") == 1
        and "qos: must be 0, 1 or 2" in result.stderr
    )
    example = subprocess.run(
        [sys.executable, "-m", "network_center", "example-config"], capture_output=True, text=True, cwd=REPO
    )
    path.write_text(example.stdout)
    assert read_config(path).min_stations == 4


# ---------------------------------------------------------------- association and its faults
def test_one_event_located_and_sized_then_updated(tmp_path):
    net, codes, lat, lon = _network(tmp_path)
    changed = _feed(net, _picks(net, codes, lat, lon, magnitude=3.5))
    assert len(net.events) == 1 and net.counters["events"] == 1
    first, last = changed[0], public(net.events[0])
    assert first["version"] == 1 and first["n_stations"] >= 4
    assert last["version"] > 1 and last["n_stations"] == len(codes)  # updated as stations reported
    x, y = net.stations.xy_km(last["latitude"], last["longitude"])
    assert np.hypot(x - HYPO["x"], y - HYPO["y"]) < 1.5 and abs(last["depth_km"] - HYPO["depth"]) < 3
    assert abs(last["origin_time_us"] / 1e6 - T0_S) < 0.3
    assert (
        last["magnitude"] == pytest.approx(3.5, abs=0.15) and last["magnitude_method"] == "kuyuk-allen-2013"
    )
    assert last["magnitude_status"] == "complete"  # picks without amplitude_final: complete ones
    assert 0 < last["horizontal_uncertainty_km"] < 3 and 0 < last["origin_time_uncertainty_s"] < 1
    assert {p["station"] for p in last["picks"]} == {f"XX.{c}" for c in codes}


def test_duplicates_revisions_and_any_order_give_the_same_single_event(tmp_path):
    net, codes, lat, lon = _network(tmp_path)
    picks = _picks(net, codes, lat, lon)
    order = np.random.default_rng(3).permutation(len(picks))
    resent = [picks[i] for i in order] + picks[:6]  # shuffled, then a node re-sends its queue
    _feed(net, resent)
    assert len(net.events) == 1 and net.counters["picks_duplicate"] == 6
    event = net.events[0]
    topic, payload = picks[0]
    moved = {**json.loads(payload), "revision": 2}
    moved["time_us"] += 100_000
    _feed(net, [(topic, json.dumps(moved).encode())])
    assert len(net.events) == 1 and net.counters["picks_revised"] == 1
    assert [p["revision"] for p in net.events[0]["picks"] if p["pick_id"] == moved["pick_id"]] == [2]
    assert net.events[0]["event_id"] == event["event_id"]


def test_onsets_locate_at_once_and_amplitude_revisions_give_the_magnitude(tmp_path):
    """Nodes send each onset at once (amplitudes of the samples there, amplitude_final false) and
    its 3 s amplitudes as revision 2: the event is declared and located on the onsets with no
    magnitude (pending), and its magnitude comes, provisional then complete, as revisions arrive."""
    net, codes, lat, lon = _network(tmp_path)
    final = [(t, json.loads(p)) for t, p in _picks(net, codes, lat, lon, magnitude=3.5)]
    onsets = [
        (t, json.dumps({**b, "amplitude_final": False, "amplitude_window_s": 0.4,
                        "pd_m": None if b["pd_m"] is None else b["pd_m"] / 10}).encode())
        for t, b in final
    ]
    changed = _feed(net, onsets)
    assert len(net.events) == 1 and changed[0]["version"] == 1
    first = public(net.events[0])
    assert first["magnitude"] is None and first["magnitude_status"] == "pending"
    assert first["n_stations"] == len(codes) and not any(p["amplitude_final"] for p in first["picks"])
    x, y = net.stations.xy_km(first["latitude"], first["longitude"])
    assert np.hypot(x - HYPO["x"], y - HYPO["y"]) < 1.5
    revisions = [(t, json.dumps({**b, "revision": 2, "amplitude_final": True}).encode()) for t, b in final]
    updates = _feed(net, revisions[:4])  # two stations' P and S amplitudes
    assert updates[-1]["magnitude_status"] == "provisional" and updates[-1]["magnitude_stations"] == 2
    _feed(net, revisions[4:])
    last = public(net.events[0])
    assert len(net.events) == 1 and last["event_id"] == first["event_id"]
    assert last["version"] > first["version"]
    assert last["magnitude_status"] == "complete" and last["magnitude"] == pytest.approx(3.5, abs=0.15)
    assert last["magnitude_stations"] == len(codes) and net.counters["picks_revised"] == len(final)


def test_a_node_with_a_bad_clock_is_excluded_or_downweighted(tmp_path):
    for policy, weight in (("exclude", None), ("downweight", 0.1)):
        net, codes, lat, lon = _network(tmp_path / policy, association={"time_fix_policy": policy})
        picks = _picks(net, codes, lat, lon, time_fix={codes[0]: "free"})
        bad = [
            (t, json.dumps({**json.loads(p), "time_us": json.loads(p)["time_us"] + 3_000_000}).encode())
            if codes[0] in t
            else (t, p)
            for t, p in picks
        ]  # its clock 3 s ahead
        _feed(net, bad)
        (event,) = net.events
        x, y = net.stations.xy_km(event["latitude"], event["longitude"])
        assert np.hypot(x - HYPO["x"], y - HYPO["y"]) < 2.0, policy
        weights = {p["weight"] for p in event["picks"] if p["station"] == f"XX.{codes[0]}"}
        assert weights == (set() if weight is None else {weight}) or (weight and not weights), policy
        assert net.counters["picks_bad_clock"] == 2


def test_knocks_on_single_stations_make_no_event(tmp_path):
    net, codes, lat, lon = _network(tmp_path, n=12)
    rng = np.random.default_rng(7)
    messages = []
    for k in range(500):  # 500 single-station triggers, one P pick each, 4 s apart on random stations
        code = codes[int(rng.integers(len(codes)))]
        body = {
            "type": "pick",
            "network": "XX",
            "station": code,
            "pick_id": f"{code}-k{k}-P",
            "revision": 1,
            "phase": "P",
            "time_us": int((T0_S + 4.0 * k + rng.uniform(0, 0.3)) * 1e6),
            "time_fix": "gps",
            "pd_m": 1e-6,
        }
        messages.append((f"seismictorch/XX.{code}/pick", json.dumps(body).encode()))
    for i, m in enumerate(messages):
        net.message(*m)
        if i % 10 == 9:
            net.associate(now_s=time.time())
    assert net.events == [] and net.counters["picks"] == 500


def test_an_event_is_not_declared_while_stations_nearer_it_stay_quiet(tmp_path):
    net, codes, lat, lon = _network(tmp_path, n=12)
    xy = np.array([net.stations.xy_km(a, b) for a, b in zip(lat, lon, strict=True)])
    order = np.argsort(np.hypot(xy[:, 0] - HYPO["x"], xy[:, 1] - HYPO["y"]))
    far = [int(i) for i in order[3:7]]  # the 4th to 7th nearest pick; the three nearest stay quiet
    picks = _picks(net, [codes[i] for i in far], lat[far], lon[far])
    _feed(net, picks)
    assert net.events == [] and net.counters["events_rejected_quiet"] > 0
    for i in order[:3]:  # those three go offline: their silence says nothing
        net.message(f"seismictorch/XX.{codes[i]}/status", b"offline")
    net._last_dense = None
    net.associate(now_s=time.time())
    assert len(net.events) == 1 and net.events[0]["n_stations"] == 4
    quiet = Network(_config(tmp_path, association={"quiet_stations": 0}))
    for i, code in enumerate(codes):
        quiet.message(*_health(code, lat[i], lon[i]))
    _feed(quiet, picks)
    assert len(quiet.events) == 1 and quiet.counters["events_rejected_quiet"] == 0


def test_a_poorly_located_event_is_not_declared(tmp_path):
    from types import SimpleNamespace

    net, *_ = _network(tmp_path)
    loc = dict(sigma_x_km=3.0, sigma_y_km=4.0, sigma_time_s=0.5)
    assert net._well_located(SimpleNamespace(**loc))
    assert not net._well_located(SimpleNamespace(**{**loc, "sigma_x_km": 12.0, "sigma_y_km": 12.0}))
    assert not net._well_located(SimpleNamespace(**{**loc, "sigma_time_s": 2.5}))
    assert not net._well_located(SimpleNamespace(**{**loc, "sigma_time_s": float("nan")}))
    off = Network(_config(tmp_path, association={"max_horizontal_uncertainty_km": 0,
                                                 "max_origin_time_uncertainty_s": 0}))
    assert off._well_located(SimpleNamespace(**{**loc, "sigma_x_km": 120.0, "sigma_time_s": 25.0}))


def test_late_picks_join_their_event(tmp_path):
    net, codes, lat, lon = _network(tmp_path)
    picks = _picks(net, codes, lat, lon)
    late = [m for m in picks if codes[-1] in m[0] or codes[-2] in m[0]]
    _feed(net, [m for m in picks if m not in late])
    _feed(net, _picks(net, codes[:4], lat, lon, origin_s=T0_S + 60, rng=np.random.default_rng(9))[:0])
    n_before = net.events[0]["n_stations"]
    _feed(net, late)  # a node's queue sent after an outage
    assert len(net.events) == 1 and net.events[0]["n_stations"] == n_before + 2


def test_a_batch_of_amplitude_revisions_makes_one_version(tmp_path):
    """Revisions that arrive between two association runs make one new version, not one each,
    and move nothing (their onsets are the same): the magnitude comes, the location stays."""
    net, codes, lat, lon = _network(tmp_path)
    final = [(t, json.loads(p)) for t, p in _picks(net, codes, lat, lon, magnitude=3.5)]
    _feed(net, [(t, json.dumps({**b, "amplitude_final": False}).encode()) for t, b in final])
    before = public(net.events[0])
    assert before["magnitude_status"] == "pending"
    for topic, body in final:
        net.message(topic, json.dumps({**body, "revision": 2, "amplitude_final": True}).encode())
    changed = net.associate(now_s=time.time())
    assert [e["version"] for e in changed] == [before["version"] + 1] and len(net.events) == 1
    after = public(net.events[0])
    assert after["magnitude_status"] == "complete" and after["magnitude"] == pytest.approx(3.5, abs=0.15)
    place = ("latitude", "longitude", "depth_km", "origin_time_us")
    assert [after[k] for k in place] == [before[k] for k in place]


def test_locator_jacobian_is_the_travel_time_grids_slope():
    travel = TravelTimes(LAYERS, 100.0, 30.0)
    phases = np.array(["P", "S", "P", "S", "P"])
    xy = np.array([[10.0, 5.0], [10.0, 5.0], [-20.0, 7.0], [3.0, -30.0], [41.0, 2.0]])
    hypo = np.array([1.3, -2.2, 7.3, 0.4])  # depth and distances off the grid's nodes
    h = 1e-4
    step = [predicted_s(travel, phases, xy, hypo + h * e) - predicted_s(travel, phases, xy, hypo - h * e)
            for e in np.eye(4)]
    numeric = np.stack(step, axis=1) / (2 * h)
    np.testing.assert_allclose(arrival_jacobian(travel, phases, xy, hypo), numeric, atol=1e-6)
    assert np.all(numeric[:, 3] == pytest.approx(1.0)) and np.all(np.abs(numeric[:, :3]).max(axis=0) > 0.01)


def test_a_busy_window_searches_near_the_new_picks(tmp_path):
    """Above ATTACH_ABOVE_PICKS picks in the window (1,000 nodes' false triggers; here 140 on a
    144-node grid 15 km apart), PyOcto searches only the picks near those new since its last
    run: the earthquake is declared once where it is, and no run after the first (the whole
    window) sees as many picks."""
    side = 12
    xy = 15.0 * np.array([(i % side, i // side) for i in range(side * side)], float)
    xy -= xy.mean(axis=0)
    k = np.pi / 180 * 6371.0
    lat, lon = 46.0 + xy[:, 1] / k, 7.0 + xy[:, 0] / (k * np.cos(np.radians(46.0)))
    codes = [f"G{i:03d}" for i in range(side * side)]
    net = Network(_config(tmp_path, association={"window_s": 300.0}))
    for i, code in enumerate(codes):
        net.message(*_health(code, lat[i], lon[i]))
    rng = np.random.default_rng(5)
    for n in range(140):
        code = codes[int(rng.integers(len(codes)))]
        body = {"type": "pick", "network": "XX", "station": code, "pick_id": f"{code}-bg{n}-P",
                "revision": 1, "phase": "P", "time_us": int((T0_S - 280 + rng.uniform(0, 275)) * 1e6),
                "time_fix": "gps", "pd_m": 1e-6}
        net.message(f"seismictorch/XX.{code}/pick", json.dumps(body).encode())
    seen = []
    run = net.associator.run
    net.associator.run = lambda stations, picks: seen.append(len(picks)) or run(stations, picks)
    net.associate(now_s=time.time())
    plane = np.array([net.stations.xy_km(lat[i], lon[i]) for i in range(len(codes))])
    near = np.flatnonzero(np.hypot(plane[:, 0] - HYPO["x"], plane[:, 1] - HYPO["y"]) < 35)
    quake = _picks(net, [codes[i] for i in near], lat[near], lon[near])
    _feed(net, quake)
    assert len(net.events) == 1, [public(e)["n_stations"] for e in net.events]
    event = public(net.events[0])
    x, y = net.stations.xy_km(event["latitude"], event["longitude"])
    assert np.hypot(x - HYPO["x"], y - HYPO["y"]) < 1.5 and abs(event["origin_time_us"] / 1e6 - T0_S) < 0.3
    assert event["n_stations"] == len(near) and len(seen) > 1 and max(seen[1:]) < seen[0], seen


# ---------------------------------------------------------------- the running centre on Mosquitto
class Broker:
    def __init__(self, folder: Path):
        from tools.network_test.run import Mosquitto

        _mosquitto()
        self.m = Mosquitto(folder)

    def __getattr__(self, name):
        return getattr(self.m, name)


def test_centre_on_mosquitto_across_a_broker_restart(tmp_path):
    from network_center.service import Center

    broker = Broker(tmp_path / "broker")
    broker.start()
    alerts = tmp_path / "alerts.jsonl"
    config = _config(
        tmp_path,
        broker={"url": broker.url, "client_id": "centre-test"},
        alert={
            "magnitude": 3.0,
            "command": ["sh", "-c", f"cat >> {alerts}"],
            "queue": str(tmp_path / "alert-queue"),
        },
        outputs={"web_listen": "127.0.0.1:0", "quakeml_dir": str(tmp_path / "quakeml")},
    )
    received = []
    sub = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="watcher", clean_session=False, protocol=mqtt.MQTTv311
    )
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("seismictorch/center/#", qos=1)
    sub.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    sub.reconnect_delay_set(1, 1)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    center = Center(config)
    center.start()
    node = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="nodes", clean_session=False, protocol=mqtt.MQTTv311
    )
    node_up = threading.Event()
    node.on_connect = lambda c, u, f, rc, p: node_up.set()
    node.on_disconnect = lambda c, u, f, rc, p: node_up.clear()
    node.reconnect_delay_set(1, 1)
    node.connect("127.0.0.1", broker.port)
    node.loop_start()
    try:
        assert center.connected.wait(10) and node_up.wait(10)
        codes, lat, lon = _stations(8)
        for i, code in enumerate(codes):
            node.publish(*_health(code, lat[i], lon[i]), qos=1, retain=True).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while len(center.network.stations.located()) < 8 and time.monotonic() < deadline:
            center.step(0.1)
        picks = _picks(center.network, codes, lat, lon, magnitude=3.6)
        for topic, payload in picks[:6]:
            node.publish(topic, payload, qos=1).wait_for_publish(5)
        broker.stop()  # the centre and the nodes lose the broker; their sessions are kept
        while node_up.is_set():
            time.sleep(0.05)
        for _ in range(10):
            center.step(0.1)
        broker.start()
        deadline = time.monotonic() + 15
        while not node_up.is_set() and time.monotonic() < deadline:
            center.step(0.1)
        for topic, payload in picks[6:] + picks[:6]:  # the rest, and the first ones again (a re-sent queue)
            info = node.publish(topic, payload, qos=1)
            deadline = time.monotonic() + 15
            while not info.is_published() and time.monotonic() < deadline:
                center.step(0.05)
        deadline = time.monotonic() + 20
        while (
            not center.network.events or center.network.events[0]["n_stations"] < 8
        ) and time.monotonic() < deadline:
            center.step(0.1)
        for _ in range(20):
            center.step(0.1)
        assert len(center.network.events) == 1
        event = public(center.network.events[0])
        assert event["n_stations"] == 8 and event["magnitude"] == pytest.approx(3.6, abs=0.2)
        deadline = time.monotonic() + 10
        while len(received) < event["version"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {m["event_id"] for m in received} == {event["event_id"]} and received[-1]["n_stations"] == 8
        from obspy import read_events

        (ev,) = read_events(str(tmp_path / "quakeml" / f"{event['event_id']}.xml"))
        assert ev.preferred_origin().depth == pytest.approx(event["depth_km"] * 1000)
        assert ev.preferred_magnitude().magnitude_type == "Mpd" and len(ev.picks) == 16
        deadline = time.monotonic() + 10
        while not (alerts.exists() and alerts.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(alerts.read_text())["event_id"] == event["event_id"]  # one alert, delivered
        page = urllib.request.urlopen(f"http://127.0.0.1:{center.web.port}/", timeout=5).read().decode()
        assert "<svg" in page and event["event_id"] in page and "XX.S00" in page and "<polygon" in page
        assert center.network.counters["picks_duplicate"] >= 6
    finally:
        center.close()
        node.loop_stop()
        sub.loop_stop()
        broker.stop()
