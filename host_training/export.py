"""Export a trained model to ONNX with the node's metadata inside.

The graph comes from the exporter torch recommends (``torch.onnx.export(..., dynamo=True)``,
built on :func:`torch.export.export`; the TorchScript exporter is deprecated). The input is
named by the metadata (``modelInput``), the output ``logits``, the batch axis is dynamic,
the opset is current (20: GELU is one ONNX operator there) and batch norm is folded into
the convolutions by the exporter's optimizer. Every export is checked in onnxruntime
against torch.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np

from edge_runtime.kinds import get_kind
from edge_runtime.metadata import SELFTEST_KEY, ModelMetadata, get_metadata, set_metadata

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_OPSET", "export_checkpoint", "export_onnx", "get_metadata", "set_metadata",
           "weights_hash"]

DEFAULT_OPSET = 20


def weights_hash(model) -> str:
    """SHA-256 of the model's state dict (names, shapes and float32 bytes), hex."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _torch_export(model, dummy, path: Path, input_name: str, opset: int) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter about pytree specs
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            model,
            (dummy,),
            dynamo=True,
            opset_version=opset,
            input_names=[input_name],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            optimize=True,
            verbose=False,
            external_data=False,
        )
    program.save(str(path), external_data=False)


def _with_selftest(model, metadata: ModelMetadata) -> ModelMetadata:
    """Store a fixed raw window and torch's probabilities for it in the metadata.

    The node's ``check`` runs the window through its own preprocessing and runtime and
    compares: a tampered file, another runtime or a preprocessing drift fails there.
    """
    from edge_runtime.backends import softmax
    from edge_runtime.metadata import selftest_window, with_selftest

    from .evaluate import predict_torch

    window = selftest_window(metadata)
    x = get_kind(metadata.model).model_input(window[None], 100.0, metadata)
    probs = softmax(predict_torch(model, x))[0]
    return with_selftest(metadata, window, 100.0, probs, reference="torch")


def output_file(path) -> Path:
    """``path`` as a Path; a one-line ValueError when it is a folder rather than the file to write."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give the .onnx file to write (e.g. {path / 'model.onnx'})")
    return path


def export_onnx(
    model, path, metadata: ModelMetadata, opset: int = DEFAULT_OPSET, check_inputs=None, atol: float = 1e-5
) -> dict:
    """Export ``model`` (eval mode) to ONNX and verify it in onnxruntime.

    Parameters
    ----------
    model : torch.nn.Module
        One of :data:`host_training.models.MODELS`; its kind (``metadata.model``, see
        :mod:`edge_runtime.kinds`) gives the input shape.
    path : str or Path
        Output ``.onnx`` file.
    metadata : ModelMetadata
        Written into the file; ``input_name`` names the graph input. ``input_shape`` and
        (when empty) ``model_version`` are filled in here.
    opset : int
        ONNX opset (the seed used 10).
    check_inputs : numpy.ndarray, optional
        Inputs on which torch and onnxruntime must agree within ``atol``; random
        windows in [-1, 1] when omitted.

    Returns
    -------
    dict
        ``max_abs_diff`` between torch and onnxruntime logits, the file size in bytes, the opset
        and the model version written.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from .evaluate import predict_torch

    path = output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    kind = get_kind(metadata.model)
    shape = kind.input_shape
    metadata.input_shape = list(shape)
    if not metadata.model_version:
        metadata.model_version = f"{metadata.model}-{weights_hash(model)[:12]}"
    _torch_export(model, torch.zeros((2,) + shape), path, metadata.input_name, opset)
    proto = onnx.load(str(path))
    if kind.stage == "window" and SELFTEST_KEY not in metadata.extra:
        # replayed by `python -m edge_runtime check` (a raw window: window models only)
        metadata = _with_selftest(model, metadata)
    set_metadata(proto, metadata)
    proto.producer_name = "seismictorch"
    proto.model_version = int(weights_hash(model)[:12], 16) & 0x7FFFFFFFFFFFFFFF
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    if check_inputs is None:
        low, high = kind.input_range
        check_inputs = np.random.default_rng(0).uniform(low, high, (16,) + shape).astype(np.float32)
    reference = predict_torch(model, check_inputs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {metadata.input_name: check_inputs.astype(np.float32)})
    diff = float(np.abs(got - reference).max())
    # Relative to the logits' size: a trained 42 M-weight SpectrogramCNN gives logits of tens,
    # where float32 summation order alone differs by 1e-5.
    tolerance = atol * max(1.0, float(np.abs(reference).max()))
    if diff > tolerance:
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {diff:.2e} > {tolerance:.1e}")
    log.info("exported %s (%d bytes); torch vs onnxruntime max |diff| %.2e", path, path.stat().st_size, diff)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "max_abs_diff": diff,
        "opset": opset,
        "model_version": metadata.model_version,
    }


def export_checkpoint(
    checkpoint, out, opset: int = DEFAULT_OPSET, model_version: str = "", components=("E", "N", "Z")
) -> dict:
    """``python -m host_training export``: a checkpoint from ``train`` to an ONNX file for the node.

    The metadata takes the classes and preprocessing from the checkpoint, the data card hash
    recorded at training time (or read from ``data_card.json`` beside the training data), and
    ``model_version`` (default: the run folder's name, the best epoch and a weights hash).
    """
    from .checkpoints import load_checkpoint
    from .datasets.splits import data_card_hash

    checkpoint = Path(checkpoint)
    output_file(out)  # before loading: a folder is not an output file
    model, info = load_checkpoint(checkpoint)
    extra = info.get("extra") or {}
    card = info.get("data_card_sha256") or extra.get("data_card_sha256")
    data = extra.get("data") or info.get("data")
    if not card and data and Path(data).is_dir():
        card = data_card_hash(data)
    if not model_version:
        epoch = extra.get("best_epoch") or info.get("epoch")
        model_version = (
            f"{checkpoint.parent.name}" + (f"-e{epoch}" if epoch else "") + f"-{weights_hash(model)[:12]}"
        )
    metadata = ModelMetadata(
        model=info["model"],
        classes=list(info["classes"]),
        components=list(components),
        preprocess=info.get("preprocess")
        or ModelMetadata.__dataclass_fields__["preprocess"].default_factory(),
        model_version=model_version,
        data_card_sha256=card or "",
        extra={
            "checkpoint": checkpoint.name,
            "train_config": info.get("train_config"),
            "val_accuracy": extra.get("val_accuracy"),
            "test_accuracy": extra.get("test_accuracy"),
            **({"spectrogram": extra["spectrogram"]} if extra.get("spectrogram") else {}),
        },
    )
    return export_onnx(model, out, metadata, opset=opset)
