"""Training-time augmentations: seeded, correct, and usable by the trainer."""

import numpy as np
import pytest

from host_training.datasets import augment as aug


def _windows(n=16, c=3, w=80, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, w))


@pytest.mark.parametrize("make", [lambda: aug.TimeShift(rate=1.0), lambda: aug.AddNoise(rate=1.0),
                                  lambda: aug.DropChannels(rate=1.0), lambda: aug.ScaleAmplitude(rate=0.5)])
def test_seeded(make):
    x = _windows()
    a = make()(x, np.random.default_rng(5))
    b = make()(x, np.random.default_rng(5))
    c = make()(x, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape
    assert str(make()).startswith(type(make()).__name__)


def test_time_shift_moves_an_impulse_within_the_limit():
    x = np.zeros((200, 3, 80))
    x[:, :, 40] = 1.0
    out = aug.TimeShift(max_shift_s=0.5, sampling_rate_hz=40.0, rate=1.0)(x, np.random.default_rng(1))
    shifts = np.argmax(np.abs(out[:, 0]) > 0.5, axis=-1) - 40
    assert np.abs(shifts).max() <= 20 and len(set(shifts.tolist())) > 10
    # Reflection fill: every window still holds exactly the impulse (no wrap-around copy).
    np.testing.assert_array_equal(np.abs(out).sum(axis=-1), np.ones((200, 3)))


def test_drop_channels_keeps_one_live_component_and_adjusts_amplitude():
    x = np.ones((500, 3, 10))
    x[:100, 2] = 0.0  # already horizontal-only
    x[100:150, 1:] = 0.0  # one component only: nothing left to drop
    out = aug.DropChannels(rate=1.0, two_fraction=0.5)(x, np.random.default_rng(2))
    live = np.any(out != 0, axis=-1).sum(axis=1)
    assert live.min() == 1 and live[150:].max() == 2
    assert np.all(live[100:150] == 1)
    assert np.all(out[:100, 2] == 0)  # a dead channel stays dead
    # The seed's adjustment: amplitude x n_components / n_live.
    np.testing.assert_allclose(np.abs(out).max(axis=(1, 2)), 3.0 / live)


def test_add_noise_leaves_dead_channels_and_is_bounded():
    x = _windows(200)
    x[:, 0] = 0.0
    out = aug.AddNoise(max_ratio=0.1, rate=1.0)(x, np.random.default_rng(3))
    assert np.all(out[:, 0] == 0)
    added = (out - x)[:, 1:]
    peak = np.abs(x).max(axis=(1, 2))
    assert np.all(added.std(axis=(1, 2)) <= 0.1 * peak * 1.3)
    assert np.any(added != 0)


def test_scale_amplitude_factors():
    x = np.ones((2000, 3, 4))
    out = aug.ScaleAmplitude(rate=0.25)(x, np.random.default_rng(4))
    f = out[:, 0, 0]
    assert f.min() >= 1 / 3 and f.max() <= 3
    assert 0.4 < np.mean(f == 1.0) < 0.6  # half untouched
    np.testing.assert_array_equal(aug.ScaleAmplitude(rate=0.0)(x, np.random.default_rng(0)), x)
    with pytest.raises(ValueError, match="rate"):
        aug.ScaleAmplitude(rate=0.7)


def test_build_compose_on_model_inputs():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 1, 80, 3)).astype(np.float32)
    chain = aug.build(["shift", "noise", "drop", "scale"], seed=0)
    out = chain(x, np.random.default_rng(9))
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_allclose(np.abs(out).max(axis=(1, 2, 3)), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out, chain(x, np.random.default_rng(9)))
    assert [type(a).__name__ for a in chain.augmentations] == ["TimeShift", "AddNoise", "DropChannels",
                                                                "ScaleAmplitude"]
    with pytest.raises(ValueError, match="known: time_shift"):
        aug.build(["rotate"])
    one = aug.OneOf([aug.ScaleAmplitude(rate=0.5), aug.TimeShift(rate=1.0)], probabilities=[1, 0])
    assert one(np.ones((4, 3, 8)), rng).shape == (4, 3, 8)


def test_trainer_uses_the_augmentations():
    from host_training.train import build_augment

    f = build_augment(["time_shift", "drop_channels"], seed=0)
    x = np.random.default_rng(1).uniform(-1, 1, (8, 1, 80, 3)).astype(np.float32)
    y = f(x.copy(), np.random.default_rng(2))
    assert y.shape == x.shape and not np.array_equal(x, y)
