"""Training a seismologist can trust: resume, early stopping, chance warning, finetuning, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, python_env

from host_training.__main__ import main
from host_training.checkpoints import read_checkpoint
from host_training.models import build_model
from host_training.train import TrainConfig, run_finetune, run_training, train


def _weights(state_dict):
    return torch.cat([v.flatten().float() for k, v in sorted(state_dict.items())])


def test_run_folder_holds_config_checkpoints_and_throughput(tiny_run):
    out = tiny_run["out"]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["optimizer"] == "adam" and config["train"]["step_size"] == 7
    assert config["data_card_sha256"] and config["windows"]["train"] > 0
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == [
        f"epoch_00{i}.pt" for i in range(1, 4)
    ]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["throughput_windows_per_s"] > 0
    assert summary["test"]["per_class"]["P"]["f1"] >= 0
    assert (out / "history.png").stat().st_size > 0 and (out / "test" / "metrics.json").is_file()
    ckpt = read_checkpoint(out / "best.pt")  # weights_only=True
    assert ckpt["model"] == "EarthquakeCNN" and ckpt["classes"] == ["P", "S", "noise"]


def test_defaults_are_the_originals_recipe():
    c = TrainConfig()
    assert (c.optimizer, c.lr, c.scheduler, c.step_size, c.gamma, c.batch_size, c.epochs) == (
        "adam",
        1e-3,
        "step",
        7,
        0.5,
        256,
        50,
    )
    with pytest.raises(ValueError, match="batch_size=0"):
        TrainConfig(batch_size=0)


def test_killed_run_resumes_to_the_same_result(tiny_run, tmp_path):
    """SIGKILL a real `train` process after its first checkpoint, resume, compare with a run
    that was never interrupted."""
    args = [
        "--data",
        str(tiny_run["data"]),
        "--epochs",
        "5",
        "--batch-size",
        "16",
        "--seed",
        "4",
        "--threads",
        "1",
        "--no-progress",
        "--allow-chance",
        "--patience",
        "0",
    ]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_training", "train", "--out", str(out), *args],
        cwd=REPO,
        env=python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "epoch_001.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (out / "best.pt").exists(), "the run ended before it could be interrupted"
    assert main(["train", "--out", str(out), "--resume", *args]) == 0

    reference = tmp_path / "straight"
    assert main(["train", "--out", str(reference), *args]) == 0
    a, b = read_checkpoint(out / "best.pt"), read_checkpoint(reference / "best.pt")
    assert torch.equal(_weights(a["state_dict"]), _weights(b["state_dict"]))
    ha = json.loads((out / "history.json").read_text())
    hb = json.loads((reference / "history.json").read_text())
    assert [h["val_loss"] for h in ha] == [h["val_loss"] for h in hb]


def test_early_stopping_on_validation_loss():
    """Validation labels that contradict the training labels: val loss rises, the run stops."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (96, 1, 80, 3)).astype(np.float32)
    y = (x[:, 0, :, 0].mean(1) > 0).astype(int)
    model = build_model("EarthquakeCNN", 0)
    result = train(
        model,
        x,
        y,
        x[:48],
        1 - y[:48],
        TrainConfig(epochs=30, batch_size=16, patience=2, lr=3e-3, scheduler="none"),
        progress=False,
        n_classes=3,
    )
    assert result["stopped_early"]
    assert len(result["history"]) == result["best_epoch"] + 2 < 30
    losses = [h["val_loss"] for h in result["history"]]
    assert result["best_val_loss"] == min(losses)


def test_chance_level_run_warns_and_exits_non_zero(tiny_run, tmp_path, capsys):
    args = [
        "train",
        "--data",
        str(tiny_run["data"]),
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--lr",
        "1e-6",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "near chance" in err and "--allow-chance" in err
    assert (tmp_path / "a" / "best.pt").is_file()  # the evidence is kept
    assert main([*args, "--out", str(tmp_path / "b"), "--allow-chance"]) == 0


def test_balanced_sampler_augmentation_and_alternative_optimizers(tiny_run, tmp_path):
    augment = ["time_shift", "add_noise", "drop_channels", "scale_amplitude"]
    config = TrainConfig(
        epochs=1,
        batch_size=32,
        optimizer="adamw",
        scheduler="cosine",
        balance="sampler",
        threads=1,
        augment=augment,
    )
    summary = run_training(
        "earthquake", tiny_run["data"], tmp_path, config, allow_chance=True, progress=False
    )
    assert summary["best_epoch"] == 1
    assert json.loads((tmp_path / "config.json").read_text())["train"]["augment"] == augment
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        run_training("earthquake", tiny_run["data"], tmp_path / "x", TrainConfig(augment=["flip"]))


def test_finetune_with_frozen_conv_blocks(tiny_run, tmp_path):
    before = read_checkpoint(tiny_run["checkpoint"])["state_dict"]
    config = TrainConfig(
        epochs=2, batch_size=32, optimizer="adamw", lr=1e-3, scheduler="none", freeze="conv", threads=1
    )
    summary = run_finetune(tiny_run["checkpoint"], tiny_run["data"], tmp_path, config, progress=False)
    after = read_checkpoint(tmp_path / "best.pt")["state_dict"]
    for name in before:
        same = torch.equal(before[name], after[name])
        if name.startswith(("conv", "bn")):
            assert same, f"{name} changed although frozen"  # running statistics included
    assert not torch.equal(before["fc1.weight"], after["fc1.weight"])
    assert {"accuracy", "confusion"} <= set(summary["before"]) and summary["n"] > 0
    assert (tmp_path / "before" / "metrics.json").is_file() and (
        tmp_path / "after" / "metrics.json"
    ).is_file()
    assert summary["frozen"] and all(n.startswith(("conv", "bn")) for n in summary["frozen"])


@pytest.mark.parametrize(
    "case",
    [
        "onnx_as_checkpoint",
        "junk_checkpoint",
        "wrong_folder",
        "empty_split",
        "split_typo",
        "spectrogram_on_windows",
    ],
)
def test_bad_input_gives_one_line(case, tiny_run, tmp_path, capsys):
    data = str(tiny_run["data"])
    if case == "onnx_as_checkpoint":
        argv, words = (
            ["export", "--checkpoint", str(tiny_run["onnx"]), "--out", str(tmp_path / "m.onnx")],
            ["model.onnx", "not a torch checkpoint"],
        )
    elif case == "junk_checkpoint":
        (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk")
        argv, words = (
            ["finetune", "--from", str(tmp_path / "junk.pt"), "--data", data],
            ["junk.pt", "not a SeismicTorch checkpoint"],
        )
    elif case == "wrong_folder":
        argv, words = (
            ["train", "--data", str(tiny_run["out"]), "--out", str(tmp_path / "o")],
            ["waveforms.hdf5"],
        )
    elif case == "empty_split":
        from host_training.datasets.window_dataset import WindowDataset

        ds = WindowDataset.load(data)
        ds.subset(ds.column("split") != "val").save(tmp_path / "noval")
        argv, words = (
            ["train", "--data", str(tmp_path / "noval"), "--out", str(tmp_path / "o")],
            ["metadata.csv", "split 'val' is empty"],
        )
    elif case == "split_typo":
        argv, words = (
            ["evaluate", "--model", str(tiny_run["checkpoint"]), "--data", data, "--split", "tset"],
            ["no split 'tset'", "did you mean 'test'"],
        )
    else:
        argv, words = (
            ["train", "--model", "spectrogram", "--data", data, "--out", str(tmp_path / "o")],
            ["do not fit SpectrogramCNN", "record-level"],
        )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
