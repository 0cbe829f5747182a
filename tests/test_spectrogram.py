"""The numpy spectrogram image against SciPy, OpenCV and the seed's matplotlib path."""

import numpy as np
import pytest

from edge_runtime.spectrogram import (
    SpectrogramConfig,
    _linear_resize_matrix,
    resample,
    spectrogram,
    spectrogram_image,
    spectrogram_images,
    to_model_input,
    tukey_window,
)


def _needs(module: str, hint: str):
    try:
        return __import__(module)
    except ImportError:
        pytest.fail(f"{module} is missing: {hint}")


@pytest.mark.parametrize("n", [256, 257, 383, 1000, 6000, 6001])
@pytest.mark.parametrize("fs", [100.0, 125.0])
def test_spectrogram_matches_scipy(rng, n, fs):
    from scipy import signal

    x = rng.standard_normal((3, n)) * 1e-3 + np.array([[0.0], [0.1], [9.81]])  # gravity on Z
    f_ref, t_ref, s_ref = signal.spectrogram(x, fs=fs, nperseg=256, noverlap=128)
    f, t, s = spectrogram(x, fs)
    assert s.shape == s_ref.shape
    np.testing.assert_allclose(f, f_ref)
    np.testing.assert_allclose(t, t_ref)
    np.testing.assert_allclose(s, s_ref, rtol=1e-10, atol=1e-12 * s_ref.max())


@pytest.mark.parametrize("nperseg,noverlap,alpha", [(128, 64, 0.25), (255, 100, 0.5), (64, 0, 1.0),
                                                    (64, 32, 0.0)])
def test_spectrogram_matches_scipy_other_segments(rng, nperseg, noverlap, alpha):
    from scipy import signal

    x = rng.standard_normal(2000)
    ref = signal.spectrogram(x, fs=50.0, window=("tukey", alpha), nperseg=nperseg, noverlap=noverlap)[2]
    np.testing.assert_allclose(spectrogram(x, 50.0, nperseg, noverlap, alpha)[2], ref, rtol=1e-10,
                               atol=1e-12 * ref.max())  # a rectangular window's DC bin is 0 +/- 1e-33
    np.testing.assert_allclose(tukey_window(nperseg, alpha),
                               signal.get_window(("tukey", alpha), nperseg), atol=1e-15)


@pytest.mark.parametrize("n,m", [(1000, 800), (1001, 800), (800, 1000), (801, 1001), (1250, 1000)])
def test_resample_matches_scipy(rng, n, m):
    from scipy import signal

    x = rng.standard_normal((3, n))
    np.testing.assert_allclose(resample(x, m), signal.resample(x, m, axis=-1), atol=1e-12)


@pytest.mark.parametrize("shape", [(129, 45), (129, 374), (20, 30)])
def test_bilinear_matrix_is_opencv_inter_linear(rng, shape):
    cv2 = _needs("cv2", "pip install opencv-python-headless (the dev extra)")
    image = rng.uniform(0, 255, shape).astype(np.float32)
    ours = _linear_resize_matrix(shape[0], 100) @ image @ _linear_resize_matrix(shape[1], 150).T
    ref = cv2.resize(image, (150, 100), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def _tone(fs, n, f_hz, amp=0.1):
    return amp * np.sin(2 * np.pi * f_hz * np.arange(n) / fs)


def test_image_shape_stacking_and_orientation(rng):
    fs, n = 100.0, 6000
    record = rng.standard_normal((3, n)) * 1e-3
    record[2] += _tone(fs, n, 40.0)             # Z: high tone
    record[0, n // 2:] += _tone(fs, n // 2, 5.0)  # E: low tone in the second half only
    image = spectrogram_image(record, fs)
    assert image.shape == (3, 100, 150) and image.dtype == np.uint8
    z, e, nn = image.astype(float)
    # Stacked (Z, E, N) like the seed's (Z, X, Y); frequency up: 40 Hz is near the top.
    assert np.argmax(z.mean(axis=1)) == pytest.approx(100 * (1 - 40 / 50), abs=3)
    assert np.argmax(e.mean(axis=1)) == pytest.approx(100 * (1 - 5 / 50), abs=3)
    # Time to the right: E's tone lights the right half only.
    row = np.argmax(e.mean(axis=1))
    assert e[row, 80:].mean() > e[row, :70].mean() + 50
    assert nn.max() < z.max() - 50  # N has self-noise only


def test_fixed_range_not_autoscaled(rng):
    """10x the amplitude is +20 dB everywhere: a constant shift of the grey levels."""
    config = SpectrogramConfig()
    record = rng.standard_normal((3, 6000)) * 1e-3
    a = spectrogram_image(record, 100.0, config).astype(float)
    b = spectrogram_image(10 * record, 100.0, config).astype(float)
    shift = 20.0 * 255 / (config.db_max - config.db_min)
    inside = (a > 0) & (b < 255)
    assert inside.mean() > 0.99
    np.testing.assert_allclose((b - a)[inside], shift, atol=1.0)
    # Absolute levels: white noise of 1 mm/s^2 rms at 100 Hz is 2e-8 (m/s^2)^2/Hz, -77 dB.
    expected = (-77.0 - config.db_min) * 255 / (config.db_max - config.db_min)
    assert np.median(a) == pytest.approx(expected, abs=8)  # the median of a periodogram is -1.6 dB


def test_other_rate_is_resampled(rng):
    from host_training.synthetic.parametric import earthquake

    rec = earthquake(rng, duration_s=60.0, fs=200.0)
    at_200 = spectrogram_image(rec.data, 200.0).astype(float)
    at_100 = spectrogram_image(resample(rec.data, 6000), 100.0).astype(float)
    np.testing.assert_array_equal(at_200, at_100)


def test_batch_equals_single(rng):
    records = rng.standard_normal((2, 3, 3000)) * 1e-2
    batch = spectrogram_images(records, 100.0)
    assert batch.shape == (2, 3, 100, 150)
    for i in range(2):
        np.testing.assert_array_equal(batch[i], spectrogram_image(records[i], 100.0))
    x = to_model_input(batch)
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x * 255, batch, atol=1e-4)


@pytest.mark.parametrize("kind", ["earthquake", "traffic", "seed_length"])
def test_correlates_with_seed_matplotlib_opencv_path(rng, kind):
    """Per component, the image is the seed's picture up to its per-image autoscale."""
    _needs("cv2", "pip install opencv-python-headless (the dev extra)")
    from host_training.synthetic import parametric as synth
    from tools.bench.spectrogram import example_record, pearson, seed_spectrogram_image

    if kind == "seed_length":
        record = example_record(rng)
    else:
        record = getattr(synth, kind)(rng, duration_s=60.0).data
    seed = np.moveaxis(seed_spectrogram_image(record, 100.0), -1, 0)
    ours = spectrogram_image(record, 100.0)
    assert seed.shape == ours.shape == (3, 100, 150)
    for c in range(3):
        assert pearson(seed[c], ours[c]) >= 0.95, c


def test_bad_input_says_what(rng):
    with pytest.raises(ValueError, match="shape"):
        spectrogram_image(np.zeros((2, 1000)), 100.0)
    with pytest.raises(ValueError, match="shorter than one segment"):
        spectrogram_image(np.zeros((3, 100)), 100.0)
    bad = rng.standard_normal((3, 1000))
    bad[1, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        spectrogram_image(bad, 100.0)
    with pytest.raises(ValueError, match="sampling rate"):
        spectrogram_image(np.zeros((3, 1000)), 0.0)
    with pytest.raises(ValueError, match="noverlap"):
        SpectrogramConfig(noverlap=256)
    with pytest.raises(ValueError, match="db_max"):
        SpectrogramConfig(db_min=0.0, db_max=-10.0)
    with pytest.raises(ValueError, match="resize"):
        SpectrogramConfig(resize="bicubic")
    with pytest.raises(ValueError, match="unknown"):
        SpectrogramConfig.from_dict({"nfft": 512})
    assert SpectrogramConfig.from_dict(SpectrogramConfig().to_dict()) == SpectrogramConfig()


def test_float32_image_path_matches_float64(rng):
    """The image computes in float32; against float64 no pixel moves by more than one grey level."""
    from edge_runtime.spectrogram import STACK_ORDER, to_db_image

    record = rng.standard_normal((3, 12000)) * 2e-3
    record[2] += 9.80665  # gravity: removed before the float32 cast
    record[:, 5000:5600] += 0.3 * np.sin(np.arange(600) * 0.7)
    config = SpectrogramConfig()
    ref = to_db_image(spectrogram(record[list(STACK_ORDER)], 100.0)[2], config).astype(int)
    got = spectrogram_image(record, 100.0, config).astype(int)
    assert np.abs(got - ref).max() <= 1
