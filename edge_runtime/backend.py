"""Inference backends. onnxruntime is the backend; the model's metadata drives it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .metadata import METADATA_KEY, ModelMetadata
from .preprocess import to_model_input

log = logging.getLogger(__name__)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class OnnxBackend:
    """Run an exported SeismicTorch model with onnxruntime on the CPU.

    Parameters
    ----------
    path : str or Path
        ONNX file carrying :class:`~edge_runtime.metadata.ModelMetadata`.
    threads : int
        Intra-op threads; 1 keeps a Pi's other cores free for acquisition.
    """

    def __init__(self, path, threads: int = 1):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise ValueError(f"{self.path}: cannot load ONNX model ({exc})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError(f"{self.path}: no '{METADATA_KEY}' metadata; export it with "
                             "`python -m host_training export`")
        self.metadata = ModelMetadata.from_json(props[METADATA_KEY], source=str(self.path))
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.metadata.input_name not in inputs:
            raise ValueError(f"{self.path}: graph has no input '{self.metadata.input_name}'")
        self.input_dtype = np.int16 if self.metadata.input_scheme == "int16_maxabs" else np.float32
        self.output_name = self.session.get_outputs()[0].name

    @property
    def classes(self) -> list:
        return list(self.metadata.classes)

    def predict(self, windows_int16: np.ndarray) -> np.ndarray:
        """Class probabilities for ``(N, n_components, n_samples)`` int16 windows.

        Returns
        -------
        numpy.ndarray
            ``(N, n_classes)`` softmax probabilities, float64.
        """
        x = to_model_input(windows_int16, self.input_dtype)
        (logits,) = self.session.run([self.output_name], {self.metadata.input_name: x})
        return softmax(np.asarray(logits, dtype=np.float64))


def load_backend(path, threads: int = 1):
    """The backend for a model file, by extension: ``.tflite`` -> LiteRT (optional
    ``ai-edge-litert``, see :mod:`edge_runtime.backend_litert`), anything else -> onnxruntime."""
    if Path(path).suffix.lower() == ".tflite":
        from .backend_litert import LiteRTBackend

        return LiteRTBackend(path, threads=threads)
    return OnnxBackend(path, threads=threads)
