"""``python -m edge_runtime check``: run a model on this node the way the service will.

1. load the model with the node's backend; its graph must match its metadata (input
   name, shape, element type, number of classes: :func:`~edge_runtime.backends.check_io`),
2. with a configuration, build the node's pipeline (classes, components, sensor),
3. run the stored self-test window (a raw window in m/s^2 written by the exporter, in
   the metadata or beside the model in its bundle) through the node's preprocessing and
   runtime, and compare the probabilities with the expected ones.

A tampered or truncated file, a runtime that computes differently, or preprocessing
that drifted from training's all fail step 3.
"""

from __future__ import annotations

import time

import numpy as np

from .backends import load_backend
from .metadata import read_selftest
from .preprocess import WindowPreparer


def run_selftest(model, config=None, atol: float | None = None) -> dict:
    """Check ``model``; return ``{"ok": bool, "lines": [str], "max_diff": float}``.

    Raises
    ------
    ValueError
        The model cannot be loaded or its graph disagrees with its metadata.
    """
    lines = []
    backend = load_backend(model, threads=getattr(config, "threads", 1))
    meta = backend.metadata
    lines.append(f"ok   load: {meta.model} {getattr(meta, 'model_version', '') or meta.version}, classes "
                 f"{meta.classes}, input {meta.input_scheme}")
    lines.append("ok   graph matches metadata (input name, shape, type; output classes)")
    if config is not None:
        from .service import Pipeline

        Pipeline(backend, config)
        lines.append(f"ok   configuration: station {config.station}, sensor {config.sensor}, "
                     f"step {config.step_s} s")
    test, where = read_selftest(meta, model)
    if test is None:
        lines.append(f"FAIL no stored self-test in {model} or beside it (MODEL.selftest.json, "
                     "selftest.json); re-export the model with `python -m host_training export`")
        return {"ok": False, "lines": lines, "max_diff": float("nan")}
    try:
        window = np.asarray(test["window"], dtype=np.float64)
        rate = float(test["sampling_rate_hz"])
        expected = np.asarray(test["probs"], dtype=np.float64)
        tol = float(atol if atol is not None else test.get("atol", 1e-3))
    except (KeyError, TypeError, ValueError) as exc:
        lines.append(f"FAIL self-test in {where} is malformed ({exc})")
        return {"ok": False, "lines": lines, "max_diff": float("nan")}
    if window.ndim != 2 or window.shape[0] != len(meta.components) or expected.shape != (len(meta.classes),):
        lines.append(f"FAIL self-test in {where} has window {window.shape} and {expected.size} "
                     "probabilities; "
                     f"the model has {len(meta.components)} components and {len(meta.classes)} classes")
        return {"ok": False, "lines": lines, "max_diff": float("nan")}
    prepare = WindowPreparer(meta.preprocess_config())
    int16, _ = prepare(window[None], rate)
    probs = backend.predict(int16)[0]
    diff = float(np.max(np.abs(probs - expected)))
    ok = bool(np.all(np.isfinite(probs))) and diff <= tol
    shown = ", ".join(f"{c} {p:.4f}" for c, p in zip(meta.classes, probs, strict=True))
    want = ", ".join(f"{c} {p:.4f}" for c, p in zip(meta.classes, expected, strict=True))
    lines.append(f"{'ok  ' if ok else 'FAIL'} self-test window ({where}): got {shown}; expected {want}; "
                 f"max |diff| {diff:.2e} (tolerance {tol:.0e})")
    times = []
    for _ in range(50):
        t = time.perf_counter()
        backend.predict(prepare(window[None], rate)[0])
        times.append(time.perf_counter() - t)
    lines.append(f"info per-window path (preprocess + model) p50 {np.median(times) * 1e6:.0f} us on this "
                 "machine")
    lines.append("PASS" if ok else "FAIL: this node must not run this model")
    return {"ok": ok, "lines": lines, "max_diff": diff}
