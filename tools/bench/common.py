"""What the benchmarks share: the timing loop and the untrained models they time.

Each benchmark module imports from here, never from the package or :mod:`tools.bench.suite`,
so the suite can import every benchmark without a cycle.
"""

from __future__ import annotations

import time
from pathlib import Path


def time_per_call(fn, min_time_s: float = 0.5, repeat: int = 5) -> float:
    """Best-of-``repeat`` mean seconds per call, each repeat running >= ``min_time_s / repeat``."""
    fn()  # warm caches (matrices, sessions)
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t > min_time_s / repeat:
            break
        n *= 2
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def untrained_models(out: Path) -> Path:
    """Untrained EarthquakeCNN exported like the demo's (latency does not depend on weights)."""
    from edge_runtime.kinds import EARTHQUAKE_CNN
    from edge_runtime.metadata import ModelMetadata
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, EarthquakeCNN
    from quantization.int16 import quantize_int16
    from quantization.simplify import simplify

    folder = out / "model"
    meta = ModelMetadata(model=EARTHQUAKE_CNN.name, classes=list(PHASE_CLASSES))
    export_onnx(EarthquakeCNN().eval(), folder / "earthquake_cnn.onnx", meta)
    quantize_int16(folder / "earthquake_cnn.onnx", folder / "earthquake_cnn_int16.onnx")
    simplify(folder / "earthquake_cnn_int16.onnx", folder / "earthquake_cnn_int16_sim.onnx")
    return folder
