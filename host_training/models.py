"""The seed's two CNNs, layer by layer as in the original SeismicTorch README.

Attribute names (``conv1``, ``bn1``, ``GELU1``, ...) are the seed's, so state dicts of
the original repository load unchanged. Each class names its
:class:`~edge_runtime.kinds.ModelKind` (``kind``), and :data:`MODELS` registers it under
that kind's name: what the node, export, evaluation and quantization know about a model
lives there, the torch layers here.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_runtime.kinds import EARTHQUAKE_CNN, PHASE_CLASSES, SOURCE_CLASSES, SPECTROGRAM_CNN

__all__ = ["EarthquakeCNN", "MODELS", "MODEL_CLASSES", "PHASE_CLASSES", "SOURCE_CLASSES", "SpectrogramCNN",
           "build_model", "count_parameters"]


class _SeedCNN(nn.Module):
    """The seed's shared shape: three conv blocks (conv, BN, GELU, max-pool, dropout),
    flatten, three fully connected layers. Subclasses define the layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout1(self.maxpool1(self.GELU1(self.bn1(self.conv1(x)))))
        x = self.dropout2(self.maxpool2(self.GELU2(self.bn2(self.conv2(x)))))
        x = self.dropout3(self.maxpool3(self.GELU3(self.bn3(self.conv3(x)))))
        x = x.reshape(x.size(0), -1)
        x = self.GELU4(self.fc1(x))
        x = self.GELU5(self.fc2(x))
        return self.fc3(x)


class EarthquakeCNN(_SeedCNN):
    """Phase classifier of 2 s, 3-component windows at 40 Hz.

    Input ``(N, 1, 80, 3)``: samples along axis 2, components (E, N, Z) along axis 3,
    normalized to [-1, 1]. Output ``(N, 3)`` logits for :data:`PHASE_CLASSES`.
    Shapes: 80 -> conv 78 -> pool 26 -> 24 -> 8 -> 6 -> 2; 64 * 2 * 3 = 384 features.
    """

    kind = EARTHQUAKE_CNN

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=(3, 1), stride=(1, 1))
        self.bn1 = nn.BatchNorm2d(16)
        self.GELU1 = nn.GELU()
        self.maxpool1 = nn.MaxPool2d(kernel_size=(3, 1), stride=(3, 1))
        self.dropout1 = nn.Dropout(p=0.1)

        self.conv2 = nn.Conv2d(16, 32, kernel_size=(3, 1), stride=(1, 1))
        self.bn2 = nn.BatchNorm2d(32)
        self.GELU2 = nn.GELU()
        self.maxpool2 = nn.MaxPool2d(kernel_size=(3, 1), stride=(3, 1))
        self.dropout2 = nn.Dropout(p=0.1)

        self.conv3 = nn.Conv2d(32, 64, kernel_size=(3, 1), stride=(1, 1))
        self.bn3 = nn.BatchNorm2d(64)
        self.GELU3 = nn.GELU()
        self.maxpool3 = nn.MaxPool2d(kernel_size=(3, 1), stride=(3, 1))
        self.dropout3 = nn.Dropout(p=0.1)

        self.fc1 = nn.Linear(384, 64)
        self.GELU4 = nn.GELU()
        self.fc2 = nn.Linear(64, 16)
        self.GELU5 = nn.GELU()
        self.fc3 = nn.Linear(16, 3)


class SpectrogramCNN(_SeedCNN):
    """Earthquake / active-source classifier of 3-component spectrogram images.

    Input ``(N, 3, 100, 150)``: one 100 x 150 grey spectrogram image per component.
    Output ``(N, 2)`` logits for :data:`SOURCE_CLASSES`. 42,072,258 parameters, most of
    them in ``fc1`` (32640 x 1280): about 168 MB as float32.
    """

    kind = SPECTROGRAM_CNN

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 48, kernel_size=(3, 3), stride=(1, 1))
        self.bn1 = nn.BatchNorm2d(48)
        self.GELU1 = nn.GELU()
        self.maxpool1 = nn.MaxPool2d(kernel_size=(2, 2), stride=(2, 2))
        self.dropout1 = nn.Dropout(p=0.1)

        self.conv2 = nn.Conv2d(48, 96, kernel_size=(3, 3), stride=(1, 1))
        self.bn2 = nn.BatchNorm2d(96)
        self.GELU2 = nn.GELU()
        self.maxpool2 = nn.MaxPool2d(kernel_size=(2, 2), stride=(2, 2))
        self.dropout2 = nn.Dropout(p=0.1)

        self.conv3 = nn.Conv2d(96, 192, kernel_size=(3, 3), stride=(1, 1))
        self.bn3 = nn.BatchNorm2d(192)
        self.GELU3 = nn.GELU()
        self.maxpool3 = nn.MaxPool2d(kernel_size=(2, 2), stride=(2, 2))
        self.dropout3 = nn.Dropout(p=0.1)

        self.fc1 = nn.Linear(32640, 1280)
        self.GELU4 = nn.GELU()
        self.fc2 = nn.Linear(1280, 64)
        self.GELU5 = nn.GELU()
        self.fc3 = nn.Linear(64, 2)


# The host's registry: the torch class of each model kind, under the kind's name.
MODELS = {cls.kind.name: cls for cls in (EarthquakeCNN, SpectrogramCNN)}
MODEL_CLASSES = {name: cls.kind.classes for name, cls in MODELS.items()}


def build_model(name: str, seed: int) -> nn.Module:
    """A freshly initialized model whose initial weights depend only on ``seed``.

    Layer initialization draws from torch's global generator; it is seeded here, inside a
    forked RNG state, so building a model neither depends on nor disturbs other draws.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name]()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
