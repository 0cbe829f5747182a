"""Supervised training of the seed CNNs: seeded, resumable, early-stopped, optionally distributed.

The defaults are the original's recipe (Adam, lr 1e-3, StepLR(7, 0.5), batch 256, 50
epochs); the alternatives (AdamW, SGD, cosine schedule, no schedule) are options. One loop
serves a single process and ``torchrun`` with :class:`~torch.nn.parallel.DistributedDataParallel`:
batches are drawn by :class:`~torch.utils.data.DistributedSampler` in both cases (with one
replica when not distributed), so a run on two processes sees, per step, the same windows as a
run on one process with the same global batch size.

A run folder holds, after every epoch, ``checkpoints/epoch_NNN.pt`` (model, optimizer,
scheduler, RNG state, history: everything :func:`train` needs to resume) and, at the end,
``best.pt`` (the weights of the lowest validation loss) with ``train_summary.json``.
Checkpoints hold tensors and plain containers only, so they load with
``torch.load(..., weights_only=True)``: a checkpoint file is never allowed to run code.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.atomic import write_text_atomically
from edge_runtime.kinds import KINDS

from .checkpoints import (
    CHECKPOINT_FORMAT,
    cpu_state,
    latest_checkpoint,
    load_checkpoint,
    plain,
    read_checkpoint,
    save_atomic,
    save_checkpoint,
)
from .datasets.splits import DataError, data_card_hash, open_dataset, select_split, split_inputs, split_name

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("step", "cosine", "none")
BALANCING = ("none", "weights", "sampler")
FREEZE = ("none", "conv")
class ChanceLevelError(RuntimeError):
    """Validation accuracy stayed near chance."""


class RunFolderError(ValueError):
    """An ``--out`` that holds another run, or a checkpoint of another run's model or data."""


@dataclass
class TrainConfig:
    """Optimizer, schedule, stopping and sampling of a training run.

    The defaults are the seed's recipe: Adam, lr 1e-3, StepLR(step 7, gamma 0.5), batch 256,
    50 epochs; early stopping and class weights are this project's additions.

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Global batch size (divided among the processes of a distributed run).
    optimizer : str
        One of :data:`OPTIMIZERS`.
    lr : float
        Initial learning rate.
    weight_decay : float
        L2 penalty (decoupled for AdamW).
    momentum : float
        SGD momentum.
    scheduler : str
        One of :data:`SCHEDULERS`: ``step`` multiplies the learning rate by ``gamma`` every
        ``step_size`` epochs; ``cosine`` anneals it to 0 over ``epochs``.
    step_size, gamma : int, float
        StepLR parameters.
    patience : int
        Stop when the validation loss has not improved by more than ``min_delta`` for this
        many epochs (0: never stop early).
    min_delta : float
        Smallest validation loss decrease counted as an improvement.
    balance : str
        One of :data:`BALANCING`: ``weights`` weighs the loss by inverse class frequency,
        ``sampler`` draws training windows with replacement so classes come equally often
        (single process only).
    freeze : str
        One of :data:`FREEZE`: ``conv`` keeps the three convolutional blocks (conv + batch
        norm) fixed and trains the dense layers only (finetuning).
    augment : list of str
        Names of the augmentations applied to training batches (see :mod:`host_training.datasets.augment`).
    seed : int
        Seeds initialization order, batches, dropout and augmentation.
    threads : int
        Torch intra-op threads (0: leave torch's default).
    device : str
        ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
    chance_margin : float
        A run whose best validation balanced accuracy is below ``1 / n_classes + chance_margin``
        is flagged as chance level.
    """

    epochs: int = 50
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "step"
    step_size: int = 7
    gamma: float = 0.5
    patience: int = 10
    min_delta: float = 0.0
    balance: str = "weights"
    freeze: str = "none"
    augment: list = field(default_factory=list)
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    chance_margin: float = 0.1

    def __post_init__(self):
        checks = [
            ("epochs", self.epochs >= 1),
            ("batch_size", self.batch_size >= 1),
            ("lr", self.lr > 0),
            ("step_size", self.step_size >= 1),
            ("gamma", self.gamma > 0),
            ("patience", self.patience >= 0),
            ("weight_decay", self.weight_decay >= 0),
            ("optimizer", self.optimizer in OPTIMIZERS),
            ("scheduler", self.scheduler in SCHEDULERS),
            ("balance", self.balance in BALANCING),
            ("freeze", self.freeze in FREEZE),
            ("device", self.device in ("auto", "cpu", "cuda")),
            ("threads", self.threads >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"training setting {name}={getattr(self, name)!r} is not allowed")
        self.augment = list(self.augment)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may still draw from the legacy global
    torch.manual_seed(seed)
    # cuDNN picks among kernels by timing and some reduce in a racy order: fix both, so a
    # resumed CUDA run ends where an uninterrupted one does (cheap at these model sizes).
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the local CUDA device when present (``LOCAL_RANK`` under torchrun), else CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but torch sees no CUDA device")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


# ------------------------------------------------------------------------------ distributed


def distributed() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized process group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env(device: str = "auto") -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    Backend: NCCL when the run uses CUDA, gloo on CPU. Returns True when a group was joined.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return True


# ------------------------------------------------------------------------------ pieces


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency loss weights, mean 1 over the classes present (absent classes: 0)."""
    counts = np.bincount(np.asarray(y), minlength=n_classes).astype(float)
    w = np.divide(1.0, counts, out=np.zeros(n_classes), where=counts > 0)
    return w * (counts > 0).sum() / max(w.sum(), 1e-12)


def freeze_conv(model: nn.Module) -> list:
    """Fix the convolutional blocks (conv and batch-norm weights and running statistics).

    Returns the names of the frozen parameters. Batch norm of the frozen blocks is kept in
    eval mode by :func:`train` so its running statistics stay those of pretraining.
    """
    frozen = []
    for name, p in model.named_parameters():
        if name.split(".")[0].startswith(("conv", "bn")):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def _frozen_norms(model: nn.Module) -> list:
    return [
        m
        for n, m in model.named_children()
        if n.startswith("bn") and not any(p.requires_grad for p in m.parameters())
    ]


def make_optimizer(params, config: TrainConfig):
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_scheduler(optimizer, config: TrainConfig):
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def epoch_indices(
    n: int,
    epoch: int,
    config: TrainConfig,
    rank: int,
    world: int,
    y: np.ndarray | None = None,
    n_classes: int = 0,
) -> torch.Tensor:
    """Training window indices of one epoch for one process (seeded by seed and epoch)."""
    if config.balance == "sampler":
        # Equal class frequency: each window drawn with probability 1 / (n_classes * count).
        w = class_weights(y, n_classes)[np.asarray(y)]
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        return torch.multinomial(torch.as_tensor(w, dtype=torch.float64), n, replacement=True, generator=g)
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    sampler.set_epoch(epoch)
    return torch.as_tensor(list(sampler))


def evaluate_loss(model, x, y, weight=None, batch_size: int = 1024, device="cpu") -> dict:
    """Mean (weighted) cross-entropy, accuracy and balanced accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(weight=weight, reduction="sum")
    loss, norm, preds = 0.0, 0.0, []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i : i + batch_size]).to(device)
            yb = torch.as_tensor(y[i : i + batch_size]).to(device)
            logits = model(xb)
            loss += float(loss_fn(logits, yb))
            norm += float(weight[yb].sum()) if weight is not None else len(yb)
            preds.append(logits.argmax(1).cpu().numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, int)
    y = np.asarray(y)
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    return dict(
        loss=loss / max(norm, 1e-12),
        accuracy=float((pred == y).mean()) if len(y) else 0.0,
        balanced_accuracy=float(np.mean(recalls)) if recalls else 0.0,
    )


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------ the loop


@dataclass
class _Fit:
    """What the epoch loop of one run works on."""

    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: object
    scheduler: object
    loss_fn: nn.Module
    weight: torch.Tensor | None  # class weights of the loss, None when unweighted
    device: torch.device
    config: TrainConfig
    rank: int
    world: int
    n_classes: int


def _check_processes(config: TrainConfig, world: int) -> None:
    if config.balance == "sampler" and world > 1:
        raise ValueError(
            "balance 'sampler' draws with replacement in one process; "
            "use balance 'weights' with several processes"
        )
    if config.batch_size % world:
        raise ValueError(f"batch size {config.batch_size} is not divisible by {world} processes")


def _begin(model, config: TrainConfig, x_train, y_train, x_val, y_val, n_classes: int | None):
    """Seeded and checked start of a run: ``(fit, frozen parameter names, y_train, y_val)``."""
    rank, world = distributed()
    _check_processes(config, world)
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    n_classes = n_classes or (last[-1].out_features if last else int(max(np.max(y_train), np.max(y_val)) + 1))
    y_train, y_val = np.asarray(y_train, dtype=np.int64), np.asarray(y_val, dtype=np.int64)
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError(f"training needs windows in both splits (train {len(x_train)}, val {len(x_val)})")
    fit, frozen = _prepare_fit(model, config, device, rank, world, y_train, n_classes)
    return fit, frozen, y_train, y_val


def _prepare_fit(model, config: TrainConfig, device, rank: int, world: int, y_train,
                 n_classes: int) -> tuple[_Fit, list]:
    """The run's model on its device, optimizer, schedule and loss; the frozen parameter names."""
    model.to(device)
    frozen = freeze_conv(model) if config.freeze == "conv" else []
    weight = None
    if config.balance == "weights":
        weight = torch.as_tensor(class_weights(y_train, n_classes), dtype=torch.float32, device=device)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    scheduler = make_scheduler(optimizer, config)
    fit = _Fit(model, net, optimizer, scheduler, nn.CrossEntropyLoss(weight=weight), weight, device,
               config, rank, world, n_classes)
    return fit, frozen


def _start_state(fit: _Fit, ckpt_dir, resume: bool, info: dict) -> tuple[dict, int]:
    """``(state, first epoch)``: fresh, or restored from the newest epoch checkpoint (which must
    be one of this run: same model kind, data and settings)."""
    state = dict(history=[], best_loss=float("inf"), best_epoch=0, best_state=cpu_state(fit.model),
                 bad_epochs=0)
    if not resume:
        return state, 1
    last = latest_checkpoint(ckpt_dir) if ckpt_dir else None
    if last is None:
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoint to resume from")
    ckpt = read_checkpoint(last)
    _check_checkpoint_of_run(last, ckpt, info, fit.config)
    fit.model.load_state_dict(ckpt["state_dict"])
    fit.optimizer.load_state_dict(ckpt["optimizer"])
    fit.scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"])
    state = dict(
        history=ckpt["history"],
        best_loss=ckpt["best_loss"],
        best_epoch=ckpt["best_epoch"],
        best_state=ckpt["best_state_dict"],
        bad_epochs=ckpt["bad_epochs"],
    )
    log.info("resuming from %s (epoch %d done)", last, ckpt["epoch"])
    if state["bad_epochs"] >= fit.config.patience > 0:
        return state, fit.config.epochs + 1  # it had already stopped early
    return state, ckpt["epoch"] + 1


# Settings that do not change a run's result: a run may resume with other values.
_PLACE_SETTINGS = ("threads", "device")


def _settings(config: dict) -> dict:
    return {k: v for k, v in plain(config or {}).items() if k not in _PLACE_SETTINGS}


def _check_checkpoint_of_run(path: Path, ckpt: dict, info: dict, config: TrainConfig) -> None:
    """A :class:`RunFolderError` when the epoch checkpoint ``path`` is of another model kind,
    other data (its data card hash; the data folder when neither has a card) or other settings."""
    hint = "resume with that run's data and settings, or train into a new --out"
    if info.get("model") and ckpt.get("model") != info["model"]:
        raise RunFolderError(f"{path}: a checkpoint of {ckpt.get('model')}, this run trains {info['model']}; "
                             f"{hint}")
    theirs, ours = ckpt.get("data_card_sha256"), info.get("data_card_sha256")
    if "data" in info and theirs != ours:
        raise RunFolderError(f"{path}: trained on {ckpt.get('data')} ({_card_text(theirs)}), this run's "
                             f"data {info.get('data')} has {_card_text(ours)}; {hint}")
    if "data" in info and theirs is None and ckpt.get("data") != info.get("data"):
        raise RunFolderError(f"{path}: trained on {ckpt.get('data')}, this run's data is {info['data']}; "
                             f"{hint}")
    saved, wanted = _settings(ckpt.get("train_config")), _settings(config.to_dict())
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if saved and changed:
        raise RunFolderError(f"{path}: trained with other settings ({', '.join(changed)}); {hint}")


def _train_epoch(fit: _Fit, xt, y_train, epoch: int, augment) -> tuple[float, int, int, float]:
    """One pass over this process's training windows: ``(summed loss, windows, correct, s)``."""
    config = fit.config
    fit.net.train()
    for m in _frozen_norms(fit.model):
        m.eval()
    order = epoch_indices(len(xt), epoch, config, fit.rank, fit.world, y_train, fit.n_classes)
    aug_rng = np.random.default_rng([config.seed, epoch, fit.rank])
    per_rank = config.batch_size // fit.world
    total, seen, correct = 0.0, 0, 0
    t0 = time.perf_counter()
    for i in range(0, len(order), per_rank):
        idx = order[i : i + per_rank]
        xb = xt[idx]
        if augment is not None:
            xb = torch.as_tensor(augment(xb.numpy().copy(), aug_rng))
        xb, yb = xb.to(fit.device, non_blocking=True), torch.as_tensor(y_train[idx.numpy()]).to(fit.device)
        fit.optimizer.zero_grad(set_to_none=True)
        logits = fit.net(xb)
        loss = fit.loss_fn(logits, yb)
        loss.backward()
        fit.optimizer.step()
        total += loss.item() * len(idx)
        seen += len(idx)
        correct += int((logits.argmax(1) == yb).sum())
    if fit.device.type == "cuda":
        torch.cuda.synchronize(fit.device)
    return total, seen, correct, time.perf_counter() - t0


def _epoch(fit: _Fit, xt, y_train, x_val, y_val, epoch: int, augment) -> dict:
    """Train one epoch, step the schedule, score on validation: the epoch's history entry."""
    total, seen, correct, seconds = _train_epoch(fit, xt, y_train, epoch, augment)
    lr = fit.optimizer.param_groups[0]["lr"]
    fit.scheduler.step()
    if fit.world > 1:
        # Batch-norm running statistics are per process until the next forward broadcasts
        # them: take rank 0's now, so every rank scores the same model on validation.
        import torch.distributed as dist

        for buffer in fit.model.buffers():
            dist.broadcast(buffer, 0)
    val = evaluate_loss(fit.model, x_val, y_val, fit.weight, device=fit.device)
    return dict(
        epoch=epoch,
        train_loss=total / seen,
        train_accuracy=correct / seen,
        val_loss=val["loss"],
        val_accuracy=val["accuracy"],
        val_balanced_accuracy=val["balanced_accuracy"],
        lr=lr,
        seconds=seconds,
        windows_per_s=seen * fit.world / seconds,
    )


def _save_epoch(fit: _Fit, ckpt_dir: Path, epoch: int, state: dict, info: dict) -> None:
    """``checkpoints/epoch_NNN.pt``: everything :func:`train` needs to resume after ``epoch``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_atomic(
        dict(
            format=CHECKPOINT_FORMAT,
            kind="epoch",
            epoch=epoch,
            state_dict=cpu_state(fit.model),
            optimizer=fit.optimizer.state_dict(),
            scheduler=fit.scheduler.state_dict(),
            rng=_rng_state(),
            history=state["history"],
            best_loss=state["best_loss"],
            best_epoch=state["best_epoch"],
            best_state_dict=state["best_state"],
            bad_epochs=state["bad_epochs"],
            train_config=fit.config.to_dict(),
            **plain(info),
        ),
        ckpt_dir / f"epoch_{epoch:03d}.pt",
    )


def _stop(fit: _Fit, state: dict) -> bool:
    """Early stopping, one decision for all ranks (or the others would wait in all-reduce forever)."""
    stop = bool(fit.config.patience and state["bad_epochs"] >= fit.config.patience)
    if fit.world > 1:
        import torch.distributed as dist

        flag = torch.tensor([int(stop)], device=fit.device)
        dist.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def _result(fit: _Fit, state: dict, stopped_early: bool, frozen: list) -> dict:
    """What :func:`train` returns (see there), from the run's history."""
    history = state["history"]
    best = (
        next(h for h in history if h["epoch"] == state["best_epoch"]) if state["best_epoch"] else history[-1]
    )
    measured = [h for h in history if h["seconds"] > 0]
    throughput = (
        sum(h["windows_per_s"] * h["seconds"] for h in measured) / sum(h["seconds"] for h in measured)
        if measured
        else 0.0
    )
    chance_line = 1.0 / fit.n_classes + fit.config.chance_margin
    best_balanced = max(h["val_balanced_accuracy"] for h in history)
    return dict(
        history=history,
        best_epoch=best["epoch"],
        best_val_loss=best["val_loss"],
        best_val_accuracy=best["val_accuracy"],
        best_val_balanced_accuracy=best["val_balanced_accuracy"],
        stopped_early=stopped_early,
        throughput_windows_per_s=throughput,
        frozen=frozen,
        world_size=fit.world,
        device=str(fit.device),
        chance=dict(
            level=1.0 / fit.n_classes,
            threshold=chance_line,
            best_val_balanced_accuracy=best_balanced,
            near_chance=best_balanced < chance_line,
        ),
    )


def train(
    model: nn.Module,
    x_train,
    y_train,
    x_val,
    y_val,
    config: TrainConfig | None = None,
    progress: bool = True,
    out=None,
    resume: bool = False,
    augment=None,
    info: dict | None = None,
    n_classes: int | None = None,
) -> dict:
    """Train ``model`` in place; end with the weights of the lowest validation loss.

    Parameters
    ----------
    model : torch.nn.Module
        A freshly built (or pretrained, for finetuning) model.
    x_train, x_val : numpy.ndarray
        Model inputs, e.g. ``(N, 1, 80, 3)`` float32 windows in [-1, 1].
    y_train, y_val : numpy.ndarray
        Integer class indices.
    config : TrainConfig
    progress : bool
        Show a tqdm bar (rank 0 only).
    out : str or Path, optional
        Run folder: a checkpoint per epoch in ``out/checkpoints`` and ``out/best.pt``.
    resume : bool
        Continue from the newest checkpoint in ``out/checkpoints``; the run then ends exactly
        as an uninterrupted run would (same batches, same dropout draws).
    augment : callable, optional
        ``augment(x_batch, rng) -> x_batch`` on numpy model inputs of the training batches.
    info : dict, optional
        Written into every checkpoint (model name, classes, preprocessing, data provenance).
    n_classes : int, optional
        Number of classes (default: ``max(y) + 1`` over train and validation).

    Returns
    -------
    dict
        ``history`` (one dict per epoch), ``best_epoch``, ``best_val_loss``, ``best_val_accuracy``,
        ``best_val_balanced_accuracy``, ``stopped_early``, ``throughput_windows_per_s``, ``chance``.
    """
    from tqdm import tqdm

    config = config or TrainConfig()
    fit, frozen, y_train, y_val = _begin(model, config, x_train, y_train, x_val, y_val, n_classes)
    ckpt_dir = Path(out) / "checkpoints" if out is not None else None
    info = dict(info or {})
    state, start = _start_state(fit, ckpt_dir, resume, info)
    xt = torch.as_tensor(x_train)
    bar = tqdm(range(start, config.epochs + 1), desc="training", disable=not progress or fit.rank != 0,
               initial=start - 1, total=config.epochs)
    stopped_early = state["bad_epochs"] >= config.patience > 0
    for epoch in bar:
        entry = _epoch(fit, xt, y_train, x_val, y_val, epoch, augment)
        state["history"].append(entry)
        if entry["val_loss"] < state["best_loss"] - config.min_delta:
            state.update(best_loss=entry["val_loss"], best_epoch=epoch, best_state=cpu_state(model),
                         bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        bar.set_postfix(loss=f"{entry['train_loss']:.3f}", val_loss=f"{entry['val_loss']:.3f}",
                        val_acc=f"{entry['val_accuracy']:.3f}")
        if ckpt_dir is not None and fit.rank == 0:
            _save_epoch(fit, ckpt_dir, epoch, state, info)
        if _stop(fit, state):
            stopped_early = True
            log.info("early stop after epoch %d: validation loss did not improve for %d epochs",
                     epoch, config.patience)
            break
    bar.close()
    model.load_state_dict(state["best_state"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return _result(fit, state, stopped_early, frozen)


# ------------------------------------------------------------------------------ runs

MODEL_KINDS = {kind.option: kind.name for kind in KINDS.values()}  # `train --model` value -> kind name
_SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "confusion", "phase_confusion")


def build_augment(names, seed: int):
    """A callable ``augment(x_batch, rng)`` applying the named augmentations in order."""
    from .datasets import augment as aug

    return aug.build(list(names), seed)


def _write_json(path: Path, obj) -> None:
    """Written whole or not at all: under torchrun the other ranks read ``config.json`` (their
    run-folder check) while rank 0 writes it, and a half-written file read as "not a run's
    config.json" stopped rank 1 with exit 2 (seen once in CI)."""
    write_text_atomically(path, json.dumps(obj, indent=2, default=str))


def _inputs(data, splits, model_name: str, prep: dict):
    """The dataset in ``data`` and the model inputs, labels and dropped-window counts of ``splits``."""
    dataset = open_dataset(data)
    xs, ys, dropped = {}, {}, {}
    for split in splits:
        xs[split], ys[split], keep = split_inputs(select_split(dataset, data, split), data, model_name, prep)
        dropped[split] = int((~keep).sum())
    return dataset, xs, ys, dropped


def _fit(model, xs, ys, config: TrainConfig, out: Path, resume: bool, progress: bool, info: dict,
         n_classes: int, augment=None) -> dict:
    """:func:`train` on the ``train`` split, selected and stopped on ``val``."""
    return train(model, xs["train"], ys["train"], xs["val"], ys["val"], config, progress=progress, out=out,
                 resume=resume, augment=augment, info=info, n_classes=n_classes)


def _write_run(out: Path, model, info: dict, config: TrainConfig, extra: dict, history: list,
               summary: dict, summary_name: str) -> None:
    """``best.pt`` (+ ``best.json``), ``history.png`` and the run's summary JSON (rank 0 only)."""
    from .plots import plot_history

    save_checkpoint(out / "best.pt", model, info["model"], info["classes"], info["preprocess"], config,
                    extra=extra)
    plot_history(history, out / "history.png")
    _write_json(out / summary_name, summary)


def _resumed_config(config_path: Path, config: TrainConfig) -> TrainConfig:
    """The settings a resumed run started with (its ``config.json``), warning when they differ."""
    saved = json.loads(config_path.read_text())
    if saved.get("train") != config.to_dict():
        log.warning("resuming with the settings of %s, not those of this command line", config_path)
    return TrainConfig.from_dict(saved["train"])


def _run_identity(record: dict) -> dict:
    """What makes two ``config.json`` records the same run (not where or how fast it ran)."""
    ident = {k: record.get(k) for k in ("model", "data", "data_card_sha256", "checkpoint")}
    return dict(ident, command=record.get("command", "train"), train=_settings(record.get("train")))


def _card_text(card: str | None) -> str:
    return f"data card {card[:12]}" if card else "no data card"


def _check_out(out: Path, record: dict, resume: bool) -> None:
    """A one-line :class:`RunFolderError` when ``out`` holds another run.

    Without ``resume`` any difference in command, model kind, data (card hash and folder),
    base checkpoint or settings refuses; with ``resume`` the settings are the saved run's
    anyway, and the rest must match.
    """
    path = out / "config.json"
    if not path.is_file():
        return
    try:
        old = _run_identity(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, AttributeError):
        raise RunFolderError(f"{path}: not a run's config.json; choose a new --out") from None
    new = _run_identity(record)
    if old["data_card_sha256"] and old["data_card_sha256"] == new["data_card_sha256"]:
        old["data"] = new["data"]  # the same data, moved: the card says so
    keys = ("command", "model", "data_card_sha256", "data", "checkpoint") + (() if resume else ("train",))
    changed = [k for k in keys if old[k] != new[k]]
    if not changed:
        return
    if resume:
        raise RunFolderError(
            f"{out}: --resume continues the run there ({old['command']} {old['model']} on {old['data']}, "
            f"{_card_text(old['data_card_sha256'])}); this command differs in {', '.join(changed)}: "
            "give that run's data and model, or train into a new --out")
    raise RunFolderError(f"{out}: holds another run ({', '.join(changed)} differ); choose a new --out, "
                         "or --resume to continue that run")


def _check_chance(result: dict, out: Path, n_classes: int, allow_chance: bool) -> None:
    if not result["chance"]["near_chance"]:
        return
    msg = (
        f"{out}: validation balanced accuracy {result['chance']['best_val_balanced_accuracy']:.3f} "
        f"stayed near chance ({result['chance']['level']:.3f} for {n_classes} classes); "
        "the model has not learned; train longer, check the labels, or pass --allow-chance"
    )
    if not allow_chance:
        raise ChanceLevelError(msg)
    log.warning(msg)


def run_training(
    model_kind: str,
    data,
    out,
    config: TrainConfig,
    resume: bool = False,
    allow_chance: bool = False,
    progress: bool = True,
) -> dict:
    """``python -m host_training train``: data -> trained ``best.pt`` plus figures and summaries.

    Writes into ``out``: ``config.json`` (before training), ``checkpoints/epoch_NNN.pt``,
    ``best.pt`` (+ ``best.json``), ``history.png/.json``, ``train_summary.json`` (best epoch,
    validation and test figures, throughput in windows/s) and the test split's evaluation
    (``test/metrics.json`` and its figures).

    Raises
    ------
    ChanceLevelError
        When the best validation balanced accuracy stays near chance and ``allow_chance`` is False
        (the checkpoint and summaries are written first).
    """
    from edge_runtime.preprocess import PreprocessConfig

    from .evaluate import evaluate_arrays
    from .models import MODEL_CLASSES, build_model

    model_name = MODEL_KINDS.get(model_kind, model_kind)
    if model_name not in MODEL_CLASSES:
        raise ValueError(f"model {model_kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    out = Path(out)
    rank, world = distributed()
    if resume and (out / "config.json").is_file():
        config = _resumed_config(out / "config.json", config)
    prep = PreprocessConfig().to_dict() if KINDS[model_name].stage == "window" else {}
    augment = build_augment(config.augment, config.seed) if config.augment else None
    dataset, xs, ys, dropped = _inputs(data, ("train", "val", "test"), model_name, prep)
    card = data_card_hash(data)
    record = dict(model=model_name, data=str(Path(data).resolve()), data_card_sha256=card,
                  train=config.to_dict(), preprocess=prep, world_size=world, torch=torch.__version__,
                  windows={s: len(v) for s, v in ys.items()}, dropped_outside_amplitude_limits=dropped)
    _check_out(out, record, resume)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "config.json", record)
    classes = list(MODEL_CLASSES[model_name])
    model = build_model(model_name, config.seed)
    info = dict(model=model_name, classes=classes, preprocess=prep, data=record["data"],
                data_card_sha256=card)
    spectrogram = getattr(dataset, "spectrogram", None)
    if spectrogram is not None:  # how records become images; the node's second stage reads it
        info["spectrogram"] = spectrogram.to_dict()
    result = _fit(model, xs, ys, config, out, resume, progress, info, len(classes), augment)
    summary = {k: v for k, v in result.items() if k != "history"}
    if rank == 0:
        test = evaluate_arrays(model, xs["test"], ys["test"], classes, out=out / "test", part=None)
        summary.update(test_accuracy=test["accuracy"], test=test)
        extra = dict(data=record["data"], data_card_sha256=card, best_epoch=result["best_epoch"],
                     val_loss=result["best_val_loss"], val_accuracy=result["best_val_accuracy"],
                     test_accuracy=test["accuracy"],
                     throughput_windows_per_s=result["throughput_windows_per_s"],
                     **({"spectrogram": info["spectrogram"]} if "spectrogram" in info else {}))
        _write_run(out, model, info, config, extra, result["history"], summary, "train_summary.json")
    _check_chance(result, out, len(classes), allow_chance)
    return summary


def _missing_classes(y_train, classes: list, data, model_name: str, allow: bool) -> list:
    """The classes without a training window; a one-line DataError unless ``allow`` (then a warning)."""
    present = set(np.unique(np.asarray(y_train)).tolist())
    missing = [c for i, c in enumerate(classes) if i not in present]
    if not missing:
        return []
    names = ", ".join(repr(c) for c in missing)
    if not allow:
        raise DataError(f"{Path(data) / 'metadata.csv'}: the train split has no {names} windows; finetuning "
                        f"on it teaches {model_name} never to call them; add such windows, or pass "
                        "--allow-missing-classes")
    log.warning("finetuning without %s windows: the model will learn never to call them", names)
    return missing


def _original_test(ckpt: dict, model_name: str, prep: dict):
    """``(folder, x, y)`` of the test split the base model was trained with, or ``(folder, error)``.

    The base checkpoint names its data folder and data card; a folder that is gone, whose card
    changed, or that has no test split is reported, not scored.
    """
    extra = ckpt.get("extra") or {}
    folder, card = extra.get("data") or ckpt.get("data"), extra.get("data_card_sha256")
    if not folder:
        return None, "the base checkpoint does not say where its data was"
    if not Path(folder).is_dir():
        return folder, f"{folder}: not found"
    if card and data_card_hash(folder) != card:
        return folder, f"{folder}: its data card changed since the base model was trained"
    try:
        _, xs, ys, _ = _inputs(folder, ("test",), model_name, prep)
    except DataError as exc:
        return folder, str(exc).splitlines()[0]
    return folder, xs["test"], ys["test"]


def _original_summary(original: tuple, before: dict | None, model, classes) -> dict:
    """The summary's ``original``: the base data's test split scored before and after, or why not."""
    if before is None:
        return dict(data=original[0], split="test", error=original[1])
    return dict(data=original[0], split="test", n=len(original[2]), before=before,
                after=_scores(model, *original[1:], classes))


def _scores(model, x, y, classes) -> dict:
    from .evaluate import evaluate_arrays

    metrics = evaluate_arrays(model, x, y, classes)
    return {k: metrics[k] for k in _SCORES}


def run_finetune(
    checkpoint,
    data,
    out,
    config: TrainConfig,
    split: str = "test",
    resume: bool = False,
    progress: bool = True,
    allow_missing_classes: bool = False,
) -> dict:
    """``python -m host_training finetune``: the original's local-data step, measured.

    The pretrained model is scored on ``split`` before and after training on the local
    ``train`` split (selection and early stopping on ``val``), so the two figures are on the
    same windows; and on the test split of the data the base model was trained on (named in
    its checkpoint), so a finetune that forgets is seen. A local set without windows of a
    class is refused unless ``allow_missing_classes``. Writes ``before/`` and ``after/``
    evaluations, ``best.pt`` and ``finetune_summary.json`` into ``out``.
    """
    from .evaluate import evaluate_arrays

    out, split = Path(out), split_name(split)
    rank, _ = distributed()
    model, ckpt = load_checkpoint(checkpoint)
    model_name, classes, prep = ckpt["model"], list(ckpt["classes"]), ckpt.get("preprocess") or {}
    _, xs, ys, _ = _inputs(data, dict.fromkeys(("train", "val", split)), model_name, prep)
    missing = _missing_classes(ys["train"], classes, data, model_name, allow_missing_classes)
    card = data_card_hash(data)
    info = dict(model=model_name, classes=classes, preprocess=prep, data=str(Path(data).resolve()),
                data_card_sha256=card, finetuned_from=str(checkpoint))
    record = dict(command="finetune", checkpoint=str(Path(checkpoint).resolve()), model=model_name,
                  data=info["data"], data_card_sha256=card, split=split, train=config.to_dict(),
                  preprocess=prep)
    _check_out(out, record, resume)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "config.json", record)
    original = _original_test(ckpt, model_name, prep)
    original_before = _scores(model, *original[1:], classes) if len(original) == 3 else None
    before = evaluate_arrays(model, xs[split], ys[split], classes, out=out / "before" if rank == 0 else None)
    result = _fit(model, xs, ys, config, out, resume, progress, info, len(classes))
    after = evaluate_arrays(model, xs[split], ys[split], classes, out=out / "after" if rank == 0 else None)
    summary = dict(split=split, n=len(ys[split]), frozen=result["frozen"], best_epoch=result["best_epoch"],
                   stopped_early=result["stopped_early"], missing_classes=missing,
                   throughput_windows_per_s=result["throughput_windows_per_s"],
                   before={k: before[k] for k in _SCORES}, after={k: after[k] for k in _SCORES},
                   original=_original_summary(original, original_before, model, classes))
    if rank == 0:
        spectrogram = (ckpt.get("extra") or {}).get("spectrogram")
        extra = dict(data=info["data"], data_card_sha256=card, finetuned_from=str(checkpoint),
                     best_epoch=result["best_epoch"], val_accuracy=result["best_val_accuracy"],
                     before=summary["before"], after=summary["after"],
                     **({"spectrogram": ckpt["extra"]["spectrogram"]} if spectrogram else {}))
        _write_run(out, model, info, config, extra, result["history"], summary, "finetune_summary.json")
    return summary
