"""Export a trained model to ONNX with the node's metadata inside."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_runtime.metadata import METADATA_KEY, ModelMetadata

log = logging.getLogger(__name__)

INPUT_SHAPES = {"EarthquakeCNN": (1, 80, 3), "SpectrogramCNN": (3, 100, 150)}


def set_metadata(model_proto, metadata: ModelMetadata) -> None:
    """Write (or replace) the SeismicTorch metadata of an ``onnx.ModelProto``."""
    for prop in list(model_proto.metadata_props):
        if prop.key == METADATA_KEY:
            model_proto.metadata_props.remove(prop)
    entry = model_proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()


def get_metadata(model_proto) -> ModelMetadata:
    for prop in model_proto.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelMetadata.from_json(prop.value)
    raise ValueError(f"model has no '{METADATA_KEY}' metadata")


def export_onnx(model, path, metadata: ModelMetadata, opset: int = 17, check_inputs=None,
                atol: float = 1e-5) -> dict:
    """Export ``model`` (eval mode) to ONNX and verify it in onnxruntime.

    Parameters
    ----------
    model : torch.nn.Module
        One of :data:`host_training.models.MODELS`.
    path : str or Path
        Output ``.onnx`` file.
    metadata : ModelMetadata
        Written into the file; ``input_name`` names the graph input.
    opset : int
        ONNX opset (the seed used 10; 17 has the same operators for these models and is
        what current runtimes optimize best).
    check_inputs : numpy.ndarray, optional
        Inputs on which torch and onnxruntime must agree within ``atol``; random
        windows in [-1, 1] when omitted.

    Returns
    -------
    dict
        ``max_abs_diff`` between torch and onnxruntime logits and the file size in bytes.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from .evaluate import predict_torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    shape = INPUT_SHAPES[metadata.model]
    dummy = torch.zeros((1,) + shape)
    # The TorchScript exporter: the dynamo one needs onnxscript and gives nothing here.
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                      input_names=[metadata.input_name], output_names=["logits"],
                      dynamic_axes={metadata.input_name: {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(path))
    set_metadata(proto, metadata)
    proto.producer_name = "seismictorch"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    if check_inputs is None:
        check_inputs = np.random.default_rng(0).uniform(-1, 1, (16,) + shape).astype(np.float32)
    reference = predict_torch(model, check_inputs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {metadata.input_name: check_inputs.astype(np.float32)})
    diff = float(np.abs(got - reference).max())
    if diff > atol:
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {diff:.2e} > {atol:.0e}")
    log.info("exported %s (%d bytes); torch vs onnxruntime max |diff| %.2e", path,
             path.stat().st_size, diff)
    return {"path": str(path), "bytes": path.stat().st_size, "max_abs_diff": diff, "opset": opset}
