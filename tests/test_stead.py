"""prepare stead: Clements' recipe on a STEAD-format file built here, bad traces skipped and named."""

import csv
import json

import h5py
import numpy as np
import pytest

from host_training.datasets.window_dataset import WindowDataset
from host_training.prepare import stead
from host_training.prepare.cli import main


@pytest.fixture(scope="module")
def stead_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stead")
    info = stead.write_stead_sample(folder / "stead.hdf5", folder / "stead.csv", 40, seed=4, bad=True)
    return folder, info


def _run(folder, out, *extra):
    return main(["prepare", "stead", "--hdf5", str(folder / "stead.hdf5"), "--csv", str(folder / "stead.csv"),
                 "--out", str(out), "--no-progress", "--chunk-size", "10", *extra])


def test_recipe_windows_and_skipped_traces(stead_files, tmp_path):
    folder, info = stead_files
    assert _run(folder, tmp_path / "out") == 0
    ds = WindowDataset.load(tmp_path / "out")
    labels = list(ds.column("label"))
    assert labels.count("P") == labels.count("S") == info["clean"] > 0
    assert labels.count("noise") == 2 * info["noise"]
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    reasons = {s["item"]: s["reason"] for s in report["skipped"]}
    assert sorted(reasons) == sorted(info["bad"])
    assert "NaN" in reasons["BAD.nan"] and "wrong npts" in reasons["BAD.short"]
    assert "missing from the HDF5" in reasons["BAD.missing"] and "trace_category" in reasons["BAD.category"]
    assert report["counts"]["not_clean"] == 40 - info["noise"] - info["clean"]
    # A P window is the differentiated velocity (nominal HH sensitivity) around the catalog pick.
    row = next(r for r in ds.metadata if r["label"] == "P")
    assert row["trace_response"].startswith("nominal:velocity") and row["pick_source"] == "catalog"
    with open(folder / "stead.csv", newline="") as fh:
        src = next(r for r in csv.DictReader(fh) if r["trace_name"] == row["source_trace"])
    offset = int(row["trace_p_arrival_sample"])
    assert abs(offset - 100) <= 60  # pick within the seeded +-0.6 s shift of the centre
    start = int(src["p_arrival_sample"]) - offset
    with h5py.File(folder / "stead.hdf5", "r") as f:
        raw = f["data"][row["source_trace"]][()].T.astype(np.float64)
    expected = np.gradient(raw / 1e9, 0.01, axis=-1)[:, start:start + 200]
    i = list(ds.column("source_trace")).index(row["source_trace"])
    np.testing.assert_allclose(ds.waveforms[i], expected, rtol=1e-5, atol=1e-9)
    # Windows of one event share a split.
    splits = {}
    for r in ds.metadata:
        splits.setdefault(r["source_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())


def test_interrupted_run_resumes_to_the_same_dataset(stead_files, tmp_path, monkeypatch):
    folder, _ = stead_files
    assert _run(folder, tmp_path / "full") == 0
    calls = {"n": 0}
    original = stead.process_row

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(stead, "process_row", flaky)
    assert _run(folder, tmp_path / "out") == 130
    assert not (tmp_path / "out").exists()  # never a half-written dataset
    done = sorted(p.name for p in (tmp_path / "out.partial" / "parts").iterdir())
    assert done == ["chunk000000", "chunk000001"]
    monkeypatch.setattr(stead, "process_row", original)
    (tmp_path / "out.partial" / "parts" / "chunk000002.tmp-99999").mkdir()  # a killed run's scratch
    calls["n"] = 0
    assert _run(folder, tmp_path / "out") == 0
    a, b = WindowDataset.load(tmp_path / "full"), WindowDataset.load(tmp_path / "out")
    np.testing.assert_array_equal(a.waveforms, b.waveforms)
    assert a.metadata == b.metadata
    assert not (tmp_path / "out.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "out"]
    assert _run(folder, tmp_path / "out") == 0  # finished: reported, not redone
    assert _run(folder, tmp_path / "out", "--seed", "1") == 0  # a finished dataset is not overwritten
    with pytest.raises(SystemExit):
        _run(folder, tmp_path / "x", "--chunk-size", "ten")


def test_bad_input_files_give_one_line(stead_files, tmp_path, capsys):
    folder, _ = stead_files
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"\x89HDF\r\n" + b"\x00" * 100)
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes((folder / "stead.hdf5").read_bytes()[:200_000])
    for hdf5, csv_path, message in ((tmp_path / "nope.hdf5", folder / "stead.csv", "no such file"),
                                    (garbage, folder / "stead.csv", "not a readable HDF5 file"),
                                    (truncated, folder / "stead.csv", "not a readable HDF5 file"),
                                    (folder / "stead.hdf5", garbage, "not STEAD's metadata CSV")):
        rc = main(["prepare", "stead", "--hdf5", str(hdf5), "--csv", str(csv_path), "--out",
                   str(tmp_path / "o"), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    rc = main(["prepare", "stead", "--hdf5", str(folder / "stead.hdf5"), "--csv", str(folder / "stead.csv"),
               "--out", str(tmp_path / "o"), "--window-s", "0", "--no-progress"])
    assert rc == 2 and "--window-s must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_stationxml_response_where_known_nominal_elsewhere(stead_files, tmp_path):
    from obspy import UTCDateTime
    from obspy.core.inventory import Channel, Inventory, Network, Response, Station

    folder, _ = stead_files
    # A broadband-like velocity response, 1e9 counts per m/s in the passband, for XX.ST01 only.
    response = Response.from_paz(zeros=[0j, 0j], poles=[-0.037 + 0.037j, -0.037 - 0.037j], stage_gain=1e9,
                                 input_units="M/S", output_units="COUNTS", normalization_frequency=1.0)
    start = UTCDateTime(2000, 1, 1)
    channels = [Channel(code=f"HH{c}", location_code="", latitude=35.0, longitude=-117.0, elevation=0.0,
                        depth=0.0, sample_rate=100.0, response=response, start_date=start) for c in "ENZ"]
    station = Station(code="ST01", latitude=35.0, longitude=-117.0, elevation=0.0, channels=channels,
                      creation_date=start)
    Inventory(networks=[Network(code="XX", stations=[station])], source="test").write(
        str(tmp_path / "xx.xml"), format="STATIONXML")
    assert _run(folder, tmp_path / "out", "--stationxml", str(tmp_path / "xx.xml")) == 0
    ds = WindowDataset.load(tmp_path / "out")
    how = {(r["station_code"], r["trace_response"]) for r in ds.metadata}
    assert ("XX.ST01", "stationxml") in how
    assert all(resp.startswith("nominal") for sta, resp in how if sta != "XX.ST01")
    peaks = np.abs(ds.waveforms).max(axis=(1, 2))
    responses = ds.column("trace_response")
    # Same sensitivity both ways: the restituted windows are within a few times the nominal ones.
    ratio = np.median(peaks[responses == "stationxml"]) / np.median(peaks[responses != "stationxml"])
    assert 0.1 < ratio < 10
