"""One evaluator for every variant of a model: torch checkpoints and ONNX files alike.

Every variant is judged on the same windows of the same split: a torch checkpoint on the
inputs made by :mod:`edge_runtime.preprocess`, an ONNX model (float, int16-input or
quantized; LiteRT ``.tflite``) through the node's own backend
(:func:`edge_runtime.backends.load_backend`), fed as the node feeds it. Windows outside the
seed's amplitude limits are dropped, as on the node, and counted.

Public API (also used by ``python -m quantization``)::

    from host_training.evaluate import evaluate
    metrics = evaluate("model.onnx", "runs/data", split="test", out="runs/eval")

``metrics`` is the dict written to ``out/metrics.json``: accuracy, balanced accuracy,
per-class precision / recall / F1, confusion matrix, P<->S confusion, ROC AUC and average
precision per class, expected calibration error, the worst misclassified windows.
Metric functions are plain numpy on arrays (``classification_report``, ``roc_curve``, ...).

Which files it opens is decided once, for the node, by :data:`edge_runtime.backends.RUNTIMES`
(plus ``.pt`` / ``.pth`` torch checkpoints); a new runtime registered there is evaluated here
with no change.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge_runtime.backends import RUNTIMES, load_backend, runtime_for, softmax
from edge_runtime.kinds import get_kind

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ metrics


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def classification_report(y_true, y_pred, classes) -> dict:
    """Accuracy, balanced accuracy, confusion matrix and per-class precision, recall and F1."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0
    )
    present = cm.sum(1) > 0
    return {
        "n": int(cm.sum()),
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "classes": list(classes),
        "confusion": cm.tolist(),
        "per_class": {
            c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, cm.sum(1), strict=True)
        },
    }


def phase_confusion(cm, classes) -> dict | None:
    """P<->S confusion, the original's weak point, reported on its own.

    Returns
    -------
    dict or None
        ``P_as_S`` and ``S_as_P`` counts, ``rate`` = (P_as_S + S_as_P) / (P + S windows), and the
        accuracy of the P-versus-S decision among windows that are P or S and predicted P or S.
        None for a model without P and S classes.
    """
    if "P" not in classes or "S" not in classes:
        return None
    cm = np.asarray(cm)
    p, s = list(classes).index("P"), list(classes).index("S")
    n_ps = int(cm[p].sum() + cm[s].sum())
    decided = int(cm[p, p] + cm[p, s] + cm[s, p] + cm[s, s])
    return {
        "P_as_S": int(cm[p, s]),
        "S_as_P": int(cm[s, p]),
        "P_S_windows": n_ps,
        "rate": float((cm[p, s] + cm[s, p]) / max(n_ps, 1)),
        "P_vs_S_accuracy": float((cm[p, p] + cm[s, s]) / max(decided, 1)),
    }


def _counts_at_thresholds(is_pos: np.ndarray, score: np.ndarray):
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], is_pos[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    return tps, fps, s[last]


def roc_curve(is_pos, score) -> dict:
    """One-vs-rest ROC: false and true positive rates at every distinct score, and the AUC."""
    is_pos, score = np.asarray(is_pos, bool), np.asarray(score, float)
    n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
    if n_pos == 0 or n_neg == 0:
        return {"fpr": [], "tpr": [], "auc": None}
    tps, fps, _ = _counts_at_thresholds(is_pos, score)
    tpr, fpr = np.r_[0.0, tps / n_pos], np.r_[0.0, fps / n_neg]
    return {"fpr": fpr, "tpr": tpr, "auc": float(np.trapezoid(tpr, fpr))}


def precision_recall_curve(is_pos, score) -> dict:
    """Precision and recall at every distinct score, and the average precision (step rule)."""
    is_pos, score = np.asarray(is_pos, bool), np.asarray(score, float)
    n_pos = int(is_pos.sum())
    if n_pos == 0:
        return {"recall": [], "precision": [], "average_precision": None}
    tps, fps, _ = _counts_at_thresholds(is_pos, score)
    precision, recall = tps / (tps + fps), tps / n_pos
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {"recall": np.r_[0.0, recall], "precision": np.r_[1.0, precision], "average_precision": ap}


def reliability(probs, y_true, n_bins: int = 10) -> dict:
    """Confidence (max probability) against accuracy in equal-width bins; expected calibration error."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    conf, correct = probs.max(1), (probs.argmax(1) == y_true)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = which == b
        if m.any():
            bins.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": int(m.sum()),
                    "confidence": float(conf[m].mean()),
                    "accuracy": float(correct[m].mean()),
                }
            )
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return {"bins": bins, "ece": float(ece)}


def worst_misclassified(probs, y_true, n: int = 8) -> list:
    """Indices of the ``n`` wrong predictions made with the highest confidence."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    wrong = np.flatnonzero(probs.argmax(1) != y_true)
    order = np.argsort(-probs[wrong].max(1), kind="mergesort")
    return wrong[order[:n]].tolist()


def _thin(curve: np.ndarray, n: int = 200) -> list:
    curve = np.asarray(curve, float)
    if len(curve) <= n:
        return np.round(curve, 6).tolist()
    return np.round(curve[np.unique(np.linspace(0, len(curve) - 1, n).round().astype(int))], 6).tolist()


def predict_torch(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits of a torch model for a numpy batch, as numpy (on the model's device)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(torch.as_tensor(x[i : i + batch_size]).to(device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def score(probs, y_true, classes) -> tuple[dict, dict]:
    """All metrics of class probabilities against true classes.

    Returns
    -------
    metrics : dict
        Scalars and small tables (what ``metrics.json`` holds).
    curves : dict
        ROC and precision-recall curves and reliability bins, per class.
    """
    probs, y_true = np.asarray(probs, float), np.asarray(y_true)
    report = classification_report(y_true, probs.argmax(1), classes)
    roc = {c: roc_curve(y_true == k, probs[:, k]) for k, c in enumerate(classes)}
    pr = {c: precision_recall_curve(y_true == k, probs[:, k]) for k, c in enumerate(classes)}
    rel = reliability(probs, y_true)
    for c in classes:
        report["per_class"][c]["roc_auc"] = roc[c]["auc"]
        report["per_class"][c]["average_precision"] = pr[c]["average_precision"]
    report["phase_confusion"] = phase_confusion(report["confusion"], classes)
    report["ece"] = rel["ece"]
    curves = {
        "roc": {c: {"fpr": _thin(v["fpr"]), "tpr": _thin(v["tpr"]), "auc": v["auc"]} for c, v in roc.items()},
        "pr": {
            c: {
                "recall": _thin(v["recall"]),
                "precision": _thin(v["precision"]),
                "average_precision": v["average_precision"],
            }
            for c, v in pr.items()
        },
        "reliability": rel,
    }
    return report, curves


# ------------------------------------------------------------------------------ backends


class TorchPredictor:
    """A ``.pt`` checkpoint, run by torch on the inputs :mod:`edge_runtime.preprocess` makes."""

    kind = "torch"

    def __init__(self, path):
        from .checkpoints import load_checkpoint

        self.path = Path(path)
        self.model, self.info = load_checkpoint(self.path)
        self.model_name = self.info["model"]
        self.classes = list(self.info["classes"])
        self.preprocess = self.info.get("preprocess") or {}
        self.input_scheme = "float_maxabs"

    def predict(self, part, folder):
        """``(probs, y, keep, x)`` for the windows of ``part`` that pass the amplitude limits."""
        from .datasets.splits import split_inputs

        x, y, keep = split_inputs(part, folder, self.model_name, self.preprocess)
        return softmax(predict_torch(self.model, x).astype(np.float64)), y, keep, x


class OnnxPredictor:
    """An exported model (ONNX float, int16-input or quantized; LiteRT ``.tflite``; any runtime
    of :data:`edge_runtime.backends.RUNTIMES`) run as the node runs it, through the node's own
    backend (:func:`edge_runtime.backends.load_backend`)."""

    def __init__(self, path):
        self.path = Path(path)
        self.kind = runtime_for(self.path).label
        self.backend = load_backend(self.path)
        meta = self.backend.metadata
        self.model_name = meta.model
        self.classes = list(meta.classes)
        self.preprocess = dict(meta.preprocess)
        self.input_scheme = meta.input_scheme

    def predict(self, part, folder):
        from edge_runtime.preprocess import PreprocessConfig, amplitude_ok, prepare_windows, to_model_input

        from .datasets.splits import split_inputs

        if get_kind(self.model_name, str(self.path)).stage != "window":
            # Record-level models: same inputs as torch gets, straight into the runtime.
            x, y, keep = split_inputs(part, folder, self.model_name, self.preprocess)
            logits = self.backend.run(x.astype(np.float32))
            return softmax(np.asarray(logits, np.float64)), y, keep, x
        _check_labels(part, folder, self.model_name, self.classes)
        config = PreprocessConfig(**self.preprocess)
        int16, peak = prepare_windows(part.waveforms, part.sampling_rate_hz, config)
        keep = amplitude_ok(peak)
        probs = (
            np.concatenate(
                [self.backend.predict(int16[keep][i : i + 1024]) for i in range(0, int(keep.sum()), 1024)]
            )
            if keep.any()
            else np.zeros((0, len(self.classes)))
        )
        return probs, part.labels(self.classes)[keep], keep, to_model_input(int16[keep])


def _check_labels(part, folder, model_name, classes):
    from .datasets.splits import DataError

    labels = sorted({str(v) for v in part.column("label")})
    foreign = [lab for lab in labels if lab not in classes]
    if foreign:
        raise DataError(
            f"{Path(folder) / 'metadata.csv'}: labels {labels} do not fit {model_name}, "
            f"which classifies {list(classes)}"
        )


# Torch checkpoints, and every file a node runtime opens.
BACKENDS = {".pt": TorchPredictor, ".pth": TorchPredictor, **{suffix: OnnxPredictor for suffix in RUNTIMES}}


def load_predictor(path):
    """The predictor for a checkpoint or exported model, chosen by file suffix."""
    from .checkpoints import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    loader = BACKENDS.get(path.suffix.lower())
    if loader is None:
        raise CheckpointError(
            f"{path}: unknown model file type {path.suffix!r}; expected one of {', '.join(sorted(BACKENDS))}"
        )
    return loader(path)


# ------------------------------------------------------------------------------ evaluation


def evaluate(model, data, split: str = "test", out=None, n_worst: int = 8, plots: bool = True) -> dict:
    """Score a checkpoint or exported model on one split of a dataset folder.

    Parameters
    ----------
    model : str or Path
        ``.pt`` checkpoint or ``.onnx`` model (any :data:`BACKENDS` suffix).
    data : str or Path
        Dataset folder (``waveforms.hdf5`` + ``metadata.csv``).
    split : str
        ``train``, ``val`` or ``test``.
    out : str or Path, optional
        Folder for ``metrics.json``, ``curves.json`` and the figures (confusion, ROC,
        precision-recall, reliability, worst misclassified windows).
    n_worst : int
        Number of worst misclassified windows to plot.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    from .datasets.splits import open_dataset, select_split

    predictor = load_predictor(model)
    part = select_split(open_dataset(data), data, split)
    probs, y, keep, x = predictor.predict(part, data)
    if len(y) == 0:
        from .datasets.splits import DataError

        raise DataError(f"{data}: no window of split {split!r} passes the amplitude limits")
    kept_rows = [part.metadata[i] for i in np.flatnonzero(keep)]
    metrics = _score_and_write(
        probs,
        y,
        predictor.classes,
        out,
        n_worst,
        plots,
        x=x,
        rows=kept_rows,
        header=dict(
            model=str(model),
            backend=predictor.kind,
            model_name=predictor.model_name,
            input_scheme=predictor.input_scheme,
            data=str(data),
            split=split,
            dropped=int((~keep).sum()),
        ),
    )
    return metrics


def evaluate_arrays(model, x, y, classes, out=None, part=None, n_worst: int = 8) -> dict:
    """:func:`evaluate` for a torch model already in memory and its prepared inputs."""
    probs = softmax(predict_torch(model, x).astype(np.float64))
    return _score_and_write(
        probs,
        y,
        list(classes),
        out,
        n_worst,
        True,
        x=x,
        rows=part,
        header=dict(backend="torch", model_name=type(model).__name__),
    )


def _score_and_write(probs, y, classes, out, n_worst, plots, x=None, rows=None, header=None) -> dict:
    metrics, curves = score(probs, y, classes)
    worst = worst_misclassified(probs, y, n_worst)
    metrics["worst"] = [
        dict(
            index=int(i),
            true=classes[int(y[i])],
            predicted=classes[int(probs[i].argmax())],
            confidence=float(probs[i].max()),
            **({k: rows[i].get(k) for k in ROW_FIELDS if rows[i].get(k) not in (None, "")} if rows else {}),
        )
        for i in worst
    ]
    if rows:
        metrics["by"] = grouped_accuracy(probs, y, classes, rows)
    metrics = {**(header or {}), **metrics}
    if out is not None:
        from . import plots as figs

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (out / "curves.json").write_text(json.dumps(curves, indent=2))
        if rows:
            write_predictions(out / "predictions.csv", probs, y, classes, rows)
        if plots:
            figs.plot_confusion(metrics, out / "confusion.png")
            figs.plot_curves(curves["roc"], out / "roc.png", "roc")
            figs.plot_curves(curves["pr"], out / "precision_recall.png", "pr")
            figs.plot_reliability(curves["reliability"], out / "reliability.png")
            if x is not None and worst:
                figs.plot_windows(x[worst], metrics["worst"], out / "worst_misclassified.png")
    return metrics


GROUP_FIELDS = (
    "channels",
    "sensor",
    "source",
    "dead_mode",
    "pick_source",
    "station_code",
    "trace_component_order",
)


def grouped_accuracy(probs, y, classes, rows, fields=GROUP_FIELDS, max_groups: int = 40) -> dict:
    """Accuracy and P<->S confusion per value of each metadata column in ``fields``.

    Where a model fails matters as much as how often: by recorded components, by sensor,
    by noise source, by pick source. Columns absent, constant or with more than
    ``max_groups`` values are left out.
    """
    pred = np.asarray(probs).argmax(1)
    y = np.asarray(y)
    out = {}
    for field in fields:
        values = np.array([str(r.get(field) or "") for r in rows])
        distinct = sorted(set(values.tolist()))
        if len(distinct) < 2 or len(distinct) > max_groups:
            continue
        table = {}
        for v in distinct:
            m = values == v
            cm = confusion_matrix(y[m], pred[m], len(classes))
            ps = phase_confusion(cm, classes)
            table[v or "(none)"] = {
                "n": int(m.sum()),
                "accuracy": float((pred[m] == y[m]).mean()),
                **({"P_S_rate": ps["rate"]} if ps and ps["P_S_windows"] else {}),
            }
        out[field] = table
    return out


ROW_FIELDS = (
    "trace_name",
    "record",
    "source_id",
    "station_code",
    "station",
    "source",
    "pick_source",
    "center_s",
    "trace_p_arrival_sample",
    "trace_s_arrival_sample",
)


def write_predictions(path, probs, y, classes, rows) -> Path:
    """One line per window: where it comes from, its label, the predicted class and every probability.

    On real records this is the per-window view around the arrivals (``pick_source`` says where
    the label's pick came from: header, TauP or STA/LTA).
    """
    import csv

    path = Path(path)
    fields = [k for k in ROW_FIELDS if any(r.get(k) not in (None, "") for r in rows)]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*fields, "true", "predicted", "confidence", *[f"p_{c}" for c in classes]])
        for row, p, t in zip(rows, probs, y, strict=True):
            writer.writerow(
                [
                    *(row.get(k, "") for k in fields),
                    classes[int(t)],
                    classes[int(p.argmax())],
                    f"{p.max():.4f}",
                    *(f"{v:.4f}" for v in p),
                ]
            )
    return path


def format_metrics(metrics: dict) -> str:
    """A short table: accuracy, per-class precision / recall / F1, P<->S confusion."""
    lines = [
        f"{metrics.get('model', metrics.get('model_name', 'model'))}: accuracy {metrics['accuracy']:.4f}, "
        f"balanced {metrics['balanced_accuracy']:.4f} on {metrics['n']} windows"
        + (f" ({metrics['dropped']} dropped outside amplitude limits)" if metrics.get("dropped") else ""),
        f"{'class':>14} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}",
    ]
    for c, r in metrics["per_class"].items():
        lines.append(f"{c:>14} {r['precision']:9.4f} {r['recall']:7.4f} {r['f1']:7.4f} {r['support']:8d}")
    lines.append(
        "confusion (rows true, columns predicted "
        + ", ".join(metrics["classes"])
        + "): "
        + str(metrics["confusion"])
    )
    for field, table in (metrics.get("by") or {}).items():
        if field in ("channels", "sensor", "source"):
            lines.append(
                f"by {field}: " + ", ".join(f"{k} {v['accuracy']:.3f} (n={v['n']})" for k, v in table.items())
            )
    ps = metrics.get("phase_confusion")
    if ps:
        lines.append(
            f"P<->S: {ps['P_as_S']} P as S, {ps['S_as_P']} S as P of {ps['P_S_windows']} "
            f"P/S windows (rate {ps['rate']:.4f})"
        )
    return "\n".join(lines)
