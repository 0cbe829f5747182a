"""Every package has one command line whose --help a new user can follow."""

import subprocess
import sys

import pytest
from conftest import REPO, python_env


@pytest.mark.parametrize("package,words", [
    ("edge_runtime", ["run", "info"]),
    ("host_training", ["synth", "train", "finetune", "evaluate", "export"]),
    ("quantization", ["int16", "simplify", "compare"]),
    ("tools", ["demo", "replay", "score", "bench"]),
])
def test_help(package, words):
    result = subprocess.run([sys.executable, "-m", package, "--help"], cwd=REPO, env=python_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"python -m {package}" in result.stdout
    for word in words:
        assert word in result.stdout


def test_host_cli_chain(tmp_path):
    """synth -> train -> export -> int16 -> simplify -> compare, as the docstrings show."""
    def run(*args):
        r = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=python_env(),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    data, train = tmp_path / "data", tmp_path / "train"
    run("host_training", "synth", "--out", str(data), "--n-events", "60", "--seed", "3")
    run("host_training", "train", "--data", str(data), "--out", str(train), "--epochs", "1", "--allow-chance",
        "--threads", "1")
    assert (train / "config.json").is_file() and (train / "history.png").is_file()
    onnx_path = tmp_path / "m.onnx"
    run("host_training", "export", "--checkpoint", str(train / "best.pt"), "--out", str(onnx_path))
    run("quantization", "int16", str(onnx_path), str(tmp_path / "m16.onnx"))
    run("quantization", "simplify", str(tmp_path / "m16.onnx"), str(tmp_path / "m16s.onnx"))
    out = run("quantization", "compare", str(onnx_path), str(tmp_path / "m16s.onnx"), "--data", str(data))
    assert "agreement" in out
    assert '"int16_maxabs"' in run("edge_runtime", "info", str(tmp_path / "m16s.onnx"))


def test_train_reports_a_missing_dataset_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "host_training", "train", "--data", str(tmp_path),
                        "--out", str(tmp_path / "o")], cwd=REPO, env=python_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: ") and "waveforms.hdf5" in r.stderr


def test_console_scripts_and_defaults_in_help():
    """pyproject's [project.scripts] point at the package CLIs; host --help shows every default."""
    import importlib
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"seismictorch-host", "seismictorch-quant", "seismictorch-node", "seismictorch-tools"} <= set(
        scripts)
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
    from host_training.__main__ import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for name, words in {"train": ["(default: 50)", "(default: 256)", "(default: adam)", "(default: 0.001)",
                                  "(default: step)", "(default: 7)", "(default: 0.5)"],
                        "finetune": ["(default: adamw)", "(default: 32)", "(default: none)"],
                        "evaluate": ["(default: test)"], "export": ["(default: 20)"]}.items():
        text = " ".join(sub[name].format_help().split())
        for word in words:
            assert word in text, (name, word)
