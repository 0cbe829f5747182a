"""The seed's models, layer by layer."""

import torch

from host_training.models import EarthquakeCNN, SpectrogramCNN, build_model, count_parameters


def test_earthquake_cnn_shape_and_parameters():
    model = EarthquakeCNN().eval()
    assert model(torch.zeros(4, 1, 80, 3)).shape == (4, 3)
    # conv 1*16*3+16, bn 32, conv 16*32*3+32, bn 64, conv 32*64*3+64, bn 128,
    # fc 384*64+64, 64*16+16, 16*3+3
    assert count_parameters(model) == 33_795


def test_spectrogram_cnn_shape_and_parameters():
    model = SpectrogramCNN().eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 100, 150)).shape == (2, 2)
    assert count_parameters(model) == 42_072_258


def test_seed_attribute_names_and_layers():
    """State dicts of the original repository load: same names, same layer types."""
    model = EarthquakeCNN()
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "bn1", "GELU1", "maxpool1", "dropout1",
                     "conv2", "bn2", "GELU2", "maxpool2", "dropout2",
                     "conv3", "bn3", "GELU3", "maxpool3", "dropout3",
                     "fc1", "GELU4", "fc2", "GELU5", "fc3"]
    assert model.conv1.kernel_size == (3, 1) and model.maxpool1.kernel_size == (3, 1)
    assert model.dropout1.p == 0.1
    spec = SpectrogramCNN()
    assert spec.fc1.in_features == 32640 and spec.maxpool3.kernel_size == (2, 2)


def test_training_is_reproducible():
    """Same seed, same weights after training: initialization and batches are seeded."""
    import numpy as np

    from host_training.train import TrainConfig, train

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (96, 1, 80, 3)).astype(np.float32)
    y = rng.integers(0, 3, 96)

    def once(seed):
        model = build_model("EarthquakeCNN", seed)
        train(model, x, y, x[:32], y[:32], TrainConfig(epochs=2, batch_size=16, seed=seed), progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(once(3), once(3))
    assert not torch.equal(once(3), once(4))
