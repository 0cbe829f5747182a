"""Stations of the network: positions, clocks and health, from the nodes' messages or StationXML.

A node's retained ``health`` message carries its position and time-fix state, so a
centre started at any moment knows every station at once; a StationXML file
(``[stations] stationxml``) gives positions for nodes that do not send them. The
retained ``status`` (``online``/``offline``) says whether a node is connected.

Positions are projected onto a local plane (km east and north of the network's
reference point, an equirectangular projection: within 0.1 % over 200 km at mid
latitudes) for the associator and the locator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EARTH_RADIUS_KM = 6371.0
GOOD_CLOCKS = ("gps", "ntp", "node")


@dataclass
class Station:
    """One node as the centre knows it."""

    code: str  # NET.STA
    latitude: float | None = None
    longitude: float | None = None
    elevation_m: float = 0.0
    time_fix: str | None = None
    status: str = "unknown"  # online / offline / unknown
    last_health_s: float | None = None  # centre's wall clock, s
    queued: int = 0
    model_version: str | None = None
    picks: int = 0
    source: str = ""  # health / stationxml

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def heard_from(self, now_s: float, timeout_s: float) -> bool:
        """Whether its last health message is at most ``timeout_s`` old at ``now_s`` (centre's clock, s)."""
        return self.last_health_s is not None and now_s - self.last_health_s <= timeout_s

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def station_code(message: dict) -> str:
    """``NET.STA`` of a node's message (``network`` may be empty)."""
    return f"{message.get('network') or ''}.{message.get('station') or ''}"


@dataclass
class Stations:
    """The station table; :meth:`xy_km` projects onto the network's local plane."""

    by_code: dict = field(default_factory=dict)
    reference: tuple | None = None  # (lat, lon) of the local plane's origin

    def get(self, code: str) -> Station:
        if code not in self.by_code:
            self.by_code[code] = Station(code)
        return self.by_code[code]

    def from_health(self, message: dict, now_s: float) -> Station:
        sta = self.get(station_code(message))
        if message.get("latitude") is not None and message.get("longitude") is not None:
            sta.latitude, sta.longitude = float(message["latitude"]), float(message["longitude"])
            sta.elevation_m = float(message.get("elevation_m") or 0.0)
            sta.source = "health"
        sta.time_fix = message.get("time_fix")
        sta.queued = int(message.get("queued") or 0)
        sta.model_version = message.get("model_version")
        sta.last_health_s = now_s
        if sta.status == "unknown":
            sta.status = "online"
        return sta

    def from_stationxml(self, path) -> int:
        """Positions of every station in a StationXML file (ObsPy); how many were read."""
        from obspy import read_inventory

        n = 0
        for net in read_inventory(str(path)):
            for st in net:
                sta = self.get(f"{net.code}.{st.code}")
                if sta.source != "health":
                    sta.latitude, sta.longitude = float(st.latitude), float(st.longitude)
                    sta.elevation_m = float(st.elevation or 0.0)
                    sta.source = "stationxml"
                n += 1
        return n

    def located(self) -> list[Station]:
        return [s for s in self.by_code.values() if s.located]

    def origin(self) -> tuple[float, float]:
        """The local plane's origin: the mean position of the first located stations, kept."""
        if self.reference is None:
            located = self.located()
            if not located:
                return 0.0, 0.0
            self.reference = (
                sum(s.latitude for s in located) / len(located),
                sum(s.longitude for s in located) / len(located),
            )
        return self.reference

    def xy_km(self, latitude: float, longitude: float) -> tuple[float, float]:
        lat0, lon0 = self.origin()
        k = math.pi / 180.0 * EARTH_RADIUS_KM
        return (longitude - lon0) * k * math.cos(math.radians(lat0)), (latitude - lat0) * k

    def lat_lon(self, x_km: float, y_km: float) -> tuple[float, float]:
        lat0, lon0 = self.origin()
        k = math.pi / 180.0 * EARTH_RADIUS_KM
        return lat0 + y_km / k, lon0 + x_km / (k * math.cos(math.radians(lat0)))


def clock_weight(time_fix: str | None, policy: str, downweight: float) -> float:
    """Weight of a pick by its node's time-fix state: 1 for a disciplined clock; else 0 or ``downweight``."""
    if time_fix in GOOD_CLOCKS:
        return 1.0
    return 0.0 if policy == "exclude" else downweight
