"""The running centre: MQTT in, association, and the outputs of each declared or updated event.

paho-mqtt's thread receives the nodes' messages and only puts them in a queue; the
centre's loop (:meth:`Center.step`) feeds them to the :class:`~network_center.network.Network`,
associates at most every ``associate_every_s`` when a new pick came, and for each event
declared or updated publishes it on ``<out_topic>/event`` (JSON, QoS ``qos``), rewrites its
QuakeML file and considers an alert. The session is persistent (``clean_session`` off, a
fixed client id): while the centre or the broker restarts, the broker keeps the picks
for it, and paho reconnects with back-off. Picks may come through a shared subscription
(``$share/<group>/<topic>/pick``) so several centres split the load; health and status
are always subscribed directly (brokers do not send retained messages to shared ones).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path

from edge_runtime.network.mqtt import parse_broker

from .network import Network, public
from .outputs import Alerts, quakeml

log = logging.getLogger(__name__)

INBOX_MAX = 200_000  # messages waiting for the loop, at most (beyond: dropped, counted)


class Center:
    """The centre (see the module notes).

    Parameters
    ----------
    config : CenterConfig
    clock : callable
        Wall clock, s.
    on_event : callable, optional
        Called with each declared or updated event (after its outputs), in the loop's thread.
    """

    def __init__(self, config, clock=time.time, on_event=None):
        self.config = config
        self.clock = clock
        self.network = Network(config, clock)
        self.lock = threading.Lock()
        self.inbox: queue.Queue = queue.Queue(INBOX_MAX)
        self.alerts = Alerts(config)
        self.on_event = on_event
        self.client = None
        self.web = None
        self.connected = threading.Event()
        self.counters = dict(published=0, quakeml_written=0, inbox_dropped=0, connects=0)

    # ------------------------------------------------------------------ MQTT
    def start(self) -> None:
        """Connect to the broker (paho's thread keeps it connected) and start the page when configured."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        host, port, tls = parse_broker(self.config.broker)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password)
        if tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = lambda c, u, f, rc, p: self.connected.clear()
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self.client = client
        if self.config.web_listen:
            from .web import WebServer

            self.web = WebServer(self.config.web_listen, self.network, self.lock, self.clock)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker %s refused the centre (%s)", self.config.broker, reason_code)
            return
        self.counters["connects"] += 1
        topic, qos = self.config.topic, self.config.qos
        picks = f"{topic}/pick"
        if self.config.shared_group:
            picks = f"$share/{self.config.shared_group}/{picks}"
        client.subscribe([(picks, qos), (f"{topic}/health", qos), (f"{topic}/status", qos)])
        log.info(
            "connected to %s; subscribed to %s, %s/health, %s/status", self.config.broker, picks, topic, topic
        )
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self.inbox.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            self.counters["inbox_dropped"] += 1

    # ------------------------------------------------------------------ loop
    def step(self, timeout_s: float = 0.1) -> list[dict]:
        """Take what arrived (waiting up to ``timeout_s`` for the first), associate when due, emit."""
        try:
            first = self.inbox.get(timeout=timeout_s)
        except queue.Empty:
            first = None
        changed = []
        with self.lock:
            while first is not None:
                self.network.message(*first)
                try:
                    first = self.inbox.get_nowait()
                except queue.Empty:
                    first = None
            if self.network.due(self.clock()):
                changed = self.network.associate()
        for event in changed:
            self._emit(event)
        return changed

    def _emit(self, event: dict) -> None:
        message = public(event)
        log.info(
            "event %s v%d: %s lat %.4f lon %.4f depth %.1f km M %s (%d stations)",
            event["event_id"],
            event["version"],
            event["origin_time"],
            event["latitude"],
            event["longitude"],
            event["depth_km"],
            event["magnitude"],
            event["n_stations"],
        )
        if self.client is not None:
            self.client.publish(
                f"{self.config.out_topic}/event", json.dumps(message, sort_keys=True), qos=self.config.qos
            )
            self.counters["published"] += 1
        try:
            quakeml(message, Path(self.config.quakeml_dir) / f"{event['event_id']}.xml")
            self.counters["quakeml_written"] += 1
        except OSError as exc:
            log.error("cannot write the QuakeML of %s (%s)", event["event_id"], exc)
        self.alerts.consider(message)
        if self.on_event is not None:
            self.on_event(message)

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set."""
        while not stop.is_set():
            self.step(0.1)

    def status(self) -> dict:
        with self.lock:
            return {
                **self.network.counters,
                **self.counters,
                **self.alerts.counters(),
                "stations": len(self.network.stations.by_code),
                "connected": self.connected.is_set(),
            }

    def close(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
        if self.web is not None:
            self.web.close()
        self.alerts.close()
