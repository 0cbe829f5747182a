"""Inference backends: the model's metadata drives them, one small interface for all.

A backend is anything with ``metadata`` (:class:`~edge_runtime.metadata.ModelMetadata`),
``classes`` and ``predict(int16 windows) -> probabilities`` (:class:`Backend`).
:class:`OnnxBackend` runs ONNX files with onnxruntime; another runtime (LiteRT) plugs
in by implementing the same three members and calling :func:`check_io` on its graph's
input and output so a model the node cannot run is refused at start.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .metadata import METADATA_KEY, ModelMetadata
from .preprocess import to_model_input

log = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    """What the node needs from an inference runtime.

    Attributes
    ----------
    metadata : ModelMetadata
        The model's SeismicTorch metadata.
    path : Path
        Model file.
    """

    metadata: ModelMetadata
    path: Path

    @property
    def classes(self) -> list: ...

    def predict(self, windows_int16: np.ndarray) -> np.ndarray:
        """``(N, n_components, n_samples)`` int16 windows -> ``(N, n_classes)`` float64 probabilities."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, n_classes)`` logits, float64."""
    logits = np.asarray(logits)
    if logits.ndim == 2 and logits.shape[0] == 1 and logits.dtype.kind == "f":
        # One window (the node's usual case): a few scalar exps beat five numpy calls.
        # tolist() turns float32 into the same Python floats as a float64 copy would.
        row = logits[0].tolist()
        top = max(row)
        e = [math.exp(v - top) for v in row]
        total = math.fsum(e)
        return np.array([[v / total for v in e]])
    logits = logits.astype(np.float64, copy=False)
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class SoftmaxPredict:
    """``predict`` for a backend whose ``logits`` maps int16 windows to ``(N, n_classes)`` logits."""

    def predict(self, windows_int16: np.ndarray) -> np.ndarray:
        """Class probabilities for ``(N, n_components, n_samples)`` int16 windows.

        Returns
        -------
        numpy.ndarray
            ``(N, n_classes)`` softmax probabilities, float64.
        """
        return softmax(self.logits(windows_int16))


def expected_input(metadata: ModelMetadata) -> tuple[tuple, str]:
    """Input shape without the batch axis and element type the metadata implies."""
    if metadata.model == "SpectrogramCNN":  # record images, see edge_runtime.spectrogram
        from .spectrogram import SpectrogramConfig

        config = SpectrogramConfig.from_dict(metadata.extra.get("spectrogram") or {})
        return (3, config.height, config.width), "float32"
    n_out = metadata.preprocess_config().n_out
    dtype = "int16" if metadata.input_scheme == "int16_maxabs" else "float32"
    return (1, n_out, len(metadata.components)), dtype


def check_io(source, metadata: ModelMetadata, input_shape, input_dtype: str, output_shape) -> None:
    """Refuse a graph that does not match its metadata (one-line ValueError naming the field).

    Parameters
    ----------
    source : str
        Model path, for messages.
    input_shape, output_shape : sequence
        Graph shapes; symbolic or unknown dimensions may be strings or None.
    input_dtype : str
        numpy name of the graph input's element type (``"int16"``, ``"float32"``...).
    """
    shape, dtype = expected_input(metadata)
    dims = list(input_shape)
    if len(dims) != 1 + len(shape):
        raise ValueError(f"{source}: graph input has rank {len(dims)}, metadata implies "
                         f"(batch, {', '.join(map(str, shape))})")
    for axis, (got, want) in enumerate(zip(dims[1:], shape, strict=True), start=1):
        if isinstance(got, int) and got != want:
            what = {1: "channel axis", 2: "samples (window_s x target_rate_hz)",
                    3: "components"}.get(axis, f"axis {axis}")
            raise ValueError(f"{source}: graph input axis {axis} ({what}) is {got}, metadata implies {want}")
    if input_dtype != dtype:
        raise ValueError(f"{source}: graph input is {input_dtype}, metadata input_scheme "
                         f"{metadata.input_scheme!r} needs {dtype}")
    out = list(output_shape)
    n_classes = len(metadata.classes)
    if not out or (isinstance(out[-1], int) and out[-1] != n_classes):
        raise ValueError(f"{source}: graph output has {out[-1] if out else 'no'} classes, metadata lists "
                         f"{n_classes} {metadata.classes}")
    if len(set(metadata.classes)) != n_classes:
        raise ValueError(f"{source}: metadata classes {metadata.classes} repeat a name")


def open_onnx(path: Path, threads: int = 1, quiet: bool = False):
    """An onnxruntime CPU session on ``path`` and the SeismicTorch metadata the file carries.

    ``threads`` intra-op threads, one inter-op; ``quiet`` sets onnxruntime's log to errors only.
    Returns ``(session, metadata)``; raises a one-line ValueError naming the file when it is
    not a loadable ONNX model or has no metadata.
    """
    if "onnxruntime" not in sys.modules:
        # onnxruntime >= 1.29 starts usage telemetry on import (a SQLite queue under
        # ~/.cache, an upload thread, outbound HTTPS): 2.1 MiB resident and a thread on
        # the node, and no field station should phone home. Read once, at import.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if quiet:
        options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: cannot load ONNX model ({first})") from None
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: no '{METADATA_KEY}' metadata; export it with "
                         "`python -m host_training export`")
    return session, ModelMetadata.from_json(props[METADATA_KEY], source=str(path))


_ORT_TYPES = {"tensor(int16)": "int16", "tensor(float)": "float32", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
              "tensor(float16)": "float16"}


class OnnxBackend(SoftmaxPredict):
    """Run an exported SeismicTorch model with onnxruntime on the CPU.

    Parameters
    ----------
    path : str or Path
        ONNX file carrying :class:`~edge_runtime.metadata.ModelMetadata`.
    threads : int
        Intra-op threads; 1 keeps a Pi's other cores free for acquisition.

    Raises
    ------
    ValueError
        The file is not a loadable ONNX model, has no metadata, or its graph disagrees
        with its metadata (input name, shape, type, number of classes).
    """

    def __init__(self, path, threads: int = 1):
        self.path = Path(path)
        # quiet: errors only, warnings are not the node's to print
        self.session, self.metadata = open_onnx(self.path, threads, quiet=True)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.metadata.input_name not in inputs:
            raise ValueError(f"{self.path}: graph has no input '{self.metadata.input_name}' "
                             f"(it has {sorted(inputs)})")
        graph_in = inputs[self.metadata.input_name]
        graph_out = self.session.get_outputs()[0]
        check_io(self.path, self.metadata, graph_in.shape, _ORT_TYPES.get(graph_in.type, graph_in.type),
                 graph_out.shape)
        self.input_dtype = np.int16 if self.metadata.input_scheme == "int16_maxabs" else np.float32
        self.output_name = graph_out.name
        self._outputs = [self.output_name]
        self._classes = list(self.metadata.classes)

    @property
    def classes(self) -> list:
        return list(self._classes)

    def logits(self, windows_int16: np.ndarray) -> np.ndarray:
        x = to_model_input(windows_int16, self.input_dtype)
        return self.session.run(self._outputs, {self.metadata.input_name: x})[0]


def load_backend(path, threads: int = 1):
    """The backend for a model file, by extension: ``.tflite`` -> LiteRT (optional
    ``ai-edge-litert``, see :mod:`edge_runtime.backend_litert`), anything else -> onnxruntime."""
    if Path(path).suffix.lower() == ".tflite":
        from .backend_litert import LiteRTBackend

        return LiteRTBackend(path, threads=threads)
    return OnnxBackend(path, threads=threads)
