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

from .backend import check_io, softmax
from .metadata import METADATA_KEY, ModelMetadata
from .preprocess import to_model_input

log = logging.getLogger(__name__)

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


class LiteRTBackend:
    """Run an exported SeismicTorch ``.tflite`` model with LiteRT on the CPU.

    Parameters
    ----------
    path : str or Path
        ``.tflite`` file carrying :class:`~edge_runtime.metadata.ModelMetadata`.
    threads : int
        Interpreter threads; 1 keeps a Pi's other cores free for acquisition.
    require_metadata : bool
        Refuse a file without SeismicTorch metadata (the node always does; conversion
        checks turn it off).
    """

    def __init__(self, path, threads: int = 1, require_metadata: bool = True):
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
        if self.metadata is not None:
            quantized = self._in["dtype"] != np.float32 and self._in["quantization"][0] > 0
            dtype = "float32" if quantized else np.dtype(self._in["dtype"]).name
            check_io(self.path, self.metadata, [int(d) for d in self._in["shape"]], dtype,
                     [int(d) for d in self._out["shape"]])

    @property
    def classes(self) -> list:
        return list(self.metadata.classes)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float logits for model inputs ``x`` ``(N, ...)``, one window per invocation."""
        interp, inp, out = self.interpreter, self._in, self._out
        x = np.asarray(x, dtype=np.float32)
        if tuple(x.shape[1:]) != tuple(inp["shape"][1:]):
            raise ValueError(f"{self.path}: input of shape {x.shape[1:]}, model takes "
                             f"{tuple(inp['shape'][1:])}")
        in_scale, in_zero = inp["quantization"]
        out_scale, out_zero = out["quantization"]
        result = np.empty((len(x), int(out["shape"][-1])), dtype=np.float32)
        for i in range(len(x)):
            window = x[i:i + 1]
            if inp["dtype"] != np.float32:
                info = np.iinfo(inp["dtype"])
                window = np.clip(np.round(window / in_scale) + in_zero, info.min, info.max)
            interp.set_tensor(inp["index"], window.astype(inp["dtype"]))
            interp.invoke()
            y = interp.get_tensor(out["index"])
            if out["dtype"] != np.float32:
                y = (y.astype(np.float32) - out_zero) * out_scale
            result[i] = y[0]
        return result

    def predict(self, windows_int16: np.ndarray) -> np.ndarray:
        """Class probabilities for ``(N, n_components, n_samples)`` int16 windows.

        Returns
        -------
        numpy.ndarray
            ``(N, n_classes)`` softmax probabilities, float64.
        """
        return softmax(self.logits(windows_int16))

    def logits(self, windows_int16: np.ndarray) -> np.ndarray:
        """Float logits for ``(N, n_components, n_samples)`` int16 windows."""
        return self.run(to_model_input(windows_int16, np.float32))
