"""The on-disk dataset is SeisBench's format: SeisBench reads back exactly what was written."""

import csv

import h5py
import numpy as np
import pytest

from host_training.datasets.window_dataset import WindowDataset, WindowWriter, read_windows
from host_training.synthetic import parametric as synth


def _seisbench():
    try:
        import seisbench.data as sbd
    except ImportError:
        pytest.fail("seisbench is missing: .venv/bin/pip install -e '.[dev]' (or pip install seisbench)")
    return sbd


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    ds = synth.synthetic_dataset(12, seed=3)
    folder = tmp_path_factory.mktemp("ds") / "synth"
    ds.save(folder)
    return ds, folder


def test_seisbench_reads_the_same_windows(written):
    ds, folder = written
    sbd = _seisbench()
    sb = sbd.WaveformDataset(folder, component_order="ENZ", dimension_order="NCW", cache=None)
    assert len(sb) == len(ds)
    np.testing.assert_array_equal(sb.get_waveforms(), ds.waveforms.astype(np.float32))
    assert sb.data_format["component_order"] == "ENZ"
    assert sb.data_format["unit"] == "m/s2" and sb.data_format["measurement"] == "acceleration"
    meta = sb.metadata
    assert list(meta["label"]) == list(ds.column("label"))
    assert set(meta["split"]) == {"train", "dev", "test"}
    # SeisBench's own split helpers pick the same windows as ours ('dev' is our 'val').
    for ours, theirs in (("train", sb.train()), ("val", sb.dev()), ("test", sb.test())):
        np.testing.assert_array_equal(theirs.get_waveforms(), ds.split(ours).waveforms.astype(np.float32))
    # Picks point at the arrival inside the window: P windows have P near the centre.
    p_rows = meta[meta["label"] == "P"]
    assert np.all(np.abs(p_rows["trace_p_arrival_sample"] - 100) <= 61)
    for column in ("trace_name", "trace_sampling_rate_hz", "trace_start_time", "trace_npts",
                   "trace_component_order", "source_id", "station_code", "trace_s_arrival_sample"):
        assert column in meta.columns
    assert meta["trace_name"].str.match(r"^bucket\d+\$\d+,:3,:200$").all()


def test_load_round_trip_and_lazy_split(written):
    ds, folder = written
    back = WindowDataset.load(folder)
    assert back._waveforms is None  # metadata only until waveforms are used
    test = back.split("test")
    np.testing.assert_allclose(test.waveforms, ds.split("test").waveforms, rtol=1e-6)
    assert back._waveforms is None  # the split read its own windows, not the whole file
    assert len(WindowDataset.load(folder, split="val")) == len(ds.split("val"))
    assert len(back.split("dev")) == len(ds.split("val"))
    np.testing.assert_allclose(back.waveforms, ds.waveforms, rtol=1e-6)
    assert back.sampling_rate_hz == 100.0
    assert list(back.column("label")) == list(ds.column("label"))
    x, keep = back.subset(np.arange(5)).model_inputs()
    assert x.shape == (5, 1, 80, 3) and keep.all()


def test_buckets_hold_one_split_each(written):
    _, folder = written
    with open(folder / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    split_of_bucket = {}
    for row in rows:
        bucket = row["trace_name"].split("$")[0]
        assert split_of_bucket.setdefault(bucket, row["split"]) == row["split"]


def test_writer_never_leaves_a_half_written_dataset(tmp_path, rng):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with WindowWriter(out, 100.0, 200, bucket_size=4) as writer:
            for i in range(10):
                writer.add(rng.standard_normal((3, 200)), {"label": "noise", "split": "train"})
                if i == 7:
                    raise RuntimeError("interrupted")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with WindowWriter(out, 100.0, 200, bucket_size=4) as writer:
        windows = rng.standard_normal((10, 3, 200))
        for i, w in enumerate(windows):
            writer.add(w, {"label": "noise", "split": ("train", "val")[i % 2], "source_id": f"r{i}"})
    ds = WindowDataset.load(out)
    np.testing.assert_allclose(ds.waveforms, windows.astype(np.float32))  # order kept across buckets
    assert list(ds.column("split")) == ["train", "val"] * 5
    with pytest.raises(FileExistsError):
        WindowWriter(out, 100.0, 200)


def test_foreign_component_order_is_reordered(tmp_path, rng):
    """A window dataset stored Z, N, E by someone else loads as E, N, Z."""
    folder = tmp_path / "zne"
    folder.mkdir()
    enz = rng.standard_normal((4, 3, 50)).astype(np.float32)
    with h5py.File(folder / "waveforms.hdf5", "w") as f:
        fmt = f.create_group("data_format")
        fmt["component_order"] = "ZNE"
        fmt["dimension_order"] = "CW"
        f.create_group("data").create_dataset("bucket0", data=enz[:, ::-1])
    names = [f"bucket0${i},:3,:50" for i in range(4)]
    with open(folder / "metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trace_name", "label", "split", "trace_sampling_rate_hz"])
        w.writerows([n, "noise", "train", 25.0] for n in names)
    np.testing.assert_array_equal(read_windows(folder, names), enz)
    assert WindowDataset.load(folder).sampling_rate_hz == 25.0


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        (tmp_path / "x").mkdir() or (tmp_path / "x" / "waveforms.hdf5").write_bytes(b"")
        WindowDataset.load(tmp_path / "x")
    (tmp_path / "x" / "metadata.csv").write_text("trace_name,label,split\n")
    (tmp_path / "x" / "waveforms.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="waveforms.hdf5"):
        WindowDataset.load(tmp_path / "x")
