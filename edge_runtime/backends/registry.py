"""Which runtime opens which model file: the one suffix-to-runtime table.

Every place that must know the runtime of a file (the node's :func:`load_backend`,
evaluation, the quantization report, the bundle) asks :func:`runtime_for`. A runtime's
module is imported only when a file of its suffix is opened, so an optional runtime
(LiteRT) costs nothing on a node that does not use it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Runtime:
    """One inference runtime.

    Attributes
    ----------
    name : str
        Runtime name in reports, ``chosen_model.json`` and bundle manifests.
    suffix : str
        Model file suffix it opens (lower case, with the dot).
    label : str
        Short name of the file type in evaluation results (``metrics.json``'s ``backend``).
    backend : str
        ``module:Class`` of its :class:`~edge_runtime.backends.base.Backend`.
    package : str
        The runtime's own Python module (imported by the backend when it opens a file).
    extra : str
        The ``pyproject.toml`` extra that installs it beside the node's ``edge`` set
        (empty: part of ``edge``), see :mod:`edge_runtime.requirements`.
    """

    name: str
    suffix: str
    label: str
    backend: str
    package: str
    extra: str = ""

    def backend_class(self):
        """The backend class (imports its module, and so the runtime's own package lazily)."""
        module, _, cls = self.backend.partition(":")
        return getattr(importlib.import_module(module), cls)


RUNTIMES = {r.suffix: r for r in (
    Runtime("onnxruntime", ".onnx", "onnx", "edge_runtime.backends.onnx:OnnxBackend", "onnxruntime"),
    # ai-edge-litert: optional, aarch64 and x86-64 wheels only (64-bit Raspberry Pi OS).
    Runtime("litert", ".tflite", "litert", "edge_runtime.backends.litert:LiteRTBackend",
            "ai_edge_litert.interpreter", extra="tflite"),
)}


def runtime_for(path) -> Runtime:
    """The runtime that opens ``path``, by its suffix (any case).

    Raises
    ------
    ValueError
        One line naming the file and the suffixes there are runtimes for.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in RUNTIMES:
        known = ", ".join(f"{s} ({r.name})" for s, r in RUNTIMES.items())
        raise ValueError(f"{path}: unknown model file type {suffix or '(no suffix)'!r}; expected {known}")
    return RUNTIMES[suffix]


def load_backend(path, threads: int = 1, check: bool = True):
    """The backend for a model file, chosen by :func:`runtime_for`.

    Parameters
    ----------
    path : str or Path
        Model file.
    threads : int
        Runtime threads; 1 keeps a Pi's other cores free for acquisition.
    check : bool
        Refuse a graph that disagrees with its metadata (see
        :func:`~edge_runtime.backends.base.check_io`).
    """
    return runtime_for(path).backend_class()(path, threads=threads, check=check)
