"""The record reader on real-shaped files: components, alignment, gaps, units, picks, refusals."""

import numpy as np
import pytest
from fixtures_records import COUNTS_PER_MPS2, build_fixture_set, trace, write_sac
from obspy import UTCDateTime

from host_training.recordings.catalog import read_catalog
from host_training.recordings.reader import read_records
from host_training.recordings.record import RecordError


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    truth = build_fixture_set(folder, np.random.default_rng(3))
    return folder, truth


def test_every_case_reads_as_a_physical_record(fixture_dir):
    folder, truth = fixture_dir
    records, skipped = read_records([folder], catalog=folder / "catalog.csv")
    by_station = {r.station.split(".")[1]: r for r in records}
    assert sorted(by_station) == sorted(truth)
    assert [(w.endswith("XX.BAD..HNZ.SAC"), "corrupt" in why) for w, why in skipped] == [(True, True)]
    for name, want in truth.items():
        rec = by_station[name]
        assert rec.present == want["present"], name
        assert rec.data.shape[0] == 3 and np.all(rec.data[~np.array(rec.present)] == 0), name
        assert 0.05 < np.abs(rec.data).max() < 2.0, (name, rec.units)  # m/s^2, not nm or gal
        if "p" in want:
            assert abs(rec.picks["P"].time - want["p"]) < 1e-3, (name, rec.picks)
        if "s" in want:
            assert abs(rec.picks["S"].time - want["s"]) < 1e-3, (name, rec.picks)
    assert "catalog" in by_station["TWO"].picks["P"].source and "catalog" in by_station["TWO"].units
    assert by_station["ONE"].picks["P"].source == "sac a"  # unlabelled a is P
    assert "kt1" in by_station["OLD"].picks["P"].source  # labels, not slots
    assert any("HNN: aligned by -4.0 ms" in a for a in by_station["OFS"].actions)
    cnt = by_station["CNT"]
    assert any("merged 1 gap(s) of 0.300 s" in a for a in cnt.actions), cnt.actions
    assert any("divided by the sensitivity 100000" in a for a in cnt.actions), cnt.actions
    assert abs(np.abs(cnt.data).max() - truth["CNT"]["peak"]) < 0.05 * truth["CNT"]["peak"]
    assert by_station["OLD"].starttime.year == 1995 and by_station["OLD"].kind == "earthquake"


def test_units_are_refused_not_guessed(tmp_path, rng):
    t0 = UTCDateTime(2026, 1, 1)
    write_sac(trace(rng.normal(0, 1, 500), "NOU", "HNZ", t0), tmp_path / "XX.NOU..HNZ.SAC")
    counts = trace(rng.normal(0, 1, 500) * COUNTS_PER_MPS2 * 5, "BIG", "HNZ", t0)
    write_sac(counts, tmp_path / "XX.BIG..HNZ.SAC")
    records, skipped = read_records([tmp_path])
    assert records == []
    reasons = dict(skipped)
    assert "units unknown" in reasons[str(tmp_path / "XX.NOU..HNZ.SAC")].replace(
        str(tmp_path / "XX.NOU..HNZ.SAC"), "")
    # Counts taken for m/s^2 are refused as implausible, never replayed as 500,000 m/s^2.
    records, skipped = read_records([tmp_path / "XX.BIG..HNZ.SAC"], units="m/s2")
    assert records == [] and "beyond any accelerograph" in skipped[0][1]
    # Counts without a response: refused with the way out.
    records, skipped = read_records([tmp_path / "XX.BIG..HNZ.SAC"], units="counts")
    assert "no StationXML response" in skipped[0][1]
    # Explicit physical units work, velocity is differentiated.
    (rec,), _ = read_records([tmp_path / "XX.NOU..HNZ.SAC"], units="cm/s")
    assert any("differentiated" in a for a in rec.actions)
    with pytest.raises(RecordError, match="unknown"):
        read_records([tmp_path], units="furlongs")


def test_bad_sources_and_short_records_are_skipped_with_a_reason(tmp_path, rng):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no waveforms here")
    short = tmp_path / "short"
    short.mkdir()
    write_sac(trace(rng.normal(0, 1e6, 50), "SHO", "HNZ", UTCDateTime(2026, 1, 1)),
              short / "XX.SHO..HNZ.sac", idep="iacc")
    records, skipped = read_records([tmp_path / "nope.sac", empty, str(tmp_path / "*.mseed"), short],
                                    min_duration_s=2.0)
    reasons = [why for _, why in skipped]
    assert records == [] and len(skipped) == 4
    assert "no such file" in reasons[0] and "no waveform" in reasons[1]
    assert "no file matches" in reasons[2] and "shorter than one window" in reasons[3]


def test_catalog_errors_name_the_line(tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("files,kind,p_time\na.sac,quake,2026-01-01T00:00:00\n")
    with pytest.raises(RecordError, match=r"c.csv:2: kind 'quake'"):
        read_catalog(bad)
    bad.write_text("files,kind,p_time\na.sac,earthquake,yesterday\n")
    with pytest.raises(RecordError, match=r"c.csv:2: p_time 'yesterday'"):
        read_catalog(bad)
    bad.write_text("name,kind\n")
    with pytest.raises(RecordError, match="no 'files' column"):
        read_catalog(bad)


def test_same_station_and_start_in_two_folders_are_two_records(tmp_path, rng):
    """The old reader merged them; each folder is its own recording."""
    from host_training.recordings.sac import write_record

    t0 = UTCDateTime(2026, 2, 1)
    write_record(rng.normal(0, 0.01, (3, 500)), 100.0, t0, tmp_path / "event1", picks={"P": 2.0})
    write_record(rng.normal(0, 0.01, (3, 500)), 100.0, t0, tmp_path / "event2", kind="noise")
    records, skipped = read_records([tmp_path])
    assert skipped == [] and len(records) == 2
    assert sorted(str(r.kind) for r in records) == ["earthquake", "noise"]
    assert {tuple(r.files) for r in records} == {tuple(sorted(map(str, (tmp_path / d).glob("*.SAC"))))
                                                  for d in ("event1", "event2")}


def test_orientation_codes_of_real_networks(tmp_path, rng):
    """K-NET EW/NS/UD, SEED 1/2/Z, X/Y/Z, a bare 'Q' (unknown: placed and reported)."""
    from host_training.recordings.orientation import orientation

    def tr(channel, **sac):
        t = trace(np.zeros(10), "S", channel, UTCDateTime(2026, 1, 1))
        t.stats.sac = sac
        return t

    codes = {"EW": "E", "NS": "N", "UD": "Z", "HN1": "N", "HN2": "E", "HLX": "E", "HLY": "N",
             "HHZ": "Z", "Q": None}
    assert {c: orientation(tr(c)) for c in codes} == codes
    assert orientation(tr("Q", cmpinc=0.0)) == "Z" and orientation(tr("HN1", cmpinc=90.0, cmpaz=95.0)) == "E"
    t0 = UTCDateTime(2026, 1, 1)
    for channel in ("EW", "Q"):
        write_sac(trace(rng.normal(0, 1, 400), "KNT", channel, t0), tmp_path / f"KNT.{channel}.sac",
                  idep="iacc")
    (rec,), skipped = read_records([tmp_path], units="gal")
    assert skipped == [] and rec.present == (True, False, True) and rec.channels == ("EW", None, "Q")
    assert any("Q: orientation unknown, replayed as Z" in a for a in rec.actions)


def test_one_orientation_rule_for_the_reader_and_the_bundle_check(tmp_path, rng):
    """SEED 1/2 are the horizontals nearer north / east: the record reader and the off-device
    check of a node bundle (tools/deploy/qemu.py) put HN1 in the N row and HN2 in the E row."""
    from host_training.recordings.orientation import component_of_code
    from tools.deploy.qemu import read_record

    codes = {"HN1": "N", "HN2": "E", "HN3": "Z", "HNE": "E", "HNN": "N", "HNZ": "Z", "HLX": "E",
             "HLY": "N", "EW": "E", "NS": "N", "UD": "Z", "EW2": "E", "NS1": "N", "UD2": "Z",
             "Z": "Z", "U": "Z", "Q": None}
    assert {c: component_of_code(c) for c in codes} == codes
    t0 = UTCDateTime(2026, 1, 1)
    files = []
    for channel, level in (("HN1", 1.0), ("HN2", 2.0), ("HNZ", 3.0)):
        files.append(tmp_path / f"XX.ORI..{channel}.SAC")
        write_sac(trace(level + 0.01 * rng.normal(0, 1, 400), "ORI", channel, t0), files[-1], idep="iacc")
    x, _, _ = read_record(files)
    (rec,), skipped = read_records(files, units="m/s2")
    assert skipped == [] and rec.channels == ("HN2", "HN1", "HNZ")
    assert np.allclose(x.mean(axis=1), [2.0, 1.0, 3.0], atol=0.01)
    assert np.allclose(rec.data.mean(axis=1), [2.0, 1.0, 3.0], atol=0.01)


def test_a_new_format_is_one_module_and_one_registry_entry(tmp_path, monkeypatch):
    """A format the reader has never seen, registered as one RecordingFormat, is read end to
    end: its is/read pair, the units its header declares and the kind every file of it holds."""
    from obspy import Stream, Trace

    from host_training.recordings.formats import registry
    from host_training.recordings.formats.base import UNITS_IN_HEADER, RecordingFormat

    def is_toy(path):
        return path.read_bytes()[:7] == b"TOYSEIS"

    def read_toy(path):
        lines = path.read_text().splitlines()
        tr = Trace(np.array(lines[2:], dtype=np.float64))
        tr.stats.update(dict(network="TY", station="TOY", channel=lines[1], sampling_rate=100.0,
                             starttime=UTCDateTime(2026, 1, 1)))
        tr.stats._format = "TOY"
        return Stream([tr])

    toy = RecordingFormat(name="TOY", label="toy text", is_format=is_toy, read=read_toy,
                          units=UNITS_IN_HEADER, units_of=lambda tr: ("toy header", "gal"), kind="earthquake")
    for channel in ("HNE", "HNN", "HNZ"):
        (tmp_path / f"{channel}.toy").write_text("TOYSEIS\n" + channel + "\n" +
                                                  "\n".join(str(50.0 * np.sin(i / 7.0)) for i in range(500)))
    records, skipped = read_records([tmp_path])
    assert records == [] and len(skipped) == 3  # not a format the reader knows
    monkeypatch.setattr(registry, "FORMATS", (*registry.FORMATS, toy))
    monkeypatch.setattr(registry, "_BY_NAME", {**registry._BY_NAME, "TOY": toy})
    (rec,), skipped = read_records([tmp_path])
    assert skipped == [] and rec.present == (True, True, True) and rec.kind == "earthquake"
    assert rec.units == "gal (toy header)" and np.isclose(np.abs(rec.data).max(), 0.5, rtol=0.01)
    assert "kind earthquake (TOY accelerogram)" in rec.actions
    assert {f.name for f in registry.FORMATS} >= {"MSEED", "SAC", "KNET", "AT2", "CSMIP", "ESM", "COSMOS"}
    assert all(f.kind == "earthquake" and f.units == UNITS_IN_HEADER for f in registry.FORMATS
               if f.name in ("AT2", "CSMIP", "ESM", "COSMOS"))


def test_taup_picks_from_quakeml_and_stationxml_or_sac_headers(tmp_path, rng):
    """No picks in the files: P and S from ak135 for the origin and the station coordinates."""
    from fixtures_records import inventory_for
    from obspy.core.event import Catalog, Event, Origin
    from obspy.geodetics import locations2degrees
    from obspy.taup import TauPyModel

    t0, origin_time = UTCDateTime(2026, 5, 1, 10), UTCDateTime(2026, 5, 1, 10, 0, 20)
    for cha in ("HNE", "HNN", "HNZ"):  # in counts: the StationXML gives response and coordinates
        tr = trace(np.round(rng.normal(0, 1e-3, 6000) * 1e5), "TAU", cha, t0)
        tr.data = tr.data.astype(np.int32)
        tr.write(str(tmp_path / f"XX.TAU..{cha}.mseed"), format="MSEED")
    inventory_for("TAU", ("HNE", "HNN", "HNZ"), 100.0, lat=38.27, lon=-122.28).write(
        str(tmp_path / "TAU.xml"), format="STATIONXML")
    Catalog([Event(origins=[Origin(time=origin_time, latitude=38.0, longitude=-122.0, depth=10000.0)])]
            ).write(str(tmp_path / "event.quakeml"), format="QUAKEML")
    # The same geometry from SAC headers alone (o relative to the reference time).
    write_sac(trace(rng.normal(0, 1e-3, 6000) * 1e9, "SAC", "HNZ", t0), tmp_path / "XX.SAC..HNZ.SAC",
              idep="iacc", evla=38.0, evlo=-122.0, evdp=10.0, o=20.0, stla=38.27, stlo=-122.28)
    records, skipped = read_records([tmp_path])
    assert skipped == [] and len(records) == 2
    distance = locations2degrees(38.0, -122.0, 38.27, -122.28)
    p = min(a.time for a in TauPyModel("ak135").get_travel_times(10.0, distance, ["p", "P", "Pn", "Pg"]))
    for rec in records:
        assert abs(rec.picks["P"].time - (origin_time + p)) < 1e-3, rec.picks
        assert rec.picks["S"].time > rec.picks["P"].time and "taup ak135" in rec.picks["P"].source
        assert rec.kind == "earthquake"
