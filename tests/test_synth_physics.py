"""The physics-based generator: wave propagation, noise models, dead channels, dataset."""

import subprocess
import sys

import numpy as np
import pytest

try:
    import pygrt  # noqa: F401
except ImportError:  # the real Green's function code is the point of these tests
    pytest.fail("pygrt-kit is missing: .venv/bin/pip install -e '.[host]' (or pip install pygrt-kit)",
                pytrace=False)

from host_training.synthetic import greens, noise, physics

DISTANCES = (5.0, 15.0, 40.0)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """One crustal model, one depth, three distances, 12.5 s traces: a few s of PyGRT."""
    config = greens.BankConfig(n_models=1, depths_per_model=1, depth_range_km=(8.0, 8.0),
                               distances_km=DISTANCES, nt=500, seed=3)
    return greens.build_bank(config, cache_dir=tmp_path_factory.mktemp("greens"))


def _mechanisms(n, seed=0):
    rng = np.random.default_rng(seed)
    return [dict(strike=rng.uniform(0, 360), dip=rng.uniform(20, 90), rake=rng.uniform(-180, 180),
                 azimuth=rng.uniform(0, 360), stress_drop_bar=30.0, site_f0_hz=5.0, site_gain=1.0,
                 site_q=3.0, kappa_s=0.02) for _ in range(n)]


def test_p_before_s_and_s_minus_p_grows_with_distance(bank):
    t_p, t_s = bank.t_p[0, 0], bank.t_s[0, 0]
    assert np.all(t_p < t_s)
    sp = t_s - t_p
    assert np.all(np.diff(sp) > 0)
    # A crust has Vp/Vs about 1.7-1.8: S-P at 15 km is 1.5-3 s for an 8 km deep source.
    assert 1.2 < sp[1] < 3.0
    # In the waveforms: nothing before P, P energy before S, S larger than P on the horizontals.
    fs = 100.0
    ratios = []
    for params in _mechanisms(12):
        data, p_s, s_s, _ = physics.earthquake_ground_motion(np.random.default_rng(0), bank, fs, 4.0,
                                                           node=(0, 0, 1), params=params)
        ip, i_s = int(p_s * fs), int(s_s * fs)
        peak = np.abs(data).max()
        assert np.abs(data[:, : ip - 30]).max() < 0.05 * peak  # band-limit ringing only
        assert np.abs(data[:, ip:i_s]).max() > 0.01 * peak
        ratios.append(np.abs(data[:2, i_s:]).max() / np.abs(data[:2, ip:i_s]).max())
    assert np.median(ratios) > 1.5


def test_amplitude_falls_with_distance(bank):
    pga = np.zeros((12, len(DISTANCES)))
    for m, params in enumerate(_mechanisms(12, seed=1)):
        for k in range(len(DISTANCES)):
            data, *_ = physics.earthquake_ground_motion(np.random.default_rng(0), bank, 100.0, 5.0,
                                                      node=(0, 0, k), params=params)
            pga[m, k] = np.abs(data[:2]).max()
    median = np.median(pga, axis=0)
    # Hypocentral distances 9.4, 17 and 41 km: geometrical spreading and Q.
    assert median[0] > 1.4 * median[1] and median[1] > 1.8 * median[2]
    # M5 at 15 km: of order 0.1-1 m/s^2 as ground-motion models give; units are m/s^2.
    assert 0.02 < median[1] < 3.0


def test_magnitude_raises_amplitude(bank):
    params = _mechanisms(1)[0]
    small, *_ = physics.earthquake_ground_motion(np.random.default_rng(0), bank, 100.0, 3.0, (0, 0, 1),
                                                 params)
    big, *_ = physics.earthquake_ground_motion(np.random.default_rng(0), bank, 100.0, 5.0, (0, 0, 1), params)
    assert 10 < np.abs(big).max() / np.abs(small).max() < 1000


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0, None])
def test_ambient_noise_psd_inside_nlnm_nhnm(level):
    from scipy import signal

    fs = 100.0
    x = noise.ambient_noise(np.random.default_rng(7), int(300 * fs), fs, level=level)
    f, pxx = signal.welch(x, fs=fs, nperseg=1024, axis=-1)
    band = (f >= 0.5) & (f <= 20.0)
    low, high = noise.noise_models_db(f[band])
    db = 10 * np.log10(pxx[:, band])
    assert np.all(db > low - 3.0) and np.all(db < high + 3.0)


def test_sensor_quantization_and_self_noise():
    rng = np.random.default_rng(0)
    sensor = noise.get_any_sensor("adxl345-2g")
    quiet = np.zeros((3, 2000))
    data, clipped = noise.record_with_sensor(rng, quiet, 100.0, sensor)
    steps = data * sensor.counts_per_mps2
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
    assert clipped == 0
    assert abs(np.median(data[2]) - 9.80665) < 0.2  # gravity on Z
    # Self-noise at the datasheet density (290 ug/sqrt(Hz), 50 Hz band): about 0.02 m/s^2.
    assert 0.01 < np.std(data[0] - data[0].mean()) < 0.05
    big, clipped = noise.record_with_sensor(rng, np.full((3, 10), 50.0), 100.0, sensor)
    assert clipped > 0 and big.max() <= sensor.full_scale_mps2 + 1e-9


@pytest.mark.parametrize("kind", noise.TRANSIENT_KINDS)
def test_transients_are_local_and_finite(kind):
    x = noise.transient(np.random.default_rng(1), kind, 400, 100.0, 2.0)
    assert x.shape == (3, 400) and np.all(np.isfinite(x)) and np.abs(x).max() > 0
    with pytest.raises(ValueError, match="known"):
        noise.transient(np.random.default_rng(1), "earthquake", 400, 100.0, 2.0)


def test_non_stationary_noise_and_record_starts():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2000))
    m = noise.modulate(rng, x, 100.0, max_sigma=0.7)
    rms = np.sqrt((m[0].reshape(20, 100) ** 2).mean(axis=1))
    assert m.shape == x.shape and rms.max() / rms.min() > 1.5  # it swells and fades
    data = 9.8 + rng.standard_normal((3, 200))
    out = noise.record_start(np.random.default_rng(0), data, 100.0)
    first = np.argmax(np.any(out != 0, axis=0))
    assert np.all(out[:, :first] == 0) and first < 200 and abs(out[:, first:].mean()) < 1.0


def test_dead_channel_modes():
    rng = np.random.default_rng(0)
    sensor = noise.get_any_sensor("adxl355-2g")
    data = rng.standard_normal((3, 200))
    zero = physics.apply_channels(rng, data, "EN", "zero", sensor, 100.0)
    assert np.all(zero[2] == 0) and np.array_equal(zero[:2], data[:2])
    copy = physics.apply_channels(rng, data, "Z", "copy", sensor, 100.0)
    assert np.array_equal(copy[0], data[2]) and np.array_equal(copy[1], data[2])
    dead = physics.apply_channels(rng, data, "EZ", "self_noise", sensor, 100.0)
    assert 0 < np.std(dead[1]) < 0.01 and np.array_equal(dead[0], data[0])


def test_generator_writes_a_loadable_dataset(bank, tmp_path):
    from host_training.datasets.window_dataset import WindowDataset

    ds = physics.physics_dataset(90, seed=4, bank=bank, dead_fraction=0.5)
    again = physics.physics_dataset(90, seed=4, bank=bank, dead_fraction=0.5)
    np.testing.assert_array_equal(ds.waveforms, again.waveforms)
    folder = ds.save(tmp_path / "physics")
    back = WindowDataset.load(folder)
    n = len(ds)
    assert 90 <= n <= 120 and back.waveforms.shape == (n, 3, 200) and len(back) == n
    labels, kinds = back.column("label"), back.column("window")
    onset = labels[kinds != "coda"]
    assert {lab: int((onset == lab).sum()) for lab in ("P", "S", "noise")} == {"P": 30, "S": 30, "noise": 30}
    assert set(labels[kinds == "coda"]) <= {"S"}
    for row, w in zip(ds.metadata, ds.waveforms, strict=True):
        if row["dead_mode"] == "zero":
            for c in "ENZ":
                assert np.all(w["ENZ".index(c)] == 0) == (c not in row["channels"])
        if row["label"] == "P":
            assert 0 <= row["p_sample"] < 200 and row["snr"] >= 4.0
    assert set(back.column("split")) == {"train", "val", "test"}
    x, keep = back.model_inputs()
    assert x.shape == (n, 1, 80, 3) and keep.sum() > 0.9 * n
    card = physics.dataset_card(ds)
    assert card["label"]["P"] == 30 and card["label"]["noise"] == 30 and sum(card["channels"].values()) == n


def test_synth_cli_refuses_bad_settings(tmp_path):
    r = subprocess.run([sys.executable, "-m", "host_training", "synth", "--generator", "physics",
                        "--n-windows", "0", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "--n-windows" in r.stderr and "Traceback" not in r.stderr
