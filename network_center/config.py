"""The centre's configuration (``center.toml``): one dataclass, one-line errors.

Every key, its default and meaning is in ``docs/network-center.md``. A mistake in the
file raises :class:`ConfigError` with one line naming the key, which the command line
prints before exiting with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from edge_runtime.config import ConfigError as NodeConfigError
from edge_runtime.config import load_toml_file
from edge_runtime.network.mqtt import parse_broker

TIME_FIX_GOOD = ("gps", "ntp", "node")


class ConfigError(ValueError):
    """A wrong key or value in ``center.toml``; the message is one line."""


@dataclass
class CenterConfig:
    """The resolved settings (see the module notes; units in the names)."""

    broker: str = "mqtt://127.0.0.1:1883"
    topic: str = "seismictorch/+"  # the nodes' prefixes (MQTT wildcard)
    shared_group: str = ""  # subscribe through $share/<group>/... when set
    client_id: str = "seismictorch-center"
    username: str | None = None
    password: str | None = None
    qos: int = 1
    out_topic: str = "seismictorch/center"
    stationxml: str | None = None
    # velocity model: layers (top_km, vp_kmps, vs_kmps); one layer: homogeneous (PyOcto 0-D)
    layers: list = field(default_factory=lambda: [[0.0, 6.0, 3.5]])
    tolerance_s: float = 1.0
    table_dir: str = "center-data/tables"
    # association
    min_picks: int = 4
    min_p_picks: int = 4
    min_s_picks: int = 0
    min_p_and_s_stations: int = 0
    min_stations: int = 4
    window_s: float = 120.0
    max_depth_km: float = 40.0
    margin_km: float = 30.0
    associate_every_s: float = 0.5
    time_fix_policy: str = "exclude"  # or "downweight"
    downweight: float = 0.1
    pick_sigma_s: float = 0.2
    quiet_stations: int = 3  # reject an event with this many quiet stations nearer than its picks (0: off)
    quiet_fraction: float = 0.3  # ... that are at least this fraction of the stations able to pick there
    max_horizontal_uncertainty_km: float = 15.0  # a worse-known epicentre is not declared (0: off)
    max_origin_time_uncertainty_s: float = 2.0  # a worse-known origin time is not declared (0: off)
    magnitude_relation: str = "kuyuk-allen-2013"
    # outputs
    quakeml_dir: str = "center-data/quakeml"
    alert_magnitude: float = 4.0
    alert_command: list | None = None
    alert_url: str | None = None
    alert_queue: str = "center-data/alert-queue"
    web_listen: str | None = None  # "127.0.0.1:8090"
    health_timeout_s: float = 60.0
    path: str = ""


# section -> key -> (attribute, type)
KEYS = {
    "broker": {
        "url": ("broker", str),
        "topic": ("topic", str),
        "shared_group": ("shared_group", str),
        "client_id": ("client_id", str),
        "username": ("username", str),
        "password": ("password", str),
        "qos": ("qos", int),
        "out_topic": ("out_topic", str),
    },
    "stations": {"stationxml": ("stationxml", str), "health_timeout_s": ("health_timeout_s", float)},
    "velocity": {
        "layers": ("layers", list),
        "tolerance_s": ("tolerance_s", float),
        "table_dir": ("table_dir", str),
    },
    "association": {
        "min_picks": ("min_picks", int),
        "min_p_picks": ("min_p_picks", int),
        "min_s_picks": ("min_s_picks", int),
        "min_p_and_s_stations": ("min_p_and_s_stations", int),
        "min_stations": ("min_stations", int),
        "window_s": ("window_s", float),
        "max_depth_km": ("max_depth_km", float),
        "margin_km": ("margin_km", float),
        "associate_every_s": ("associate_every_s", float),
        "time_fix_policy": ("time_fix_policy", str),
        "downweight": ("downweight", float),
        "pick_sigma_s": ("pick_sigma_s", float),
        "quiet_stations": ("quiet_stations", int),
        "quiet_fraction": ("quiet_fraction", float),
        "max_horizontal_uncertainty_km": ("max_horizontal_uncertainty_km", float),
        "max_origin_time_uncertainty_s": ("max_origin_time_uncertainty_s", float),
    },
    "magnitude": {"relation": ("magnitude_relation", str)},
    "outputs": {"quakeml_dir": ("quakeml_dir", str), "web_listen": ("web_listen", str)},
    "alert": {
        "magnitude": ("alert_magnitude", float),
        "command": ("alert_command", list),
        "url": ("alert_url", str),
        "queue": ("alert_queue", str),
    },
}


def _typed(where: str, value, kind):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where} = {value!r}: must be a {kind.__name__}")
    return value


def _check(c: CenterConfig, name: str) -> None:
    from .magnitude import RELATIONS

    try:
        parse_broker(c.broker)
    except ValueError as exc:
        raise ConfigError(f"{name}: [broker] url = {c.broker!r}: {exc}") from None
    rules = [
        ("[broker] qos", c.qos in (0, 1, 2), "must be 0, 1 or 2"),
        (
            "[velocity] layers",
            _layers_ok(c.layers),
            "must be [[top_km, vp_kmps, vs_kmps], ...] from 0 km down, tops increasing, vp > vs > 0",
        ),
        ("[velocity] tolerance_s", c.tolerance_s > 0, "must be > 0"),
        ("[association] min_picks", c.min_picks >= 3, "must be >= 3 (a location needs 4 unknowns' worth)"),
        ("[association] min_stations", c.min_stations >= 3, "must be >= 3"),
        ("[association] window_s", c.window_s >= 10, "must be >= 10"),
        (
            "[association] time_fix_policy",
            c.time_fix_policy in ("exclude", "downweight"),
            "must be exclude or downweight",
        ),
        ("[association] downweight", 0 < c.downweight <= 1, "must be in (0, 1]"),
        ("[association] quiet_stations", c.quiet_stations >= 0, "must be >= 0 (0 turns the check off)"),
        ("[association] quiet_fraction", 0 <= c.quiet_fraction <= 1, "must be in [0, 1]"),
        ("[association] max_horizontal_uncertainty_km", c.max_horizontal_uncertainty_km >= 0,
         "must be >= 0 (0 turns the check off)"),
        ("[association] max_origin_time_uncertainty_s", c.max_origin_time_uncertainty_s >= 0,
         "must be >= 0 (0 turns the check off)"),
        ("[magnitude] relation", c.magnitude_relation in RELATIONS, f"must be one of {', '.join(RELATIONS)}"),
        (
            "[alert] command",
            c.alert_command is None or (c.alert_command and all(isinstance(a, str) for a in c.alert_command)),
            "must be a non-empty list of strings (program and arguments)",
        ),
        (
            "[alert] url",
            c.alert_url is None or c.alert_url.startswith(("http://", "https://")),
            "must start with http:// or https://",
        ),
        ("[outputs] web_listen", c.web_listen is None or _listen_ok(c.web_listen), "must be HOST:PORT"),
    ]
    for where, ok, why in rules:
        if not ok:
            raise ConfigError(f"{name}: {where}: {why}")
    if c.stationxml and not Path(c.stationxml).is_file():
        raise ConfigError(f"{name}: [stations] stationxml = {c.stationxml!r}: no such file")


def _layers_ok(layers) -> bool:
    try:
        rows = [tuple(float(v) for v in row) for row in layers]
    except (TypeError, ValueError):
        return False
    tops = [r[0] for r in rows]
    return (
        bool(rows)
        and all(len(r) == 3 and r[1] > r[2] > 0 for r in rows)
        and tops[0] == 0
        and all(b > a for a, b in zip(tops, tops[1:], strict=False))
    )


def _listen_ok(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 <= int(port) < 65536


def build_config(values: dict, name: str = "center.toml") -> CenterConfig:
    """A :class:`CenterConfig` from parsed TOML ``values``; :class:`ConfigError` names a mistake."""
    config = CenterConfig(path=name)
    for section, table in values.items():
        if section not in KEYS or not isinstance(table, dict):
            raise ConfigError(f"{name}: unknown section [{section}]; known: {', '.join(KEYS)}")
        for key, value in table.items():
            if key not in KEYS[section]:
                raise ConfigError(
                    f"{name}: [{section}] unknown key {key!r}; known: {', '.join(KEYS[section])}"
                )
            attr, kind = KEYS[section][key]
            setattr(config, attr, _typed(f"{name}: [{section}] {key}", value, kind))
    config.layers = (
        [[float(v) for v in row] for row in config.layers] if _layers_ok(config.layers) else config.layers
    )
    _check(config, name)
    return config


def read_config(path) -> CenterConfig:
    """Read and check ``center.toml``; :class:`ConfigError` (one line) when it cannot be used."""
    path = Path(path)
    try:
        values = load_toml_file(path)
    except NodeConfigError as exc:
        raise ConfigError(str(exc)) from None
    return build_config(values, str(path))


def field_names() -> list[str]:
    return [f.name for f in fields(CenterConfig)]
