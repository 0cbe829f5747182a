"""The node's MQTT output: picks, triggers, events and health on a broker (``[mqtt]``).

Topics under the prefix ``[mqtt] topic`` (default ``seismictorch/<network>.<station>``):

* ``<prefix>/pick``: one JSON message per pick as it is made (:mod:`.picks`);
* ``<prefix>/trigger``, ``<prefix>/event``: the event record exactly as the event file
  holds it (the same JSON text, ``docs/events.md``);
* ``<prefix>/health``: every ``health_interval_s`` the node's counters, time-fix state,
  position and model (retained, so a centre that starts later has it at once);
* ``<prefix>/status``: ``online`` (retained) once connected, ``offline`` (retained) as the
  last will the broker publishes when the node vanishes, and at a clean stop.

Picks, triggers and events go through a queue on disk first (the node's
:class:`~edge_runtime.spool.Spool`, one fsynced file per message) and leave it only when
the broker has acknowledged them (QoS 1, the default) or, at QoS 0, once written to the
socket: a broker down for an hour or a node restarted meanwhile loses nothing, and the
queue is sent in order when the broker returns. It holds ``queue_max`` messages at most:
beyond that the oldest is dropped, counted (``mqtt_queue_dropped``) and logged once.
Delivery is at least once: a message sent just before a crash may come again after the
restart (a reader keys picks by ``pick_id`` and ``revision``, records by ``station``,
``start_us`` and ``type``). Health messages are not queued: only the latest counts.

The loop only enqueues (:class:`MqttOutput` is a :class:`~edge_runtime.sink.Queued`
consumer); the disk and the client work on the output's worker thread, and paho-mqtt's
own thread keeps the connection, reconnecting with back-off up to ``reconnect_max_s``.
paho-mqtt (the ``network`` extra) is imported only when ``[mqtt] broker`` is set.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..event_record import iso_utc, with_iso_times
from ..sink import Consumer, Queued
from ..spool import Spool
from .picks import AMPLITUDE_S, BASELINE_S, PickMaker, PickTrigger

log = logging.getLogger(__name__)

SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}
ONLINE, OFFLINE = "online", "offline"
# Messages handed to paho and not yet acknowledged, at most (also paho's in-flight window).
IN_FLIGHT = 32
# At a stop, longest wait for the broker to take what is queued, s (the rest stays on disk).
DRAIN_S = 2.0


def parse_broker(url: str) -> tuple[str, int, bool]:
    """Host, port and whether TLS is used, from ``mqtt://host[:port]`` or ``mqtts://host[:port]``.

    Raises
    ------
    ValueError
        One line naming what is wrong (scheme, host, port, a path or credentials in it).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a broker URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise ValueError("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)")
    if not parts.hostname:
        raise ValueError("names no host")
    if parts.username or parts.password:
        raise ValueError("must not hold credentials: set [mqtt] username and password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be only a scheme, host and port (the topic is [mqtt] topic)")
    default_port, tls = SCHEMES[parts.scheme]
    return unquote(parts.hostname), port or default_port, tls


def check_topic(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a topic prefix (wildcards, empty levels), or None."""
    if not prefix.strip():
        return "must not be empty"
    if any(c in prefix for c in "+#\0"):
        return "must not hold the wildcards + or # (it names topics to publish to)"
    if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        return "must not begin or end with / nor hold an empty level"
    return None


@dataclass(frozen=True)
class MqttSettings:
    """The ``[mqtt]`` settings a client needs, resolved (see ``docs/mqtt.md``).

    Attributes
    ----------
    host, port, tls : str, int, bool
        From the broker URL.
    topic : str
        Topic prefix.
    client_id : str
    username, password : str or None
    ca, cert, key : str or None
        TLS files (PEM): the CA to trust (None: the system's), the node's certificate and key.
    qos : int
        QoS of picks, triggers, events and health (0, 1 or 2).
    keepalive_s : int
        MQTT keep-alive; the broker publishes the last will about 1.5 times this after
        the node vanishes, s.
    reconnect_max_s : float
        Longest wait between attempts to reach the broker, s.
    queue : str
        Folder of the disk queue.
    queue_max : int
        Messages the queue holds at most.
    """

    host: str
    port: int
    tls: bool
    topic: str
    client_id: str
    username: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    qos: int = 1
    keepalive_s: int = 30
    reconnect_max_s: float = 60.0
    queue: str = "mqtt-queue"
    queue_max: int = 10000

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def topic_of(self, kind: str) -> str:
        return f"{self.topic}/{kind}"


def station_identity(config) -> dict:
    """The station's network and location codes and its position, as far as the config names them."""
    keys = {"network": "network", "location": "location", "latitude": "latitude",
            "longitude": "longitude", "elevation_m": "elevation_m"}
    return {name: getattr(config, attr) for name, attr in keys.items()
            if getattr(config, attr, None) is not None}


def settings_from_config(config) -> MqttSettings:
    """:class:`MqttSettings` from a :class:`~edge_runtime.config.NodeConfig` (``mqtt_*``)."""
    host, port, tls = parse_broker(config.mqtt_broker)
    network = getattr(config, "network", None)
    code = f"{network}.{config.station}" if network else config.station
    return MqttSettings(host=host, port=port, tls=tls, topic=config.mqtt_topic or f"seismictorch/{code}",
                        client_id=config.mqtt_client_id or f"seismictorch-{code}",
                        username=config.mqtt_username, password=config.mqtt_password, ca=config.mqtt_ca,
                        cert=config.mqtt_cert, key=config.mqtt_key, qos=config.mqtt_qos,
                        keepalive_s=config.mqtt_keepalive_s, reconnect_max_s=config.mqtt_reconnect_max_s,
                        queue=config.mqtt_queue, queue_max=config.mqtt_queue_max)


class Outbox:
    """The disk queue of messages not yet acknowledged, in order, bounded.

    ``waiting`` holds the ids of messages not yet handed to the client (oldest first);
    a message handed over stays on disk until :meth:`done`. Across a restart every
    stored message waits again, oldest first.

    Parameters
    ----------
    folder : str or Path
    queue_max : int
        Messages kept at most (waiting and handed over); beyond it the oldest waiting
        one is dropped.
    faults : LimitedLog
    """

    def __init__(self, folder, queue_max: int, faults):
        self.spool = Spool(folder, max_items=queue_max + IN_FLIGHT)
        self.queue_max = queue_max
        self.faults = faults
        self.waiting: deque[str] = deque(self.spool.ids())
        self.handed = 0  # handed to the client, not yet done
        self.dropped = 0
        self.unstored = 0  # messages the disk refused (full, read-only)

    def __len__(self) -> int:
        return len(self.waiting) + self.handed

    def put(self, message: dict) -> bool:
        """Store one message (``topic``, ``payload``, ``retain``); False if the disk refused it."""
        while len(self) >= self.queue_max and self.waiting:
            self.spool.done(self.waiting.popleft())
            self.dropped += 1
            if not self.faults.failing("mqtt-queue"):  # once per time it fills
                self.faults(logging.WARNING, "mqtt-queue", "mqtt: queue %s full (%d messages): dropping "
                            "the oldest, counted in mqtt_queue_dropped", self.spool.folder, self.queue_max)
        try:
            rid = self.spool.put(message)
        except OSError as exc:
            self.unstored += 1
            if not self.faults.failing("mqtt-disk"):
                self.faults(logging.ERROR, "mqtt-disk", "mqtt: cannot queue a message in %s (%s); sending "
                            "without it while connected, counted in mqtt_queue_unstored", self.spool.folder,
                            exc.strerror or exc)
            return False
        if self.faults.failing("mqtt-disk"):
            self.faults.recovered("mqtt-disk", "mqtt: %s takes messages again", self.spool.folder)
        self.waiting.append(rid)
        return True

    def take(self) -> tuple[str, dict] | None:
        """The oldest waiting message ``(id, message)``, now handed over; None if none waits."""
        while self.waiting:
            rid = self.waiting.popleft()
            message = self.spool.get(rid)
            if message is not None:
                self.handed += 1
                return rid, message
        return None

    def give_back(self, rid: str) -> None:
        """A message the client did not take: first in line again."""
        self.handed -= 1
        self.waiting.appendleft(rid)

    def done(self, rid: str) -> None:
        """A handed-over message is delivered: off the disk."""
        self.handed -= 1
        self.spool.done(rid)
        if self.faults.failing("mqtt-queue") and len(self) < self.queue_max // 2:
            self.faults.recovered("mqtt-queue", "mqtt: queue %s below half full", self.spool.folder)


class MqttPublisher(Consumer):
    """The client side of the output; every method runs on the output's worker thread.

    paho-mqtt's callbacks (its network thread) only note what happened and wake the
    worker (:attr:`wake`); all disk and publish work is done here, in order.

    Parameters
    ----------
    settings : MqttSettings
    picks : PickMaker
    identity : dict
        Station identity for health messages (:func:`station_identity`).
    station : str
    faults : LimitedLog
    trigger : PickTrigger, optional
        Picks at the pick thresholds from every classified window; without it, picks come
        from the node's own events only.
    """

    name = "mqtt"
    joins_frames = True  # the pick maker places samples by time (SnippetRecorder.cut)

    def __init__(self, settings: MqttSettings, picks: PickMaker, identity: dict, station: str, faults,
                 trigger: PickTrigger | None = None):
        self.settings = settings
        self.picks = picks
        self.trigger = trigger
        self.annotations: dict = {}  # time_fix and model_version of the node's latest record or health
        self.identity = identity
        self.station = station
        self.faults = faults
        self.outbox = Outbox(settings.queue, settings.queue_max, faults)
        self.wake = lambda: None  # set by the Queued wrapper: run the worker soon
        self.acks: deque[int] = deque()  # mids acknowledged (appended by paho's thread)
        self.in_flight: dict[int, str] = {}  # mid -> queue id
        self.health: str | None = None  # latest health message not yet published
        self.counts = {"mqtt_sent": 0, "mqtt_picks": 0, "mqtt_connects": 0, "mqtt_connect_failures": 0,
                       "mqtt_health_sent": 0}
        self._down = False  # inside an outage (logged once)
        self._closing = False
        self.client = self._client()

    # ------------------------------------------------------------ paho (its thread)
    def _client(self):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv311)
        if s.username:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set(ca_certs=s.ca, certfile=s.cert, keyfile=s.key)
        client.will_set(s.topic_of("status"), OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, max(1, int(s.reconnect_max_s)))
        client.max_inflight_messages_set(IN_FLIGHT)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        client.loop_start()
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._failed(f"the broker refused the connection: {reason_code}")
            return
        client.publish(self.settings.topic_of("status"), ONLINE, qos=1, retain=True)
        self.counts["mqtt_connects"] += 1
        if self._down:
            self._down = False
            self.faults.recovered("mqtt", "mqtt: connected to %s; sending %d queued messages",
                                  self.settings.where, len(self.outbox))
        self.wake()

    def _on_connect_fail(self, client, userdata) -> None:
        self._failed(None)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._closing:
            self._failed(f"connection lost: {reason_code}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acks.append(mid)
        self.wake()

    def _failed(self, cause: str | None) -> None:
        """One failed attempt or a lost connection: logged once per outage, with its cause."""
        self.counts["mqtt_connect_failures"] += 1
        if self._down:
            return
        self._down = True
        s = self.settings
        self.faults(logging.WARNING, "mqtt", "mqtt: broker %s unreachable (%s); messages wait in %s, "
                    "retrying with back-off up to %g s", s.where, cause or self._diagnose(), s.queue,
                    s.reconnect_max_s)

    def _diagnose(self) -> str:
        """Why a connection attempt failed (paho does not say): try the TCP connection once."""
        try:
            socket.create_connection((self.settings.host, self.settings.port), timeout=1.0).close()
        except OSError as exc:
            return exc.strerror or str(exc) or type(exc).__name__
        return "TCP connects, but the MQTT or TLS handshake failed"

    # ------------------------------------------------------------ worker thread
    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2) -> None:
        self._queue_picks(self.picks.add(t0_us, rate_hz, samples_mps2))

    def on_window(self, window) -> None:
        if self.trigger is not None:
            for record in self.trigger.update(window):
                # The node's latest time fix and model (from its records and health): a
                # pick without them is a doubtful clock to the centre.
                record.update(self.annotations)
                self._queue_picks(self.picks.from_record(record, trigger=True))

    def on_trigger(self, record: dict) -> None:
        self._queue_record(record)

    on_event = on_trigger

    def _queue_record(self, record: dict) -> None:
        self.annotations.update({k: record[k] for k in ("time_fix", "model_version") if k in record})
        text = json.dumps(with_iso_times(record), sort_keys=True)  # as the event file writes it
        self._queue({"topic": self.settings.topic_of(str(record.get("type"))), "payload": text})
        self._queue_picks(self.picks.from_record(record))

    def _queue_picks(self, picks: list[dict]) -> None:
        for pick in picks:
            self._queue({"topic": self.settings.topic_of("pick"),
                         "payload": json.dumps(pick, sort_keys=True)})
            self.counts["mqtt_picks"] += 1
        if picks or self.acks:
            self._send()

    def _queue(self, message: dict) -> None:
        if not self.outbox.put(message) and self.client.is_connected():
            self.client.publish(message["topic"], message["payload"], qos=self.settings.qos)  # not durable

    def on_health(self, status: dict, time_us: int) -> None:
        """The node's status at ``time_us`` (UTC µs) as the next health message."""
        self.annotations.update({k: status[k] for k in ("time_fix", "model_version") if status.get(k)})
        health = {"type": "health", "station": self.station, **self.identity, "time_us": time_us,
                  "time": iso_utc(time_us), "uptime_s": status.get("uptime_s"),
                  "time_fix": status.get("time_fix"), "model": status.get("model"),
                  "model_version": status.get("model_version"), "sensor": status.get("sensor"),
                  "queued": len(self.outbox), "counters": status}
        self.health = json.dumps(health, sort_keys=True, default=str)
        self._send()

    def tick(self, now_s: float) -> None:
        self._queue_picks(self.picks.due())
        self._send()

    def _send(self) -> None:
        """Acknowledged messages off the disk; then waiting ones to the client, in order."""
        while self.acks:
            rid = self.in_flight.pop(self.acks.popleft(), None)
            if rid is not None:
                self.outbox.done(rid)
                self.counts["mqtt_sent"] += 1
        client = self.client
        if not client.is_connected():
            return
        if self.health is not None:
            client.publish(self.settings.topic_of("health"), self.health, qos=self.settings.qos, retain=True)
            self.health = None
            self.counts["mqtt_health_sent"] += 1
        while len(self.in_flight) < IN_FLIGHT:
            taken = self.outbox.take()
            if taken is None:
                return
            rid, message = taken
            info = client.publish(message["topic"], message["payload"], qos=self.settings.qos,
                                  retain=bool(message.get("retain", False)))
            if info.rc == 0 or (self.settings.qos > 0 and info.rc == 4):  # 4: no connection, paho keeps it
                self.in_flight[info.mid] = rid
            else:
                self.outbox.give_back(rid)
                return

    def counters(self) -> dict:
        return {**self.counts, "mqtt_connected": self.client.is_connected(), "mqtt_queued": len(self.outbox),
                "mqtt_queue_dropped": self.outbox.dropped, "mqtt_queue_unstored": self.outbox.unstored,
                "mqtt_queue_bad": self.outbox.spool.bad}

    def close(self) -> None:
        """Queue the picks still waiting, give the broker ``DRAIN_S`` to take the queue, say offline."""
        self._queue_picks(self.picks.flush())
        deadline = time.monotonic() + DRAIN_S
        while (self.in_flight or self.outbox.waiting) and self.client.is_connected() \
                and time.monotonic() < deadline:
            self._send()
            time.sleep(0.01)
        self._send()
        self._closing = True
        client = self.client
        if client.is_connected():
            info = client.publish(self.settings.topic_of("status"), OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(0.5)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()
        if len(self.outbox):
            log.info("mqtt: %d messages stay queued in %s for the next start", len(self.outbox),
                     self.settings.queue)


class MqttOutput(Queued):
    """The MQTT output as the loop sees it: :class:`MqttPublisher` behind a bounded queue.

    Its :meth:`tick` runs on the loop's thread: every ``health_interval_s`` it takes the
    node's status there (where the counters are consistent) and queues it as a health
    message.

    Parameters
    ----------
    publisher : MqttPublisher
    status : callable, optional
        The node's status (``Node.status``); without it health carries this output's counters.
    health_interval_s : float
        Period of health messages, s.
    """

    def __init__(self, publisher: MqttPublisher, status=None, health_interval_s: float = 10.0):
        # tick_s: picks of a stopped stream are released on wall time (wait_s), retries;
        # acknowledgements and connections wake the worker themselves.
        super().__init__(publisher, maxsize=4096, tick_s=1.0, close_timeout_s=DRAIN_S + 2.0)
        publisher.wake = self.wake
        self.status = status
        self.health_interval_s = health_interval_s
        self.next_health_s = 0.0

    def wake(self) -> None:
        """Run the publisher's :meth:`~MqttPublisher.tick` soon (from any thread)."""
        try:
            self._queue.put_nowait(("tick", (time.monotonic(),)))
        except queue.Full:
            pass  # the worker has plenty to do and will send when it gets there

    def tick(self, now_s: float) -> None:
        if now_s < self.next_health_s:
            return
        self.next_health_s = now_s + self.health_interval_s
        status = self.status() if self.status is not None else self.counters()
        self._put("on_health", status, time.time_ns() // 1000)


def build_mqtt_output(config, ctx) -> MqttOutput:
    """The ``[mqtt]`` output of a node (:data:`edge_runtime.outputs.OUTPUTS`).

    Raises
    ------
    ValueError
        One line: paho-mqtt missing, a TLS file missing or unusable.
    """
    try:
        import paho.mqtt  # noqa: F401
    except ImportError:
        raise ValueError("[mqtt] broker is set but paho-mqtt is not installed: pip install "
                         "'seismictorch[network]'") from None
    settings = settings_from_config(config)
    for what in ("ca", "cert", "key"):
        path = getattr(settings, what)
        if path is not None and not Path(path).is_file():
            raise ValueError(f"[mqtt] {what} = {path!r}: no such file")
    d = config.detector
    keep_s = d.lookback_s + ctx.window_s + d.max_event_s + d.off_s + BASELINE_S + AMPLITUDE_S
    identity = station_identity(config)
    codes = {k: v for k, v in identity.items() if k in ("network", "location")}
    picks = PickMaker(ctx.components, keep_s, codes, channels=getattr(config, "channels", None),
                      highpass_hz=config.mqtt_pd_highpass_hz)
    thresholds = dict(trigger_prob=config.mqtt_pick_prob, min_pga_mps2=config.mqtt_pick_min_pga_mps2,
                      on_windows=config.mqtt_pick_windows)
    trigger = PickTrigger(replace(d, **thresholds), config.station)
    try:
        publisher = MqttPublisher(settings, picks, identity, config.station, ctx.faults, trigger)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a CA, certificate or key unusable
        raise ValueError(f"[mqtt] {settings.where}: cannot set up the client ({exc})") from None
    return MqttOutput(publisher, getattr(ctx, "status", None), config.mqtt_health_interval_s)

