"""Torch checkpoints: written atomically, read with ``weights_only=True``, loaded as models.

A checkpoint holds tensors and plain containers only, so it loads with
``torch.load(..., weights_only=True)``: a checkpoint file is never allowed to run code.
``best.pt`` (kind ``model``) holds the weights and what export and evaluation need (model
kind, classes, preprocessing, training settings); ``checkpoints/epoch_NNN.pt`` (kind
``epoch``) also the optimizer, scheduler and RNG state a resumed run needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a tensor is touched: quantization reads CheckpointError
    from torch import nn

CHECKPOINT_FORMAT = 2


class CheckpointError(ValueError):
    """A file that is not a SeismicTorch checkpoint."""


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary name, then renamed: a checkpoint file is always whole."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cpu_state(model: nn.Module) -> dict:
    """A copy of the model's state dict on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def plain(obj):
    """JSON round trip: only containers of str/int/float/bool/None reach torch.save."""
    return json.loads(json.dumps(obj, default=str))


def latest_checkpoint(folder) -> Path | None:
    """The newest ``epoch_NNN.pt`` in ``folder``, None when there is none."""
    files = sorted(Path(folder).glob("epoch_*.pt")) if folder and Path(folder).is_dir() else []
    return files[-1] if files else None


def save_checkpoint(path, model: nn.Module, model_name: str, classes, preprocess: dict, config,
                    extra: dict | None = None) -> Path:
    """The weights plus everything export and evaluate need; a JSON of the same facts beside it.

    ``config`` is the run's :class:`~host_training.train.TrainConfig`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = dict(
        format=CHECKPOINT_FORMAT,
        kind="model",
        model=model_name,
        classes=list(classes),
        preprocess=preprocess,
        train_config=config.to_dict(),
        extra=extra or {},
    )
    save_atomic(dict(state_dict=cpu_state(model), **plain(info)), path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    return path


def read_checkpoint(path) -> dict:
    """Load a checkpoint with ``weights_only=True``; one-line :class:`CheckpointError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix.lower() in (".onnx", ".tflite") or head[:1] == b"\x08":
        raise CheckpointError(
            f"{path}: this is an exported model, not a torch checkpoint "
            "(.pt written by `python -m host_training train`)"
        )
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a SeismicTorch checkpoint (.pt written by "
            f"`python -m host_training train`): {first[:160]}"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise CheckpointError(
            f"{path}: a torch file but not a SeismicTorch checkpoint (no 'model' and 'state_dict' entries)"
        )
    return ckpt


def load_checkpoint(path):
    """Model (eval mode, CPU) and the info dict saved by :func:`save_checkpoint`.

    Epoch checkpoints (``checkpoints/epoch_NNN.pt``) load too, with their current weights.
    """
    from .models import MODELS

    ckpt = read_checkpoint(path)
    if ckpt["model"] not in MODELS:
        raise CheckpointError(f"{path}: unknown model {ckpt['model']!r}; known: {sorted(MODELS)}")
    model = MODELS[ckpt["model"]]()
    try:
        model.load_state_dict(ckpt.pop("state_dict"))
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit {ckpt['model']} ({str(exc).splitlines()[0][:120]})"
        ) from None
    model.eval()
    for key in ("optimizer", "scheduler", "rng", "best_state_dict"):
        ckpt.pop(key, None)
    return model, ckpt
