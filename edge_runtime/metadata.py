"""The model metadata schema: what a node must know about a model, carried in the ONNX file.

The host writes it (``host_training.export``), the node reads it (``edge_runtime.backend``)
and refuses a model whose metadata it cannot honour. It is one JSON document stored under
the ONNX ``metadata_props`` key :data:`METADATA_KEY`.
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
