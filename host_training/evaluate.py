"""Classification metrics (plain numpy, so the same code scores ONNX and torch outputs)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def classification_report(y_true, y_pred, classes) -> dict:
    """Accuracy, confusion matrix and per-class precision, recall and F1."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    return {
        "n": int(cm.sum()),
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "classes": list(classes),
        "confusion": cm.tolist(),
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f),
                          "support": int(s)}
                      for c, p, r, f, s in zip(classes, precision, recall, f1, cm.sum(1), strict=True)},
    }


def predict_torch(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits of a torch model for a numpy batch, as numpy."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(torch.as_tensor(x[i:i + batch_size])).numpy())
    return np.concatenate(out)
