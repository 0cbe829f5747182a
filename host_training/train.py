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

import copy
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

from edge_runtime.kinds import KINDS, get_kind

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("step", "cosine", "none")
BALANCING = ("none", "weights", "sampler")
FREEZE = ("none", "conv")
CHECKPOINT_FORMAT = 2


class CheckpointError(ValueError):
    """A file that is not a SeismicTorch checkpoint."""


class ChanceLevelError(RuntimeError):
    """Validation accuracy stayed near chance."""


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


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ the loop


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
    rank, world = distributed()
    if config.balance == "sampler" and world > 1:
        raise ValueError(
            "balance 'sampler' draws with replacement in one process; "
            "use balance 'weights' with several processes"
        )
    if config.batch_size % world:
        raise ValueError(f"batch size {config.batch_size} is not divisible by {world} processes")
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    n_classes = n_classes or (last[-1].out_features if last else int(max(np.max(y_train), np.max(y_val)) + 1))
    y_train, y_val = np.asarray(y_train, dtype=np.int64), np.asarray(y_val, dtype=np.int64)
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError(f"training needs windows in both splits (train {len(x_train)}, val {len(x_val)})")
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
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    ckpt_dir = Path(out) / "checkpoints" if out is not None else None
    info = dict(info or {})

    state = dict(history=[], best_loss=float("inf"), best_epoch=0, best_state=_cpu_state(model), bad_epochs=0)
    start = 1
    if resume:
        last = latest_checkpoint(ckpt_dir) if ckpt_dir else None
        if last is None:
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoint to resume from")
        ckpt = read_checkpoint(last)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        state = dict(
            history=ckpt["history"],
            best_loss=ckpt["best_loss"],
            best_epoch=ckpt["best_epoch"],
            best_state=ckpt["best_state_dict"],
            bad_epochs=ckpt["bad_epochs"],
        )
        start = ckpt["epoch"] + 1
        log.info("resuming from %s (epoch %d done)", last, ckpt["epoch"])
        if state["bad_epochs"] >= config.patience > 0:
            start = config.epochs + 1  # it had already stopped early

    xt = torch.as_tensor(x_train)
    per_rank = config.batch_size // world
    bar = tqdm(
        range(start, config.epochs + 1),
        desc="training",
        disable=not progress or rank != 0,
        initial=start - 1,
        total=config.epochs,
    )
    stopped_early = state["bad_epochs"] >= config.patience > 0
    for epoch in bar:
        net.train()
        for m in _frozen_norms(model):
            m.eval()
        order = epoch_indices(len(xt), epoch, config, rank, world, y_train, n_classes)
        aug_rng = np.random.default_rng([config.seed, epoch, rank])
        total, seen, correct = 0.0, 0, 0
        t0 = time.perf_counter()
        for i in range(0, len(order), per_rank):
            idx = order[i : i + per_rank]
            xb = xt[idx]
            if augment is not None:
                xb = torch.as_tensor(augment(xb.numpy().copy(), aug_rng))
            xb, yb = xb.to(device, non_blocking=True), torch.as_tensor(y_train[idx.numpy()]).to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = net(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if world > 1:
            # Batch-norm running statistics are per process until the next forward broadcasts
            # them: take rank 0's now, so every rank scores the same model on validation.
            import torch.distributed as dist

            for buffer in model.buffers():
                dist.broadcast(buffer, 0)
        val = evaluate_loss(model, x_val, y_val, weight, device=device)
        entry = dict(
            epoch=epoch,
            train_loss=total / seen,
            train_accuracy=correct / seen,
            val_loss=val["loss"],
            val_accuracy=val["accuracy"],
            val_balanced_accuracy=val["balanced_accuracy"],
            lr=lr,
            seconds=seconds,
            windows_per_s=seen * world / seconds,
        )
        state["history"].append(entry)
        if val["loss"] < state["best_loss"] - config.min_delta:
            state.update(best_loss=val["loss"], best_epoch=epoch, best_state=_cpu_state(model), bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        bar.set_postfix(
            loss=f"{entry['train_loss']:.3f}", val_loss=f"{val['loss']:.3f}", val_acc=f"{val['accuracy']:.3f}"
        )
        if ckpt_dir is not None and rank == 0:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            _save_atomic(
                dict(
                    format=CHECKPOINT_FORMAT,
                    kind="epoch",
                    epoch=epoch,
                    state_dict=_cpu_state(model),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    rng=_rng_state(),
                    history=state["history"],
                    best_loss=state["best_loss"],
                    best_epoch=state["best_epoch"],
                    best_state_dict=state["best_state"],
                    bad_epochs=state["bad_epochs"],
                    train_config=config.to_dict(),
                    **_plain(info),
                ),
                ckpt_dir / f"epoch_{epoch:03d}.pt",
            )
        stop = bool(config.patience and state["bad_epochs"] >= config.patience)
        if world > 1:  # one decision for all ranks, or the others would wait in all-reduce forever
            import torch.distributed as dist

            flag = torch.tensor([int(stop)], device=device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            stopped_early = True
            log.info(
                "early stop after epoch %d: validation loss did not improve for %d epochs",
                epoch,
                config.patience,
            )
            break
    bar.close()
    model.load_state_dict(state["best_state"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
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
    chance_line = 1.0 / n_classes + config.chance_margin
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
        world_size=world,
        device=str(device),
        chance=dict(
            level=1.0 / n_classes,
            threshold=chance_line,
            best_val_balanced_accuracy=best_balanced,
            near_chance=best_balanced < chance_line,
        ),
    )


# ------------------------------------------------------------------------------ checkpoints


def latest_checkpoint(folder) -> Path | None:
    files = sorted(Path(folder).glob("epoch_*.pt")) if folder and Path(folder).is_dir() else []
    return files[-1] if files else None


def save_checkpoint(
    path,
    model: nn.Module,
    model_name: str,
    classes,
    preprocess: dict,
    config: TrainConfig,
    extra: dict | None = None,
) -> Path:
    """The weights plus everything export and evaluate need; a JSON of the same facts beside it."""
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
    _save_atomic(dict(state_dict=_cpu_state(model), **_plain(info)), path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    return path


def _plain(obj):
    """JSON round trip: only containers of str/int/float/bool/None reach torch.save."""
    return json.loads(json.dumps(obj, default=str))


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


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


# ------------------------------------------------------------------------------ datasets

MODEL_KINDS = {kind.option: kind.name for kind in KINDS.values()}  # `train --model` value -> kind name


class DataError(ValueError):
    """A dataset folder, split or label set that does not fit the request."""


def open_dataset(folder):
    """The dataset in ``folder``: a WindowDataset, or a record-level dataset for SpectrogramCNN.

    A folder is record-level when its ``waveforms.hdf5`` says ``dataset_kind = records``.
    """
    import h5py

    from .datasets.window_dataset import WindowDataset

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such dataset folder (expected a folder with waveforms.hdf5 and metadata.csv)"
        )
    kind = "windows"
    h5 = folder / "waveforms.hdf5"
    if h5.is_file():
        try:
            with h5py.File(h5, "r") as f:
                attrs = dict(f.attrs)
                if "waveforms" in f:
                    attrs.update(f["waveforms"].attrs)
        except OSError as exc:
            raise DataError(f"{h5}: not an HDF5 file ({exc})") from None
        raw = attrs.get("dataset_kind", "windows")
        kind = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        if kind == "records":
            try:
                from .datasets.record_dataset import RecordDataset
            except ImportError:
                raise DataError(
                    f"{folder}: a record-level dataset, but host_training.datasets."
                    "record_dataset is not available in this version"
                ) from None
            return RecordDataset.load(folder)
        return WindowDataset.load(folder)
    except (FileNotFoundError, KeyError, OSError) as exc:
        msg = str(exc).strip("'\"")
        raise DataError(msg if str(folder) in msg else f"{folder}: {msg}") from None


def select_split(dataset, folder, split: str):
    """One split of ``dataset`` (``all``: every window, e.g. real records prepared as a whole);
    a one-line :class:`DataError` for a typo or an empty split."""
    import difflib

    from .datasets.window_dataset import SPLITS

    choices = (*SPLITS, "all")
    if split not in choices:
        close = difflib.get_close_matches(split, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"{folder}: no split {split!r}{hint}; expected one of {', '.join(choices)}")
    part = dataset if split == "all" else dataset.split(split)
    if len(part) == 0:
        present = sorted({str(s) for s in dataset.column("split")}) if len(dataset) else []
        raise DataError(
            f"{Path(folder) / 'metadata.csv'}: split {split!r} is empty "
            f"(splits present: {', '.join(present) or 'none'})"
        )
    return part


def split_inputs(part, folder, model_name: str, preprocess: dict | None = None):
    """Model inputs, labels and the kept-window mask of one split, checked against the model.

    Returns
    -------
    x : numpy.ndarray
        Model inputs of the kept windows.
    y : numpy.ndarray
        Class indices (in the model's class order) of the kept windows.
    keep : numpy.ndarray
        Boolean mask over ``part``: windows outside the seed's amplitude limits are dropped,
        as the node drops them.
    """
    from edge_runtime.preprocess import PreprocessConfig

    kind = get_kind(model_name)
    classes = list(kind.classes)
    labels = sorted({str(v) for v in part.column("label")})
    foreign = [lab for lab in labels if lab not in classes]
    if foreign:
        hint = f"; {kind.data_hint}" if kind.data_hint else ""
        raise DataError(
            f"{Path(folder) / 'metadata.csv'}: labels {labels} do not fit {model_name}, "
            f"which classifies {classes}{hint}"
        )
    if kind.stage == "window":
        x, keep = part.model_inputs(PreprocessConfig(**(preprocess or {})))
    else:
        x, keep = part.model_inputs()
    if tuple(x.shape[1:]) != kind.input_shape:
        raise DataError(
            f"{folder}: the data give model inputs of shape {tuple(x.shape[1:])}, "
            f"{model_name} takes {kind.input_shape}"
        )
    return x[keep], part.labels(classes)[keep], keep


def data_card_hash(folder) -> str | None:
    """SHA-256 of the dataset's data card (``data_card.json`` or ``card.json`` beside the data), or None.

    The card's own ``sha256`` (or ``hash``) field is used when it has one, so the value is the
    one ``prepare`` printed; otherwise the hash of the file's bytes.
    """
    import hashlib

    # data_card.json: `prepare merge`; card.json: `synth --generator physics`.
    path = next(
        (Path(folder) / n for n in ("data_card.json", "card.json") if (Path(folder) / n).is_file()), None
    )
    if path is None:
        return None
    raw = path.read_bytes()
    try:
        card = json.loads(raw)
        for key in ("card_sha256", "sha256", "hash", "data_sha256"):
            if isinstance(card, dict) and isinstance(card.get(key), str):
                return card[key]
    except json.JSONDecodeError:
        pass
    return hashlib.sha256(raw).hexdigest()


# ------------------------------------------------------------------------------ runs


def build_augment(names, seed: int):
    """A callable ``augment(x_batch, rng)`` applying the named augmentations in order."""
    try:
        from .datasets import augment as aug
    except ImportError:
        raise ValueError("--augment needs host_training.datasets.augment, which this version lacks") from None
    return aug.build(list(names), seed)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))


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

    from .models import MODEL_CLASSES, build_model
    from .plots import plot_history

    model_name = MODEL_KINDS.get(model_kind, model_kind)
    if model_name not in MODEL_CLASSES:
        raise ValueError(f"model {model_kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    out = Path(out)
    rank, world = distributed()
    config_path = out / "config.json"
    if resume and config_path.is_file():
        saved = json.loads(config_path.read_text())
        if saved.get("train") != config.to_dict():
            log.warning("resuming with the settings of %s, not those of this command line", config_path)
        config = TrainConfig.from_dict(saved["train"])
    prep = PreprocessConfig().to_dict() if KINDS[model_name].stage == "window" else {}
    augment = build_augment(config.augment, config.seed) if config.augment else None
    dataset = open_dataset(data)
    xs, ys, dropped = {}, {}, {}
    for split in ("train", "val", "test"):
        part = select_split(dataset, data, split)
        xs[split], ys[split], keep = split_inputs(part, data, model_name, prep)
        dropped[split] = int((~keep).sum())
    card = data_card_hash(data)
    record = dict(
        model=model_name,
        data=str(Path(data).resolve()),
        data_card_sha256=card,
        train=config.to_dict(),
        preprocess=prep,
        world_size=world,
        torch=torch.__version__,
        windows={s: len(v) for s, v in ys.items()},
        dropped_outside_amplitude_limits=dropped,
    )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(config_path, record)
    classes = list(MODEL_CLASSES[model_name])
    model = build_model(model_name, config.seed)
    info = dict(
        model=model_name, classes=classes, preprocess=prep, data=record["data"], data_card_sha256=card
    )
    spectrogram = getattr(dataset, "spectrogram", None)
    if spectrogram is not None:  # how records become images; the node's second stage reads it
        info["spectrogram"] = spectrogram.to_dict()
    result = train(
        model,
        xs["train"],
        ys["train"],
        xs["val"],
        ys["val"],
        config,
        progress=progress,
        out=out,
        resume=resume,
        augment=augment,
        info=info,
        n_classes=len(classes),
    )
    summary = {k: v for k, v in result.items() if k != "history"}
    if rank == 0:
        from .evaluate import evaluate_arrays

        test = evaluate_arrays(model, xs["test"], ys["test"], classes, out=out / "test", part=None)
        summary.update(test_accuracy=test["accuracy"], test=test)
        save_checkpoint(
            out / "best.pt",
            model,
            model_name,
            classes,
            prep,
            config,
            extra=dict(
                data=record["data"],
                data_card_sha256=card,
                best_epoch=result["best_epoch"],
                val_loss=result["best_val_loss"],
                val_accuracy=result["best_val_accuracy"],
                test_accuracy=test["accuracy"],
                throughput_windows_per_s=result["throughput_windows_per_s"],
                **({"spectrogram": info["spectrogram"]} if "spectrogram" in info else {}),
            ),
        )
        plot_history(result["history"], out / "history.png")
        _write_json(out / "train_summary.json", summary)
    if result["chance"]["near_chance"]:
        msg = (
            f"{out}: validation balanced accuracy {result['chance']['best_val_balanced_accuracy']:.3f} "
            f"stayed near chance ({result['chance']['level']:.3f} for {len(classes)} classes); "
            "the model has not learned; train longer, check the labels, or pass --allow-chance"
        )
        if not allow_chance:
            raise ChanceLevelError(msg)
        log.warning(msg)
    return summary


def run_finetune(
    checkpoint,
    data,
    out,
    config: TrainConfig,
    split: str = "test",
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """``python -m host_training finetune``: the original's local-data step, measured.

    The pretrained model is scored on ``split`` before and after training on the local
    ``train`` split (selection and early stopping on ``val``), so the two figures are on the
    same windows. Writes ``before/`` and ``after/`` evaluations, ``best.pt`` and
    ``finetune_summary.json`` into ``out``.
    """
    from .evaluate import evaluate_arrays

    out = Path(out)
    rank, _ = distributed()
    model, ckpt = load_checkpoint(checkpoint)
    model_name, classes, prep = ckpt["model"], list(ckpt["classes"]), ckpt.get("preprocess") or {}
    dataset = open_dataset(data)
    xs, ys = {}, {}
    for s in dict.fromkeys(("train", "val", split)):
        xs[s], ys[s], _ = split_inputs(select_split(dataset, data, s), data, model_name, prep)
    card = data_card_hash(data)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(
            out / "config.json",
            dict(
                command="finetune",
                checkpoint=str(Path(checkpoint).resolve()),
                model=model_name,
                data=str(Path(data).resolve()),
                data_card_sha256=card,
                split=split,
                train=config.to_dict(),
                preprocess=prep,
            ),
        )
    before = evaluate_arrays(model, xs[split], ys[split], classes, out=out / "before" if rank == 0 else None)
    info = dict(
        model=model_name,
        classes=classes,
        preprocess=prep,
        data=str(Path(data).resolve()),
        data_card_sha256=card,
        finetuned_from=str(checkpoint),
    )
    result = train(
        model,
        xs["train"],
        ys["train"],
        xs["val"],
        ys["val"],
        config,
        progress=progress,
        out=out,
        resume=resume,
        info=info,
        n_classes=len(classes),
    )
    after = evaluate_arrays(model, xs[split], ys[split], classes, out=out / "after" if rank == 0 else None)
    summary = dict(
        split=split,
        n=len(ys[split]),
        frozen=result["frozen"],
        best_epoch=result["best_epoch"],
        stopped_early=result["stopped_early"],
        throughput_windows_per_s=result["throughput_windows_per_s"],
        before={
            k: before[k]
            for k in ("accuracy", "balanced_accuracy", "macro_f1", "confusion", "phase_confusion")
        },
        after={
            k: after[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "confusion", "phase_confusion")
        },
    )
    if rank == 0:
        from .plots import plot_history

        save_checkpoint(
            out / "best.pt",
            model,
            model_name,
            classes,
            prep,
            config,
            extra=dict(
                data=str(Path(data).resolve()),
                data_card_sha256=card,
                finetuned_from=str(checkpoint),
                best_epoch=result["best_epoch"],
                val_accuracy=result["best_val_accuracy"],
                before=summary["before"],
                after=summary["after"],
                **(
                    {"spectrogram": ckpt["extra"]["spectrogram"]}
                    if (ckpt.get("extra") or {}).get("spectrogram")
                    else {}
                ),
            ),
        )
        plot_history(result["history"], out / "history.png")
        _write_json(out / "finetune_summary.json", summary)
    return summary
