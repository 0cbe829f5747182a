"""The one interface every inference runtime offers, and what all of them share.

:class:`Backend` is what the node, the second stage, evaluation and the quantization
report use; a runtime implements it in one module of this package and adds one row to
:data:`edge_runtime.backends.registry.RUNTIMES`. :func:`check_io` refuses, at load, a graph
that does not match its metadata; :func:`softmax` is the one softmax of the product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..kinds import get_kind
from ..metadata import ModelMetadata


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output.

    Attributes
    ----------
    name : str
        Tensor name in the graph.
    shape : tuple
        Dimensions; a symbolic or unknown one is a string or None (the batch axis).
    dtype : str
        numpy name of the element type (``"float32"``, ``"int16"``, ``"int8"`` ...).
    scale, zero_point : float
        Quantization of an integer tensor (real = scale * (q - zero_point)); 0.0 and 0 for
        float tensors.
    """

    name: str
    shape: tuple
    dtype: str
    scale: float = 0.0
    zero_point: int = 0


@runtime_checkable
class Backend(Protocol):
    """What the product needs from an inference runtime.

    Attributes
    ----------
    runtime : str
        Name of the runtime (``"onnxruntime"``, ``"litert"``), as in reports and bundles.
    path : Path
        Model file.
    metadata : ModelMetadata
        The model's SeismicTorch metadata.
    inputs, outputs : tuple of TensorInfo
        The graph's inputs and outputs as the runtime sees them.
    input_dtype : numpy.dtype
        Element type of the model inputs the backend takes (:meth:`run`): int16 for an
        int16-input model, else float32 (an int8 graph quantizes float inputs itself).
    """

    runtime: str
    path: Path
    metadata: ModelMetadata
    inputs: tuple
    outputs: tuple
    input_dtype: np.dtype

    @property
    def classes(self) -> list: ...

    def run(self, x: np.ndarray) -> np.ndarray:
        """Model inputs ``(N, *input_shape)`` -> ``(N, n_classes)`` float logits (raw outputs)."""
        ...

    def predict(self, windows_int16: np.ndarray) -> np.ndarray:
        """``(N, n_components, n_samples)`` int16 windows -> ``(N, n_classes)`` float64 probabilities."""
        ...

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        """A zero-argument call of the runtime alone on model input ``x`` (one window), every
        conversion done beforehand: what the quantization report times as the runtime's cost."""
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
    """Input shape without the batch axis and element type the metadata implies (its kind's)."""
    return get_kind(metadata.model).input_spec(metadata)


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
    kind = get_kind(metadata.model, source=str(source))
    shape, dtype = kind.input_spec(metadata)
    dims = list(input_shape)
    if len(dims) != 1 + len(shape):
        raise ValueError(f"{source}: graph input has rank {len(dims)}, metadata implies "
                         f"(batch, {', '.join(map(str, shape))})")
    for axis, (got, want) in enumerate(zip(dims[1:], shape, strict=True), start=1):
        if isinstance(got, int) and got != want:
            what = kind.axis_names.get(axis, f"axis {axis}")
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


def check_graph(backend) -> None:
    """:func:`check_io` on a backend's own description: its model input (``inputs[0]``) and
    first output. An integer input with a scale takes float values (the graph quantizes them)."""
    inp, out = backend.inputs[0], backend.outputs[0]
    check_io(backend.path, backend.metadata, inp.shape, "float32" if inp.scale else inp.dtype, out.shape)
