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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(history, indent=2))
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return path
