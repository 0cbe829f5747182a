"""A small detector for the network test when none is given: trained in a minute, kept in OUT."""

from __future__ import annotations

from pathlib import Path


def tiny_model(folder: Path, seed: int = 1) -> Path:
    """EarthquakeCNN trained on the parametric generator's windows, int16 + simplified ONNX.

    The recipe of the tests' ``tiny_model`` fixture (800 synthetic events, 8 epochs); the
    file is reused when already in ``folder``.
    """
    path = Path(folder) / "model_int16_sim.onnx"
    if path.is_file():
        return path
    import torch

    from edge_runtime.kinds import EARTHQUAKE_CNN
    from edge_runtime.metadata import ModelMetadata
    from edge_runtime.preprocess import PreprocessConfig
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, build_model
    from host_training.synthetic.parametric import synthetic_dataset
    from host_training.train import TrainConfig, train
    from quantization.int16 import quantize_int16
    from quantization.simplify import simplify

    torch.set_num_threads(2)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = synthetic_dataset(800, seed=seed)
    parts = {s: dataset.split(s) for s in ("train", "val", "test")}
    x = {s: p.model_inputs()[0] for s, p in parts.items()}
    y = {s: p.labels(PHASE_CLASSES) for s, p in parts.items()}
    model = build_model(EARTHQUAKE_CNN.name, seed=seed)
    train(
        model,
        x["train"],
        y["train"],
        x["val"],
        y["val"],
        TrainConfig(epochs=8, batch_size=32, seed=seed),
        progress=False,
    )
    meta = ModelMetadata(
        model=EARTHQUAKE_CNN.name,
        classes=list(PHASE_CLASSES),
        components=["E", "N", "Z"],
        preprocess=PreprocessConfig().to_dict(),
    )
    export_onnx(model, folder / "model.onnx", meta, check_inputs=x["test"])
    quantize_int16(folder / "model.onnx", folder / "model_int16.onnx")
    simplify(folder / "model_int16.onnx", path)
    return path
