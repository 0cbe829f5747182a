"""SAC records: picks survive the round trip, damaged files are skipped and counted."""

import numpy as np
from obspy import UTCDateTime, read

from edge_runtime.sensors import G_MPS2
from host_training.recordings.sac import read_records, write_record
from host_training.synthetic import parametric as synth


def test_write_and_read_back_picks(tmp_path, rng):
    rec = synth.earthquake(rng, duration_s=30.0, p_s=10.0, sp_s=4.0)
    start = UTCDateTime(2026, 3, 1, 12, 0, 0)
    paths = write_record(rec.data, 100.0, start, tmp_path / "ev1", picks={"P": 10.0, "S": 14.0},
                         kind="earthquake")
    assert [p.name for p in paths] == ["XX.DEMO..HNE.SAC", "XX.DEMO..HNN.SAC", "XX.DEMO..HNZ.SAC"]
    tr = read(str(paths[2]))[0]
    assert tr.stats.sac.ka.strip() == "P" and tr.stats.sac.kt0.strip() == "S"
    assert tr.stats.sac.idep == 8  # IACC: nm/s^2, so any SAC reader gets m/s^2 back
    records, counts = read_records(tmp_path)
    assert counts == {"records": 1, "skipped": 0}
    (got,) = records
    assert abs(got.picks["P"] - (start + 10.0)) < 1e-3
    assert abs(got.picks["S"] - (start + 14.0)) < 1e-3
    np.testing.assert_allclose(got.data(), rec.data, rtol=1e-6, atol=1e-5)  # float32 on disk


def test_corrupt_files_are_skipped_and_partial_records_kept(tmp_path, rng, caplog):
    rec = synth.quiet(rng, duration_s=10.0)
    write_record(rec.data, 100.0, UTCDateTime(2026, 1, 1), tmp_path / "good")
    paths = write_record(rec.data, 100.0, UTCDateTime(2026, 1, 2), tmp_path / "partial")
    paths[0].unlink()
    bad = tmp_path / "broken" / "XX.BAD..HNZ.SAC"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00" * 100)
    records, counts = read_records(tmp_path)
    # A record without its E component is still a record (N and Z), marked as such.
    assert [r.name[-15:] for r in records] == ["20260101T000000", "20260102T000000"]
    assert counts == {"records": 2, "skipped": 1}
    assert not np.any(records[1].data()[0]) and np.any(records[1].data()[1])
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(bad) in m and "skipped" in m for m in messages)


def test_synthetic_event_has_p_then_larger_s(rng):
    rec = synth.earthquake(rng, duration_s=40.0, p_s=10.0, sp_s=5.0, pga_mps2=0.3)
    fs = rec.sampling_rate_hz
    x = rec.data - rec.data.mean(axis=1, keepdims=True)
    pre = np.abs(x[:, : int(9.5 * fs)]).max()
    p_part = np.abs(x[2, int(10 * fs):int(14.5 * fs)]).max()
    s_part = np.abs(x[:2, int(15 * fs):int(20 * fs)]).max()
    assert pre < p_part < s_part
    assert abs(rec.data[2].mean() - G_MPS2) < 0.05  # gravity on the vertical


def test_synthetic_dataset_is_seeded_and_balanced():
    a = synth.synthetic_dataset(30, seed=5)
    b = synth.synthetic_dataset(30, seed=5)
    np.testing.assert_array_equal(a.waveforms, b.waveforms)
    labels = list(a.column("label"))
    assert labels.count("P") == labels.count("S") == labels.count("noise") == 30
    # Windows of one record never straddle splits.
    by_record = {}
    for row in a.metadata:
        by_record.setdefault(row["record"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_record.values())


def test_dataset_save_load_round_trip(tmp_path):
    ds = synth.synthetic_dataset(10, seed=2)
    ds.save(tmp_path / "ds")
    back = type(ds).load(tmp_path / "ds")
    assert len(back) == len(ds) and back.sampling_rate_hz == 100.0
    np.testing.assert_allclose(back.waveforms, ds.waveforms, rtol=1e-6)
    assert list(back.column("label")) == list(ds.column("label"))


def test_picks_exact_for_sub_millisecond_start(tmp_path):
    """SAC keeps the reference time to the millisecond; picks must account for b."""
    start = UTCDateTime(2026, 1, 1, 0, 0, 0, 123456)
    write_record(np.full((3, 1000), 1e-3), 100.0, start, tmp_path / "r", picks={"P": 3.0, "S": 5.0})
    (rec,), _ = read_records(tmp_path)
    assert abs(rec.picks["P"] - (start + 3.0)) < 1e-6
    assert abs(rec.picks["S"] - (start + 5.0)) < 1e-6


def test_xyz_records_are_replayed_in_model_order(tmp_path):
    """HLX/HLY/HLZ (the seed's MEMS stations) keep the vertical last, like E, N, Z."""
    from obspy import Stream, Trace

    from tools.replay.records import read_waveform_records

    traces = []
    for value, cha in ((3.0, "HLZ"), (1.0, "HLX"), (2.0, "HLY")):
        tr = Trace(np.full(100, value, dtype=np.float32))
        tr.stats.update(dict(station="Q1", channel=cha, sampling_rate=100.0,
                             starttime=UTCDateTime(2026, 1, 1)))
        traces.append(tr)
    path = tmp_path / "q1.mseed"
    Stream(traces).write(str(path), format="MSEED")
    ((data, rate, start_us),) = read_waveform_records([path], units="m/s2")
    assert data[:, 0].tolist() == [1.0, 2.0, 3.0] and rate == 100.0
