"""Training on your own data (issue 19), through the real commands: no silent wrong result.

Every case runs ``python -m host_training`` / ``python -m quantization`` (their ``main`` with
argv, or a child process where the environment matters) on inputs built here, and checks the
exit status and the one line a user reads.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, python_env
from obspy import Trace, UTCDateTime

from host_training.__main__ import main
from host_training.checkpoints import read_checkpoint
from host_training.datasets.window_dataset import WindowDataset
from host_training.synthetic import parametric as synth

TRAIN_FAST = ["--epochs", "1", "--batch-size", "32", "--threads", "1", "--no-progress"]


def one_error_line(err: str, *words) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


# ------------------------------------------------------------------ 1. prepare sac: zero windows


def _write_without_units(data_gal, folder: Path, station: str) -> None:
    """Three SAC files whose ``idep`` is left undefined: the reader cannot know their units."""
    folder.mkdir(parents=True, exist_ok=True)
    for comp, x in zip("ENZ", data_gal, strict=True):
        tr = Trace(np.asarray(x, dtype=np.float32))
        tr.stats.update({"network": "XX", "station": station, "channel": f"HN{comp}",
                         "sampling_rate": 100.0, "starttime": UTCDateTime(2024, 5, 1, 10)})
        tr.write(str(folder / f"XX.{station}..HN{comp}.SAC"), format="SAC")


def test_prepare_sac_with_every_file_refused_is_an_error_and_a_rerun_works(tmp_path, capsys):
    rng = np.random.default_rng(2)
    rec = synth.earthquake(rng, duration_s=60.0, p_s=20.0, sp_s=4.0, pga_mps2=0.3)
    events = tmp_path / "events"
    _write_without_units(rec.data * 100.0, events / "STA1", "STA1")  # gal, but the files do not say
    tr = Trace((rec.data[2] * 1e6).astype(np.int32))
    tr.stats.update({"network": "XX", "station": "STA2", "channel": "HNZ", "sampling_rate": 100.0})
    tr.write(str(tmp_path / "full.mseed"), format="MSEED", encoding="STEIM2")
    (events / "STA2").mkdir()
    (events / "STA2" / "XX.STA2..HNZ.mseed").write_bytes((tmp_path / "full.mseed").read_bytes()[:3000])
    out = tmp_path / "mine"
    argv = ["prepare", "sac", "--events", str(events), "--out", str(out), "--no-progress"]
    capsys.readouterr()
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err, "no windows from", "unit", "XX.STA1..HN")
    assert not out.exists() and not (tmp_path / "mine.partial").exists()
    # Nothing left behind blocks the corrected command.
    assert main([*argv, "--units", "gal"]) == 0
    assert "already prepared" not in capsys.readouterr().out
    assert len(WindowDataset.load(out)) > 0


# ------------------------------------------------------------------ 2. finetune on a one-class set


def _one_class_set(tiny_run, folder: Path) -> Path:
    ds = WindowDataset.load(tiny_run["data"])
    ds.subset(ds.column("label") == "P").save(folder)
    return folder


def test_finetune_on_a_set_missing_classes_is_refused_unless_allowed(tiny_run, tmp_path, capsys):
    only_p = _one_class_set(tiny_run, tmp_path / "only_p")
    argv = ["finetune", "--from", str(tiny_run["checkpoint"]), "--data", str(only_p), *TRAIN_FAST]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    one_error_line(capsys.readouterr().err, "'S'", "'noise'", "--allow-missing-classes")
    assert not (tmp_path / "refused" / "best.pt").exists()

    out = tmp_path / "allowed"
    assert main([*argv, "--out", str(out), "--allow-missing-classes"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "'S'" in captured.err and "'noise'" in captured.err
    original = str(Path(tiny_run["data"]).resolve())
    assert f"original test split ({original})" in captured.out, captured.out
    summary = json.loads((out / "finetune_summary.json").read_text())
    assert summary["missing_classes"] == ["S", "noise"]
    assert summary["original"]["data"] == original and summary["original"]["n"] > 0
    assert 0 <= summary["original"]["after"]["accuracy"] <= 1


def test_finetune_says_when_the_base_models_data_is_gone(tiny_run, tmp_path, capsys):
    ckpt = read_checkpoint(tiny_run["checkpoint"])
    ckpt["extra"]["data"] = str(tmp_path / "moved_away")
    torch.save(ckpt, tmp_path / "base.pt")
    assert main(["finetune", "--from", str(tmp_path / "base.pt"), "--data", str(tiny_run["data"]),
                 "--out", str(tmp_path / "ft"), *TRAIN_FAST]) == 0
    printed = capsys.readouterr().out
    assert "original test split" in printed and "moved_away" in printed and "not found" in printed
    summary = json.loads((tmp_path / "ft" / "finetune_summary.json").read_text())
    assert "not found" in summary["original"]["error"]


# ------------------------------------------------------------------ 3. one run per --out


@pytest.fixture(scope="module")
def other_data(tmp_path_factory):
    """A second data set with its own data card."""
    folder = synth.synthetic_dataset(40, seed=9).save(tmp_path_factory.mktemp("other") / "data")
    (folder / "data_card.json").write_text(json.dumps({"windows": 120, "source": "other synthetic"}))
    return folder


def test_an_out_holding_another_run_is_refused(tiny_run, other_data, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--out", str(out), "--allow-chance", *TRAIN_FAST]
    assert main([*base, "--data", str(tiny_run["data"]), "--seed", "1"]) == 0
    before = sorted(p.name for p in out.rglob("*"))
    capsys.readouterr()
    assert main([*base, "--data", str(tiny_run["data"]), "--seed", "2"]) == 2  # other settings
    one_error_line(capsys.readouterr().err, str(out), "another run", "--resume")
    assert main([*base, "--data", str(other_data), "--seed", "1"]) == 2  # other data
    one_error_line(capsys.readouterr().err, str(out), "another run")
    assert sorted(p.name for p in out.rglob("*")) == before
    # The same command again is the same run: allowed.
    assert main([*base, "--data", str(tiny_run["data"]), "--seed", "1"]) == 0


def test_resume_refuses_a_checkpoint_of_other_data(tiny_run, other_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--out", str(out), "--allow-chance", *TRAIN_FAST]
    assert main(["train", "--data", str(tiny_run["data"]), *args]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(other_data), "--resume", *args]) == 2
    one_error_line(capsys.readouterr().err, "data card")
    # Without the run's config.json, the checkpoint itself tells whose run it is.
    stray = tmp_path / "stray"
    shutil.copytree(out / "checkpoints", stray / "checkpoints")
    assert main(["train", "--data", str(other_data), "--resume", "--out", str(stray), "--allow-chance",
                 *TRAIN_FAST]) == 2
    one_error_line(capsys.readouterr().err, "epoch_001.pt", "data card")


# ------------------------------------------------------------------ 4. dev, fractions, int16


def test_dev_is_the_validation_split(tiny_run, tmp_path, capsys):
    rows = (Path(tiny_run["data"]) / "metadata.csv").read_text()
    assert ",dev," in rows or ",dev\n" in rows  # the files say SeisBench's name
    assert main(["evaluate", "--model", str(tiny_run["checkpoint"]), "--data", str(tiny_run["data"]),
                 "--split", "dev", "--out", str(tmp_path / "ev")]) == 0
    dev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert main(["evaluate", "--model", str(tiny_run["checkpoint"]), "--data", str(tiny_run["data"]),
                 "--split", "val", "--out", str(tmp_path / "ev2")]) == 0
    assert json.loads((tmp_path / "ev2" / "metrics.json").read_text())["n"] == dev["n"] > 0
    assert main(["finetune", "--from", str(tiny_run["checkpoint"]), "--data", str(tiny_run["data"]),
                 "--split", "dev", "--out", str(tmp_path / "ft"), *TRAIN_FAST]) == 0
    assert json.loads((tmp_path / "ft" / "finetune_summary.json").read_text())["split"] == "val"


def test_split_fractions_must_sum_to_one(tiny_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["prepare", "merge", str(tiny_run["data"]), "--out", str(tmp_path / "m"),
                 "--fractions", "0.5", "0.5", "0.5", "--no-progress"]) == 2
    one_error_line(capsys.readouterr().err, "--fractions", "sum to 1", "1.5")
    assert not (tmp_path / "m").exists()
    assert main(["prepare", "sac", "--events", str(tmp_path), "--out", str(tmp_path / "s"),
                 "--fractions", "0.7", "0.2", "0.2", "--no-progress"]) == 2
    one_error_line(capsys.readouterr().err, "--fractions", "sum to 1")
    assert main(["prepare", "merge", str(tiny_run["data"]), "--out", str(tmp_path / "ok"),
                 "--fractions", "0.6", "0.2", "0.2", "--no-progress"]) == 0


def test_int16_refuses_a_kind_that_does_not_take_int16_windows(tmp_path, capsys):
    from test_second_stage import write_model

    from quantization.__main__ import main as quant_main

    source = write_model(tmp_path / "source.onnx")
    capsys.readouterr()
    assert quant_main(["int16", str(source), str(tmp_path / "source_int16.onnx")]) == 2
    one_error_line(capsys.readouterr().err, "source.onnx", "SpectrogramCNN", "EarthquakeCNN")
    assert not (tmp_path / "source_int16.onnx").exists()


# ------------------------------------------------------------------ 5. defaults in a fresh clone


def _clone(tmp_path: Path) -> Path:
    """The packages copied to a folder with no ``../shared`` beside it, as a fresh clone."""
    clone = tmp_path / "clone"
    for package in ("edge_runtime", "host_training", "quantization", "tools"):
        shutil.copytree(REPO / package, clone / package, ignore=shutil.ignore_patterns("__pycache__"))
    return clone


def _run_in(clone: Path, *argv) -> subprocess.CompletedProcess:
    env = python_env()
    env["PYTHONPATH"] = os.pathsep.join([str(clone), env["PYTHONPATH"]])  # the clone's packages first
    return subprocess.run([sys.executable, *argv], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=300)


def test_defaults_need_no_developer_folders(tiny_run, tmp_path):
    clone = _clone(tmp_path)
    run = _run_in(clone, "-m", "host_training.transfer", "--model", str(tiny_run["onnx"]))
    assert run.returncode == 2, run.stderr
    one_error_line(run.stderr, "--realdata", str(tmp_path / "shared" / "realdata"))
    run = _run_in(clone, "-m", "tools", "bundle-qemu", str(tmp_path / "node.tar.gz"))
    assert run.returncode == 2, run.stderr
    one_error_line(run.stderr, "--record", str(tmp_path / "shared" / "realdata"))


# ------------------------------------------------------------------ 6. a folder as output file


def test_a_folder_as_output_file_is_one_line(tiny_run, tmp_path, capsys):
    from quantization.__main__ import main as quant_main

    folder = tmp_path / "models"
    folder.mkdir()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(tiny_run["checkpoint"]), "--out", str(folder)]) == 2
    one_error_line(capsys.readouterr().err, str(folder), "is a folder")
    assert quant_main(["simplify", str(tiny_run["onnx"]), str(folder)]) == 2
    one_error_line(capsys.readouterr().err, str(folder), "is a folder")
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------------ 7. console scripts name their extra

# A child that blocks the imports of argv[1] (comma-separated) and runs a console script's main.
CONSOLE = r"""
import importlib, importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Block())
module, function = sys.argv[2].split(":")
sys.argv = [sys.argv[3], *sys.argv[4:]]
sys.exit(getattr(importlib.import_module(module), function)())
"""
HOST = "torch,obspy,scipy,h5py,matplotlib,tqdm,onnx,onnxsim"
NOTHING = HOST + ",numpy,onnxruntime,serial"


def _console(script: str, blocked: str, *argv) -> subprocess.CompletedProcess:
    entry = {"seismictorch-host": "host_training.__main__:main",
             "seismictorch-quant": "quantization.__main__:main",
             "seismictorch-node": "edge_runtime.__main__:main",
             "seismictorch-tools": "tools.__main__:main"}[script]
    return subprocess.run([sys.executable, "-c", CONSOLE, blocked, entry, script, *argv], cwd=REPO,
                          env=python_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script, blocked, argv, extra", [
    ("seismictorch-host", HOST, ["train", "--help"], "host"),
    ("seismictorch-quant", HOST, ["int16", "a.onnx", "b.onnx"], "host"),
    ("seismictorch-tools", HOST, ["replay", "x.sac", "--pty"], "host"),
    ("seismictorch-host", NOTHING, ["--help"], "host"),
    ("seismictorch-quant", NOTHING, ["--help"], "host"),
    ("seismictorch-node", NOTHING, ["--help"], "edge"),
    ("seismictorch-tools", NOTHING, ["--help"], "edge"),
])
def test_console_scripts_name_the_extra_they_need(script, blocked, argv, extra):
    run = _console(script, blocked, *argv)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"{script}") and f"needs the {extra} extra" in run.stderr, run.stderr
    assert f"pip install '.[{extra}" in run.stderr, run.stderr


def test_tools_commands_of_the_edge_extra_run_without_the_host_extra():
    run = _console("seismictorch-tools", HOST, "bundle", "--help")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
