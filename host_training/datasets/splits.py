"""A dataset folder opened for training or evaluation: its kind, one split, the model's inputs.

A folder is record-level (:class:`~.record_dataset.RecordDataset`, for a record model) when its
``waveforms.hdf5`` says ``dataset_kind = records``, else windows
(:class:`~.window_dataset.WindowDataset`). :func:`split_inputs` makes one split's model
inputs as the node makes them and checks labels and input shape against the model's kind
(:mod:`edge_runtime.kinds`); every mismatch is a one-line :class:`DataError`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

from edge_runtime.kinds import get_kind
from edge_runtime.preprocess import PreprocessConfig

from .record_dataset import RecordDataset
from .window_dataset import FROM_SEISBENCH_SPLIT, SPLITS, WindowDataset


class DataError(ValueError):
    """A dataset folder, split or label set that does not fit the request."""


def open_dataset(folder):
    """The dataset in ``folder``: a WindowDataset, or a record-level dataset for a record model.

    A folder is record-level when its ``waveforms.hdf5`` says ``dataset_kind = records``.
    """
    import h5py

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
        return RecordDataset.load(folder) if kind == "records" else WindowDataset.load(folder)
    except (FileNotFoundError, KeyError, OSError) as exc:
        msg = str(exc).strip("'\"")
        raise DataError(msg if str(folder) in msg else f"{folder}: {msg}") from None


def split_name(split: str) -> str:
    """The split's name here: SeisBench's ``dev`` is ``val``; other names unchanged."""
    return FROM_SEISBENCH_SPLIT.get(split, split)


def select_split(dataset, folder, split: str):
    """One split of ``dataset`` (``all``: every window, e.g. real records prepared as a whole;
    ``dev``, SeisBench's name, is ``val``); a one-line :class:`DataError` for a typo or an
    empty split."""
    choices = (*SPLITS, "all")
    split = split_name(split)
    if split not in choices:
        close = difflib.get_close_matches(split, (*choices, "dev"), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"{folder}: no split {split!r}{hint}; expected one of {', '.join(choices)} "
                        "(dev is val)")
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
