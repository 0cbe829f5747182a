"""The record reader on the variety of real files a seismologist hands over.

Each case is a small file written with ObsPy (or, for K-NET, in the network's ASCII
layout that ObsPy reads): miniSEED encodings, SAC byte orders, NaN-marked gaps, text and
state-of-health channels, azimuths from StationXML, K-NET/KiK-net, unlabelled picks,
empty files, archives and folder names with glob characters.
"""

import logging

import numpy as np
import pytest
from fixtures_records import COUNTS_PER_MPS2, inventory_for, quake, trace, write_sac
from obspy import Stream, Trace, UTCDateTime
from obspy.io.sac import SACTrace

from host_training.recordings.reader import read_records

T0 = UTCDateTime(2026, 3, 1, 12)


def three_components(rng, station="VAR", codes=("HNE", "HNN", "HNZ"), n=800, fs=100.0, scale=1.0):
    data = quake(rng, n, fs, 3.0)
    return Stream([trace(data[i] * scale, station, cha, T0, fs) for i, cha in enumerate(codes)]), data


def test_miniseed_encodings_and_sac_byte_orders_read_alike(tmp_path, rng):
    st, data = three_components(rng, scale=COUNTS_PER_MPS2)
    inventory_for("VAR", ("HNE", "HNN", "HNZ"), 100.0).write(str(tmp_path / "VAR.xml"), format="STATIONXML")
    peaks = {}
    for encoding, dtype in (("STEIM2", np.int32), ("STEIM1", np.int32), ("INT32", np.int32),
                            ("FLOAT32", np.float32), ("FLOAT64", np.float64)):
        folder = tmp_path / encoding
        folder.mkdir()
        out = st.copy()
        for tr in out:
            tr.data = np.round(tr.data).astype(dtype)
        out.write(str(folder / "VAR.mseed"), format="MSEED", encoding=encoding, reclen=512)
        (rec,), skipped = read_records([folder], inventory=tmp_path / "VAR.xml")
        assert skipped == [] and rec.present == (True, True, True), encoding
        peaks[encoding] = np.abs(rec.data).max()
    for byteorder in ("little", "big"):
        folder = tmp_path / byteorder
        folder.mkdir()
        for i, tr in enumerate(st):
            sac = SACTrace.from_obspy_trace(trace(data[i] * 1e9, "VAR", tr.stats.channel, T0))
            sac.idep = "iacc"
            sac.write(str(folder / f"{tr.stats.channel}.SAC"), byteorder=byteorder)
        (rec,), _ = read_records([folder])
        peaks[byteorder] = np.abs(rec.data).max()
    assert max(peaks.values()) == pytest.approx(min(peaks.values()), rel=1e-3), peaks


def test_nan_gaps_text_and_state_of_health_channels(tmp_path, rng, caplog):
    """NaN-marked gaps are merged and reported; LOG and mass-position channels are left out."""
    st, _ = three_components(rng, scale=COUNTS_PER_MPS2)
    for tr in st:
        tr.data = np.round(tr.data).astype(np.int32)
    log_trace = Trace(np.frombuffer(b"GPS lock at 12:00:00 " * 10, dtype="|S1"))
    log_trace.stats.update(dict(network="XX", station="VAR", channel="LOG", starttime=T0))
    soh = trace(np.arange(10, dtype=np.int32), "VAR", "VMZ", T0, fs=0.1)
    soh.data = soh.data.astype(np.int32)
    (st + Stream([log_trace, soh])).write(str(tmp_path / "VAR.mseed"), format="MSEED")
    inventory_for("VAR", ("HNE", "HNN", "HNZ"), 100.0).write(str(tmp_path / "VAR.xml"), format="STATIONXML")
    with_nan = trace(quake(rng, 800, 100.0, 3.0)[2] * 1e9, "NAN", "HNZ", T0)
    with_nan.data[300:320] = np.nan  # an exporter's gap
    write_sac(with_nan, tmp_path / "XX.NAN..HNZ.SAC", idep="iacc")
    with caplog.at_level(logging.WARNING):
        records, skipped = read_records([tmp_path], nan_gaps=True)  # as replay-test reads
    assert skipped == [], skipped
    by_station = {r.station.split(".")[1]: r for r in records}
    assert sorted(by_station) == ["NAN", "VAR"] and by_station["VAR"].present == (True, True, True)
    nan = by_station["NAN"]
    assert any("merged 1 gap(s) of 0.200 s" in a for a in nan.actions), nan.actions
    assert np.all(np.isfinite(by_station["NAN"].data))
    # Training data (the default) takes no repaired samples: the trace is refused.
    _, skipped = read_records([tmp_path / "XX.NAN..HNZ.SAC"])
    assert skipped[0][1] == "trace XX.NAN..HNZ holds NaN/inf or masked samples"
    assert "XX.VAR..LOG left out: not a ground-motion channel (text data)" in caplog.text
    assert "XX.VAR..VMZ left out: not a ground-motion channel (SEED instrument code 'M')" in caplog.text


def test_horizontals_rotated_by_stationxml_azimuths(tmp_path, rng):
    """miniSEED HN1/HN2 carry no azimuth; the StationXML does (here 30 and 120 deg)."""
    data = quake(rng, 800, 100.0, 3.0)
    az1, az2 = np.radians(30.0), np.radians(120.0)
    east, north = data[0], data[1]
    ch1 = east * np.sin(az1) + north * np.cos(az1)  # what a sensor turned by 30 deg records
    ch2 = east * np.sin(az2) + north * np.cos(az2)
    st = Stream([trace(np.round(x * COUNTS_PER_MPS2), "ROT", cha, T0) for x, cha in
                 ((ch1, "HN1"), (ch2, "HN2"), (data[2], "HNZ"))])
    for tr in st:
        tr.data = tr.data.astype(np.int32)
    st.write(str(tmp_path / "ROT.mseed"), format="MSEED")
    inv = inventory_for("ROT", ("HN1", "HN2", "HNZ"), 100.0)
    for cha in inv[0][0]:
        cha.azimuth = {"HN1": 30.0, "HN2": 120.0}.get(cha.code, 0.0)
    inv.write(str(tmp_path / "ROT.xml"), format="STATIONXML")
    (rec,), skipped = read_records([tmp_path])
    assert skipped == [] and any("rotated HN1/HN2 (azimuths 30/120 deg)" in a for a in rec.actions)
    np.testing.assert_allclose(rec.data[0], east, atol=2e-5)
    np.testing.assert_allclose(rec.data[1], north, atol=2e-5)


def write_knet(path, counts, station, direction, fs=100.0):
    """A K-NET/KiK-net ASCII file (times JST; the record time includes the logger's 15 s)."""
    lines = ["Origin Time       2026/03/01 21:00:01", "Lat.              38.215",
             "Long.             140.312", "Depth. (km)       10", "Mag.              6.0",
             f"Station Code      {station}", "Station Lat.      38.2707", "Station Long.     140.2767",
             "Station Height(m) 34", "Record Time       2026/03/01 21:00:15",
             f"Sampling Freq(Hz) {fs:g}Hz", f"Duration Time(s)  {len(counts) / fs:g}",
             f"Dir.              {direction}", "Scale Factor      3920(gal)/6182761",
             "Max. Acc. (gal)   100.0", "Last Correction   2026/03/01 21:00:00", "Memo."]
    body = [" ".join(f"{int(v):8d}" for v in counts[i:i + 8]) for i in range(0, len(counts), 8)]
    path.write_text("\n".join(lines + body) + "\n")


def test_knet_and_kiknet_ascii_scaled_oriented_and_picked(tmp_path, rng):
    """K-NET: counts x the header's scale factor; KiK-net borehole (1) and surface (2) apart."""
    data = quake(rng, 1200, 100.0, 5.0)
    counts = np.round(data * 100 / (3920 / 6182761))  # m/s^2 -> gal -> counts
    for i, (direction, ext, kik) in enumerate((("E-W", "EW", "2"), ("N-S", "NS", "1"), ("U-D", "UD", "3"))):
        write_knet(tmp_path / f"KNT0010603012100.{ext}", counts[i], "KNT001", direction)
        write_knet(tmp_path / f"KIK0010603012100.{ext}1", counts[i] * 0.5, "KIK001", kik)
        write_knet(tmp_path / f"KIK0010603012100.{ext}2", counts[i], "KIK001", str(int(kik) + 3))
    records, skipped = read_records([tmp_path])
    assert skipped == [] and len(records) == 3
    for rec in records:
        assert rec.present == (True, True, True) and "K-NET scale factor" in rec.units
        assert rec.starttime == UTCDateTime(2026, 3, 1, 12)  # JST - 9 h, minus the 15 s delay
        assert "K-NET header origin" in rec.picks["P"].source and rec.kind == "earthquake"
        scale = 0.5 if rec.channels[0] == "EW1" else 1.0
        np.testing.assert_allclose(rec.data, data * scale, atol=1e-4)
    assert sorted(r.channels for r in records) == [("EW", "NS", "UD"), ("EW1", "NS1", "UD1"),
                                                   ("EW2", "NS2", "UD2")]


def test_unlabelled_picks_are_reported_and_mark_an_earthquake(tmp_path, rng):
    write_sac(trace(quake(rng, 800, 100.0, 3.0)[2] * 1e9, "UNL", "HNZ", T0), tmp_path / "UNL.SAC",
              idep="iacc", t0=3.0, t1=5.0)
    (rec,), _ = read_records([tmp_path])
    assert rec.picks == {} and rec.kind == "earthquake"
    assert any("SAC t0, t1 hold picks without a phase label" in a for a in rec.actions)


def test_junk_empty_files_archives_and_odd_names(tmp_path, rng):
    """Empty files and archives say so; a SAC named .txt and a folder named 'data [copy]' read."""
    folder = tmp_path / "data [copy]"
    folder.mkdir()
    write_sac(trace(quake(rng, 800, 100.0, 3.0)[2] * 1e9, "ODD", "HNZ", T0), folder / "ODD.txt", idep="iacc")
    (folder / "notes.txt").write_text("picked by hand\n")
    (folder / "README.md").write_text("readme")
    (folder / "empty.mseed").write_bytes(b"")
    (folder / "raw.tar.gz").write_bytes(b"\x1f\x8b" + bytes(60))
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.SAC").write_bytes(bytes(10))
    records, skipped = read_records([folder])
    assert [r.station for r in records] == ["XX.ODD."]
    assert sorted((w.rsplit("/", 1)[-1], why) for w, why in skipped) == [
        ("empty.mseed", "empty file (0 bytes)"),
        ("raw.tar.gz", "an archive, not a waveform file: unpack it and give the folder")]


def test_unit_spellings_dead_channels_and_a_stationxml_without_the_channel(tmp_path, rng):
    from host_training.recordings.conversion import normalize_units

    spellings = {"m/s²": "m/s2", "cm/sec^2": "cm/s2", "m s-2": "m/s2", "gals": "gal", "cm/s**2": "cm/s2",
                 "G": "g", "m/sec/sec": "m/s2"}
    assert {k: normalize_units(k) for k in spellings} == spellings
    data = quake(rng, 800, 100.0, 3.0)
    data[0] = 0.02  # a dead east channel that still reports its offset
    for i, cha in enumerate(("HNE", "HNN", "HNZ")):
        write_sac(trace(data[i] * 1e9, "DED", cha, T0), tmp_path / f"DED.{cha}.SAC", idep="iacc")
    (rec,), _ = read_records([tmp_path / "DED.*.SAC"])
    assert rec.present == (False, True, True) and not rec.data[0].any()
    assert "HNE: every sample equal (dead channel), replayed as missing" in rec.actions
    st = Stream([trace(np.round(data[i] * COUNTS_PER_MPS2), "INV", cha, T0)
                 for i, cha in enumerate(("HNE", "HNN", "HNZ"))])
    for tr in st:
        tr.data = tr.data.astype(np.int32)
    st.write(str(tmp_path / "INV.mseed"), format="MSEED")
    inventory_for("INV", ("HNE", "HNN"), 100.0).write(str(tmp_path / "INV.xml"), format="STATIONXML")
    records, skipped = read_records([tmp_path / "INV.mseed"], inventory=tmp_path / "INV.xml")
    assert records == [] and "XX.INV..HNZ: units unknown (no SAC idep, no catalog units, the " \
        "StationXML has no response for this channel at 2026-03-01T12:00:00)" in skipped[0][1]


def test_sac_files_without_channel_codes_stay_three_components(tmp_path, rng):
    """No kcmpnm: named from cmpinc/cmpaz or the file name, never merged into one channel."""
    data = quake(rng, 800, 100.0, 3.0)
    for folder, names, angles in (("angles", ("a", "b", "c"), True), ("names", ("x.E", "x.N", "x_z"), False),
                                  ("nothing", ("a", "b", "c"), False)):
        (tmp_path / folder).mkdir()
        for i, (name, comp) in enumerate(zip(names, "ENZ", strict=True)):
            sac = SACTrace.from_obspy_trace(trace(data[i] * 1e9, "NOC", "", T0))
            sac.kcmpnm, sac.idep = None, "iacc"
            if angles:
                sac.cmpaz, sac.cmpinc = {"E": 90.0, "N": 0.0, "Z": 0.0}[comp], 0.0 if comp == "Z" else 90.0
            sac.write(str(tmp_path / folder / f"{name}.sac"))
        (rec,), skipped = read_records([tmp_path / folder])
        assert skipped == [] and rec.present == (True, True, True), (folder, rec.actions)
        if folder != "nothing":
            np.testing.assert_allclose(rec.data, data, atol=1e-6)
            assert sum("channel code empty" in a for a in rec.actions) == 3, rec.actions
        else:  # three unnamed files: three components of unknown orientation, each reported
            assert sum("orientation unknown" in a for a in rec.actions) == 3, rec.actions


def test_files_without_station_codes_and_clashing_copies(tmp_path, rng):
    """No kstnm: stations named from file names; two different recordings under one id refused."""
    for station in ("F01", "F02"):
        data = quake(rng, 800, 100.0, 3.0)
        for i, cha in enumerate(("HNE", "HNN")):
            sac = SACTrace.from_obspy_trace(trace(data[i] * 1e9, "", cha, T0))
            sac.kstnm, sac.idep = None, "iacc"
            sac.write(str(tmp_path / f"{station}.{cha}.sac"))
    records, skipped = read_records([tmp_path])
    assert skipped == [] and sorted(r.station.split(".")[1] for r in records) == ["F01", "F02"]
    assert all(r.present == (True, True, False) for r in records)
    clash = tmp_path / "clash"
    clash.mkdir()
    for name in ("a", "b"):
        write_sac(trace(quake(rng, 800, 100.0, 3.0)[2] * 1e9, "CLA", "HNZ", T0), clash / f"{name}.SAC",
                  idep="iacc")
    records, skipped = read_records([clash])
    assert records == [] and "channel HNZ: a.SAC and b.SAC overlap in time with different samples" \
        in skipped[0][1]


def write_at2(path, g, station_line, header4):
    body = "\n".join("".join(f"{v:15.7E}" for v in g[i:i + 5]) for i in range(0, len(g), 5))
    path.write_text(f"PEER NGA STRONG MOTION DATABASE RECORD\n{station_line}\n"
                    f"ACCELERATION TIME SERIES IN UNITS OF G\n{header4}\n{body}\n")


def test_peer_at2_accelerograms_new_and_old_headers(tmp_path, rng):
    """PEER NGA .AT2 (ObsPy reads none): g, azimuths in the header, both NPTS/DT layouts."""
    from edge_runtime.sensors import G_MPS2

    data = quake(rng, 1000, 200.0, 2.0)
    for comp, row in (("000", 1), ("090", 0), ("UP", 2)):
        write_at2(tmp_path / f"RSN1_TEST_STA{comp}.AT2", data[row] / G_MPS2,
                  f"Test-01, 1/17/1994, Station Ridge - 12 Main, {comp}", "NPTS=  1000, DT=   .0050 SEC")
        write_at2(tmp_path / f"OLD_STA{comp}.at2", data[row] / G_MPS2,
                  f"TEST EQ 1/17/94, 12:31, OLD STATION, {comp}", "  1000    0.0050    NPTS, DT")
    (tmp_path / "bad.AT2").write_text("PEER NGA\nTest, 1/1/2000, X, 000\nACCELERATION IN UNITS OF G\n"
                                      "NPTS=  50, DT= .01 SEC\n 0.1 0.2\n")
    records, skipped = read_records([tmp_path])
    assert [(w.rsplit("/", 1)[-1], why) for w, why in skipped] == [
        ("bad.AT2", "PEER AT2 file holds 2 samples, its header says NPTS=50")]
    assert len(records) == 2
    for rec in records:
        assert rec.sampling_rate_hz == 200.0 and rec.starttime == UTCDateTime(1994, 1, 17)
        assert rec.present == (True, True, True) and rec.kind == "earthquake" and "g (PEER AT2" in rec.units
        np.testing.assert_allclose(rec.data, data, atol=1e-6)


def test_catalog_rows_naming_a_folder_and_other_column_names(tmp_path, rng):
    from host_training.recordings.catalog import read_catalog

    folder = tmp_path / "event1"
    folder.mkdir()
    for i, cha in enumerate(("HN1", "HN2")):  # gal without idep: units only from the catalog
        write_sac(trace(quake(rng, 800, 100.0, 3.0)[i] * 100, "CAT", cha, T0), folder / f"CAT.{cha}.SAC")
    (tmp_path / "catalog.csv").write_text(f"Files,Kind,P_arrival,Units\nevent1,earthquake,{T0 + 3.0},cm/s²\n")
    (rec,), skipped = read_records([folder], catalog=read_catalog(tmp_path / "catalog.csv"))
    assert skipped == [] and "cm/s2 (catalog line 2)" in rec.units and rec.picks["P"].time == T0 + 3.0
    # A spreadsheet's ';' export, times as epoch seconds.
    (tmp_path / "catalog.csv").write_text("files;kind;p_time;units\n"
                                          f"event1;earthquake;{T0.timestamp + 3.0};gal\n")
    (rec,), _ = read_records([folder], catalog=tmp_path / "catalog.csv")
    assert rec.picks["P"].time == T0 + 3.0 and "gal (catalog line 2)" in rec.units


def test_record_starting_in_the_shaking_keeps_its_taup_picks(tmp_path, rng):
    """The origin's P falls 10 s before the first sample: still an earthquake record."""
    from obspy.core.event import Catalog, Event, Origin

    st, _ = three_components(rng, station="MID", scale=COUNTS_PER_MPS2)
    for tr in st:
        tr.data = np.round(tr.data).astype(np.int32)
    st.write(str(tmp_path / "MID.mseed"), format="MSEED")
    inventory_for("MID", ("HNE", "HNN", "HNZ"), 100.0, lat=38.0, lon=-122.0).write(
        str(tmp_path / "MID.xml"), format="STATIONXML")
    Catalog([Event(origins=[Origin(time=T0 - 20.0, latitude=38.1, longitude=-122.1, depth=8000.0)])]
            ).write(str(tmp_path / "event.quakeml"), format="QUAKEML")
    (rec,), _ = read_records([tmp_path])
    assert rec.picks["P"].time < rec.starttime and rec.kind == "earthquake"


def test_sac_idep_holding_other_units_is_refused_with_the_way_out(tmp_path, rng):
    """IACC means nm/s^2, but many writers store m/s^2 there: 1e-9 of a quake is no record."""
    write_sac(trace(quake(rng, 800, 100.0, 3.0)[2], "MPS", "HNZ", T0), tmp_path / "MPS.SAC", idep="iacc")
    write_sac(trace(quake(rng, 800, 100.0, 3.0)[2], "VEL", "HHZ", T0), tmp_path / "VEL.SAC")
    records, skipped = read_records([tmp_path])
    reasons = sorted(why for _, why in skipped)
    assert records == [] and "below any accelerograph's noise: the file likely holds m/s^2, gal or " \
        "m/s; give --units" in reasons[0]
    assert reasons[1].endswith("XX.VEL..HHZ: units unknown (no SAC idep, no catalog units, no response "
                               "in --inventory); give --units m/s|nm/s|counts")
    (rec,), _ = read_records([tmp_path / "MPS.SAC"], units="m/s2")
    assert 0.05 < np.abs(rec.data).max() < 1.0


def write_csmip_v2(path, data_gal, station="12345", fs=100.0, npts=None):
    """A CSMIP .v2 file as CESMD ships it: one block per channel, accel then veloc."""
    blocks = []
    for chan, (label, row) in enumerate((("360 Deg", 1), (" 90 Deg", 0), (" Up", 2)), 1):
        text = [f"Corrected accelerogram   {station}-X0001-26060.01       Chan  {chan}: {label}     from",
                "Uncorrected Accelerogram Data             Processed: 03/01/26, CGS",
                "Rcrd of Sun Mar  1, 2026 04:00:00.0 PST", "CSMIP Preliminary Processing",
                f"{station}-X0001-26060.01                 Start time:  3/01/26, 12: 0: 0.0 UTC (GPS)",
                f"Station No. {station}   38.000N, 122.000W    Basalt  s/n 1  (3 Chns of  3 at Sta)",
                "Test Site                                 CGS   Data: Acceleration",
                f"Chan  {chan}: {label}"] + ["" for _ in range(17)]
        ints = ["    1  100    1    3    3  200    1    3    1   24"] * 3
        reals = [" 0.0049020 0.7000000 101.00000 0.0245240 1.0000000 625.00000"] * 3
        x = data_gal[row][:npts] if npts else data_gal[row]
        n = len(data_gal[row])
        body = ["".join(f"{v:10.5f}" for v in x[i:i + 8]) for i in range(0, len(x), 8)]
        veloc = [f" {n:5d} points of veloc data equally spaced at {1 / fs:.3f} sec, in cm/sec.  (8f10.6)",
                 "".join(f"{0.0:10.6f}" for _ in range(8))]
        blocks += text + ints + reals + [
            f" {n:5d} points of accel data equally spaced at {1 / fs:.3f} sec, in cm/sec2. (8f10.5)"] + \
            body + veloc
    path.write_text("\n".join(blocks) + "\n")


def test_csmip_v2_files_of_cesmd(tmp_path, rng):
    data = quake(rng, 1000, 100.0, 3.0)  # m/s^2
    write_csmip_v2(tmp_path / "ce12345.v2", data * 100)
    (rec,), skipped = read_records([tmp_path])
    assert skipped == [] and rec.present == (True, True, True) and rec.kind == "earthquake"
    assert rec.starttime == UTCDateTime(2026, 3, 1, 12) and "CSMIP V2 header" in rec.units
    np.testing.assert_allclose(rec.data, data, atol=1e-7)
    write_csmip_v2(tmp_path / "ce12345.v2", data * 100, npts=500)
    _, skipped = read_records([tmp_path])
    assert skipped[0][1] == "CSMIP V2 channel block 1 holds 500 samples, its header says 1000"


def write_esm(path, data_mps2, stream, start="20260301_120000.000"):
    """An ESM ASCII file (ORFEUS Engineering Strong-Motion database): KEY: value, then samples."""
    header = {"EVENT_NAME": "TEST", "EVENT_ID": "EMSC-20260301_0000001", "EVENT_DATE_YYYYMMDD": "20260301",
              "EVENT_TIME_HHMMSS": "115955", "EVENT_LATITUDE_DEGREE": "42.8322",
              "EVENT_LONGITUDE_DEGREE": "13.1107", "EVENT_DEPTH_KM": "9.0", "NETWORK": "IT",
              "STATION_CODE": "AMT", "STATION_NAME": "AMATRICE", "STATION_LATITUDE_DEGREE": "42.6325",
              "STATION_LONGITUDE_DEGREE": "13.2860", "LOCATION": "", "VS30_M/S": "", "STREAM": stream,
              "UNITS": "cm/s^2", "DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS": start,
              "SAMPLING_INTERVAL_S": "0.005000", "NDATA": str(len(data_mps2)), "USER5": ""}
    lines = [f"{k}: {v}" for k, v in header.items()] + [f"{v * 100:.6E}" for v in data_mps2]
    path.write_text("\n".join(lines) + "\n")


def test_esm_ascii_files_of_orfeus(tmp_path, rng):
    data = quake(rng, 2000, 200.0, 8.0)
    for i, stream in enumerate(("HGE", "HGN", "HGZ")):
        write_esm(tmp_path / f"IT.AMT..{stream}.ASC", data[i], stream)
    (rec,), skipped = read_records([tmp_path])
    assert skipped == [] and rec.present == (True, True, True) and rec.channels == ("HGE", "HGN", "HGZ")
    assert rec.starttime == UTCDateTime(2026, 3, 1, 12) and rec.sampling_rate_hz == 200.0
    assert "cm/s2 (ESM header)" in rec.units and rec.kind == "earthquake"
    assert "SAC evla/evlo/evdp/o" in rec.picks["P"].source  # TauP from the header's origin
    np.testing.assert_allclose(rec.data, data, rtol=1e-5, atol=1e-9)


def write_cosmos(path, data_mps2, fs=200.0):
    """A COSMOS V2 file (format v01.20): per channel 13 text lines, integer and real headers
    (real value 62: interval in ms), a comment, the acceleration block; a velocity block after."""
    blocks = []
    for chan, (label, row) in enumerate((("360 deg", 1), (" 90 deg", 0), ("Up", 2)), 1):
        reals = [-999.0] * 100
        reals[0], reals[1], reals[61], reals[62] = 38.2667, -122.6576, 1000.0 / fs, len(data_mps2[0]) / fs
        text = ["Corrected acceleration    (Format v01.20 with 13 text lines) Converted",
                "Record of test            Earthquake of Sun Mar  1, 2026 12:00 UTC",
                "Hypocenter: 38.215   -122.312   H= 11km(NCSN) M=6.0",
                "Origin: 03/01/2026, 11:59:55.0 UTC (NCSN)",
                "Statn No: 02-    0  Code:NP-1743   USGS Test site",
                "Coords: 38.2667 -122.6576  Site geology:Unknown",
                "Recorder:        s/n:     (  3 Chns of  3 at Sta) Sensor:K2   s/n",
                "Rcrd start time:03/01/2026, 12:00:00.000 UTC (Q=0) RcrdId:NP.1743",
                f"Sta Chan   {chan}: {label} (Rcrdr Chan  {chan}) Location:",
                "Raw record length =  10.000 sec, Uncor max =    0.000        at    0.000 sec",
                "Processed:                               Max =    34.163 cm/s^2   at  10.045 sec",
                "Record filtered below  0.01 Hz (periods over  68.3 secs)  and above 75.0 Hz",
                "Values used when parameter or data value is unknown/unspecified:   -999 -999.0"]
        ints = ["100 Integer-header values follow on 10 lines, Format= (10I8)"] + \
            ["".join(f"{-999:8d}" for _ in range(10))] * 10
        real_lines = ["100 Real-header values follow on 17 lines, Format= (6F13.6)"] + \
            ["".join(f"{v:13.6f}" for v in reals[i:i + 6]) for i in range(0, 100, 6)]
        x = data_mps2[row] * 100
        body = ["".join(f"{v:10.5f}" for v in x[i:i + 8]) for i in range(0, len(x), 8)]
        blocks += text + ints + real_lines + ['1 Comment line(s) follow, each starting with a "|":',
                                              "| test"] + \
            [f"{len(x)} acceleration pts, approx  10 secs, units=cm/sec2 (04), Format=(8F10.5)"] + body + \
            [f"End-of-data for Chan  {chan} acceleration"]
        velocity = f"{len(x)} velocity pts, approx  10 secs, units=cm/sec (02), Format=(8F10.5)"
        blocks += [text[0].replace("Corrected acceleration", "Velocity              ")] + text[1:] + ints + \
            real_lines + ["0 Comment line(s) follow", velocity] + body
    path.write_text("\n".join(blocks) + "\n")


def test_cosmos_v2_files(tmp_path, rng):
    data = quake(rng, 2000, 200.0, 5.0)
    write_cosmos(tmp_path / "NP1743.V2c", data)
    (rec,), skipped = read_records([tmp_path])
    assert skipped == [] and rec.present == (True, True, True) and rec.kind == "earthquake"
    assert rec.station == "NP.1743." and rec.sampling_rate_hz == 200.0
    assert rec.starttime == UTCDateTime(2026, 3, 1, 12) and "cm/s2 (COSMOS header)" in rec.units
    assert "SAC evla/evlo/evdp/o" in rec.picks["P"].source
    np.testing.assert_allclose(rec.data, data, atol=1e-7)


RESP_TEXT = """B050F03     Station:     RSP
B050F16     Network:     XX
B052F03     Location:    ??
B052F04     Channel:     HNZ
B052F22     Start date:  2000,001
B052F23     End date:    No Ending Time
B053F03     Transfer function type:                A [Laplace Transform (Rad/sec)]
B053F04     Stage sequence number:                 1
B053F05     Response in units lookup:              M/S**2 - Acceleration in Meters Per Second Per Second
B053F06     Response out units lookup:             COUNTS - Digital Counts
B053F07     A0 normalization factor:               1.0
B053F08     Normalization frequency:               1.0
B053F09     Number of zeroes:                      0
B053F14     Number of poles:                       0
B058F03     Stage sequence number:                 1
B058F04     Sensitivity:                           1.0E+05
B058F05     Frequency of sensitivity:              1.0E+00 HZ
B058F06     Number of calibrations:                0
B058F03     Stage sequence number:                 0
B058F04     Sensitivity:                           1.0E+05
B058F05     Frequency of sensitivity:              1.0E+00 HZ
B058F06     Number of calibrations:                0
"""


def test_resp_file_in_the_folder_gives_the_response(tmp_path, rng):
    """A RESP file (or dataless SEED) beside miniSEED counts is metadata, as StationXML is."""
    z = quake(rng, 800, 100.0, 3.0)[2]
    tr = trace(np.round(z * COUNTS_PER_MPS2), "RSP", "HNZ", T0)
    tr.data = tr.data.astype(np.int32)
    tr.write(str(tmp_path / "RSP.mseed"), format="MSEED")
    (tmp_path / "RESP.XX.RSP..HNZ").write_text(RESP_TEXT)
    (rec,), skipped = read_records([tmp_path])
    assert skipped == [] and any("divided by the sensitivity 100000" in a for a in rec.actions)
    np.testing.assert_allclose(rec.data[2], z, atol=1e-5)


def test_damaged_sac_headers_give_a_reason_not_a_traceback(tmp_path, rng):
    """NaN in a pick or azimuth header is ignored; an infinite sample interval is refused."""
    import struct

    for name, word, value in (("nanpick", 8, float("nan")), ("nanaz", 57, float("nan")),
                              ("infdelta", 0, float("inf"))):  # a, cmpaz, delta (SAC header words)
        write_sac(trace(quake(rng, 800, 100.0, 3.0)[2] * 1e9, "DMG", "HNZ", T0), tmp_path / f"{name}.SAC",
                  idep="iacc", a=3.0, cmpaz=0.0, cmpinc=0.0)
        raw = bytearray((tmp_path / f"{name}.SAC").read_bytes())
        raw[word * 4:word * 4 + 4] = struct.pack("<f", value)
        (tmp_path / f"{name}.SAC").write_bytes(bytes(raw))
    records, skipped = [], []
    for name in ("nanpick", "nanaz", "infdelta"):
        r, s = read_records([tmp_path / f"{name}.SAC"])
        records += r
        skipped += s
    assert len(records) == 2 and "P" not in records[0].picks and records[1].picks["P"].time == T0 + 3.0
    assert [why for _, why in skipped] == ["trace XX.DMG..HNZ has a sampling rate of 0 Hz (damaged header)"]
