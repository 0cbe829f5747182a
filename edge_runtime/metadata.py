"""The model metadata schema: what a node must know about a model, carried in the ONNX file.

The host writes it (:func:`set_metadata`, from ``host_training.export`` and the quantization
steps), the node reads it (``edge_runtime.backends``) and refuses a model whose metadata it
cannot honour. It is one JSON document stored under the ONNX ``metadata_props`` key
:data:`METADATA_KEY` (in a ``.tflite`` file, under the flatbuffer metadata entry of that name).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .preprocess import PreprocessConfig

METADATA_KEY = "seismictorch"
SCHEMA_VERSION = 1
# How the window reaches the model input (see edge_runtime.preprocess):
#   "float_maxabs": float32 in [-1, 1], the seed's normalize(quantize(normalize(x)));
#   "int16_maxabs": the int16 counts of quantize(normalize(x)); the graph normalizes.
INPUT_SCHEMES = ("float_maxabs", "int16_maxabs")


@dataclass
class ModelMetadata:
    """Everything the node needs to run a model.

    Attributes
    ----------
    model : str
        Architecture name (``EarthquakeCNN``).
    classes : list of str
        Output classes in logit order.
    components : list of str
        Component order along the last input axis.
    input_name : str
        Name of the graph input.
    input_scheme : str
        One of :data:`INPUT_SCHEMES`.
    preprocess : dict
        :class:`~edge_runtime.preprocess.PreprocessConfig` fields.
    version : str
        Version of the package that exported the model.
    model_version : str
        Version of the trained model itself (run name, epoch and a hash of the weights unless
        given); empty in models exported before this field existed.
    data_card_sha256 : str
        Hash of the data card of the dataset the model was trained on; empty when unknown.
    input_shape : list of int
        Input shape without the batch axis (e.g. ``[1, 80, 3]``); empty when unknown.
    extra : dict
        Provenance (training config, metrics, ...); informational only.
    """

    model: str
    classes: list
    components: list = field(default_factory=lambda: ["X", "Y", "Z"])
    input_name: str = "modelInput"
    input_scheme: str = "float_maxabs"
    preprocess: dict = field(default_factory=lambda: PreprocessConfig().to_dict())
    version: str = "0.1.0"
    schema: int = SCHEMA_VERSION
    model_version: str = ""
    data_card_sha256: str = ""
    input_shape: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(**self.preprocess)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelMetadata":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: metadata '{METADATA_KEY}' is not JSON ({exc})") from None
        if raw.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"{source}: metadata schema {raw.get('schema')!r}, "
                             f"this runtime reads schema {SCHEMA_VERSION}")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{source}: unknown metadata fields {sorted(unknown)}")
        meta = cls(**raw)
        if meta.input_scheme not in INPUT_SCHEMES:
            raise ValueError(f"{source}: input_scheme {meta.input_scheme!r} not in {INPUT_SCHEMES}")
        try:
            meta.preprocess_config()
        except TypeError as exc:
            raise ValueError(f"{source}: bad preprocess metadata ({exc})") from None
        return meta


def set_metadata(model_proto, metadata: ModelMetadata):
    """Write (or replace) the SeismicTorch metadata of an ONNX model; returns ``model_proto``.

    ``model_proto`` is an ``onnx.ModelProto`` (only its ``metadata_props`` are touched, so
    this module needs no ``onnx``); its other metadata entries are kept.
    """
    for prop in list(model_proto.metadata_props):
        if prop.key == METADATA_KEY:
            model_proto.metadata_props.remove(prop)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()
    return model_proto


def get_metadata(model_proto, source: str = "model") -> ModelMetadata:
    """The SeismicTorch metadata of an ``onnx.ModelProto``; ValueError when it has none."""
    for prop in model_proto.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelMetadata.from_json(prop.value, source=source)
    raise ValueError(f"{source} has no '{METADATA_KEY}' metadata")


# --------------------------------------------------------------------------- self-test

SELFTEST_KEY = "selftest"


def selftest_window(metadata: ModelMetadata, sampling_rate_hz: float = 100.0, seed: int = 0):
    """A fixed raw window for a model's self-test: gravity, noise and a shaking burst, m/s^2.

    Returns
    -------
    numpy.ndarray
        ``(n_components, n_in)`` float64, rounded to 1e-7 m/s^2 so its JSON text gives
        back exactly the same numbers.
    """
    import numpy as np

    from .sensors import G_MPS2

    config = metadata.preprocess_config()
    n = config.n_in(sampling_rate_hz)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sampling_rate_hz
    x = 2e-3 * rng.standard_normal((len(metadata.components), n))
    onset = t > 0.4 * config.window_s
    x[:, onset] += 0.2 * np.sin(2 * np.pi * 6.0 * t[onset])[None] * np.exp(-(t[onset] - t[onset][0]))
    x[-1] += G_MPS2  # gravity on the last (vertical) component
    return np.round(x, 7)


def with_selftest(metadata: ModelMetadata, window, sampling_rate_hz: float, probs,
                  atol: float = 1e-3, reference: str = "") -> ModelMetadata:
    """A copy of ``metadata`` carrying a self-test: a raw window and the probabilities expected for it.

    Parameters
    ----------
    window : numpy.ndarray
        ``(n_components, n_in)`` raw window in m/s^2 (see :func:`selftest_window`).
    probs : sequence of float
        Expected class probabilities, in ``metadata.classes`` order.
    atol : float
        Largest |difference| per probability the node accepts.
    reference : str
        What computed ``probs`` (e.g. ``"torch"``).
    """
    import numpy as np

    test = {"sampling_rate_hz": float(sampling_rate_hz), "window": np.asarray(window).tolist(),
            "probs": [float(p) for p in np.ravel(probs)], "atol": float(atol), "reference": reference}
    extra = dict(metadata.extra)
    extra[SELFTEST_KEY] = test
    out = ModelMetadata(**{**asdict(metadata), "extra": extra})
    return out


def read_selftest(metadata: ModelMetadata, model_path=None) -> tuple[dict | None, str]:
    """The stored self-test of a model and where it came from.

    Looked for in the metadata (``extra.selftest``), then beside the model in its bundle:
    ``<model>.selftest.json``, then ``selftest.json`` in the model's folder.
    """
    from pathlib import Path

    if SELFTEST_KEY in metadata.extra:
        return metadata.extra[SELFTEST_KEY], "model metadata"
    if model_path is not None:
        path = Path(model_path)
        for candidate in (path.with_name(path.name + ".selftest.json"), path.with_name("selftest.json")):
            if candidate.is_file():
                try:
                    return json.loads(candidate.read_text()), str(candidate)
                except (OSError, json.JSONDecodeError) as exc:
                    raise ValueError(f"{candidate}: unreadable self-test ({exc})") from None
    return None, ""
