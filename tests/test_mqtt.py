"""The MQTT output against a real Mosquitto broker started by the test on 127.0.0.1.

Picks, triggers, events and health reach a subscriber; with the broker down at the start,
restarted mid-stream, or the node restarted with messages on disk, every message arrives,
in order; the disk queue keeps its bound; mqtts:// reaches a TLS listener with its CA and
not with another. Then a real node process fed through a pty
publishes records equal to the lines of its event file.
"""

from __future__ import annotations

import getpass
import json
import logging
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from conftest import REPO
from event_schema import check_events
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.config import ConfigError, NodeConfig, build_config, read_toml
from edge_runtime.event_record import with_iso_times
from edge_runtime.logs import LimitedLog
from edge_runtime.network.mqtt import build_mqtt_output, parse_broker
from edge_runtime.network.picks import PickMaker, peak_motion
from edge_runtime.outputs import OutputContext

T0_US = 1_767_225_600_000_000  # 2026-01-01
PREFIX = "seismictorch/XX.ST01"
log = logging.getLogger("test_mqtt")


def _mosquitto() -> str:
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if exe is None:
        pytest.fail("the Mosquitto broker is missing: apt-get install mosquitto (make test installs it)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """``mosquitto -c <conf>`` on 127.0.0.1 at a free port, persistent across its restarts;
    ``extra``: more lines of its configuration (a TLS listener's files)."""

    def __init__(self, folder: Path, extra: str = ""):
        self.exe = _mosquitto()
        self.port = _free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nuser {getpass.getuser()}\n"
                             f"log_dest stderr\n{extra}")
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "broker.log", "ab"))
        deadline = time.monotonic() + 30  # a loaded 2-core machine (CI) may take seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "broker.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("mosquitto did not listen within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it saves its sessions, as a broker restart would
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    yield b
    b.stop()


class Subscriber:
    """A persistent-session subscriber (QoS 1) to ``<prefix>/#``: it misses nothing while away."""

    def __init__(self, port: int, topic: str = PREFIX + "/#", ca: str | None = None):
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{port}", clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 1)
        if ca is not None:
            self.client.tls_set(ca_certs=ca)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(30), "the test's subscriber could not subscribe"

    def _message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def of(self, kind: str) -> list[str]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == f"{PREFIX}/{kind}"]

    def wait(self, kind: str, n: int, timeout_s: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.of(kind)
            if len(set(got)) >= n:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{len(self.of(kind))} {kind} messages within {timeout_s} s, expected {n}: "
                             f"{self.messages[-5:]}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _config(broker: Broker, queue: Path, **kw) -> NodeConfig:
    values = dict(port="unused", model="m.onnx", station="ST01", mqtt_broker=broker.url,
                  mqtt_queue=str(queue), mqtt_reconnect_max_s=1.0, mqtt_health_interval_s=0.2)
    return NodeConfig(**{**values, **kw})


def _output(config: NodeConfig, status=None):
    ctx = OutputContext(("E", "N", "Z"), 2.0, LimitedLog(log), status=status)
    return build_mqtt_output(config, ctx)


def _record(i: int, kind: str = "event") -> dict:
    start = T0_US + i * 1_000_000
    rec = {"type": kind, "station": "ST01", "start_us": start, "end_us": start + 500_000, "p_time_us": None,
           "p_prob": 0.0, "s_time_us": None, "s_prob": 0.0, "pga_mps2": 0.1, "n_windows": 3,
           "model": "EarthquakeCNN", "model_version": "t", "model_file": "m.onnx", "time_fix": "gps"}
    if kind == "event":
        rec["event_id"] = f"ST01-{i}"
    return rec


def _starts(payloads: list[str]) -> list[int]:
    """Start times in order of first arrival (a redelivered duplicate counted once)."""
    return list(dict.fromkeys(json.loads(p)["start_us"] for p in payloads))


def _queued(folder: Path) -> int:
    return len(list(folder.glob("*.json")))


def _pulse(rate_hz=100.0, duration_s=20.0, onset_s=10.0, width_s=1.0, d_m=1e-3):
    """Vertical displacement ``d_m sin^2(pi t / width_s)`` from ``onset_s``: (n, 3) m/s^2 with gravity."""
    t = np.arange(int(duration_s * rate_hz)) / rate_hz - onset_s
    inside = (t >= 0) & (t < width_s)
    w = 2 * np.pi / width_s
    acc = np.where(inside, d_m * 0.5 * w**2 * np.cos(w * t), 0.0)  # d'' of d_m (1 - cos(w t)) / 2
    out = np.zeros((len(t), 3))
    out[:, 2] = acc + 9.81
    return out


# ---------------------------------------------------------------- no broker needed
def test_peak_motion_of_a_known_pulse():
    """A 1 mm, 1 s vertical displacement pulse: the peaks near the true ones (the 0.075 Hz
    high-pass takes some of a one-sided pulse), and equal to SciPy's integration and filter."""
    from scipy.integrate import cumulative_trapezoid
    from scipy.signal import butter, sosfilt

    rate = 100.0
    data = _pulse(rate).T[2:, :1300]  # to 3 s after the onset
    pa, pv, pd = peak_motion(data, rate, onset_sample=1000)
    w = 2 * np.pi
    assert pa == pytest.approx(0.5e-3 * w**2, rel=0.02)
    assert pv == pytest.approx(0.5e-3 * w, rel=0.1)
    assert pd == pytest.approx(1e-3, rel=0.2)
    a = data[:, 1000:] - data[:, :1000].mean()
    sos = butter(2, 0.075, "highpass", fs=rate, output="sos")
    v = cumulative_trapezoid(a, dx=1 / rate, initial=0)
    d = cumulative_trapezoid(v, dx=1 / rate, initial=0)
    assert pv == pytest.approx(np.abs(sosfilt(sos, v)).max(), rel=1e-9)
    assert pd == pytest.approx(np.abs(sosfilt(sos, d)).max(), rel=1e-9)


def test_picks_from_records_released_with_their_window():
    clock = [0.0]
    maker = PickMaker(("E", "N", "Z"), keep_s=60.0, identity={"network": "XX"}, clock=lambda: clock[0])
    data = _pulse()
    trigger = {**_record(0, "trigger"), "start_us": T0_US + 11_000_000, "p_time_us": T0_US + 10_000_000,
               "p_prob": 0.9}
    assert maker.add(T0_US, 100.0, data[:1100]) == []  # samples to 11 s: P + 3 s not yet there
    (onset,) = maker.from_record(trigger)  # the onset at once, with the 0.99 s of samples there
    assert (onset["phase"], onset["revision"], onset["amplitude_final"]) == ("P", 1, False)
    assert onset["time_us"] == T0_US + 10_000_000 and onset["amplitude_window_s"] == 0.99
    assert 0 < onset["pa_mps2"] and onset["pd_m"] is not None
    picks = maker.add(T0_US + 11_000_000, 100.0, data[1100:1400])
    assert [p["phase"] for p in picks] == ["P"] and picks[0]["revision"] == 2
    p = picks[0]
    assert p["pick_id"] == onset["pick_id"] and p["amplitude_final"] is True
    assert p["pick_id"].endswith("-P") and p["time_us"] == T0_US + 10_000_000 and p["network"] == "XX"
    assert p["channels"] == ["HNZ"] and p["amplitude_window_s"] == 3.0
    assert p["pd_m"] == pytest.approx(1e-3, rel=0.2)
    closing = {**trigger, "type": "event", "s_time_us": T0_US + 10_500_000, "s_prob": 0.8}
    again = maker.from_record(closing)  # same P: nothing; S: new, its window already held: once, final
    assert [(q["phase"], q["revision"], q["amplitude_final"]) for q in again] == [("S", 1, True)]
    moved = maker.from_record({**closing, "p_time_us": T0_US + 10_020_000})
    assert [(q["phase"], q["revision"], q["amplitude_final"]) for q in moved] == [("P", 3, True)]
    ahead = maker.from_record({**closing, "p_time_us": T0_US + 30_000_000})  # its window is ahead
    assert [(q["phase"], q["revision"], q["amplitude_final"], q["pa_mps2"]) for q in ahead] == \
        [("P", 4, False, None)]
    clock[0] = 10.0
    late = maker.due()  # the stream stopped: released with what there is (nothing)
    assert [(q["phase"], q["revision"], q["pa_mps2"], q["amplitude_final"]) for q in late] == \
        [("P", 5, None, True)]
    assert maker.from_record({**closing, "closed_by": "restart"}) == []


def test_mqtt_config_errors_are_one_line(tmp_path):
    path = tmp_path / "node.toml"
    for body, message in [
        ('broker = "tcp://h"', r"\[mqtt\] broker = 'tcp://h': must be mqtt://HOST\[:PORT\] or mqtts"),
        ('brokr = "mqtt://h"', r"\[mqtt\] unknown key 'brokr'; known: broker, topic"),
        ('broker = "mqtt://h:99999"', r"\[mqtt\] broker = 'mqtt://h:99999': not a broker URL"),
        ('topic = "a/+/b"', r"\[mqtt\] topic = 'a/\+/b': must not hold the wildcards"),
        ('qos = 3', r"\[mqtt\] qos = 3: must be 0, 1 or 2"),
        ('queue_max = 0', r"\[mqtt\] queue_max = 0: must be > 0"),
    ]:
        path.write_text(f'[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\n[mqtt]\n{body}\n')
        with pytest.raises(ConfigError, match=message):
            build_config(read_toml(path), {})
    path.write_text('[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\n[mqtt]\nbroker = "mqtt://h"\n'
                    'ca = "/ca.pem"\n')
    with pytest.raises(ConfigError, match=r"\[mqtt\] ca: TLS files need an mqtts:// broker"):
        build_config(read_toml(path), {})
    assert parse_broker("mqtts://broker.example.org") == ("broker.example.org", 8883, True)
    config = NodeConfig(port="x", model="m.onnx", mqtt_broker="mqtts://h", mqtt_ca=str(tmp_path / "no.pem"))
    with pytest.raises(ValueError, match=r"\[mqtt\] ca = '.*no.pem': no such file"):
        _output(config)


# ---------------------------------------------------------------- against Mosquitto
def test_pick_trigger_picks_below_the_event_threshold_and_hands_over_to_an_event():
    """A weak arrival (p(noise) 0.6, 1 gal) makes a pick at the pick thresholds, not an event; an
    event the node declares within MATCH_S of it revises it (one pick, the trigger's pick_id, whose
    onset went out at once), whether its amplitudes were still to come or already sent."""
    from edge_runtime.detector import DetectorConfig, Scored
    from edge_runtime.event_record import event_id
    from edge_runtime.network.picks import PickTrigger

    def window(i, noise, peak):
        data = np.random.default_rng(i).normal(0.0, 1e-3, (3, 200))
        data[2, 100:] += np.sin(np.arange(100))  # an onset in the middle of the window
        return Scored(T0_US + i * 250_000, {"P": 0.0, "S": 1.0 - noise, "noise": noise}, peak, data, 100.0)

    trigger = PickTrigger(DetectorConfig(trigger_prob=0.3, min_pga_mps2=0.005, on_windows=2), "ST01")
    own = PickTrigger(DetectorConfig(), "ST01")  # the node's own thresholds
    weak = [window(i, 1.0 if i < 40 else 0.6, 0.01) for i in range(48)]
    records = [r for w in weak for r in trigger.update(w)]
    assert [r["type"] for r in records] == ["trigger"] and [r for w in weak for r in own.update(w)] == []
    onset = records[0]["p_time_us"]  # no window said P: the first triggering window's AIC onset
    assert abs(onset - (T0_US + 40 * 250_000)) <= 1_000_000 and records[0]["p_prob"] == 0.4

    maker = PickMaker(("E", "N", "Z"), keep_s=60.0, clock=lambda: 0.0)
    data = _pulse()
    maker.add(T0_US, 100.0, data[:1000])
    (sent,) = maker.from_record(records[0], trigger=True)
    assert sent["pick_id"] == f"{event_id('ST01', records[0]['start_us'])}-pick-P"
    assert (sent["revision"], sent["amplitude_final"]) == (1, False)
    event = {**_record(11, "trigger"), "p_time_us": onset + 100_000, "p_prob": 0.9}
    (moved,) = maker.from_record(event)
    assert (moved["pick_id"], moved["revision"], moved["time_us"]) == (sent["pick_id"], 2, onset + 100_000)
    picks = maker.add(T0_US + 10_000_000, 100.0, data[1000:1900])
    assert [(p["pick_id"], p["revision"], p["amplitude_final"]) for p in picks] == \
        [(sent["pick_id"], 3, True)]
    assert picks[0]["time_us"] == onset + 100_000 and picks[0]["probability"] == 0.9

    later = PickMaker(("E", "N", "Z"), keep_s=60.0, clock=lambda: 0.0)
    later.add(T0_US, 100.0, data[:1000])
    later.from_record(records[0], trigger=True)
    (first,) = later.add(T0_US + 10_000_000, 100.0, data[1000:1900])
    assert first["pick_id"].endswith("-pick-P") and first["revision"] == 2 and first["amplitude_final"]
    (revised,) = later.from_record({**event, "type": "event", "event_id": "ST01-11"})
    assert revised["pick_id"] == first["pick_id"] and revised["revision"] == 3 and revised["amplitude_final"]


def test_picks_records_health_and_status_arrive(broker, tmp_path):
    broker.start()
    sub = Subscriber(broker.port)
    out = _output(_config(broker, tmp_path / "q"), status=lambda: {"uptime_s": 1.0, "time_fix": "gps",
                                                                    "model_version": "t", "pipeline": {}})
    try:
        data = _pulse()
        trigger = {**_record(11, "trigger"), "p_time_us": T0_US + 10_000_000, "p_prob": 0.93}
        for i in range(0, 1200, 10):
            out.on_samples(T0_US + i * 10_000, 100.0, data[i:i + 10])
        out.on_trigger(trigger)
        for i in range(1200, 2000, 10):
            out.on_samples(T0_US + i * 10_000, 100.0, data[i:i + 10])
        event = {**trigger, "type": "event", "event_id": "ST01-x", "end_us": T0_US + 19_000_000}
        out.on_event(event)
        out.tick(time.monotonic())
        assert sub.wait("trigger", 1) == [json.dumps(with_iso_times(trigger), sort_keys=True)]
        assert sub.wait("event", 1) == [json.dumps(with_iso_times(event), sort_keys=True)]
        onset, pick = [json.loads(p) for p in sub.wait("pick", 2)]  # the onset at once, then its 3 s
        assert (onset["revision"], onset["amplitude_final"], pick["revision"], pick["amplitude_final"]) == \
            (1, False, 2, True)
        assert onset["time_us"] == pick["time_us"] and onset["amplitude_window_s"] < 3.0
        assert pick["phase"] == "P" and pick["probability"] == 0.93
        assert pick["time"].startswith("2026-01-01T00:00:10")
        assert pick["pd_m"] == pytest.approx(1e-3, rel=0.2) and pick["pa_mps2"] > 0.01
        health = json.loads(sub.wait("health", 1)[0])
        assert health["time_fix"] == "gps" and health["model_version"] == "t" and health["network"] == "XX"
        assert sub.wait("status", 1) == ["online"]
    finally:
        out.close()
    assert sub.wait("status", 2)[-1] == "offline"
    retained = Subscriber(broker.port)  # a newcomer gets the last status and health at once
    # the retained 'offline', and possibly the broker's last will of the same word when the socket
    # closed before the disconnect was read (status is at-least-once, like every message)
    assert set(retained.wait("status", 1)) == {"offline"} and retained.wait("health", 1)
    sub.close()
    retained.close()
    assert _queued(tmp_path / "q") == 0


def test_broker_down_at_start_then_up(broker, tmp_path, caplog):
    broker.start()
    sub = Subscriber(broker.port)  # its session outlives the broker's restart
    broker.stop()
    caplog.set_level(logging.WARNING)
    out = _output(_config(broker, tmp_path / "q"))
    try:
        for i in range(8):
            out.on_event(_record(i))
        deadline = time.monotonic() + 30
        while (_queued(tmp_path / "q") < 8 or out.counters()["mqtt_connect_failures"] < 2) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _queued(tmp_path / "q") == 8
        # several failed attempts (counted, not slept for): logged once, with the cause
        assert out.counters()["mqtt_connect_failures"] >= 2, out.counters()
        broker.start()
        got = sub.wait("event", 8)
        assert _starts(got) == [_record(i)["start_us"] for i in range(8)]
    finally:
        out.close()
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(lines) == 1 and "Connection refused" in lines[0], lines
    assert _queued(tmp_path / "q") == 0
    sub.close()


def test_broker_restarted_mid_stream(broker, tmp_path):
    broker.start()
    sub = Subscriber(broker.port)
    out = _output(_config(broker, tmp_path / "q"))
    try:
        for i in range(40):
            out.on_event(_record(i))
            if i == 15:
                broker.stop()
            if i == 25:
                broker.start()
            time.sleep(0.02)
        got = sub.wait("event", 40)
        assert _starts(got) == [_record(i)["start_us"] for i in range(40)]
    finally:
        out.close()
    sub.close()


def test_node_restart_sends_the_queue_left_on_disk(broker, tmp_path):
    queue = tmp_path / "q"
    first = _output(_config(broker, queue))  # broker down: everything stays on disk
    for i in range(6):
        first.on_trigger(_record(i, "trigger"))
    first.close()
    assert _queued(queue) == 6
    broker.start()
    sub = Subscriber(broker.port)
    second = _output(_config(broker, queue))
    try:
        second.on_trigger(_record(6, "trigger"))
        got = sub.wait("trigger", 7)
        assert _starts(got) == [_record(i)["start_us"] for i in range(7)]
    finally:
        second.close()
    assert _queued(queue) == 0
    sub.close()


def test_queue_bound_drops_the_oldest_counted_and_logged_once(broker, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    queue = tmp_path / "q"
    out = _output(_config(broker, queue, mqtt_queue_max=5))
    for i in range(12):
        out.on_event(_record(i))
    deadline = time.monotonic() + 30
    while (out.counters()["mqtt_queue_dropped"], out.counters()["mqtt_queued"]) != (7, 5) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    counters = out.counters()
    assert counters["mqtt_queue_dropped"] == 7 and counters["mqtt_queued"] == 5 and _queued(queue) == 5
    assert len([r for r in caplog.records if "full" in r.getMessage()]) == 1
    broker.start()
    sub = Subscriber(broker.port)
    try:
        assert _starts(sub.wait("event", 5)) == [_record(i)["start_us"] for i in range(7, 12)]
    finally:
        out.close()
    sub.close()


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("the openssl command is missing: apt-get install openssl (make test installs it)")
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True)


def _throwaway_ca(folder: Path, name: str) -> None:
    """``<name>.pem`` / ``<name>.key``: a self-signed P-256 CA valid for a day."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN=test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)


def _server_certificate(folder: Path, ca: str) -> None:
    """``server.pem`` / ``server.key`` for 127.0.0.1 and localhost, signed by the CA ``ca``."""
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
                                       "subjectKeyIdentifier=hash\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=folder)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-set_serial", "2", "-days", "1", "-extfile", "server.ext", "-out", "server.pem", cwd=folder)


def test_mqtts_to_a_tls_broker_and_a_wrong_ca_refused(tmp_path, caplog, capfd):
    """mqtts:// with [mqtt] ca against a Mosquitto TLS listener: a record arrives at a TLS
    subscriber. With a CA that did not sign the broker's certificate the node does not connect,
    says so in one line, and keeps queueing to disk and retrying."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _throwaway_ca(pki, "ca")
    _throwaway_ca(pki, "other")
    _server_certificate(pki, "ca")
    broker = Broker(tmp_path / "broker", f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
                                         f"keyfile {pki / 'server.key'}\n")
    url = f"mqtts://127.0.0.1:{broker.port}"
    broker.start()
    caplog.set_level(logging.WARNING)
    try:
        sub = Subscriber(broker.port, ca=str(pki / "ca.pem"))
        out = _output(_config(broker, tmp_path / "q", mqtt_broker=url, mqtt_ca=str(pki / "ca.pem")))
        try:
            out.on_event(_record(0))
            assert sub.wait("event", 1) == [json.dumps(with_iso_times(_record(0)), sort_keys=True)]
            assert sub.wait("status", 1) == ["online"]
        finally:
            out.close()
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]

        wrong = _output(_config(broker, tmp_path / "q2", mqtt_broker=url, mqtt_ca=str(pki / "other.pem"),
                                mqtt_client_id="wrong-ca"))
        try:
            wrong.on_event(_record(1))
            deadline = time.monotonic() + 30
            while wrong.counters()["mqtt_connect_failures"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            counters = wrong.counters()
            assert counters["mqtt_connect_failures"] >= 2 and counters["mqtt_connects"] == 0, counters
            assert _queued(tmp_path / "q2") == 1  # kept on disk for when the CA is right
            wrong.on_event(_record(2))  # still running: takes records
            deadline = time.monotonic() + 30
            while _queued(tmp_path / "q2") < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _queued(tmp_path / "q2") == 2
        finally:
            wrong.close()
        lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(lines) == 1 and "TLS handshake failed" in lines[0] and "\n" not in lines[0], lines
        assert not any(r.exc_info for r in caplog.records) and "Traceback" not in capfd.readouterr().err
        assert len(set(sub.of("event"))) == 1  # nothing of the wrong-CA node came through
        sub.close()
    finally:
        broker.stop()


# ---------------------------------------------------------------- a real node process
def test_node_process_publishes_its_event_file(broker, tiny_model, tmp_path):
    """A quake through a pty into the node with [mqtt] on: its trigger and event messages are
    the lines of its event file, its P pick is the event's, health and status come."""
    from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
    from host_training.synthetic import parametric as synth
    from tools.replay.node import node_on_pty, wait_for_port
    from tools.replay.sender import Writer, record_frames

    broker.start()
    sub = Subscriber(broker.port)
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nstation = "ST01"\n[mqtt]\nbroker = "{broker.url}"\n'
                      f'queue = "{tmp_path / "q"}"\nhealth_interval_s = 0.5\n')
    rec = synth.earthquake(np.random.default_rng(5), duration_s=40.0, p_s=10.0, sp_s=4.0, pga_mps2=0.3)
    with node_on_pty(tiny_model["sim"], tmp_path / "events.jsonl", tmp_path / "status.json", "--config",
                     str(config), "--status-every-s", "0.2", "--idle-exit-s", "3", cwd=REPO, grace_s=0) \
            as (proc, pty):
        wait_for_port(tmp_path / "status.json", proc, 60.0)  # imports and model load on a loaded machine
        writer = Writer(pty, speed=0)
        for _seq, t_us, frame in record_frames(rec.data, 100.0, T0_US, ADXL355_COUNTS_PER_MPS2):
            writer.send(frame, t_us)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    records = check_events(tmp_path / "events.jsonl")
    assert [r["type"] for r in records] == ["trigger", "event"], output
    assert sub.wait("trigger", 1) + sub.wait("event", 1) == lines
    # Every pick the node queued went out (its queue is empty, below), but the broker may
    # still be delivering them: wait for as many as the node's final status counts.
    sent = json.loads((tmp_path / "status.json").read_text())["mqtt_picks"]
    picks = [json.loads(p) for p in sub.wait("pick", sent)]
    event = records[1]
    p_picks = [p for p in picks if p["phase"] == "P"]
    assert p_picks[-1]["time_us"] == event["p_time_us"] and p_picks[-1]["pa_mps2"] > 0, picks
    assert p_picks[-1]["amplitude_final"] and not p_picks[0]["amplitude_final"], picks
    # one P pick and at most one S: the event's, or the pick trigger's the event revised
    # (its onset went out before the event was declared)
    assert len({p["pick_id"] for p in p_picks}) == 1 and len({p["pick_id"] for p in picks}) <= 2, picks
    assert [p["revision"] for p in p_picks] == sorted({p["revision"] for p in p_picks}), picks
    health = json.loads(sub.wait("health", 1)[-1])
    assert health["model_version"] == event["model_version"] and health["station"] == "ST01"
    assert "pipeline" in health["counters"]
    assert sub.wait("status", 2)[-1] == "offline"  # said at the clean stop
    assert not list((tmp_path / "q").glob("*.json"))
    sub.close()
