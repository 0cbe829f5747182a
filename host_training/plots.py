"""Figures, each saved as PNG next to a JSON of the numbers it shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, numbers, dpi: int = 110, indent: int | None = 2, tight: bool = True) -> Path:
    """Write ``fig`` as PNG to ``path`` and ``numbers`` as JSON beside it; close the figure.

    ``tight``: fit the margins to the labels (``tight_layout``, most of the drawing time of a
    simple figure); False keeps the margins the figure already has.
    """
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(numbers, indent=indent))
    return path


def plot_history(history: list, path) -> Path:
    """Loss and accuracy per epoch (train and validation)."""
    plt = _figure()
    path = Path(path)
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    ax2.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    return _save(plt, fig, path, history)


def plot_confusion(report: dict, path, title: str = "") -> Path:
    """Confusion matrix (rows true, columns predicted) with counts."""
    plt = _figure()
    path = Path(path)
    cm = np.array(report["confusion"])
    classes = report["classes"]
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {report['accuracy']:.3f} (n={report['n']})")
    return _save(plt, fig, path, report)


def plot_curves(curves: dict, path, kind: str = "roc") -> Path:
    """One-vs-rest ROC (``kind='roc'``) or precision-recall (``kind='pr'``) curves, one per class."""
    plt = _figure()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    for name, c in curves.items():
        if kind == "roc":
            if c["auc"] is not None:
                ax.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.3f})")
        elif c["average_precision"] is not None:
            ax.plot(c["recall"], c["precision"], label=f"{name} (AP {c['average_precision']:.3f})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls=":", color="grey")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return _save(plt, fig, path, curves, indent=None)


def plot_reliability(rel: dict, path) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal."""
    plt = _figure()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    bins = rel["bins"]
    centers = [(b["low"] + b["high"]) / 2 for b in bins]
    ax.bar(centers, [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
           edgecolor="k", alpha=0.6, label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="C1",
            label="mean confidence")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE {rel['ece']:.4f}")
    ax.legend(fontsize=8)
    return _save(plt, fig, path, rel)


def plot_windows(x, rows: list, path) -> Path:
    """Model inputs of some windows (e.g. the worst misclassified), one panel per window.

    ``x`` is ``(N, 1, n_samples, 3)`` (components E, N, Z along the last axis) or
    ``(N, 3, H, W)`` images; ``rows`` gives each panel's title facts.
    """
    plt = _figure()
    path = Path(path)
    x = np.asarray(x)
    n = len(x)
    cols = min(n, 4)
    nrows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    for ax, xi, row in zip(axes.flat, x, rows, strict=False):
        if xi.ndim == 3 and xi.shape[0] == 1:
            t = np.arange(xi.shape[1])
            for k, comp in enumerate(("E", "N", "Z")[: xi.shape[2]]):
                ax.plot(t, xi[0, :, k] + 2.2 * (2 - k), lw=0.8, label=comp)
            ax.set_yticks([])
            ax.set_xlabel("sample (40 Hz)")
        else:
            ax.imshow(xi[0], aspect="auto", cmap="gray", origin="lower")
        title = f"true {row['true']} -> {row['predicted']} ({row['confidence']:.2f})"
        if row.get("record"):
            title += f"\n{row['record']}"
        ax.set_title(title, fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return _save(plt, fig, path, rows, dpi=100)
