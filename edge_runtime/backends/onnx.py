"""onnxruntime backend: run an exported SeismicTorch ``.onnx`` model on the CPU."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np

from ..metadata import METADATA_KEY, ModelMetadata
from ..preprocess import to_model_input
from .base import SoftmaxPredict, TensorInfo, check_graph

log = logging.getLogger(__name__)

RUNTIME = "onnxruntime"


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


def _tensor_info(node) -> TensorInfo:
    return TensorInfo(node.name, tuple(node.shape), _ORT_TYPES.get(node.type, node.type))


class OnnxBackend(SoftmaxPredict):
    """Run an exported SeismicTorch model with onnxruntime on the CPU (:class:`Backend`).

    Parameters
    ----------
    path : str or Path
        ONNX file carrying :class:`~edge_runtime.metadata.ModelMetadata`.
    threads : int
        Intra-op threads; 1 keeps a Pi's other cores free for acquisition.
    check : bool
        Refuse a graph that disagrees with its metadata (:func:`check_io`); the second stage
        turns it off to check its own fields first and then calls :func:`check_graph`.

    Raises
    ------
    ValueError
        The file is not a loadable ONNX model, has no metadata, or its graph disagrees
        with its metadata (input name, shape, type, number of classes).
    """

    runtime = RUNTIME

    def __init__(self, path, threads: int = 1, check: bool = True):
        self.path = Path(path)
        # quiet: errors only, warnings are not the node's to print
        self.session, self.metadata = open_onnx(self.path, threads, quiet=True)
        graph_inputs = self.session.get_inputs()
        names = [i.name for i in graph_inputs]
        if self.metadata.input_name not in names:
            raise ValueError(f"{self.path}: graph has no input '{self.metadata.input_name}' "
                             f"(it has {sorted(names)})")
        # The model input first, as every backend lists it.
        first = names.index(self.metadata.input_name)
        ordered = [graph_inputs[first]] + [n for k, n in enumerate(graph_inputs) if k != first]
        self.inputs = tuple(_tensor_info(n) for n in ordered)
        self.outputs = tuple(_tensor_info(n) for n in self.session.get_outputs())
        if check:
            check_graph(self)
        self.input_dtype = np.int16 if self.metadata.input_scheme == "int16_maxabs" else np.float32
        self.output_name = self.outputs[0].name
        self._outputs = [self.output_name]
        self._classes = list(self.metadata.classes)

    @property
    def classes(self) -> list:
        return list(self._classes)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, n_classes)`` of model inputs ``x`` ``(N, *input_shape)`` (the graph's dtype)."""
        return self.session.run(self._outputs, {self.metadata.input_name: x})[0]

    def logits(self, windows_int16: np.ndarray) -> np.ndarray:
        """Logits of ``(N, n_components, n_samples)`` int16 windows."""
        x = to_model_input(windows_int16, self.input_dtype)
        return self.session.run(self._outputs, {self.metadata.input_name: x})[0]

    def bind(self, x: np.ndarray):
        """The session run alone on model input ``x`` (see :class:`Backend`)."""
        session, feed = self.session, {self.metadata.input_name: np.asarray(x, dtype=self.input_dtype)}
        return lambda: session.run(None, feed)
