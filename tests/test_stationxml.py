"""The node's station identity and StationXML (edge_runtime/network/stationxml.py), read by ObsPy.

The node writes the XML with the standard library; ObsPy (host side) validates it against
the FDSN StationXML 1.2 schema, reads it, and its ``remove_sensitivity`` turns the node's
counts into exactly the m/s^2 the node itself classifies.
"""

from __future__ import annotations

import numpy as np
import pytest

obspy = pytest.importorskip("obspy")

from obspy.io.stationxml.core import validate_stationxml  # noqa: E402

from edge_runtime.config import ConfigError, NodeConfig, build_config, read_toml  # noqa: E402
from edge_runtime.network.stationxml import (  # noqa: E402
    StationXmlWriter,
    build_stationxml_output,
    epoch_start_us,
    station_identity,
    station_xml,
)
from edge_runtime.sensors import SENSORS, get_sensor  # noqa: E402

MIDNIGHT_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
COMPONENTS = ("E", "N", "Z")


def config(**kw) -> NodeConfig:
    values = dict(port="unused", model="unused", station="ST01", network="XX", latitude=46.52,
                  longitude=6.57, elevation_m=495.0)
    return NodeConfig(**{**values, **kw})


def write(tmp_path, c: NodeConfig, rate_hz=100.0, name="node.xml"):
    path = tmp_path / name
    path.write_text(station_xml(station_identity(c, COMPONENTS), c.sensor_model, c.counts_per_mps2, rate_hz,
                                MIDNIGHT_US))
    return path


@pytest.mark.parametrize("sensor,override", [("adxl355-2g", None), ("adxl355-8g", None),
                                             ("lis3dh-4g", None), ("mpu6050-16g", None),
                                             ("adxl345-2g", None), ("adxl355-2g", 26104.7)])
def test_stationxml_is_valid_and_carries_the_nodes_scale(tmp_path, sensor, override):
    c = config(sensor=sensor, counts_per_mps2=override)
    path = write(tmp_path, c)
    valid, errors = validate_stationxml(str(path))  # the FDSN StationXML 1.2 schema
    assert valid, errors
    inventory = obspy.read_inventory(str(path))
    assert inventory.get_contents()["channels"] == ["XX.ST01..HNE", "XX.ST01..HNN", "XX.ST01..HNZ"]
    station = inventory[0][0]
    assert (station.latitude, station.longitude, station.elevation) == (46.52, 6.57, 495.0)
    orientation = {ch.code: (ch.azimuth, ch.dip) for ch in station}
    assert orientation == {"HNE": (90.0, 0.0), "HNN": (0.0, 0.0), "HNZ": (0.0, -90.0)}  # Z up
    for channel in station:
        assert channel.sample_rate == 100.0 and channel.location_code == ""
        sensitivity = channel.response.instrument_sensitivity
        assert sensitivity.value == c.counts_per_mps2  # to the last bit
        assert (sensitivity.input_units, sensitivity.output_units) == ("M/S**2", "COUNTS")
        assert channel.response.response_stages[0].stage_gain == c.counts_per_mps2
        assert channel.sensor.model == sensor
    scale = override or get_sensor(sensor).counts_per_mps2
    assert c.counts_per_mps2 == scale


def test_remove_sensitivity_gives_the_nodes_own_mps2(tmp_path):
    """counts -> m/s^2 by ObsPy with the StationXML equals Pipeline's counts / counts_per_mps2."""
    c = config(counts_per_mps2=26104.7)
    inventory = obspy.read_inventory(str(write(tmp_path, c)))
    counts = np.random.default_rng(0).integers(-(2**19), 2**19, (3, 1000)).astype(np.int32)
    stream = obspy.Stream([obspy.Trace(counts[i].copy(), dict(network="XX", station="ST01", location="",
                                                                channel=f"HN{comp}", sampling_rate=100.0,
                                                                starttime=obspy.UTCDateTime(2026, 3, 1)))
                           for i, comp in enumerate(COMPONENTS)])
    stream.remove_sensitivity(inventory)
    node_mps2 = counts.T / c.counts_per_mps2  # what Pipeline._accept computes from a frame's counts
    for i, trace in enumerate(stream):
        np.testing.assert_array_equal(trace.data, node_mps2[:, i])
    response = inventory.get_response("XX.ST01..HNZ", obspy.UTCDateTime(2026, 3, 1))
    amplitude = response.get_evalresp_response_for_frequencies([0.1, 1.0, 10.0, 40.0], output="ACC")
    np.testing.assert_allclose(np.abs(amplitude), c.counts_per_mps2, rtol=1e-12)  # a flat response


def test_channels_must_match_the_models_components():
    with pytest.raises(ValueError, match=r"^\[node\] channels \['HNE', 'HNN'\]: 2 codes for the model's 3"):
        station_identity(config(channels=["HNE", "HNN"]), COMPONENTS)
    with pytest.raises(ValueError, match=r"HNZ is the model's component E; list them in the order E, N, Z$"):
        station_identity(config(channels=["HNZ", "HNN", "HNE"]), COMPONENTS)
    identity = station_identity(config(channels=["HN1", "HN2", "HNZ"]), COMPONENTS)  # unoriented codes
    assert identity.channels == ("HN1", "HN2", "HNZ")


@pytest.mark.parametrize("line,message", [
    ('network = "XXX"', "[node] network = 'XXX': network code 'XXX': must be"),
    ('station = "STATION1"', "[node] station = 'STATION1': station code 'STATION1': must be"),
    ('location = "A.B"', "[node] location = 'A.B': location code 'A.B': must be"),
    ('channels = ["HNE", "HN"]', "[node] channels = ['HNE', 'HN']: channel code 'HN': must be"),
    ('channels = ["HNE", "HN Z"]', "channel code 'HN Z': must be"),
    ("latitude = 91.0", "[node] latitude = 91.0: must be between -90 and 90"),
    ("longitude = -180.5", "[node] longitude = -180.5: must be between -180 and 180"),
    ('elevation_m = "high"', "[node] elevation_m = 'high': must be float"),
])
def test_station_identity_errors_are_one_line(tmp_path, line, message):
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\n{line}\n')
    with pytest.raises(ConfigError) as info:
        build_config(read_toml(path), {})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_station_identity_from_toml(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\nnetwork = "CH"\nstation = "EPFL1"\n'
                    'location = "00"\nchannels = ["HNE", "HNN", "HNZ"]\nlatitude = 46.52\nlongitude = 6.57\n'
                    'elevation_m = 495\n[output]\nstationxml = "node.xml"\n[archive]\npath = "/var/sds"\n'
                    'quota_mb = 2000\n')
    c = build_config(read_toml(path), {})
    assert (c.network, c.station, c.location, c.channels) == ("CH", "EPFL1", "00", ["HNE", "HNN", "HNZ"])
    assert (c.latitude, c.longitude, c.elevation_m) == (46.52, 6.57, 495.0)
    assert (c.stationxml, c.archive, c.archive_quota_mb) == ("node.xml", "/var/sds", 2000.0)
    defaults = NodeConfig(port="x", model="m")
    assert (defaults.network, defaults.location, defaults.channels) == ("XX", "", ["HNE", "HNN", "HNZ"])


def test_writer_keeps_its_epoch_and_learns_the_rate(tmp_path, caplog):
    """Written at start (rate unknown for a binary board), again at the first frame with its
    rate; the epoch reaches back to the first sample's day and survives a restart."""
    c = config(stationxml=str(tmp_path / "xml" / "XX.ST01.xml"), latitude=None, longitude=None)
    writer = build_stationxml_output(c, COMPONENTS)
    path = tmp_path / "xml" / "XX.ST01.xml"
    assert writer.writes == 1 and "latitude and longitude are not set" in caplog.text
    channel = obspy.read_inventory(str(path))[0][0][0]
    assert channel.sample_rate is None or channel.sample_rate == 0
    past_us = MIDNIGHT_US - 3 * 86_400_000_000 + 12_345_678  # a replayed record from three days before
    for k in range(5):
        writer.on_samples(past_us + k * 100_000, 125.0, np.zeros((10, 3)))
    assert writer.writes == 2  # once, not per frame
    assert epoch_start_us(path) == MIDNIGHT_US - 3 * 86_400_000_000
    channel = obspy.read_inventory(str(path))[0][0][0]
    assert channel.sample_rate == 125.0 and channel.start_date == obspy.UTCDateTime(2025, 12, 29)
    again = StationXmlWriter(path, station_identity(c, COMPONENTS), c.sensor_model, c.counts_per_mps2)
    assert again.start_us == MIDNIGHT_US - 3 * 86_400_000_000  # the restart keeps the epoch
    assert validate_stationxml(str(path))[0]


def test_no_stationxml_unless_asked_and_archive_root_default(tmp_path):
    assert build_stationxml_output(config(), COMPONENTS) is None
    writer = build_stationxml_output(config(archive=str(tmp_path / "sds")), COMPONENTS)
    assert writer.path == tmp_path / "sds" / "XX.ST01.xml" and writer.path.exists()
    text = config(protocol="text", text_rate_hz=50.0, stationxml=str(tmp_path / "t.xml"))
    assert build_stationxml_output(text, COMPONENTS).sampling_rate_hz == 50.0  # known before any frame
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"^stationxml .*file/x\.xml: cannot write \(.*\)$"):
        build_stationxml_output(config(stationxml=str(blocker / "x.xml")), COMPONENTS)


def test_every_sensor_has_a_named_part(tmp_path):
    for name in SENSORS:
        path = write(tmp_path, config(sensor=name), name=f"{name}.xml")
        sensor = obspy.read_inventory(str(path))[0][0][0].sensor
        assert sensor.manufacturer and name.split("-")[0].upper() in sensor.description
