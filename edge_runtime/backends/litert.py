"""LiteRT backend: run a ``.tflite`` model with ``ai-edge-litert``, same interface as OnnxBackend.

``ai-edge-litert`` is optional on the node: this module imports it only when a backend is
built, so ``edge_runtime`` still imports with numpy, onnxruntime and pyserial alone. It
is Google's maintained LiteRT runtime (the ``tflite-runtime`` wheel stopped in 2023).
Wheels exist for 64-bit ARM (aarch64) and x86-64 only: on a Raspberry Pi use the 64-bit
Raspberry Pi OS (Bookworm, Python 3.11).

The model's :class:`~edge_runtime.metadata.ModelMetadata` travels inside the flatbuffer
(``metadata`` entry ``seismictorch``, written by ``python -m quantization tflite``). An
int8 model takes int8 input and gives int8 output; the scales stored in the file convert
the node's float windows in and the logits out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..metadata import METADATA_KEY, ModelMetadata
from ..preprocess import to_model_input
from .base import SoftmaxPredict, TensorInfo, check_graph

log = logging.getLogger(__name__)

RUNTIME = "litert"

INSTALL_HINT = "install the LiteRT runtime: pip install ai-edge-litert (64-bit OS only)"


def read_tflite_metadata(data: bytes, key: str = METADATA_KEY) -> str | None:
    """The text stored under ``key`` in a ``.tflite`` flatbuffer's metadata, or None."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode() == key:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    return None


def _tensor_info(detail: dict) -> TensorInfo:
    scale, zero = detail["quantization"]
    quantized = detail["dtype"] != np.float32
    return TensorInfo(detail["name"], tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name,
                      float(scale) if quantized else 0.0, int(zero) if quantized else 0)


class LiteRTBackend(SoftmaxPredict):
    """Run an exported SeismicTorch ``.tflite`` model with LiteRT on the CPU (:class:`Backend`).

    Parameters
    ----------
    path : str or Path
        ``.tflite`` file carrying :class:`~edge_runtime.metadata.ModelMetadata`.
    threads : int
        Interpreter threads; 1 keeps a Pi's other cores free for acquisition.
    require_metadata : bool
        Refuse a file without SeismicTorch metadata (the node always does; conversion
        checks turn it off).
    check : bool
        Refuse a graph that disagrees with its metadata (see :class:`OnnxBackend`).
    """

    runtime = RUNTIME

    def __init__(self, path, threads: int = 1, require_metadata: bool = True, check: bool = True):
        self.path = Path(path)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ValueError(f"{self.path}: cannot run a LiteRT model: {INSTALL_HINT}") from None
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such model file")
        data = self.path.read_bytes()
        if data[4:8] != b"TFL3":
            raise ValueError(f"{self.path}: not a LiteRT (.tflite) model")
        try:
            self.interpreter = Interpreter(model_content=data, num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # the wrapper raises RuntimeError/ValueError alike
            raise ValueError(f"{self.path}: cannot load LiteRT model ({str(exc).splitlines()[0]})") from None
        text = read_tflite_metadata(data)
        if text is None:
            if require_metadata:
                raise ValueError(f"{self.path}: no '{METADATA_KEY}' metadata; convert it with "
                                 "`python -m quantization tflite`")
            self.metadata = None
        else:
            self.metadata = ModelMetadata.from_json(text, source=str(self.path))
        (self._in,) = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()[0]
        # The node feeds float windows; an int8 model quantizes them with its own scale,
        # so to the node it is a float-input model.
        self.input_dtype = np.float32
        self._shape = tuple(int(d) for d in self._in["shape"][1:])
        self._n_out = int(self._out["shape"][-1])
        self._in_index, self._out_index = self._in["index"], self._out["index"]
        self._in_dtype = self._in["dtype"]
        in_scale, in_zero = self._in["quantization"]
        self._in_scale = float(in_scale) if self._in_dtype != np.float32 else 0.0
        if self._in_scale:
            info = np.iinfo(self._in_dtype)
            self._in_inv_scale = np.float32(1.0 / self._in_scale)
            self._in_zero, self._in_min, self._in_max = float(in_zero), info.min, info.max
        out_scale, out_zero = self._out["quantization"]
        self._out_scale = float(out_scale) if self._out["dtype"] != np.float32 else 0.0
        self._out_zero = float(out_zero)
        self.inputs = (_tensor_info(self._in),)
        self.outputs = tuple(_tensor_info(d) for d in self.interpreter.get_output_details())
        if self.metadata is not None and check:
            check_graph(self)

    @property
    def classes(self) -> list:
        return list(self.metadata.classes)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float logits for model inputs ``x`` ``(N, ...)``, one window per invocation."""
        x = np.asarray(x, dtype=np.float32)
        if tuple(x.shape[1:]) != self._shape:
            raise ValueError(f"{self.path}: input of shape {x.shape[1:]}, model takes {self._shape}")
        result = np.empty((len(x), self._n_out), dtype=np.float32)
        for i in range(len(x)):
            result[i] = self._invoke(x[i:i + 1])
        return result

    def _invoke(self, window: np.ndarray) -> np.ndarray:
        """One ``(1, ...)`` float window -> float logits ``(n_classes,)``."""
        if self._in_scale:  # int8 model: quantize with the file's input scale
            window = np.rint(window * self._in_inv_scale)
            window += self._in_zero
            np.clip(window, self._in_min, self._in_max, out=window)
        self.interpreter.set_tensor(self._in_index, window.astype(self._in_dtype, copy=False))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out_index)[0]
        if self._out_scale:
            return (y.astype(np.float32) - self._out_zero) * self._out_scale
        return y

    def bind(self, x: np.ndarray):
        """The interpreter alone (set, invoke, get) on one model input ``x`` ``(1, ...)``,
        quantized beforehand for an integer graph (see :class:`Backend`)."""
        x = np.asarray(x, dtype=np.float32)
        if self._in_scale:
            x = np.clip(np.round(x / self._in_scale) + self._in_zero, self._in_min, self._in_max)
        x = x.astype(self._in_dtype)
        interpreter, in_index, out_index = self.interpreter, self._in_index, self._out_index

        def call():
            interpreter.set_tensor(in_index, x)
            interpreter.invoke()
            return interpreter.get_tensor(out_index)

        return call

    def logits(self, windows_int16: np.ndarray) -> np.ndarray:
        """Float logits for ``(N, n_components, n_samples)`` int16 windows."""
        w = np.asarray(windows_int16)
        if w.ndim == 3 and len(w) == 1 and len(self._shape) == 3 and w.shape[1:] == self._shape[:0:-1]:
            # The node's case, one window: the seed's final normalize (divide by max |count|)
            # and the layout change in three numpy calls instead of to_model_input's chain.
            x = w[0].T.astype(np.float32)
            peak = float(np.abs(x).max())
            if peak > 0:
                x *= np.float32(1.0 / peak)
            return self._invoke(x.reshape((1,) + self._shape))[None]
        return self.run(to_model_input(w, np.float32))
