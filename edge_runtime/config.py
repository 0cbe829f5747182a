"""The node's configuration: one TOML file (``deploy/node.toml``), flags override it.

Every setting is declared once in :data:`SETTINGS` (section, key, type, default, check,
help); the TOML loader, the command-line flags and the validation all read that table,
so a key the node does not know, a value of the wrong type or out of range is named in
one line (``node.toml: [node] step_s = 0: must be > 0``) before anything starts.

Example::

    [node]
    station = "ST01"
    port = "/dev/serial/by-id/usb-SeismicTorch_MEMS_board_A1B2C3-if00"
    model = "/var/lib/seismictorch/model.onnx"
    sensor = "adxl355-2g"

    [output]
    events = "/var/lib/seismictorch/events.jsonl"
    status = "/run/seismictorch/status.json"

    [detector]
    off_s = 8.0
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from .detector import DetectorConfig
from .network.miniseed import check_code
from .network.mqtt import check_topic, parse_broker
from .sensors import DEFAULT_SENSOR, SENSORS, get_sensor
from .sources import SOURCES


class ConfigError(ValueError):
    """A setting the node cannot honour; the message is one line naming it."""


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _probability(v):
    return None if 0.0 <= v <= 1.0 else "must be between 0 and 1"


def _sensor(v):
    return None if v.strip().lower().replace("mpu-6050", "mpu6050") in SENSORS else \
        f"unknown sensor; known: {', '.join(SENSORS)}"


def _board_id(v):
    return None if 0 <= v < 2**32 else "must be a 32-bit unsigned id (0 to 0xFFFFFFFF)"


def _protocol(v):
    return None if v in ("binary", "text") else "must be 'binary' or 'text'"


def _text_checksum(v):
    return None if v in ("off", "auto", "required") else "must be 'off', 'auto' or 'required'"


def _port(v):
    return None if v.strip() else "must name a serial device"


def _listen(v):
    host, sep, port = v.rpartition(":")
    ok = sep and host.strip("[]") and port.isdigit() and int(port) <= 65535
    return None if ok else "must be host:port, like \"127.0.0.1:18000\" (port 0: any free one)"


def _seed_code(kind: str):
    """A check of a SEED code of ``kind`` (network, station, location, channel)."""
    def check(v):
        try:
            for code in (v if isinstance(v, list) else [v]):
                check_code(kind, code)
        except ValueError as exc:
            return str(exc)
        return None
    return check


def _broker(v):
    try:
        parse_broker(v)
    except ValueError as exc:
        return str(exc)
    return None


def _qos(v):
    return None if v in (0, 1, 2) else "must be 0, 1 or 2"


def _between(low: float, high: float):
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}"


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its type, help and check.

    Its default is the field's default in :class:`NodeConfig` (``[detector]``:
    :class:`~edge_runtime.detector.DetectorConfig`), the one place defaults are written.
    """

    section: str
    key: str
    type: type
    help: str
    check: object = None  # callable(value) -> None or a reason
    optional: bool = False  # None allowed (absent)
    attr: str = ""  # NodeConfig attribute (defaults to key)

    @property
    def name(self) -> str:
        return self.attr or self.key

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")  # [archive] path: --archive, not --path

    @property
    def default(self):
        """The value when neither the file nor a flag sets it (None: required or unset)."""
        owner = DetectorConfig if self.section == "detector" else NodeConfig
        f = owner.__dataclass_fields__[self.name]
        if f.default is not MISSING:
            return f.default
        return None if f.default_factory is MISSING else f.default_factory()


def _shake_channels(v):
    from .shake_udp import check_channels

    try:
        check_channels(v)
    except ValueError as exc:
        return str(exc)
    return None


def _streams(v):
    from .network.seedlink_client import parse_streams

    try:
        parse_streams(v)
    except ValueError as exc:
        return str(exc)
    return None


# The sensor of a source whose part is known when [node] sensor is left at its default:
# a Raspberry Shake's accelerometer; a SeedLink server is most often a Shake (port 18000).
SOURCE_SENSORS = {"shake-udp": "rs4d-2g", "seedlink": "rs4d-2g"}


def _source(v):
    return None if v in SOURCES else f"unknown source; known: {', '.join(SOURCES)}"


SETTINGS: list[Setting] = [
    Setting("node", "source", str, "where samples come from: 'serial' (a board on a serial port), "
            "'shake-udp' (a Raspberry Shake's UDP datacast, [shake_udp]) or 'seedlink' (any SeedLink "
            "server, [seedlink_client]); docs/sources.md", _source),
    Setting("node", "port", str, "serial device of the board; prefer a /dev/serial/by-id/... path "
            "(source 'serial' only)", _port, optional=True),
    Setting("node", "model", str, "ONNX model with SeismicTorch metadata"),
    Setting("node", "station", str, "station code (SEED: 1-5 letters or digits) written into events, "
            "snippets, miniSEED records and the StationXML", _seed_code("station")),
    Setting("node", "network", str, "SEED network code (1-2 letters or digits; XX: unregistered, for tests "
            "and trials) of the miniSEED records and the StationXML", _seed_code("network")),
    Setting("node", "location", str, "SEED location code: blank (\"\") or 2 letters or digits",
            _seed_code("location")),
    Setting("node", "channels", list, "SEED channel code of each of the board's components, in the model's "
            "component order (HN: accelerometer sampled at 80-250 Hz)", _seed_code("channel")),
    Setting("node", "latitude", float, "station latitude, degrees north (WGS84), for the StationXML",
            _between(-90.0, 90.0), optional=True),
    Setting("node", "longitude", float, "station longitude, degrees east (WGS84), for the StationXML",
            _between(-180.0, 180.0), optional=True),
    Setting("node", "elevation_m", float, "station elevation above sea level, m, for the StationXML",
            _between(-12000.0, 9000.0), optional=True),
    Setting("node", "sensor", str, "accelerometer part and range (scale, range, self-noise)", _sensor),
    Setting("node", "counts_per_mps2", float, "ADC counts per m/s^2; overrides the sensor's datasheet scale",
            _positive, optional=True),
    Setting("node", "board_id", int,
            "32-bit id of the board (protocol v2); unset: lock onto the first board heard. "
            "Frames of any other board are rejected and counted", _board_id, optional=True),
    Setting("node", "protocol", str,
            "'binary' (framed v1/v2, docs/serial-protocol.md) or 'text' (one CSV line of counts per sample)",
            _protocol),
    Setting("node", "text_rate_hz", float, "sampling rate of a text-mode board, Hz", _positive),
    Setting("node", "text_checksum", str,
            "text mode's *HH line checksum: 'off' (checked when present), 'auto' (required once one "
            "has been seen) or 'required'", _text_checksum),
    Setting("node", "trust_port_name", bool,
            "the port path names the board itself (like /dev/serial/by-id/ or a udev SYMLINK): accept a "
            "new device behind it after a reconnect"),
    Setting("node", "baudrate", int, "line rate in bit/s (ignored by USB CDC and ptys)", _positive),
    Setting("node", "step_s", float, "time between successive windows, s", _positive),
    Setting("node", "threads", int, "onnxruntime intra-op threads", _positive),
    Setting("node", "min_rate_hz", float, "lowest sampling rate accepted, Hz", _positive),
    Setting("node", "max_rate_hz", float, "highest sampling rate accepted, Hz", _positive),
    Setting("node", "read_timeout_s", float,
            "serial reads gather bytes for up to this long: the node wakes this often (0.5 s: "
            "about 0.3 %% of a core at 100 Hz x 3; 0.1 s: 0.1 s less latency, about 0.8 %%)", _positive),
    Setting("node", "reconnect_max_s", float, "longest wait between attempts to reopen the port, s",
            _positive),
    Setting("node", "source_model", str,
            "SpectrogramCNN ONNX model (dynamic int8): each event's record classified as earthquake or "
            "active source on a worker thread; unset = off (nodes short of memory)", optional=True),
    Setting("node", "source_wait_s", float,
            "how long a closed event waits for its source class once its record is complete, s", _positive),
    Setting("node", "idle_exit_s", float,
            "exit after this long without bytes (replays, tests); unset on a node", _positive, optional=True),
    Setting("output", "events", str, "JSON-lines file of declared events (docs/events.md)"),
    Setting("output", "status", str, "JSON status file, rewritten every status_every_s", optional=True),
    Setting("output", "status_every_s", float, "status file period, s", _positive),
    Setting("output", "snippets", str, "folder of per-event waveform snippets (SAC, one file per component)",
            optional=True),
    Setting("output", "snippet_pre_s", float, "seconds kept before an event's first window", _non_negative),
    Setting("output", "snippet_post_s", float, "seconds kept after its last triggering window",
            _non_negative),
    Setting("output", "stationxml", str, "StationXML of the node (station identity, sensitivity in counts "
            "per m/s^2), written at start; unset: NET.STA.xml in the archive folder when [archive] is on",
            optional=True),
    Setting("archive", "path", str, "root of an SDS archive of the raw counts as miniSEED (512-byte "
            "Steim-2 records, one file per channel and day, docs/archive.md); unset = off",
            optional=True, attr="archive"),
    Setting("archive", "quota_mb", float, "largest size of the archive, MB (10^6 bytes): the oldest days "
            "are deleted beyond it (the current day is kept); unset = no quota", _positive, optional=True,
            attr="archive_quota_mb"),
    Setting("detector", "trigger_prob", float, "minimum 1 - p(noise) of a triggering window", _probability),
    Setting("detector", "min_pga_mps2", float,
            "minimum peak filtered acceleration of a triggering window, m/s^2", _non_negative),
    Setting("detector", "on_windows", int, "consecutive triggering windows that declare an event", _positive),
    Setting("detector", "off_s", float, "close an event after this long without a triggering window, s",
            _positive),
    Setting("detector", "max_event_s", float, "longest event, s", _positive),
    Setting("detector", "lookback_s", float, "how far before the trigger P is looked for, s", _non_negative),
    Setting("actions", "command", list,
            "command run per event with the event JSON on stdin, e.g. [\"/usr/local/bin/alert\"]",
            optional=True),
    Setting("actions", "command_timeout_s", float, "a command taking longer is killed and retried",
            _positive),
    Setting("actions", "url", str, "URL the event JSON is POSTed to", optional=True),
    Setting("actions", "url_timeout_s", float, "HTTP timeout, s", _positive),
    Setting("actions", "spool", str, "folder of the on-disk retry queue of actions"),
    Setting("actions", "retry_s", float, "first wait before retrying a failed action, s", _positive),
    Setting("actions", "retry_max_s", float, "longest wait between retries, s", _positive),
    Setting("mqtt", "broker", str, "MQTT broker, mqtt://HOST:1883 or mqtts://HOST:8883 (TLS), that picks, "
            "events and health go to (docs/mqtt.md); unset = off", _broker, optional=True,
            attr="mqtt_broker"),
    Setting("mqtt", "topic", str, "topic prefix; unset: seismictorch/NET.STA", check_topic, optional=True,
            attr="mqtt_topic"),
    Setting("mqtt", "client_id", str, "MQTT client id, unique on the broker; unset: seismictorch-NET.STA",
            optional=True, attr="mqtt_client_id"),
    Setting("mqtt", "username", str, "user name at the broker; unset: anonymous", optional=True,
            attr="mqtt_username"),
    Setting("mqtt", "password", str, "password at the broker (keep the config file unreadable to others)",
            optional=True, attr="mqtt_password"),
    Setting("mqtt", "ca", str, "mqtts: CA certificate (PEM) to trust; unset: the system's", optional=True,
            attr="mqtt_ca"),
    Setting("mqtt", "cert", str, "mqtts: the node's client certificate (PEM)", optional=True,
            attr="mqtt_cert"),
    Setting("mqtt", "key", str, "mqtts: the node's private key (PEM)", optional=True, attr="mqtt_key"),
    Setting("mqtt", "qos", int, "QoS of picks, events and health: 1 (at least once) or 0, 2", _qos,
            attr="mqtt_qos"),
    Setting("mqtt", "health_interval_s", float, "period of health messages, s", _positive,
            attr="mqtt_health_interval_s"),
    Setting("mqtt", "keepalive_s", int, "MQTT keep-alive; the broker says offline about 1.5 times this after "
            "the node vanishes, s", _positive, attr="mqtt_keepalive_s"),
    Setting("mqtt", "reconnect_max_s", float, "longest wait between attempts to reach the broker, s",
            _positive, attr="mqtt_reconnect_max_s"),
    Setting("mqtt", "queue", str, "folder of the on-disk queue of messages the broker has not taken yet",
            attr="mqtt_queue"),
    Setting("mqtt", "queue_max", int, "messages the queue holds at most; beyond, the oldest is dropped",
            _positive, attr="mqtt_queue_max"),
    Setting("mqtt", "pick_prob", float, "minimum 1 - p(noise) of a window that makes picks for the network "
            "(below [detector] trigger_prob: the centre's association rejects lone picks)", _probability,
            attr="mqtt_pick_prob"),
    Setting("mqtt", "pick_min_pga_mps2", float, "minimum peak filtered acceleration of a window that makes "
            "picks, m/s^2", _non_negative, attr="mqtt_pick_min_pga_mps2"),
    Setting("mqtt", "pd_highpass_hz", float, "corner of the high-pass of a pick's pv and pd, Hz (0.075: "
            "Wu & Kanamori 2005; 1.0 keeps a MEMS sensor's integrated noise below an M3's pd, "
            "docs/network-center.md)", _positive, attr="mqtt_pd_highpass_hz"),
    Setting("mqtt", "pick_windows", int, "consecutive windows at the pick thresholds that make picks",
            _positive, attr="mqtt_pick_windows"),
    Setting("seedlink", "listen", str,
            "serve the raw counts over SeedLink 3.1 on host:port (docs/seedlink.md); unset = off. "
            "127.0.0.1 serves this machine only", _listen, optional=True, attr="seedlink_listen"),
    Setting("seedlink", "ring_records", int, "512-byte records the SeedLink ring keeps (8192: 4 MB)",
            _positive, attr="seedlink_ring_records"),
    Setting("seedlink", "max_clients", int, "SeedLink connections at once", _positive,
            attr="seedlink_max_clients"),
    Setting("seedlink", "client_timeout_s", float,
            "a SeedLink client that reads nothing this long while data waits (or sends no command "
            "before its stream starts) is dropped, s", _positive, attr="seedlink_client_timeout_s"),
    Setting("web", "listen", str,
            "serve the live status page on host:port (docs/web.md); unset = off. 127.0.0.1 serves this "
            "machine only (reach it through ssh -L)", _listen, optional=True, attr="web_listen"),
    Setting("web", "trace_s", float, "time of trace the page shows, s", _positive, attr="web_trace_s"),
    Setting("web", "points_per_s", float, "trace bins per second (each the min and max of its samples); "
            "trace_s x points_per_s at most 72000", _positive, attr="web_points_per_s"),
    Setting("web", "windows", int, "classified windows whose class probabilities the page keeps", _positive,
            attr="web_windows"),
    Setting("web", "events", int, "recent events the page keeps", _positive, attr="web_events"),
    Setting("shake_udp", "listen", str, "host:port the Shake's UDP datacast is sent to (its web page: "
            "Settings, Data, UDP); 0.0.0.0 takes it from the network", _listen, attr="shake_listen"),
    Setting("shake_udp", "channels", list, "the Shake's accelerometer channels, in the model's component "
            "order (RS4D: ENE, ENN, ENZ); geophone channels (EH?, SH?: velocity) are refused",
            _shake_channels, attr="shake_channels"),
    Setting("shake_udp", "reorder_s", float, "how long a missing packet is awaited before its frame is "
            "given up, s", _positive, attr="shake_reorder_s"),
    Setting("seedlink_client", "server", str, "SeedLink server, host:port (a Shake: its address:18000)",
            _listen, optional=True, attr="seedlink_server"),
    Setting("seedlink_client", "streams", list, "NET_STA:SELECTORS of the one station read, like "
            "\"AM_R1234:EN?\" or \"CE_68150:HN?\"; one channel per component", _streams, optional=True,
            attr="seedlink_streams"),
    Setting("seedlink_client", "timeout_s", float, "no data this long: the connection is dropped and made "
            "again, s", _positive, attr="seedlink_timeout_s"),
    Setting("seedlink_client", "reconnect_max_s", float, "longest wait between attempts to reach the "
            "server, s", _positive, attr="seedlink_reconnect_max_s"),
    Setting("seedlink_client", "state", str, "file keeping the last sequence number and time read, so a "
            "restarted node resumes where it stopped; unset: resume within a run only", optional=True,
            attr="seedlink_state"),
    Setting("web", "max_clients", int, "HTTP connections at once (a browser opens a few); one more is "
            "answered 503", _positive, attr="web_max_clients"),
]
# Flag names of earlier releases, still accepted.
ALIASES = {"min_rate_hz": ("--min-rate",), "max_rate_hz": ("--max-rate",), "min_pga_mps2": ("--min-pga",)}
BY_KEY = {(s.section, s.key): s for s in SETTINGS}
DETECTOR_KEYS = [s.key for s in SETTINGS if s.section == "detector"]


@dataclass
class NodeConfig:
    """Configuration of a node; see :data:`SETTINGS` for every field's meaning and unit.

    The defaults written here are the node's defaults (the TOML file, the flags' help
    and the docs read them through :attr:`Setting.default`).

    ``counts_per_mps2`` of ``None`` takes the sensor's datasheet scale. The window chain
    builds an (n, n) matrix per accepted rate, so ``max_rate_hz`` also bounds memory
    (1000 Hz: a 2000 x 2000 matrix, 32 MB).
    """

    port: str | None = None
    model: str | None = None
    source: str = "serial"
    events: str = "events.jsonl"
    status: str | None = None
    station: str = "NODE"
    network: str = "XX"
    location: str = ""
    channels: list = field(default_factory=lambda: ["HNE", "HNN", "HNZ"])
    latitude: float | None = None
    longitude: float | None = None
    elevation_m: float | None = None
    stationxml: str | None = None
    archive: str | None = None
    archive_quota_mb: float | None = None
    sensor: str = DEFAULT_SENSOR
    baudrate: int = 921600
    board_id: int | None = None
    protocol: str = "binary"
    text_rate_hz: float = 100.0
    text_checksum: str = "auto"
    trust_port_name: bool = False
    counts_per_mps2: float | None = None
    step_s: float = 0.25
    threads: int = 1
    status_every_s: float = 5.0
    idle_exit_s: float | None = None
    min_rate_hz: float = 10.0
    max_rate_hz: float = 1000.0
    read_timeout_s: float = 0.5
    reconnect_max_s: float = 10.0
    snippets: str | None = None
    source_model: str | None = None
    source_wait_s: float = 30.0
    snippet_pre_s: float = 10.0
    snippet_post_s: float = 5.0
    command: list | None = None
    command_timeout_s: float = 10.0
    url: str | None = None
    url_timeout_s: float = 5.0
    spool: str = "spool"
    retry_s: float = 5.0
    retry_max_s: float = 300.0
    mqtt_broker: str | None = None
    mqtt_topic: str | None = None
    mqtt_client_id: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_ca: str | None = None
    mqtt_cert: str | None = None
    mqtt_key: str | None = None
    mqtt_qos: int = 1
    mqtt_health_interval_s: float = 10.0
    mqtt_keepalive_s: int = 30
    mqtt_reconnect_max_s: float = 60.0
    mqtt_queue: str = "mqtt-queue"
    mqtt_queue_max: int = 10000
    mqtt_pick_prob: float = 0.3
    mqtt_pick_min_pga_mps2: float = 0.004  # 0.4 gal: docs/network-center.md, Measured
    mqtt_pick_windows: int = 2
    mqtt_pd_highpass_hz: float = 0.075
    seedlink_listen: str | None = None
    seedlink_ring_records: int = 8192
    seedlink_max_clients: int = 64
    seedlink_client_timeout_s: float = 30.0
    web_listen: str | None = None
    web_trace_s: float = 300.0
    web_points_per_s: float = 10.0
    web_windows: int = 1200
    web_events: int = 50
    web_max_clients: int = 16
    shake_listen: str = "127.0.0.1:8888"
    shake_channels: list = field(default_factory=lambda: ["ENE", "ENN", "ENZ"])
    shake_reorder_s: float = 1.0
    seedlink_server: str | None = None
    seedlink_streams: list | None = None
    seedlink_timeout_s: float = 30.0
    seedlink_reconnect_max_s: float = 30.0
    seedlink_state: str | None = None
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def __post_init__(self):
        _check_value(BY_KEY[("node", "sensor")], self.sensor, "setting sensor")
        if self.source in SOURCE_SENSORS and self.sensor == DEFAULT_SENSOR:
            self.sensor = SOURCE_SENSORS[self.source]  # the board's part is not what a Shake carries
        if self.counts_per_mps2 is None:
            self.counts_per_mps2 = get_sensor(self.sensor).counts_per_mps2
        validate(self)

    @property
    def sensor_model(self):
        return get_sensor(self.sensor)


def _check_value(setting: Setting, value, where: str):
    """Type-check and range-check one value; return it converted, or raise ConfigError."""
    if value is None:
        if setting.optional:
            return None
        raise ConfigError(f"{where}: required")
    expected = setting.type
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is list and isinstance(value, str):
        value = [value]
    if expected is int and isinstance(value, str) and setting.key == "board_id":
        try:
            value = int(value, 0)  # "0x1A2B3C4D" as written on the board's label
        except ValueError:
            raise ConfigError(f"{where} = {value!r}: must be an integer (hex 0x... accepted)") from None
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be true or false")
    elif not isinstance(value, expected) or isinstance(value, bool):
        raise ConfigError(f"{where} = {value!r}: must be {expected.__name__}")
    if expected is float and not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r}: must be finite")
    if expected is list and (not value or not all(isinstance(v, str) and v for v in value)):
        raise ConfigError(f"{where} = {value!r}: must be a non-empty list of strings")
    if setting.check is not None:
        why = setting.check(value)
        if why:
            raise ConfigError(f"{where} = {value!r}: {why}")
    return value


def validate(config: NodeConfig, source: str = "setting") -> NodeConfig:
    """Check every field of ``config`` against :data:`SETTINGS`; raise :class:`ConfigError`."""
    for s in SETTINGS:
        value = getattr(config.detector, s.key) if s.section == "detector" else getattr(config, s.name)
        if (s.key == "model" or (s.key == "port" and config.source == "serial")) and value is None:
            raise ConfigError(f"{source} {s.key}: required (in the config file or as {s.flag})")
        _check_value(s, value, f"{source} {s.key}")
    if config.min_rate_hz > config.max_rate_hz:
        raise ConfigError(f"{source} min_rate_hz = {config.min_rate_hz} is above max_rate_hz = "
                          f"{config.max_rate_hz}")
    if config.retry_s > config.retry_max_s:
        raise ConfigError(f"{source} retry_s = {config.retry_s} is above retry_max_s = {config.retry_max_s}")
    _check_mqtt(config, source)
    if config.source == "seedlink" and not (config.seedlink_server and config.seedlink_streams):
        raise ConfigError(f"{source} source = 'seedlink': set [seedlink_client] server and streams")
    return config


def _check_mqtt(config: NodeConfig, source: str) -> None:
    """[mqtt] keys that only make sense together."""
    tls_files = [k for k in ("ca", "cert", "key") if getattr(config, f"mqtt_{k}") is not None]
    if tls_files and not (config.mqtt_broker or "").strip().startswith("mqtts://"):
        raise ConfigError(f"{source} [mqtt] {tls_files[0]}: TLS files need an mqtts:// broker")
    if config.mqtt_password is not None and config.mqtt_username is None:
        raise ConfigError(f"{source} [mqtt] password: set username too")


def read_toml(path) -> dict:
    """Settings of a TOML file as ``{key: value}``, every key and value checked.

    Raises
    ------
    ConfigError
        One line naming the file, section, key and what is wrong.
    """
    path = Path(path)
    raw = load_toml_file(path)
    sections = sorted({s.section for s in SETTINGS})
    out = {}
    for section, table in raw.items():
        if section not in sections:
            raise ConfigError(f"{path}: unknown section [{section}]; known: "
                              f"{', '.join(f'[{s}]' for s in sections)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a [section], not a value")
        for key, value in table.items():
            setting = BY_KEY.get((section, key))
            if setting is None:
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                raise ConfigError(f"{path}: [{section}] unknown key {key!r}; known: {known}")
            out[setting.name] = _check_value(setting, value, f"{path}: [{section}] {key}")
    return out


def build_config(file_values: dict, overrides: dict, source: str = "setting") -> NodeConfig:
    """A :class:`NodeConfig` from defaults, then the file's values, then flags (``overrides``).

    ``overrides`` holds only the flags given on the command line (``None`` = not given).
    """
    values = {k: v for k, v in file_values.items()}
    for key, value in overrides.items():
        if value is not None:
            setting = next(s for s in SETTINGS if s.name == key)
            values[key] = _check_value(setting, value, f"{setting.flag}")
    detector = {k: values.pop(k) for k in list(values) if k in DETECTOR_KEYS}
    for key in ("port", "model") if values.get("source", "serial") == "serial" else ("model",):
        if values.get(key) is None:
            raise ConfigError(f"{key}: required (set [node] {key} in the config file or pass --{key})")
    try:
        detector_config = DetectorConfig(**detector)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    known = {f.name for f in fields(NodeConfig)}
    return NodeConfig(detector=detector_config, **{k: v for k, v in values.items() if k in known})


def add_arguments(parser) -> None:
    """One flag per setting (``--step-s``...), default ``None`` so a flag given wins over the file."""
    for section in dict.fromkeys(s.section for s in SETTINGS):
        group = parser.add_argument_group(f"[{section}] settings (flags override the config file)")
        for s in SETTINGS:
            if s.section != section:
                continue
            kwargs = dict(default=None, dest=s.name,
                          help=f"{s.help} (default: {s.default if s.default is not None else 'unset'})")
            if s.type is list:
                kwargs.update(nargs="+", metavar="ARG")
            elif s.type is bool:
                kwargs.update(action="store_const", const=True)
            elif s.key == "board_id":
                kwargs.update(type=str, metavar="ID")
            else:
                kwargs.update(type=s.type)
            group.add_argument(s.flag, *ALIASES.get(s.key, ()), **kwargs)


def load_toml_file(path) -> dict:
    """The tables of a TOML file; :class:`ConfigError` (one line naming the file) when it is
    missing, unreadable or not TOML. The node's config and the network centre's read through it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
