"""What the centre does with each declared or updated event: QuakeML, alerts (and MQTT, in service).

* QuakeML: one file per event, ``<quakeml_dir>/<event_id>.xml``, rewritten at each
  version (ObsPy's writer): origin with time, latitude, longitude and depth
  uncertainties, the magnitude (type ``Mpd``, its method in the comment), and each
  contributing pick with its arrival (residual, distance, weight).
* Alerts: the first version of an event at or above ``[alert] magnitude`` (or a later
  version that first reaches it) is handed to the node's own alert machinery
  (:class:`edge_runtime.actions.ActionQueue`: a command fed the event JSON on stdin, or a
  POST to a URL), which keeps it on disk and retries with back-off until delivered.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_runtime.actions import ActionQueue, CommandAction, HttpAction

from .network import public

log = logging.getLogger(__name__)


def quakeml(event: dict, path) -> Path:
    """Write ``event`` (a network-event message) as QuakeML to ``path``."""
    from obspy import UTCDateTime
    from obspy.core.event import (
        Catalog,
        Comment,
        CreationInfo,
        Event,
        Magnitude,
        Origin,
        OriginQuality,
        QuantityError,
        ResourceIdentifier,
    )

    prefix = f"smi:seismictorch/{event['event_id']}"
    origin = Origin(
        resource_id=ResourceIdentifier(f"{prefix}/origin/{event['version']}"),
        time=UTCDateTime(event["origin_time_us"] / 1e6),
        time_errors=QuantityError(event["origin_time_uncertainty_s"]),
        latitude=event["latitude"],
        longitude=event["longitude"],
        latitude_errors=QuantityError(event["horizontal_uncertainty_km"] / 111.195),
        longitude_errors=QuantityError(event["horizontal_uncertainty_km"] / 111.195),
        depth=event["depth_km"] * 1000.0,
        depth_errors=QuantityError(event["depth_uncertainty_km"] * 1000),
        evaluation_mode="automatic",
        quality=OriginQuality(
            used_phase_count=event["n_picks"],
            used_station_count=event["n_stations"],
            standard_error=event["rms_s"],
        ),
    )
    picks = _picks(event, prefix, origin)
    ev = Event(
        resource_id=ResourceIdentifier(prefix),
        picks=picks,
        origins=[origin],
        creation_info=CreationInfo(agency_id="seismictorch", version=str(event["version"])),
        event_type="earthquake",
    )
    if event.get("magnitude") is not None:
        ev.magnitudes.append(
            Magnitude(
                mag=event["magnitude"],
                magnitude_type="Mpd",
                mag_errors=QuantityError(event["magnitude_uncertainty"]),
                origin_id=origin.resource_id,
                station_count=event["magnitude_stations"],
                comments=[
                    Comment(text=f"peak displacement 3 s after P, relation {event['magnitude_method']}")
                ],
            )
        )
        ev.preferred_magnitude_id = ev.magnitudes[0].resource_id
    ev.preferred_origin_id = origin.resource_id
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Catalog([ev]).write(str(tmp), format="QUAKEML")
    tmp.replace(path)
    return path


def _picks(event: dict, prefix: str, origin) -> list:
    """The event's picks as ObsPy picks, each with its arrival added to ``origin``."""
    from obspy import UTCDateTime
    from obspy.core.event import Arrival, Pick, ResourceIdentifier, WaveformStreamID

    picks = []
    for p in event["picks"]:
        net, _, sta = p["station"].partition(".")
        pick = Pick(
            resource_id=ResourceIdentifier(f"{prefix}/pick/{p['station']}/{p['pick_id']}/{p['revision']}"),
            time=UTCDateTime(p["time_us"] / 1e6),
            phase_hint=p["phase"],
            evaluation_mode="automatic",
            waveform_id=WaveformStreamID(network_code=net, station_code=sta),
        )
        picks.append(pick)
        origin.arrivals.append(
            Arrival(
                pick_id=pick.resource_id,
                phase=p["phase"],
                time_residual=p["residual_s"],
                distance=p["distance_km"] / 111.195,
                time_weight=p["weight"],
            )
        )
    return picks


class Alerts:
    """Alert queues (a command and/or a URL) for events at or above ``threshold`` magnitude."""

    def __init__(self, config):
        self.threshold = config.alert_magnitude
        self.queues = []
        folder = Path(config.alert_queue)
        if config.alert_command:
            self.queues.append(ActionQueue(CommandAction(config.alert_command), folder / "command"))
        if config.alert_url:
            self.queues.append(ActionQueue(HttpAction(config.alert_url), folder / "http"))
        self.sent: set[str] = set()

    def consider(self, event: dict) -> bool:
        """Queue an alert for ``event`` once, when its magnitude reaches the threshold."""
        if (
            event["event_id"] in self.sent
            or event.get("magnitude") is None
            or event["magnitude"] < self.threshold
        ):
            return False
        self.sent.add(event["event_id"])
        for q in self.queues:
            q.submit(public(event))
        return True

    def counters(self) -> dict:
        return {"alerts": len(self.sent), "alert_queues": [q.to_dict() for q in self.queues]}

    def close(self) -> None:
        for q in self.queues:
            q.close()
