"""Shared fixtures: one tiny model trained once per session on tiny synthetic data."""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tools.replay.node import REPO, end_node, python_env, start_node  # noqa: F401  (tests import them from here)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """EarthquakeCNN trained for a few seconds; float, int16 and simplified ONNX files."""
    import torch

    from edge_runtime.metadata import ModelMetadata
    from edge_runtime.preprocess import PreprocessConfig
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, build_model
    from host_training.synthetic.parametric import synthetic_dataset
    from host_training.train import TrainConfig, train
    from quantization.int16 import quantize_int16
    from quantization.simplify import simplify

    torch.set_num_threads(1)  # tiny tensors: a second thread costs 5x the CPU (4.0 -> 19.2 s at load 4)
    folder = tmp_path_factory.mktemp("model")
    dataset = synthetic_dataset(400, seed=1)
    parts = {s: dataset.split(s) for s in ("train", "val", "test")}
    x = {s: p.model_inputs()[0] for s, p in parts.items()}
    y = {s: p.labels(PHASE_CLASSES) for s, p in parts.items()}
    model = build_model("EarthquakeCNN", seed=1)
    result = train(model, x["train"], y["train"], x["val"], y["val"],
                   TrainConfig(epochs=6, batch_size=32, seed=1), progress=False)
    meta = ModelMetadata(model="EarthquakeCNN", classes=list(PHASE_CLASSES),
                         components=["E", "N", "Z"], preprocess=PreprocessConfig().to_dict())
    float_path = folder / "model.onnx"
    exported = export_onnx(model, float_path, meta, check_inputs=x["test"])
    int16_path = quantize_int16(float_path, folder / "model_int16.onnx")
    sim_path = folder / "model_int16_sim.onnx"
    simplify(int16_path, sim_path)
    return dict(model=model, float=float_path, int16=int16_path, sim=sim_path, dataset=dataset,
                x=x, y=y, val_accuracy=result["best_val_accuracy"], exported=exported)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A dataset folder (with a data card) and a run of ``train`` on it: best.pt and its ONNX export."""
    import json

    import torch

    from host_training.export import export_checkpoint
    from host_training.synthetic.parametric import synthetic_dataset
    from host_training.train import TrainConfig, run_training

    torch.set_num_threads(1)  # tiny tensors: a second thread costs 5x the CPU (4.0 -> 19.2 s at load 4)
    root = tmp_path_factory.mktemp("run")
    data = synthetic_dataset(80, seed=5).save(root / "data")
    (data / "data_card.json").write_text(json.dumps({"windows": 240, "source": "synthetic"}))
    config = TrainConfig(epochs=3, batch_size=32, seed=2, threads=1)
    summary = run_training("earthquake", data, root / "run", config, progress=False)
    onnx_path = root / "model.onnx"
    exported = export_checkpoint(root / "run" / "best.pt", onnx_path)
    return dict(data=data, out=root / "run", checkpoint=root / "run" / "best.pt", onnx=onnx_path,
                summary=summary, exported=exported, config=config)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def node_process(model, port, out: Path, *extra, env=None, preexec_fn=None):
    """``python -m edge_runtime run`` on ``port``, events and status in ``out``, extra flags
    after; stdout and stderr together as text (:func:`tools.replay.node.start_node`)."""
    return start_node(port, model, out / "events.jsonl", out / "status.json", *extra, env=env or None,
                      cwd=REPO, preexec_fn=preexec_fn)


def stop(proc, sig=signal.SIGTERM, timeout_s: float = 60.0) -> str:
    """Send ``sig`` to a node still running, wait for it to end; its output."""
    if proc.poll() is None:
        proc.send_signal(sig)
    output, _ = proc.communicate(timeout=timeout_s)
    return output


@contextmanager
def running(proc, pty):
    """Kill ``proc`` if it still runs when the block ends (a step failed), then close ``pty``
    (a ``Pty``, or a ``PtyLink``, which unplugs)."""
    try:
        yield proc
    finally:
        end_node(proc, grace_s=0)
        pty.close()


PYTHON = sys.executable
