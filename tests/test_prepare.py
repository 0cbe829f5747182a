"""prepare seisbench / sac / merge on inputs built here (good and bad files), and the data card."""

import json

import numpy as np
import pytest
from obspy import Trace, UTCDateTime
from obspy.io.sac import SACTrace

from host_training.datasets.window_dataset import WindowDataset
from host_training.datasets.windowing import resample, velocity_to_acceleration
from host_training.prepare import stead
from host_training.prepare.cli import main
from host_training.synthetic import parametric as synth

FS_IN = 50.0


def _seisbench():
    try:
        import seisbench.data as sbd
    except ImportError:
        pytest.fail("seisbench is missing: .venv/bin/pip install -e '.[dev]' (or pip install seisbench)")
    return sbd


def _burst(n, fs, onset_s, freq, amp):
    t = np.arange(n) / fs - onset_s
    return amp * np.sin(2 * np.pi * freq * t) * np.exp(-np.clip(t, 0, None) / 1.5) * (t > 0)


@pytest.fixture(scope="module")
def seisbench_folder(tmp_path_factory):
    """A SeisBench data set written by SeisBench's own writer: 50 Hz, Z N E, velocity in m/s."""
    sbd = _seisbench()
    folder = tmp_path_factory.mktemp("sb") / "sbset"
    folder.mkdir()
    rng = np.random.default_rng(7)
    n = int(30 * FS_IN)
    traces = {}
    with sbd.WaveformDataWriter(folder / "metadata.csv", folder / "waveforms.hdf5") as writer:
        writer.data_format = {"dimension_order": "CW", "component_order": "ZNE", "measurement": "velocity",
                              "unit": "m/s", "instrument_response": "restituted"}
        writer.bucket_size = 4
        for i in range(8):
            x = rng.normal(0, 1e-7, (3, n))
            meta = {"trace_name": f"ev{i}", "trace_sampling_rate_hz": FS_IN, "source_id": f"event{i // 2}",
                    "station_code": f"S{i % 3}", "station_network_code": "ZZ",
                    "trace_start_time": f"2020-01-0{1 + i % 5}T00:00:00.000000Z"}
            if i < 5:
                x[0] += _burst(n, FS_IN, 10.0, 8.0, 1e-4)  # P on Z
                x[1:] += _burst(n, FS_IN, 15.0, 3.0, 3e-4)  # S on the horizontals
                meta.update(trace_category="earthquake_local", trace_P_arrival_sample=10 * FS_IN,
                            trace_Pn_arrival_sample=10.5 * FS_IN, trace_s_arrival_sample=15 * FS_IN)
            else:
                meta.update(trace_category="noise")
            traces[meta["trace_name"]] = x.copy()
            writer.add_trace(meta, x.astype(np.float32))
        bad = rng.normal(0, 1e-7, (3, n))
        bad[1, 40:45] = np.nan
        writer.add_trace({"trace_name": "nan", "trace_sampling_rate_hz": FS_IN, "trace_category": "noise"},
                         bad.astype(np.float32))
        writer.add_trace({"trace_name": "two", "trace_sampling_rate_hz": FS_IN, "trace_category": "noise"},
                         rng.normal(0, 1e-7, (2, n)).astype(np.float32))
        writer.add_trace({"trace_name": "npts", "trace_sampling_rate_hz": FS_IN, "trace_npts": n + 7,
                          "trace_category": "noise"}, rng.normal(0, 1e-7, (3, n)).astype(np.float32))
    return folder, traces


def test_prepare_seisbench_reads_buckets_reorders_and_converts(seisbench_folder, tmp_path):
    folder, traces = seisbench_folder
    out = tmp_path / "out"
    assert main(["prepare", "seisbench", str(folder), "--out", str(out), "--no-progress",
                 "--chunk-size", "4"]) == 0
    ds = WindowDataset.load(out)
    labels = list(ds.column("label"))
    assert labels.count("P") == labels.count("S") == 5 and labels.count("noise") == 3 * 2
    assert ds.sampling_rate_hz == 100.0 and ds.waveforms.shape[1:] == (3, 200)
    report = json.loads((out / "prepare_report.json").read_text())
    reasons = {s["item"].split(":")[-1]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"nan", "two", "npts"}
    assert "NaN" in reasons["nan"] and "2 components" in reasons["two"] and "wrong npts" in reasons["npts"]
    # The window is the data set's own trace, reordered to E, N, Z, differentiated, resampled.
    i = labels.index("P")
    row = ds.metadata[i]
    zne = traces[row["source_trace"]].astype(np.float32).astype(np.float64)
    acc = resample(velocity_to_acceleration(zne[::-1], FS_IN), FS_IN, 100.0)
    offset = int(row["trace_p_arrival_sample"])
    assert abs(offset - 100) <= 60  # the earliest P column (P at 10 s, not Pn at 10.5 s)
    start = 1000 - offset
    np.testing.assert_allclose(ds.waveforms[i], acc[:, start:start + 200], rtol=1e-6, atol=1e-12)
    assert np.abs(ds.waveforms[i][2]).max() > 3 * np.abs(ds.waveforms[i][:2]).max()  # P on Z


def test_own_datasets_pass_through_unchanged(tmp_path):
    ds = synth.synthetic_dataset(6, seed=9)
    ds.save(tmp_path / "synth")
    assert main(["prepare", "seisbench", str(tmp_path / "synth"), "--out", str(tmp_path / "again"),
                 "--no-progress"]) == 0
    back = WindowDataset.load(tmp_path / "again")
    np.testing.assert_allclose(back.waveforms, ds.waveforms, rtol=1e-6)
    assert list(back.column("label")) == list(ds.column("label"))


def write_record(data, fs, starttime, folder, station, picks=None):
    """Three SAC files (HNE/HNN/HNZ) in nm/s^2 with idep = IACC, as SAC defines it; picks in
    ``a``/``ka`` and ``t0``/``kt0`` (s after the first sample)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for comp, x in zip("ENZ", data, strict=True):
        tr = Trace(np.asarray(x * 1e9, dtype=np.float32))
        tr.stats.update({"network": "XX", "station": station, "channel": f"HN{comp}",
                         "sampling_rate": fs, "starttime": starttime})
        sac = SACTrace.from_obspy_trace(tr)
        sac.idep = "iacc"
        for phase, (value, name) in (("P", ("a", "ka")), ("S", ("t0", "kt0"))):
            if phase in (picks or {}):
                setattr(sac, value, sac.b + picks[phase])
                setattr(sac, name, phase)
        paths.append(folder / f"XX.{station}..HN{comp}.SAC")
        sac.write(str(paths[-1]))
    return paths


@pytest.fixture(scope="module")
def sac_tree(tmp_path_factory):
    """Per-station folders as the original's workflow: events and noise, with damaged files."""
    root = tmp_path_factory.mktemp("sac")
    rng = np.random.default_rng(3)
    t0 = UTCDateTime(2024, 5, 1, 10, 0, 0)
    rec = synth.earthquake(rng, duration_s=60.0, p_s=20.0, sp_s=4.0, pga_mps2=0.3)
    write_record(rec.data, 100.0, t0, root / "events" / "STA1", station="STA1", picks={"P": 20.0, "S": 24.0})
    rec2 = synth.earthquake(rng, duration_s=60.0, p_s=19.5, sp_s=3.2, pga_mps2=0.3)
    for path in write_record(rec2.data, 100.0, t0, root / "events" / "STA2", station="STA2"):
        sac = SACTrace.read(str(path))
        sac.stla, sac.stlo, sac.evla, sac.evlo, sac.evdp = 35.0, -117.0, 35.2, -117.1, 8.0
        sac.o = sac.b + 15.0
        sac.write(str(path))
    rec3 = synth.earthquake(rng, duration_s=60.0, p_s=30.0, sp_s=5.0, pga_mps2=0.3)
    write_record(rec3.data, 100.0, t0, root / "events" / "STA3", station="STA3")
    nan = rec.data.copy()
    nan[2, 500:520] = np.nan
    write_record(nan, 100.0, t0, root / "events" / "STA4", station="STA4")
    (root / "events" / "STA5").mkdir()
    (root / "events" / "STA5" / "XX.STA5..HNZ.SAC").write_bytes(b"\x00" * 300)  # corrupt
    tr = Trace((rec.data[2] * 1e6).astype(np.int32))
    tr.stats.update({"network": "XX", "station": "STA8", "channel": "HNZ", "sampling_rate": 100.0,
                     "starttime": t0})
    tr.write(str(root / "events" / "STA5" / "full.mseed"), format="MSEED", encoding="STEIM2")
    whole = (root / "events" / "STA5" / "full.mseed").read_bytes()
    (root / "events" / "STA5" / "full.mseed").unlink()
    (root / "events" / "STA5" / "XX.STA8..HNZ.mseed").write_bytes(whole[:4096 + 1000])  # truncated
    for comp in "ENZ":  # unknown units: idep left undefined
        tr = Trace(rng.normal(0, 1, 6000).astype(np.float32))
        tr.stats.update({"network": "XX", "station": "STA6", "channel": f"HN{comp}",
                         "sampling_rate": 100.0, "starttime": t0})
        (root / "events" / "STA6").mkdir(parents=True, exist_ok=True)
        tr.write(str(root / "events" / "STA6" / f"XX.STA6..HN{comp}.SAC"), format="SAC")
    paths = write_record(rec.data, 100.0, t0, root / "events" / "STA7", station="STA7")
    tr = SACTrace.read(str(paths[0]))  # one component at another rate
    tr.delta = 0.02
    tr.write(str(paths[0]))
    quiet = synth.quiet(rng, duration_s=60.0)
    quiet.data[:, 3000:3003] += 0.05  # an electrical spike: STA/LTA's maximum
    write_record(quiet.data, 100.0, t0, root / "noise" / "NSTA", station="NSTA")
    return root


def test_prepare_sac_picks_from_headers_taup_and_sta_lta(sac_tree, tmp_path):
    out = tmp_path / "sac"
    assert main(["prepare", "sac", "--events", str(sac_tree / "events"), "--noise", str(sac_tree / "noise"),
                 "--out", str(out), "--no-progress", "--noise-windows", "3", "--max-shift-s", "0"]) == 0
    ds = WindowDataset.load(out)
    by_station = {}
    for row in ds.metadata:
        by_station.setdefault(row["station_code"].split(".")[1], []).append(row)
    assert sorted(by_station) == ["NSTA", "STA1", "STA2", "STA3"]
    assert {r["pick_source"] for r in by_station["STA1"]} == {"header"}
    assert {r["pick_source"] for r in by_station["STA2"]} == {"taup"}
    assert {r["pick_source"] for r in by_station["STA3"]} == {"stalta"}
    assert [r["label"] for r in by_station["STA1"]] == ["P", "S"]
    assert [r["label"] for r in by_station["STA3"]] == ["P"]  # STA/LTA gives P only
    assert sorted(r["pick_source"] for r in by_station["NSTA"]) == ["random", "random", "stalta"]
    # Window centres: header pick exact, TauP within a second of the true P, STA/LTA near the onset.
    for station, true_p in (("STA1", 20.0), ("STA2", 19.5), ("STA3", 30.0)):
        row = next(r for r in by_station[station] if r["label"] == "P")
        start = UTCDateTime(row["trace_start_time"]) - UTCDateTime(2024, 5, 1, 10)
        p = start + int(row["trace_p_arrival_sample"]) / 100.0
        assert abs(p - true_p) < (0.02 if station == "STA1" else 1.5), (station, p)
    stalta = next(r for r in by_station["NSTA"] if r["pick_source"] == "stalta")
    assert abs(UTCDateTime(stalta["trace_start_time"]) + 1.0 - UTCDateTime(2024, 5, 1, 10, 0, 30)) < 1.0
    report = json.loads((out / "prepare_report.json").read_text())
    text = json.dumps(report["skipped"])
    assert "STA4" in text and "NaN" in text  # NaN samples
    assert "XX.STA5..HNZ.SAC" in text  # corrupt file named
    assert "XX.STA8..HNZ.mseed" in text  # truncated miniSEED: what ObsPy recovers is still named
    assert "STA6" in text and "unit" in text  # unknown units refused
    assert "STA7" in text and "different rate" in text  # one component at 50 Hz
    assert main(["prepare", "sac", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert main(["prepare", "sac", str(sac_tree / "events"), "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    # The original's layout: one folder holding the event and the noise folders.
    assert main(["prepare", "sac", str(sac_tree), "--out", str(tmp_path / "root"), "--no-progress",
                 "--noise-windows", "3", "--max-shift-s", "0"]) == 0
    np.testing.assert_array_equal(WindowDataset.load(tmp_path / "root").waveforms, ds.waveforms)


def test_merge_balances_splits_by_event_and_writes_the_card(sac_tree, tmp_path, capsys):
    st = tmp_path / "stead"
    stead.write_stead_sample(tmp_path / "s.hdf5", tmp_path / "s.csv", 40, seed=2, bad=True)
    assert main(["prepare", "stead", "--hdf5", str(tmp_path / "s.hdf5"), "--csv", str(tmp_path / "s.csv"),
                 "--out", str(st), "--no-progress"]) == 0
    synth.synthetic_dataset(10, seed=1).save(tmp_path / "synth")
    (tmp_path / "junk").mkdir()
    synth.synthetic_dataset(3, seed=1, fs=50.0).save(tmp_path / "synth50")  # another rate: refused
    inputs = [str(st), str(tmp_path / "synth"), str(tmp_path / "junk"), str(tmp_path / "synth50")]
    capsys.readouterr()
    assert main(["prepare", "merge", *inputs, "--out", str(tmp_path / "m1"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "data card m1" in printed and "events in two splits: 0" in printed
    card = json.loads((tmp_path / "m1" / "data_card.json").read_text())
    assert len(set(card["classes"].values())) == 1  # balanced
    assert card["events_in_two_splits"] == 0
    assert card["windows"] == sum(card["classes"].values()) == len(WindowDataset.load(tmp_path / "m1"))
    items = {s["item"] for s in card["skipped"]}
    assert str(tmp_path / "junk") in items and {"BAD.nan", "BAD.short", "BAD.missing"} <= items
    assert "50.0 Hz" in next(s["reason"] for s in card["skipped"] if s["item"] == str(tmp_path / "synth50"))
    assert set(card["sources"]) >= {"stead", "earthquake"}
    ds = WindowDataset.load(tmp_path / "m1")
    events = {}
    for row in ds.metadata:
        events.setdefault(row["source_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in events.values())
    # Same data, same hash; another seed, another hash.
    assert main(["prepare", "merge", *inputs, "--out", str(tmp_path / "m2"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "m2" / "data_card.json").read_text())["card_sha256"] == card["card_sha256"]
    assert main(["prepare", "merge", *inputs, "--out", str(tmp_path / "m3"), "--seed", "5",
                 "--split-by", "station", "--no-progress"]) == 0
    card3 = json.loads((tmp_path / "m3" / "data_card.json").read_text())
    assert card3["card_sha256"] != card["card_sha256"]
    stations = {}
    for row in WindowDataset.load(tmp_path / "m3").metadata:
        if row["station_code"]:
            stations.setdefault(row["station_code"], set()).add(row["split"])
    assert all(len(s) == 1 for s in stations.values())
    assert main(["prepare", "merge", str(st), "--out", str(tmp_path / "m4"), "--split-by", "date",
                 "--balance", "none", "--no-progress"]) == 0
    rows = WindowDataset.load(tmp_path / "m4").metadata
    last_train = max(r["trace_start_time"] for r in rows if r["split"] == "train")
    first_test = min(r["trace_start_time"] for r in rows if r["split"] == "test")
    assert last_train <= first_test
    assert main(["prepare", "merge", str(tmp_path / "junk"), "--out", str(tmp_path / "m5")]) == 2


def test_chunked_seisbench_folder_and_cli_help(seisbench_folder, tmp_path, capsys):
    import shutil

    from host_training.__main__ import main as host_main

    folder, _ = seisbench_folder
    chunked = tmp_path / "chunked"
    chunked.mkdir()
    for chunk in ("_a", "_b"):
        shutil.copy(folder / "metadata.csv", chunked / f"metadata{chunk}.csv")
        shutil.copy(folder / "waveforms.hdf5", chunked / f"waveforms{chunk}.hdf5")
    (chunked / "chunks").write_text("_a\n_b\n")
    assert main(["prepare", "seisbench", str(chunked), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert report["windows"] == 2 * 16 and len(report["skipped"]) == 2 * 3
    (chunked / "waveforms_b.hdf5").unlink()
    assert main(["prepare", "seisbench", str(chunked), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "waveforms_b.hdf5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        host_main(["prepare", "merge", "--help"])
    assert exc.value.code == 0 and "--split-by" in capsys.readouterr().out


def test_a_new_training_data_source_is_one_module_and_one_registry_entry(tmp_path, monkeypatch):
    """The prepare parser and its dispatch both come from prepare.cli.READERS: a source
    registered there gets its subcommand, its own options, the window options and its run."""
    import types

    from host_training.prepare import cli

    toy = types.ModuleType("toy", "A toy source: windows from nowhere.\n\nMore text.")
    toy.add_arguments = lambda p: p.add_argument("--depth-km", type=float, default=1.0)
    seen = {}

    def run(args):
        seen.update(vars(args))
        return 0

    with pytest.raises(SystemExit):  # not a command before it is registered
        main(["prepare", "toy", "--out", str(tmp_path / "o")])
    monkeypatch.setattr(cli, "READERS", (*cli.READERS, cli.PrepareReader("toy", "a toy source", toy, run)))
    assert main(["prepare", "toy", "--out", str(tmp_path / "o"), "--depth-km", "3", "--window-s", "4",
                 "--no-progress"]) == 0
    assert seen["source"] == "toy" and seen["depth_km"] == 3.0 and seen["window_s"] == 4.0
    assert [r.name for r in cli.READERS[:4]] == ["stead", "seisbench", "sac", "merge"]
