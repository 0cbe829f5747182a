"""Run a synthetic network end to end and score the centre (``python -m tools network-test``).

A Mosquitto broker on 127.0.0.1 at a free port; one real node process per station
(``python -m edge_runtime run`` with ``[mqtt]`` on, reading its own pty), fed its
record as version-2 frames at ``--speed`` times real time (all stations paced together,
so their picks reach the broker in about the order of the waves); the network centre
(:class:`network_center.service.Center`) subscribed to the broker. Stations given a bad
clock (``--bad-clock``) send frames that say ``free`` and run ``--clock-offset-s`` ahead.
With ``--broker-restart-at`` the broker is stopped at those seconds of record and started
again on the same port (:func:`restart_broker_at`): the nodes keep their picks in their
disk queues and re-send them, the centre and the :class:`PickRecorder` (an observer
subscribed like the centre, whose log of every pick message delivered is what
``single_station_triggers`` and the duplicate and out-of-order counts are made from)
reconnect to their persistent sessions.

Scores (:func:`~tools.network_test.score.score`): a declared event is a true
earthquake's when its origin is within 5 s and 30 km of it (each earthquake matched at
most once); the rest are false network events, and more than one event near one
earthquake is doubled. Latency is in simulated time: the first version's
``picks_complete_us`` (the data time by which its last pick was sent: its onset plus the
amplitude window the message covered, under 3 s for an onset sent at once) minus the
origin time, and the same minus the P arrival at the fourth station.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z: the records' start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """Debian's ``mosquitto`` on 127.0.0.1 at a free port (persistent sessions), as a context manager."""

    def __init__(self, folder: Path):
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if exe is None:
            raise RuntimeError(
                "the Mosquitto broker is missing: apt-get install mosquitto (make test installs it)"
            )
        self.exe, self.folder, self.port = exe, Path(folder), free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.folder}/\nuser {getpass.getuser()}\n"
            "max_queued_messages 100000\nlog_dest stderr\n"
        )
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "broker.log", "ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'broker.log').read_text()[-300:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_s: float) -> None:
        """Stop the broker (it saves its sessions and queued messages), wait ``down_s``, start it
        again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def node_config(folder: Path, code: str, lat: float, lon: float, broker_url: str,
                pd_highpass_hz: float = 1.0, mqtt: dict | None = None) -> Path:
    """The station's ``node.toml``: identity, position and ``[mqtt]`` (pd high-passed for a MEMS
    sensor; ``mqtt``: further ``[mqtt]`` keys, numbers, such as ``pick_min_pga_mps2``)."""
    path = folder / "node.toml"
    extra = "".join(f"{k} = {v!r}\n" for k, v in (mqtt or {}).items())
    path.write_text(
        f'[node]\nnetwork = "XX"\nstation = "{code}"\nlatitude = {lat:.6f}\nlongitude = {lon:.6f}\n'
        f'elevation_m = 0.0\n[mqtt]\nbroker = "{broker_url}"\nqueue = "{folder / "mqtt-queue"}"\n'
        f"health_interval_s = 1.0\nreconnect_max_s = 2.0\npd_highpass_hz = {pd_highpass_hz}\n{extra}"
    )
    return path


def station_frames(record: np.ndarray, board_id: int, time_fix: str, offset_s: float):
    """``(data_time_us, frame)`` of a ``(3, n)`` m/s^2 record as version-2 frames of 10 samples."""
    from edge_runtime.protocol import encode_frame_v2
    from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
    from tools.replay.sender import to_counts

    counts = to_counts(record, ADXL355_COUNTS_PER_MPS2).T
    for seq, i in enumerate(range(0, counts.shape[0], 10)):
        t_us = T0_US + int(round(i * 1e4))
        stamp = t_us + int(offset_s * 1e6)
        yield t_us, encode_frame_v2(seq, stamp, 100.0, counts[i : i + 10], board_id, time_fix=time_fix)


def centre_config(folder: Path, broker_url: str, layers: list) -> Path:
    path = folder / "center.toml"
    path.write_text(
        f'[broker]\nurl = "{broker_url}"\ntopic = "seismictorch/+"\n'
        f'client_id = "network-test-centre"\n[velocity]\nlayers = {json.dumps(layers)}\n'
        f'table_dir = "{folder / "tables"}"\n[association]\nmin_stations = 4\nmin_p_picks = 4\n'
        f'[outputs]\nquakeml_dir = "{folder / "quakeml"}"\n'
        f'[alert]\nmagnitude = 3.5\ncommand = ["sh", "-c", "cat >> {folder / "alerts.jsonl"}; '
        f'echo >> {folder / "alerts.jsonl"}"]\nqueue = "{folder / "alert-queue"}"\n'
    )
    return path


class PickRecorder:
    """Every pick message the broker delivers, in arrival order: ``picks`` of ``(wall s, pick)``.

    An observer beside the centre, subscribed like it (QoS 1, a persistent session, so a
    broker restart loses nothing queued for it): what reached the centre, duplicates included.
    """

    def __init__(self, broker_url: str, topic: str = "seismictorch/+/pick"):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from edge_runtime.network.mqtt import parse_broker

        host, port, _ = parse_broker(broker_url)
        self.picks: list[tuple[float, dict]] = []
        self.connects = 0
        self.connected = threading.Event()
        self.topic = topic
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="network-test-recorder", clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = self._on_connect
        client.on_message = lambda c, u, msg: self.picks.append((time.monotonic(), json.loads(msg.payload)))
        client.reconnect_delay_set(1, 2)
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self.client = client
        if not self.connected.wait(20):
            raise RuntimeError("the pick recorder could not connect to the broker")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connects += 1
            client.subscribe(self.topic, 1)
            self.connected.set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def restart_broker_at(broker: Mosquitto, at_s, speed: float, down_s: float, started: float,
                      done: list) -> threading.Thread:
    """A thread restarting ``broker`` at each of ``at_s`` (s of record, replayed at ``speed``
    from wall time ``started``), down ``down_s`` of wall time; appends to ``done`` the record
    time at which each stop and start happened, or the error that ended them."""

    def restarts():
        for at in sorted(at_s):
            time.sleep(max(0.0, started + at / speed - time.monotonic()))
            stopped = time.monotonic()
            try:
                broker.restart(down_s)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                done.append({"error": str(exc)})
                return
            done.append(
                {"stopped_at_s": round((stopped - started) * speed, 1),
                 "started_at_s": round((time.monotonic() - started) * speed, 1)}
            )

    thread = threading.Thread(target=restarts, name="broker-restarts", daemon=True)
    thread.start()
    return thread


def _send(pty, frames, speed: float, alive) -> None:
    from tools.replay.sender import Writer

    writer = Writer(pty, speed=speed, alive=alive, timeout_s=120.0)
    for t_us, frame in frames:
        writer.send(frame, t_us)


def replay_network(
    net, model: Path, out: Path, broker_url: str, speed: float, bad_clock: set, clock_offset_s: float,
    at_start=None,
    mqtt: dict | None = None,
) -> dict:
    """Every station through its own pty into its own node; returns ``code -> node folder``.

    ``at_start`` is called with the wall time (``time.monotonic``) at which the replay of
    every station starts (the record's first sample), e.g. to schedule broker restarts.
    """
    from contextlib import ExitStack

    from tools.replay.node import node_on_pty, wait_for_port

    folders = {}
    with ExitStack() as stack:
        nodes = []
        for i, code in enumerate(net.codes):
            folder = out / "nodes" / code
            folder.mkdir(parents=True, exist_ok=True)
            config = node_config(folder, code, *net.lat_lon[i], broker_url, mqtt=mqtt)
            log = stack.enter_context(open(folder / "node.log", "w"))
            proc, pty = stack.enter_context(
                node_on_pty(
                    model,
                    folder / "events.jsonl",
                    folder / "status.json",
                    "--config",
                    str(config),
                    "--idle-exit-s",
                    "3",
                    output=log,
                    grace_s=5,
                )
            )
            nodes.append((code, proc, pty))
            folders[code] = folder
        for code, proc, _ in nodes:
            wait_for_port(
                folders[code] / "status.json", proc, timeout_s=120, log_path=folders[code] / "node.log"
            )
        threads = []
        if at_start is not None:
            at_start(time.monotonic())
        for i, (code, proc, pty) in enumerate(nodes):
            bad = code in bad_clock
            frames = station_frames(
                net.records[code], i + 1, "free" if bad else "gps", clock_offset_s if bad else 0.0
            )
            th = threading.Thread(
                target=_send, args=(pty, frames, speed, lambda p=proc: p.poll() is None), daemon=True
            )
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        for _, proc, _ in nodes:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
    return folders


def run_centre(config_path: Path):
    """The centre on its own thread; returns ``(center, stop, events, thread)``."""
    from network_center.config import read_config
    from network_center.service import Center

    events: list[dict] = []
    center = Center(read_config(config_path), on_event=events.append)
    center.start()
    if not center.connected.wait(20):
        raise RuntimeError("the centre could not connect to the broker")
    stop = threading.Event()
    thread = threading.Thread(target=center.run, args=(stop,), name="centre", daemon=True)
    thread.start()
    return center, stop, events, thread


def settle(center, events: list, quiet_s: float = 4.0, timeout_s: float = 60.0) -> None:
    """Wait until the centre has had nothing to do for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last = (len(events), center.network.counters["picks"], center.network.counters["picks_revised"])
    calm_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = (len(events), center.network.counters["picks"], center.network.counters["picks_revised"])
        if now != last or center.network.dirty:
            last, calm_since = now, time.monotonic()
        elif time.monotonic() - calm_since >= quiet_s:
            return
