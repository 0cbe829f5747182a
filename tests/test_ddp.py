"""`torchrun` with DistributedDataParallel (gloo on CPU) against one process."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, python_env

from host_training.checkpoints import read_checkpoint
from host_training.train import TrainConfig, run_training


def test_two_processes_match_one(tiny_run, tmp_path):
    """Two gloo processes, half the global batch each, the same windows per step as one process.

    Batch-norm statistics and dropout masks are per process, so the runs agree within a
    tolerance, not bit for bit.
    """
    common = [
        "--data",
        str(tiny_run["data"]),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--threads",
        "1",
        "--no-progress",
        "--allow-chance",
        "--device",
        "cpu",
    ]
    env = python_env()
    env["OMP_NUM_THREADS"] = "1"
    ddp = tmp_path / "ddp"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "host_training",
            "train",
            "--out",
            str(ddp),
            *common,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert json.loads((ddp / "config.json").read_text())["world_size"] == 2
    summary = json.loads((ddp / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["throughput_windows_per_s"] > 0

    single = run_training(
        "earthquake",
        tiny_run["data"],
        tmp_path / "one",
        TrainConfig(epochs=2, batch_size=32, seed=3, threads=1, device="cpu"),
        allow_chance=True,
        progress=False,
    )
    assert single["world_size"] == 1
    h2 = json.loads((ddp / "history.json").read_text())
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=0.05)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=0.05)
    # Same weights on both ranks is DDP's job; rank 0 saved them, and they are not the initial ones.
    w = read_checkpoint(ddp / "best.pt")["state_dict"]
    w0 = read_checkpoint(ddp / "checkpoints" / "epoch_001.pt")["state_dict"]
    assert set(w) == set(w0)
    assert os.path.getsize(ddp / "best.pt") > 0
