"""The node's station identity and its StationXML, written with the standard library.

A seismologist reading the node's counts (from its SDS archive or its SeedLink server)
needs the station's metadata to turn them into acceleration: FDSN StationXML 1.2, one
channel per component, each with its orientation, sampling rate and a response whose
sensitivity is the node's own scale in counts per m/s^2. ObsPy's ``read_inventory`` and
``Stream.remove_sensitivity`` then give exactly the m/s^2 the node classifies
(``counts / counts_per_mps2``, the same division). The file is XML built with
``xml.etree``: the node does not import ObsPy.

The response is flat (a MEMS accelerometer's output is proportional to acceleration
from DC to well above the sampling rates the node accepts): one poles-and-zeros stage
without poles or zeros from M/S**2 to COUNTS, its gain the sensitivity.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..atomic import write_text_atomically
from ..sensors import SensorModel
from ..sink import Consumer

log = logging.getLogger(__name__)

NAMESPACE = "http://www.fdsn.org/xml/station/1"

#: Azimuth (degrees east of north) and dip (degrees down from horizontal) of each
#: component code; SEED's convention, so Z points up at dip -90.
ORIENTATION_DEG = {"E": (90.0, 0.0), "N": (0.0, 0.0), "Z": (0.0, -90.0)}

#: Frequency at which the sensitivity is given, Hz (the response is flat).
SENSITIVITY_FREQUENCY_HZ = 1.0

_MANUFACTURERS = {"adxl": "Analog Devices", "lis3dh": "STMicroelectronics", "mpu6050": "InvenSense",
                  "rs4d": "Raspberry Shake"}

US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class StationIdentity:
    """Who the node is in a seismic network.

    Attributes
    ----------
    network, station, location : str
        SEED codes (location ``""`` when blank).
    channels : tuple of str
        SEED channel code of each component, in the model's component order.
    components : tuple of str
        The model's component codes (``("E", "N", "Z")``), which give the orientations.
    latitude_deg, longitude_deg, elevation_m : float or None
        Position (WGS84 degrees, m above sea level); ``None`` when not configured.
    """

    network: str
    station: str
    location: str
    channels: tuple
    components: tuple
    latitude_deg: float | None = None
    longitude_deg: float | None = None
    elevation_m: float | None = None

    @property
    def positioned(self) -> bool:
        return self.latitude_deg is not None and self.longitude_deg is not None


def station_identity(config, components) -> StationIdentity:
    """The node's identity from its config and its model's components.

    Raises
    ------
    ValueError
        One line, when ``[node] channels`` does not name one channel per component or a
        channel's orientation letter (E, N, Z) contradicts its component.
    """
    channels, components = tuple(config.channels), tuple(components)
    if len(channels) != len(components):
        raise ValueError(f"[node] channels {list(channels)}: {len(channels)} codes for the model's "
                         f"{len(components)} components {', '.join(components)}")
    for channel, component in zip(channels, components, strict=True):
        if channel[-1] in ORIENTATION_DEG and component in ORIENTATION_DEG and channel[-1] != component:
            raise ValueError(f"[node] channels {list(channels)}: {channel} is the model's component "
                             f"{component}; list them in the order {', '.join(components)}")
    return StationIdentity(config.network, config.station, config.location, channels, components,
                           config.latitude, config.longitude, config.elevation_m)


def _iso(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sub(parent: ET.Element, tag: str, text=None, **attrib) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        element.text = text if isinstance(text, str) else repr(float(text))
    return element


def _units(parent: ET.Element, tag: str, name: str, description: str) -> None:
    units = _sub(parent, tag)
    _sub(units, "Name", name)
    _sub(units, "Description", description)


def _response(channel: ET.Element, counts_per_mps2: float) -> None:
    """Sensitivity in counts per m/s^2, and one flat stage that carries it."""
    response = _sub(channel, "Response")
    sensitivity = _sub(response, "InstrumentSensitivity")
    _sub(sensitivity, "Value", counts_per_mps2)
    _sub(sensitivity, "Frequency", SENSITIVITY_FREQUENCY_HZ)
    _units(sensitivity, "InputUnits", "M/S**2", "acceleration in meters per second squared")
    _units(sensitivity, "OutputUnits", "COUNTS", "digital counts of the accelerometer's ADC")
    stage = _sub(response, "Stage", number=1)
    pz = _sub(stage, "PolesZeros", name="MEMS accelerometer, flat")
    _units(pz, "InputUnits", "M/S**2", "acceleration in meters per second squared")
    _units(pz, "OutputUnits", "COUNTS", "digital counts of the accelerometer's ADC")
    _sub(pz, "PzTransferFunctionType", "LAPLACE (RADIANS/SECOND)")
    _sub(pz, "NormalizationFactor", 1.0)
    _sub(pz, "NormalizationFrequency", SENSITIVITY_FREQUENCY_HZ)
    gain = _sub(stage, "StageGain")
    _sub(gain, "Value", counts_per_mps2)
    _sub(gain, "Frequency", SENSITIVITY_FREQUENCY_HZ)


def _sensor(channel: ET.Element, sensor: SensorModel) -> None:
    part = sensor.name.split("-")[0]
    element = _sub(channel, "Sensor")
    _sub(element, "Type", "Accelerometer")
    _sub(element, "Description", f"{part.upper()} MEMS accelerometer, +/-{sensor.range_g:g} g full scale, "
                                 f"{sensor.bits}-bit")
    manufacturer = next((m for prefix, m in _MANUFACTURERS.items() if part.startswith(prefix)), None)
    if manufacturer:
        _sub(element, "Manufacturer", manufacturer)
    _sub(element, "Model", sensor.name)


def _position(parent: ET.Element, identity: StationIdentity) -> None:
    _sub(parent, "Latitude", identity.latitude_deg or 0.0)
    _sub(parent, "Longitude", identity.longitude_deg or 0.0)
    _sub(parent, "Elevation", identity.elevation_m or 0.0)


def station_xml(identity: StationIdentity, sensor: SensorModel, counts_per_mps2: float,
                sampling_rate_hz: float | None, start_us: int, created_us: int | None = None) -> str:
    """The node's FDSN StationXML 1.2 document.

    Parameters
    ----------
    identity : StationIdentity
    sensor : SensorModel
        The accelerometer (named in each channel's ``Sensor``).
    counts_per_mps2 : float
        The node's scale, counts per m/s^2 (the sensitivity and the stage gain).
    sampling_rate_hz : float or None
        The board's sampling rate, Hz; ``None`` (not known yet) leaves ``SampleRate`` out.
    start_us : int
        Start of the channels' epoch, UTC us since 1970.
    created_us : int, optional
        Time the document is made, UTC us (default: now).

    Returns
    -------
    str
        The XML text, with its declaration.
    """
    created_us = int(time.time() * 1e6) if created_us is None else created_us
    root = ET.Element("FDSNStationXML", {"xmlns": NAMESPACE, "schemaVersion": "1.2"})
    _sub(root, "Source", "SeismicTorch")
    _sub(root, "Module", "SeismicTorch edge_runtime")
    _sub(root, "Created", _iso(created_us))
    start = _iso(start_us)
    network = _sub(root, "Network", code=identity.network, startDate=start)
    station = _sub(network, "Station", code=identity.station, startDate=start)
    _position(station, identity)
    site = _sub(station, "Site")
    _sub(site, "Name", f"SeismicTorch node {identity.network}.{identity.station}")
    for code, component in zip(identity.channels, identity.components, strict=True):
        channel = _sub(station, "Channel", code=code, locationCode=identity.location, startDate=start)
        _position(channel, identity)
        _sub(channel, "Depth", 0.0)
        if component in ORIENTATION_DEG:
            azimuth_deg, dip_deg = ORIENTATION_DEG[component]
            _sub(channel, "Azimuth", azimuth_deg)
            _sub(channel, "Dip", dip_deg)
        _sub(channel, "Type", "CONTINUOUS")
        _sub(channel, "Type", "GEOPHYSICAL")
        if sampling_rate_hz:
            _sub(channel, "SampleRate", float(sampling_rate_hz))
        _sensor(channel, sensor)
        _response(channel, counts_per_mps2)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def epoch_start_us(path) -> int | None:
    """The earliest channel ``startDate`` of a StationXML file written before, UTC us; None if none.

    A node that restarts keeps its epoch, so the counts it archived before stay covered.
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    starts = []
    for channel in root.iter(f"{{{NAMESPACE}}}Channel"):
        try:
            when = datetime.strptime(channel.get("startDate", ""), "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            continue
        starts.append(int(round(when.replace(tzinfo=UTC).timestamp() * 1e6)))
    return min(starts) if starts else None


class StationXmlWriter(Consumer):
    """The node's StationXML, written at start and again when the sampling rate is known or changes.

    The channels' epoch starts at the UTC midnight before the earliest sample the node has
    seen (kept from an earlier file at the same path), so every archived count is covered.

    Parameters
    ----------
    path : str or Path
        The StationXML file.
    identity : StationIdentity
    sensor : SensorModel
    counts_per_mps2 : float
        The node's scale, counts per m/s^2.
    sampling_rate_hz : float, optional
        The rate when known before the first frame (a text-mode board's), Hz.
    faults : LimitedLog, optional
        Logs a rewrite that fails (the node keeps running).

    Raises
    ------
    ValueError
        One line, when the file cannot be written at start.
    """

    name = "stationxml"

    def __init__(self, path, identity: StationIdentity, sensor: SensorModel, counts_per_mps2: float,
                 sampling_rate_hz: float | None = None, faults=None):
        self.path = Path(path)
        self.identity, self.sensor, self.counts_per_mps2 = identity, sensor, counts_per_mps2
        self.sampling_rate_hz = sampling_rate_hz
        self.faults = faults
        self.writes = 0
        now_day_us = int(time.time() * 1e6) // US_PER_DAY * US_PER_DAY
        earlier = epoch_start_us(self.path)
        self.start_us = now_day_us if earlier is None else min(earlier, now_day_us)
        if not identity.positioned:
            log.warning("[node] latitude and longitude are not set: the StationXML %s places the station "
                        "at 0, 0", self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write()
        except OSError as exc:
            raise ValueError(f"stationxml {self.path}: cannot write ({exc.strerror or exc})") from None

    def _write(self) -> None:
        write_text_atomically(self.path, station_xml(self.identity, self.sensor, self.counts_per_mps2,
                                                     self.sampling_rate_hz, self.start_us))
        self.writes += 1

    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2) -> None:
        if rate_hz == self.sampling_rate_hz and t0_us >= self.start_us:
            return
        self.sampling_rate_hz = rate_hz
        self.start_us = min(self.start_us, t0_us // US_PER_DAY * US_PER_DAY)
        try:
            self._write()
        except OSError as exc:
            if self.faults is not None:
                self.faults(logging.ERROR, "stationxml", "%s: cannot write (%s)", self.path,
                            exc.strerror or exc)

    def counters(self) -> dict:
        return {"stationxml_writes": self.writes}


def stationxml_path(config) -> Path | None:
    """Where the node writes its StationXML: ``[output] stationxml``, else ``NET.STA.xml`` in the
    archive's root when ``[archive]`` is on, else nowhere (None)."""
    if config.stationxml:
        return Path(config.stationxml)
    if config.archive:
        return Path(config.archive) / f"{config.network}.{config.station}.xml"
    return None


def build_stationxml_output(config, components) -> StationXmlWriter | None:
    """The StationXML writer of ``config``, or None when no StationXML is asked for.

    Raises
    ------
    ValueError
        Channels that do not match the model's components, or a file that cannot be
        written (one line).
    """
    path = stationxml_path(config)
    if path is None:
        return None
    rate_hz = config.text_rate_hz if config.protocol == "text" else None  # a binary board's comes with frames
    return StationXmlWriter(path, station_identity(config, components), config.sensor_model,
                            config.counts_per_mps2, rate_hz)
