"""The model kinds: everything the node, export, evaluation and quantization know about an
architecture, written once and looked up by its name.

A model file names its kind in its metadata (``ModelMetadata.model``, e.g.
``"EarthquakeCNN"``); a torch checkpoint in its ``model`` entry. Code that must act
differently for different kinds asks the :class:`ModelKind` (``get_kind(name)``), never
compares the name: a third model is one more entry here (and its torch class in
``host_training.models``, registered under the same name).

Two stages exist. A ``"window"`` kind classifies every sliding window of the node's
stream; its input is made by :mod:`edge_runtime.preprocess` and its classes include the
detector's ``noise``. A ``"record"`` kind classifies the record of a declared event (the
node's second stage); its input is a spectrogram image (:mod:`edge_runtime.spectrogram`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .metadata import ModelMetadata

PHASE_CLASSES = ("P", "S", "noise")
SOURCE_CLASSES = ("earthquake", "active_source")
STAGES = ("window", "record")


def window_input_spec(metadata: ModelMetadata) -> tuple[tuple, str]:
    """Input shape (no batch axis) and element type of a window model: ``(1, n_samples,
    n_components)``, int16 counts for ``input_scheme == "int16_maxabs"``, else float32."""
    n_out = metadata.preprocess_config().n_out
    dtype = "int16" if metadata.input_scheme == "int16_maxabs" else "float32"
    return (1, n_out, len(metadata.components)), dtype


def window_model_input(windows_mps2: np.ndarray, sampling_rate_hz: float,
                       metadata: ModelMetadata, config=None) -> np.ndarray:
    """Model inputs of raw windows, as the node makes them.

    Parameters
    ----------
    windows_mps2 : numpy.ndarray
        ``(N, n_components, n_in)`` acceleration in m/s^2.
    sampling_rate_hz : float
        Sampling rate of the windows, Hz.
    metadata : ModelMetadata
        Preprocessing settings and input scheme of the model.
    config : PreprocessConfig, optional
        The settings already read from ``metadata``.

    Returns
    -------
    numpy.ndarray
        ``(N, 1, n_samples, n_components)``: float32 in [-1, 1], or int16 counts for an
        int16-input model.
    """
    from .preprocess import prepare_windows, to_model_input

    config = metadata.preprocess_config() if config is None else config
    int16, _ = prepare_windows(windows_mps2, sampling_rate_hz, config)
    return to_model_input(int16, np.dtype(window_input_spec(metadata)[1]))


def spectrogram_config(metadata: ModelMetadata):
    """The :class:`~edge_runtime.spectrogram.SpectrogramConfig` a record model was trained with
    (``metadata.extra["spectrogram"]``; the defaults when absent)."""
    # Imported here: a node running only a window model never loads the spectrogram code.
    from .spectrogram import SpectrogramConfig

    return SpectrogramConfig.from_dict(metadata.extra.get("spectrogram") or {})


def image_input_spec(metadata: ModelMetadata) -> tuple[tuple, str]:
    """Input shape (no batch axis) and element type of a record model: ``(3, height, width)``
    float32 spectrogram images."""
    config = spectrogram_config(metadata)
    return (3, config.height, config.width), "float32"


def image_model_input(records_mps2: np.ndarray, sampling_rate_hz: float,
                      metadata: ModelMetadata, config=None) -> np.ndarray:
    """Model inputs of raw records: spectrogram images scaled to [0, 1].

    Parameters
    ----------
    records_mps2 : numpy.ndarray
        ``(N, 3, n)`` acceleration in m/s^2, components (E, N, Z).
    sampling_rate_hz : float
        Sampling rate of the records, Hz.
    metadata : ModelMetadata
        The model's metadata (its spectrogram settings).
    config : SpectrogramConfig, optional
        The settings already read from ``metadata`` (saves reading them per record).

    Returns
    -------
    numpy.ndarray
        ``(N, 3, height, width)`` float32.
    """
    from .spectrogram import spectrogram_images, to_model_input

    config = spectrogram_config(metadata) if config is None else config
    return to_model_input(spectrogram_images(records_mps2, sampling_rate_hz, config))


@dataclass(frozen=True)
class ModelKind:
    """One architecture, as every part of the product needs to know it.

    Attributes
    ----------
    name : str
        The name in model metadata and checkpoints (``EarthquakeCNN``).
    option : str
        Its value of ``python -m host_training train --model`` (``earthquake``).
    classes : tuple of str
        Output classes in logit order.
    stage : str
        ``"window"`` (first stage: every sliding window) or ``"record"`` (second stage: the
        record of a declared event), see the module doc.
    input_shape : tuple of int
        Default input shape without the batch axis (the exported graph's).
    input_range : tuple of float
        Range of the float input values (random check inputs at export).
    int16_input : bool
        The model takes the node's int16 windows, so ``quantization all`` builds the
        int16-input, static int8 and LiteRT variants; otherwise dynamic int8 only.
    input_spec : callable
        ``input_spec(metadata) -> (shape, dtype name)``: the input a file with this
        metadata must have (the node refuses a graph that differs).
    model_input : callable
        ``model_input(raw_mps2, sampling_rate_hz, metadata, config=None) -> x``: how the
        model's input is made from ``(N, 3, n)`` acceleration (``config``: the kind's
        settings already read from ``metadata``).
    axis_names : dict
        Input axis -> what it holds, for messages about a graph that does not fit.
    data_hint : str
        What the training data must hold, added to a label mismatch message.
    """

    name: str
    option: str
    classes: tuple
    stage: str
    input_shape: tuple
    input_range: tuple
    int16_input: bool
    input_spec: Callable = field(repr=False)
    model_input: Callable = field(repr=False)
    axis_names: dict = field(default_factory=dict, repr=False)
    data_hint: str = ""

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"model kind {self.name}: stage {self.stage!r} not in {STAGES}")


EARTHQUAKE_CNN = ModelKind(
    name="EarthquakeCNN", option="earthquake", classes=PHASE_CLASSES, stage="window",
    input_shape=(1, 80, 3), input_range=(-1.0, 1.0), int16_input=True,
    input_spec=window_input_spec, model_input=window_model_input,
    axis_names={1: "channel axis", 2: "samples (window_s x target_rate_hz)", 3: "components"})

SPECTROGRAM_CNN = ModelKind(
    name="SpectrogramCNN", option="spectrogram", classes=SOURCE_CLASSES, stage="record",
    input_shape=(3, 100, 150), input_range=(0.0, 1.0), int16_input=False,  # images are uint8 / 255
    input_spec=image_input_spec, model_input=image_model_input,
    axis_names={1: "channel axis", 2: "image height", 3: "image width"},
    data_hint="--model spectrogram needs a record-level dataset of earthquake / active_source records")

KINDS = {kind.name: kind for kind in (EARTHQUAKE_CNN, SPECTROGRAM_CNN)}


def get_kind(name: str, source: str = "model") -> ModelKind:
    """The kind named ``name``; a one-line ValueError naming ``source`` and the known kinds."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"{source}: unknown model kind {name!r}; known: {', '.join(KINDS)}") from None


def kind_of_option(option: str) -> ModelKind:
    """The kind of a ``train --model`` value (its option or its name); ValueError otherwise."""
    for kind in KINDS.values():
        if option in (kind.option, kind.name):
            return kind
    raise ValueError(f"model {option!r}: expected one of {', '.join(k.option for k in KINDS.values())}")


def kinds_of_stage(stage: str) -> list:
    """The kinds of one stage (``"window"`` or ``"record"``), in registry order."""
    return [kind for kind in KINDS.values() if kind.stage == stage]
