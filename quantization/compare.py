"""Compare a quantized variant with its float reference on a dataset split.

Both models are fed as the node feeds them (each according to its own metadata: int16
counts or float windows, onnxruntime or LiteRT), and two different numbers come out:

- agreement: the fraction of windows where the two models pick the same class;
- accuracy: the fraction of windows each model classifies correctly (labels of the set).

Agreement is not accuracy: 99 % agreement allows the variant to lose up to 1 pp of
accuracy (or gain it); both are printed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.backends import load_backend
from edge_runtime.preprocess import amplitude_ok, prepare_windows

from .files import ModelFileError


def _is_float_reference(backend) -> bool:
    meta = backend.metadata
    return meta.input_scheme == "float_maxabs" and not meta.extra.get("quantization") \
        and backend.runtime == "onnxruntime"


def compare_models(reference, candidate, dataset, split: str = "test") -> dict:
    """Agreement of ``candidate`` with ``reference`` and the accuracy of each.

    Parameters
    ----------
    reference : str or Path
        The float ONNX model (first, as exported).
    candidate : str or Path
        A variant of it (int16, static, dynamic, ``.tflite``).
    dataset : WindowDataset
        Labelled windows; ``split`` is used.

    Returns
    -------
    dict
        ``n``, ``agreement``, ``accuracy_reference``, ``accuracy_candidate``,
        ``accuracy_delta_pp`` and ``max_abs_logit_diff``.
    """
    ref, cand = load_backend(reference), load_backend(candidate)
    if not _is_float_reference(ref):
        if _is_float_reference(cand):
            raise ModelFileError(f"models in the wrong order: {reference} is a variant and {candidate} "
                                 "the float model; give the float reference first")
        raise ModelFileError(f"{reference}: not a float ONNX model; the reference must be the float export")
    if cand.metadata.model != ref.metadata.model:
        raise ModelFileError(f"{candidate}: a {cand.metadata.model} model, but the reference "
                             f"{reference} is {ref.metadata.model}")
    if cand.classes != ref.classes:
        raise ModelFileError(f"{candidate}: classes {cand.classes} differ from the reference's {ref.classes}")
    part = dataset.split(split)
    if len(part) == 0:
        raise ValueError(f"the dataset has no '{split}' windows")
    labels = {str(v) for v in part.column("label")}
    if not labels <= set(ref.classes):
        raise ValueError(f"split {split!r} has labels {sorted(labels)}, the models classify {ref.classes}")
    int16, peak = prepare_windows(part.waveforms, part.sampling_rate_hz, ref.metadata.preprocess_config())
    keep = amplitude_ok(peak)
    if not keep.any():
        raise ValueError(f"no '{split}' window passes the amplitude limits")
    y = part.labels(ref.classes)[keep]
    a, b = ref.logits(int16[keep]), cand.logits(int16[keep])
    acc_a, acc_b = float((a.argmax(1) == y).mean()), float((b.argmax(1) == y).mean())
    return {"reference": Path(reference).name, "candidate": Path(candidate).name, "n": int(len(y)),
            "agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "accuracy_reference": acc_a, "accuracy_candidate": acc_b,
            "accuracy_delta_pp": 100 * (acc_b - acc_a),
            "max_abs_logit_diff": float(np.abs(np.asarray(a) - np.asarray(b)).max())}
