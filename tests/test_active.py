"""Record-level earthquake / active-source data: the generator's physics, the dataset, the CLI."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, python_env

from edge_runtime.spectrogram import SpectrogramConfig, spectrogram
from host_training.datasets.record_dataset import RecordDataset, cut_record
from host_training.prepare.record_sets import records_from_files
from host_training.synthetic import active

FS = 100.0


def _energy(x):
    x = x - x.mean(axis=-1, keepdims=True)
    return float(np.sum(x * x))


def _signal(kind, seed=0, onset_s=15.0, n=6000):
    """The source's own signal (no background), (3, n) E, N, Z, peak 1."""
    rng = np.random.default_rng(seed)
    data, params = active.SOURCE_GENERATORS[kind](rng, n, FS, onset_s)
    return data, params


def _zrt(data, baz_deg=None):
    """Vertical, radial, transverse from E, N, Z using the direction of largest horizontal energy."""
    e, n, z = data
    if baz_deg is None:
        angles = np.radians(np.arange(0, 180, 1.0))
        energy = [np.sum((e * np.sin(a) + n * np.cos(a)) ** 2) for a in angles]
        a = angles[int(np.argmax(energy))]
    else:
        a = np.radians(baz_deg)
    return z, e * np.sin(a) + n * np.cos(a), e * np.cos(a) - n * np.sin(a)


@pytest.mark.parametrize("seed", range(4))
def test_explosion_is_compressional_with_little_s_and_no_transverse_surface_wave(seed):
    data, params = _signal("explosion", seed)
    z, r, t = _zrt(data)
    onset = int(15.0 * FS)
    first = onset + np.flatnonzero(np.abs(z[onset:]) > 0.05 * np.abs(z).max())[0]
    assert z[first] > 0                                    # first motion up (isotropic source)
    assert first - onset < 0.1 * FS                         # impulsive onset
    assert _energy(t) < 0.1 * (_energy(z) + _energy(r))     # Rg is on Z and R only, S is weak
    assert params["rg_to_p"] >= 1.0                         # surface waves dominate the P


def test_earthquake_s_on_the_horizontals_dominates_p():
    data, params = _signal("earthquake", 1)
    p0 = int(15.0 * FS)
    s0 = int((15.0 + params["sp_s"]) * FS)
    p_part, s_part = data[:, p0:s0], data[:, s0:s0 + s0 - p0]
    assert _energy(s_part[:2]) > 2 * _energy(p_part[:2])
    assert _energy(p_part[2]) > _energy(p_part[:2]) / 2     # P on the vertical


def _peak_frequency(x, fs=FS):
    f, _, sxx = spectrogram(x, fs)
    return f[np.argmax(sxx, axis=0)], sxx.sum(axis=0)


def test_hammer_is_high_frequency_and_short():
    data, params = _signal("hammer", 2)
    f, _, sxx = spectrogram(data[2], FS)
    centroid = float(np.sum(f[:, None] * sxx) / np.sum(sxx))
    assert centroid > 10.0
    z = np.abs(data[2])
    onset = int(15.0 * FS)
    assert z[onset + int(1.5 * FS): onset + int(2.0 * FS)].max() < 0.1 * z.max()  # gone within a second


def test_vibroseis_sweeps_up():
    data, params = _signal("vibroseis", 3)
    peak, power = _peak_frequency(data[2])
    live = power > 0.1 * power.max()
    first_sweep = np.flatnonzero(live)[: int(params["sweep_s"] * FS / 128) - 2]
    assert np.all(np.diff(peak[first_sweep]) >= -1.0)      # frequency rises through a sweep
    assert peak[first_sweep[-1]] - peak[first_sweep[0]] > 15.0


def test_dataset_is_seeded_balanced_and_split_by_class():
    config = SpectrogramConfig(record_s=30.0, pre_s=8.0)
    ds = active.source_dataset(24, seed=5, config=config)
    again = active.source_dataset(24, seed=5, config=config)
    np.testing.assert_array_equal(ds.waveforms, again.waveforms)
    assert ds.waveforms.shape == (24, 3, 3000)
    labels = ds.column("label")
    assert (labels == "earthquake").sum() == 12 and (labels == "active_source").sum() == 12
    for label in ("earthquake", "active_source"):
        assert {str(s) for s in ds.column("split")[labels == label]} == {"train", "val", "test"}
    onset = ds.column("trace_p_arrival_sample").astype(float) / FS
    assert np.all(np.abs(onset - config.pre_s) <= 2.0)
    kinds = set(ds.column("source"))
    assert kinds <= {"earthquake", *active.ACTIVE_KINDS} and len(kinds) >= 3


def test_records_round_trip_and_become_model_inputs(tmp_path):
    ds = active.source_dataset(8, seed=2, config=SpectrogramConfig(record_s=30.0, pre_s=8.0))
    folder = ds.save(tmp_path / "records")
    back = RecordDataset.load(folder)
    assert back.spectrogram == ds.spectrogram and len(back) == 8
    test = back.split("test")
    assert isinstance(test, RecordDataset) and set(test.column("split")) == {"test"}
    x, keep = back.model_inputs()
    assert x.shape == (8, 3, 100, 150) and x.dtype == np.float32 and keep.all()
    assert 0.0 <= x.min() and x.max() <= 1.0
    x_mem, _ = ds.model_inputs()
    np.testing.assert_allclose(x, x_mem, atol=1 / 255 + 1e-6)  # float32 storage of the records
    from host_training.models import SOURCE_CLASSES

    assert list(back.labels(SOURCE_CLASSES)) == [SOURCE_CLASSES.index(v) for v in back.column("label")]


def test_spectrogram_cnn_takes_the_images():
    import torch

    from host_training.models import build_model

    ds = active.source_dataset(2, seed=0, config=SpectrogramConfig(record_s=20.0, pre_s=5.0))
    x, _ = ds.model_inputs()
    with torch.no_grad():
        logits = build_model("SpectrogramCNN", 0).eval()(torch.as_tensor(x))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_window_dataset_is_not_a_record_dataset(tmp_path):
    from host_training.synthetic.parametric import synthetic_dataset

    folder = synthetic_dataset(3, seed=0).save(tmp_path / "windows")
    with pytest.raises(ValueError, match="not a record dataset"):
        RecordDataset.load(folder)


def test_records_from_labelled_sac_folders(tmp_path):
    obspy = pytest.importorskip("obspy", reason="obspy is part of the host extra")
    rng = np.random.default_rng(4)
    config = SpectrogramConfig(record_s=20.0, pre_s=5.0)
    for label, kind in (("quakes", "earthquake"), ("blasts", "explosion")):
        data, _ = active.source_record(rng, kind, record_s=60.0, fs=FS, onset_s=30.0, pga_mps2=0.5,
                                       traffic_prob=0.0)
        folder = tmp_path / label
        folder.mkdir()
        for comp, trace in zip("ENZ", data, strict=True):
            tr = obspy.Trace(trace.astype(np.float32) * 100.0,  # gal
                             header={"sampling_rate": FS, "station": "ST1", "network": "XX",
                                     "channel": f"HN{comp}", "starttime": obspy.UTCDateTime(2024, 1, 1)})
            tr.stats.sac = {"a": 30.0, "ka": "P", "b": 0.0}
            tr.write(str(folder / f"XX.ST1..HN{comp}.SAC"), format="SAC")
    (tmp_path / "blasts" / "notes.txt").write_text("not a waveform")
    (tmp_path / "blasts" / "broken.SAC").write_bytes(b"\0" * 100)
    ds, skipped = records_from_files({"earthquake": [tmp_path / "quakes"],
                                      "active_source": [tmp_path / "blasts"]}, config, units="gal")
    assert sorted(ds.column("label")) == ["active_source", "earthquake"]
    assert ds.waveforms.shape == (2, 3, 2000)
    assert any("broken.SAC" in path for path, _ in skipped)
    # The cut starts pre_s before the P pick: the onset is 5 s into the record.
    z = ds.waveforms[list(ds.column("label")).index("active_source"), 2]
    z = np.abs(z - np.median(z))
    assert np.argmax(z > 0.05 * z.max()) == pytest.approx(5.0 * FS, abs=0.2 * FS)
    assert cut_record(np.zeros((3, 100)), FS, 50, config) is None


def test_cli_writes_a_record_dataset_and_refuses_bad_counts(tmp_path, capsys):
    out = tmp_path / "rec"
    done = subprocess.run([sys.executable, "-m", "host_training", "records", "--out", str(out),
                           "--synthetic", "6", "--record-s", "20", "--pre-s", "5"],
                          cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "6 records" in done.stdout
    assert RecordDataset.load(out).spectrogram.record_s == 20.0
    from host_training.__main__ import main

    assert main(["records", "--out", str(tmp_path / "x"), "--synthetic", "1"]) == 2
    assert "--synthetic 1" in capsys.readouterr().err
    assert main(["records", "--out", str(tmp_path / "y"), "--synthetic", "4", "--pre-s", "70"]) == 2
    assert "pre_s" in capsys.readouterr().err
    assert main(["records", "--out", str(tmp_path / "z"), "--generator", "greens", "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err


def _analytic_bank():
    """A real GreensBank holding analytic traces: a P pulse at 4 s and a slow, later Rayleigh
    wavelet on the explosion's Z and R (EXZ, EXR), double-couple traces for the earthquake."""
    from host_training.synthetic.greens import BankConfig, GreensBank

    config = BankConfig(n_models=1, depths_per_model=1, distances_km=(2.0,), depth_range_km=(0.1, 0.1))
    t = np.arange(config.nt) * config.dt_s
    gf = np.zeros((1, 1, 1, 10, config.nt), np.float32)
    pulse = np.exp(-((t - 4.0) / 0.05) ** 2)
    rayleigh = np.exp(-((t - 6.0) / 0.8) ** 2) * np.sin(2 * np.pi * 1.5 * (t - 6.0))
    gf[0, 0, 0, 0] = pulse + 3 * rayleigh                              # EXZ
    gf[0, 0, 0, 1] = 0.3 * pulse + 2 * np.roll(rayleigh, 4)            # EXR
    gf[0, 0, 0, 2:] = pulse + np.exp(-((t - 5.0) / 0.3) ** 2) * np.sin(2 * np.pi * 3 * (t - 5.0))
    return GreensBank(config, np.zeros((1, 2, 6)), np.array([[0.1]]), np.array([2.0]), gf,
                      np.array([[[4.0]]]), np.array([[[5.0]]]), np.array([[1.0]]))


def test_greens_explosion_transverse_is_scattered_radial_and_its_p_on_the_onset():
    bank = _analytic_bank()
    for seed in range(3):
        data, params = active.explosion_greens(np.random.default_rng(seed), 6000, FS, 15.0, bank)
        z, r, t = _zrt(data)
        # An isotropic source radiates no SH: the transverse is scattered radial energy only.
        assert 0.003 < _energy(t) / _energy(r) < 0.5 ** 2 * 1.5
        assert 0.1 <= params["transverse_ratio"] <= 0.5 and params["site_gain"] >= 1.0
        # (the analytic P pulse is sharper than the bank's band: a 2 % precursor of the
        # zero-phase band limit comes up to 0.8 s early)
        onset = np.flatnonzero(np.abs(z) > 0.05 * np.abs(z).max())[0] / FS
        assert onset == pytest.approx(15.0, abs=0.3)
    assert params["generator"] == "greens" and params["depth_km"] == 0.1


def test_greens_records_go_above_the_banks_band_without_a_tone():
    bank = _analytic_bank()
    for make in (active.explosion_greens, active.earthquake_greens):
        data, _ = make(np.random.default_rng(3), 6000, FS, 15.0, bank)
        f, _, sxx = spectrogram(data[2], FS)
        psd = sxx.sum(axis=1)
        high = psd[(f > 22.0) & (f < 45.0)]
        assert high.sum() > 1e-4 * psd.sum()              # shaking goes on above the bank's 20 Hz
        assert high.max() < 30.0 * np.median(high)        # smoothly: no line at one frequency
        # The high band follows the arrivals in time: nothing before the onset.
        hf = active._band_limit(data, FS, 45.0) - active._band_limit(data, FS, 22.0)
        assert np.abs(hf[:, :1300]).max() < 0.02 * np.abs(hf).max()


def test_broadband_keeps_the_low_band_and_matches_its_level_at_the_crossover():
    rng = np.random.default_rng(0)
    n, f_max = 4000, 19.0
    t = np.arange(n) / FS
    burst = rng.standard_normal((3, n)) * np.exp(-np.clip(t - 10.0, 0, None) / 2.0) * (t >= 10.0)
    low = active._band_limit(burst, FS, f_max)
    out = active.broadband(rng, low, FS, f_max, corner_hz=5.0, kappa_s=0.01)
    spec_in, spec_out = np.fft.rfft(low), np.fft.rfft(out)
    f = np.fft.rfftfreq(n, 1 / FS)
    below = f < 0.7 * f_max
    np.testing.assert_allclose(spec_out[:, below], spec_in[:, below], atol=0.01 * np.abs(spec_in).max())
    level = lambda s, lo, hi: np.sqrt(np.mean(np.abs(s[:, (f > lo) & (f < hi)]) ** 2))  # noqa: E731
    assert 0.3 < level(spec_out, 20.0, 23.0) / level(spec_in, 9.0, 13.0) < 3.0  # continues the band
    assert level(spec_out, 40.0, 48.0) < level(spec_out, 20.0, 23.0)            # kappa takes it down
    assert np.abs(out[:, : int(9.5 * FS)]).max() < 0.02 * np.abs(out).max()     # under the envelope


def test_shallow_bank_is_shallow_and_mixed_generator_uses_both():
    config = active.shallow_bank_config()
    assert config.depth_range_km[1] <= 0.15 and max(config.distances_km) >= 25.0
    bank = _analytic_bank()
    gens = active.mixed_generators({**active.SOURCE_GENERATORS,
                                    "earthquake": lambda *a: active.earthquake_greens(*a, bank=bank),
                                    "explosion": lambda *a: active.explosion_greens(*a, bank=bank)})
    config = SpectrogramConfig(record_s=30.0, pre_s=8.0)
    ds = active.source_dataset(24, seed=1, config=config, generators=gens)
    generator = [row.get("generator") for row in ds.metadata if row["source"] in ("earthquake", "explosion")]
    assert "greens" in generator and None in generator


def test_greens_earthquake_is_placed_at_the_onset():
    bank = _analytic_bank()
    data, params = active.earthquake_greens(np.random.default_rng(2), 6000, FS, 15.0, bank)
    mag = np.abs(data).max(axis=0)
    assert np.flatnonzero(mag > 0.02 * mag.max())[0] / FS == pytest.approx(15.0, abs=0.3)
    assert params["sp_s"] == pytest.approx(1.0)
    assert np.abs(data[:, :1000]).max() < 1e-3 and np.abs(data[:, -100:]).max() < 1e-3
