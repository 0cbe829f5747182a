"""Inference backends: one interface for every runtime, one table of which runtime opens a file.

- :mod:`.base`: the :class:`Backend` protocol (runtime name, input/output description,
  ``run`` -> logits, ``predict`` -> probabilities, ``bind`` -> the runtime call alone),
  :func:`check_io` (a graph that disagrees with its metadata is refused at load) and
  :func:`softmax`.
- :mod:`.registry`: :data:`RUNTIMES`, the suffix-to-runtime table, :func:`runtime_for` and
  :func:`load_backend`.
- :mod:`.onnx`: onnxruntime (``.onnx``), the node's runtime.
- :mod:`.litert`: LiteRT (``.tflite``, optional ``ai-edge-litert``), imported only when a
  ``.tflite`` file is opened.

A new runtime is one module here implementing :class:`Backend` and one row in
:data:`RUNTIMES`.
"""

from .base import Backend, SoftmaxPredict, TensorInfo, check_graph, check_io, expected_input, softmax
from .onnx import OnnxBackend, open_onnx
from .registry import RUNTIMES, Runtime, load_backend, runtime_for

__all__ = ["Backend", "OnnxBackend", "RUNTIMES", "Runtime", "SoftmaxPredict", "TensorInfo", "check_graph",
           "check_io", "expected_input", "load_backend", "open_onnx", "runtime_for", "softmax"]
