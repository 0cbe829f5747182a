"""Supervised training of the seed CNNs (CPU is enough for EarthquakeCNN)."""

from __future__ import annotations

import copy
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimizer and schedule; the defaults are the seed's (Adam 1e-3, StepLR(7, 0.5)).

    Attributes
    ----------
    epochs : int
    batch_size : int
    lr : float
        Initial learning rate.
    step_size, gamma : int, float
        StepLR: multiply the learning rate by ``gamma`` every ``step_size`` epochs.
    seed : int
        Seeds torch, numpy and Python's random; batches are shuffled from it.
    threads : int
        Torch intra-op threads (0: leave torch's default).
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    step_size: int = 7
    gamma: float = 0.5
    seed: int = 0
    threads: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may still draw from the legacy global
    torch.manual_seed(seed)


def _accuracy(model, x, y, batch_size=1024) -> tuple[float, float]:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size])
            loss += float(loss_fn(logits, y[i:i + batch_size]))
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1), loss / max(len(x), 1)


def train(model: nn.Module, x_train, y_train, x_val, y_val, config: TrainConfig | None = None,
          progress: bool = True) -> dict:
    """Train ``model`` in place; keep the weights of the best validation accuracy.

    Parameters
    ----------
    x_train, x_val : numpy.ndarray
        Model inputs, e.g. ``(N, 1, 80, 3)`` float32.
    y_train, y_val : numpy.ndarray
        Integer class indices.

    Returns
    -------
    dict
        ``history`` (per-epoch loss/accuracy), ``best_epoch``, ``best_val_accuracy``.
    """
    from tqdm import tqdm

    config = config or TrainConfig()
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    xt, yt = torch.as_tensor(x_train), torch.as_tensor(y_train)
    xv, yv = torch.as_tensor(x_val), torch.as_tensor(y_val)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)
    history, best = [], (-1.0, 0, None)
    bar = tqdm(range(1, config.epochs + 1), desc="training", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total, seen, correct = 0.0, 0, 0
        for i in range(0, len(xt), config.batch_size):
            idx = order[i:i + config.batch_size]
            optimizer.zero_grad()
            logits = model(xt[idx])
            loss = loss_fn(logits, yt[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(1) == yt[idx]).sum())
        scheduler.step()
        val_acc, val_loss = _accuracy(model, xv, yv)
        history.append(dict(epoch=epoch, train_loss=total / seen, train_accuracy=correct / seen,
                            val_loss=val_loss, val_accuracy=val_acc,
                            lr=optimizer.param_groups[0]["lr"]))
        bar.set_postfix(loss=f"{total / seen:.3f}", val_acc=f"{val_acc:.3f}")
        if val_acc > best[0]:
            best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    return dict(history=history, best_epoch=best[1], best_val_accuracy=best[0])


def save_checkpoint(path, model: nn.Module, model_name: str, classes, preprocess: dict,
                    config: TrainConfig, extra: dict | None = None) -> Path:
    """Weights plus everything export needs; a JSON of the config is written beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = dict(model=model_name, classes=list(classes), preprocess=preprocess,
                train_config=config.to_dict(), extra=extra or {})
    torch.save(dict(state_dict=model.state_dict(), **info), path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    return path


def load_checkpoint(path):
    """Model (eval mode) and the info dict saved by :func:`save_checkpoint`."""
    from .models import MODELS

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = MODELS[ckpt["model"]]()
    model.load_state_dict(ckpt.pop("state_dict"))
    model.eval()
    return model, ckpt
