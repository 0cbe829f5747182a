"""edge_runtime.preprocess against its SciPy/ObsPy counterparts, on the same input."""

import numpy as np
import pytest
from obspy import Trace
from scipy import signal

from edge_runtime import preprocess as pp


def close(a, b, scale):
    """Max |a - b| within 1e-6 of the signal's scale (the issue's tolerance)."""
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-6 * scale


def mems_window(rng, n=200):
    """Gravity on Z, drift, noise and a burst: what the node really sees, in m/s^2."""
    t = np.arange(n) / 100.0
    x = 2e-3 * rng.standard_normal((3, n)) + 1e-3 * t
    x[2] += 9.80665
    x[:, n // 2:] += 0.05 * np.sin(2 * np.pi * 8 * t[n // 2:])
    return x


def trace(x, fs=100.0):
    return Trace(np.array(x, dtype=np.float64), header={"sampling_rate": fs})


def test_detrend_matches_obspy(rng):
    x = mems_window(rng)
    for comp in x:
        ref = trace(comp).detrend("linear").data
        close(pp.detrend(comp), ref, np.abs(ref).max())  # the signal's scale, not gravity's


@pytest.mark.parametrize("n", [7, 80, 200, 201, 250])
@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.5, 1.0])
def test_tukey_matches_scipy(n, alpha):
    close(pp.tukey(n, alpha), signal.windows.tukey(n, alpha), 1.0)


@pytest.mark.parametrize("fs", [40.0, 100.0, 125.0, 200.0])
@pytest.mark.parametrize("corners", [1, 2, 4, 5])
def test_highpass_matches_obspy(rng, fs, corners):
    x = pp.detrend(mems_window(rng, int(2 * fs)))
    for comp in x:
        ref = trace(comp, fs).filter("highpass", freq=0.5, corners=corners, zerophase=False).data
        close(pp.highpass(comp, 0.5, fs, corners), ref, np.abs(comp).max())


def test_highpass_design_matches_scipy_sos():
    for fs in (100.0, 125.0):
        z, p, k = signal.iirfilter(4, 0.5 / (fs / 2), btype="highpass", ftype="butter", output="zpk")
        ref = signal.zpk2sos(z, p, k)
        mine = pp.butter_highpass_sos(4, 0.5, fs)
        # Same cascade response, whatever the section order.
        w, h_ref = signal.sosfreqz(ref, 512, fs=fs)
        _, h_mine = signal.sosfreqz(mine, 512, fs=fs)
        assert np.max(np.abs(h_ref - h_mine)) < 1e-9


def test_highpass_rejects_bad_corner():
    with pytest.raises(ValueError, match="high-pass corner"):
        pp.butter_highpass_sos(4, 60.0, 100.0)


@pytest.mark.parametrize("n_in,n_out", [(200, 80), (250, 80), (201, 80), (199, 81), (80, 200)])
def test_resample_matches_scipy(rng, n_in, n_out):
    x = rng.standard_normal((3, n_in))
    close(pp.resample(x, n_out), signal.resample(x, n_out, axis=-1), np.abs(x).max())


@pytest.mark.parametrize("fs", [100.0, 125.0])
def test_linear_chain_matches_obspy_scipy_sequence(rng, fs):
    """The single matrix equals ObsPy detrend -> SciPy Tukey -> ObsPy high-pass -> SciPy resample."""
    config = pp.PreprocessConfig()
    x = mems_window(rng, config.n_in(fs))
    got = pp.filter_windows(x, fs, config)
    ref = []
    for comp in x:
        tr = trace(comp, fs).detrend("linear")
        tr.data = tr.data * signal.windows.tukey(tr.stats.npts, config.taper_alpha)
        tr.filter("highpass", freq=config.highpass_hz, corners=config.highpass_corners, zerophase=False)
        ref.append(signal.resample(tr.data, config.n_out))
    assert got.shape == (3, 80)
    close(got, np.array(ref), np.abs(np.array(ref)).max())


def test_chain_is_batched(rng):
    x = np.stack([mems_window(rng) for _ in range(5)])
    batch = pp.filter_windows(x, 100.0)
    single = np.stack([pp.filter_windows(w, 100.0) for w in x])
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-12)


def test_normalize_uses_max_abs_not_max():
    """The seed divided by np.max(x): a window whose peak is negative came out wrong."""
    x = np.array([[[0.1, -2.0, 0.5], [0.0, 0.2, -0.3], [0.4, 0.0, 0.1]]])
    out = pp.normalize(x)
    assert np.max(np.abs(out)) == pytest.approx(1.0)
    assert out[0, 0, 1] == pytest.approx(-1.0)
    seed_style = x / np.max(x, axis=(1, 2), keepdims=True)
    assert np.max(np.abs(seed_style)) == pytest.approx(4.0)  # the bug the fix removes


def test_normalize_and_quantize_zero_window():
    zero = np.zeros((2, 3, 80))
    assert np.all(pp.normalize(zero) == 0)
    q = pp.quantize(zero)
    assert q.dtype == np.int16 and np.all(q == 0)


def test_quantize_matches_seed_formula(rng):
    x = rng.standard_normal((4, 3, 80))
    m = np.max(np.abs(x), axis=(1, 2), keepdims=True)
    seed = (x * (np.iinfo(np.int16).max / m)).astype(np.int16)
    q = pp.quantize(x)
    assert q.dtype == np.int16
    np.testing.assert_array_equal(q, seed)
    assert np.abs(q).max() == 32767


def test_prepare_windows_peak_and_shapes(rng):
    x = np.stack([mems_window(rng) for _ in range(3)])
    int16, peak = pp.prepare_windows(x, 100.0)
    assert int16.shape == (3, 3, 80) and int16.dtype == np.int16
    filtered = pp.filter_windows(x, 100.0)
    np.testing.assert_allclose(peak, np.abs(filtered).max(axis=(1, 2)))
    model_in = pp.to_model_input(int16)
    assert model_in.shape == (3, 1, 80, 3) and model_in.dtype == np.float32
    assert np.abs(model_in).max() == pytest.approx(1.0)
    np.testing.assert_array_equal(pp.to_model_input(int16, np.int16)[:, 0], np.swapaxes(int16, 1, 2))


def test_amplitude_gate_matches_seed_limits():
    peaks = np.array([0.0, 1e-9, 1e-3, 19.0, 19.62, 30.0])
    assert pp.amplitude_ok(peaks).tolist() == [False, False, True, True, False, False]


@pytest.mark.parametrize("n_windows", [1, 4])
def test_node_window_preparer_is_bit_identical_to_prepare_windows(rng, n_windows):
    """The node's fused hot path gives exactly training's int16 windows and peaks."""
    prepare = pp.WindowPreparer(pp.PreprocessConfig())
    for k in range(200):
        x = np.stack([mems_window(rng) for _ in range(n_windows)]) * 10.0 ** rng.uniform(-4, 1)
        if k % 10 == 0:
            x[0] = 9.81  # a dead sensor: flat, filtered to (almost) nothing
        for fs in (100.0, 125.0):
            x_fs = x if fs == 100.0 else np.stack([mems_window(rng, 250) for _ in range(n_windows)])
            want, want_peak = pp.prepare_windows(x_fs, fs)
            got, got_peak = prepare(x_fs, fs)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got_peak, want_peak)
    zero, peak = prepare(np.zeros((n_windows, 3, 200)), 100.0)
    assert not zero.any() and not peak.any()


def test_model_input_of_one_window_matches_the_batched_path(rng):
    """The one-window fast path of to_model_input gives exactly the batched result."""
    for k in range(100):
        w = pp.quantize(rng.standard_normal((2, 3, 80)) * 10.0 ** rng.uniform(-3, 3))
        if k == 0:
            w[:] = 0
        for i in range(2):
            np.testing.assert_array_equal(pp.to_model_input(w[i:i + 1]), pp.to_model_input(w)[i:i + 1])


@pytest.mark.parametrize("peak", [1, 2, 3, 127, 1000, 32766, 32767, 32768])
def test_model_input_of_one_window_is_exact_for_every_int16_count(peak):
    """The one-window path divides in float32; dequantize() in float64, then rounds to float32.

    Every int16 count (the window's peak set to ``peak``, 32768 meaning a -32768 count)
    must give the same float32 on both paths.
    """
    counts = np.arange(-32768, 32768, dtype=np.int64)
    counts = counts[np.abs(counts) <= peak]
    n = -(-counts.size // 3) * 3  # whole samples of 3 components
    w = np.resize(counts, n).astype(np.int16).reshape(1, -1, 3).swapaxes(1, 2)  # (1, 3, n / 3)
    w[0, 0, 0] = -32768 if peak == 32768 else peak
    got = pp.to_model_input(np.ascontiguousarray(w))
    np.testing.assert_array_equal(got, pp.to_model_input(np.concatenate([w, w]))[:1])
    want = (np.swapaxes(w, 1, 2).astype(np.float64) / peak).astype(np.float32)[:, None]
    np.testing.assert_array_equal(got, want)
