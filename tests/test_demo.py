"""The quick-start demo, end to end, at reduced size (the full one runs in `make demo`).

The chain runs on the parametric generator here (seconds); the physics generator's part
of the demo (its bank, windows and replayed records) is checked on the tiny bank preset.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, python_env


def test_demo_runs_the_whole_chain(tmp_path):
    out = tmp_path / "demo"
    # 300 earthquakes: at 200 the noise record gives 2 false events
    result = subprocess.run(
        [sys.executable, "-m", "tools", "demo", "--out", str(out), "--generator", "simple",
         "--n-events", "300", "--epochs", "6", "--threads", "1", "--speed", "0"],
        cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "earthquakes detected 3/3  false events 0 " in result.stdout
    # The demo replays through replay-test: one fresh node per record.
    assert len(list((out / "replay" / "records").glob("*/node.log"))) == 4
    for name in ("config.json", "summary.json", "replay/summary.json", "replay/summary.png",
                 "model/earthquake_cnn.onnx", "model/earthquake_cnn_int16_sim.onnx",
                 "model/history.png", "model/history.json", "model/confusion_test.png",
                 "dataset/waveforms.hdf5", "dataset/metadata.csv"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["export"]["onnx"]["max_abs_diff"] <= 1e-5
    assert summary["export"]["int16_vs_float"]["class_agreement"] >= 0.99
    assert summary["node"]["decoder"]["crc_errors"] >= 1  # the demo injects line faults
    assert len(list((out / "sac").rglob("*.SAC"))) == 12


def test_physics_demo_data_from_a_cached_bank(tmp_path):
    try:
        import pygrt  # noqa: F401
    except ImportError:
        pytest.fail("pygrt-kit is missing: .venv/bin/pip install -e '.[host]'", pytrace=False)
    from tools.demo import DemoConfig, make_records, physics_windows

    config = DemoConfig(out=str(tmp_path / "demo"), n_windows=240, bank_preset="tiny",
                        bank_cache=str(tmp_path / "greens"), bank_jobs=1)
    dataset, info, bank = physics_windows(config)
    assert not info["bank_cached"] and info["bank_cpu_s"] > 0
    assert [f.name for f in (tmp_path / "greens").glob("greens-*.npz")] == [f"greens-{bank.config.key()}.npz"]
    labels = [r["label"] for r in dataset.metadata]
    assert {"P", "S", "noise"} == set(labels) and len(dataset) >= 200
    # Dead and missing channels, the point of training the demo on this generator.
    assert {r["channels"] for r in dataset.metadata} > {"ENZ"}
    assert info["card"]["windows"] == len(dataset)
    again = physics_windows(config)[1]
    assert again["bank_cached"] and again["bank_s"] < info["bank_s"]

    records = make_records(config, bank)
    assert [name for name, *_ in records] == ["quake1", "quake2", "quake3", "noise"]
    fs = config.sampling_rate_hz
    for (name, rec, _), (pga, _sp) in zip(records, config.earthquakes, strict=False):
        assert rec.kind == "earthquake" and 15.0 <= rec.p_s < rec.s_s < config.record_s
        ip = int(rec.p_s * fs)
        shaking = rec.data[:2] - np.median(rec.data[:2], axis=1, keepdims=True)
        # The scaled horizontal peak is the config's, and nothing of it comes before P.
        assert abs(np.abs(shaking).max() - pga) < 0.2 * pga + 0.01, name
        assert np.abs(shaking[:, : ip - int(0.5 * fs)]).max() < 0.5 * pga, name  # MEMS noise only
    noise = records[-1][1]
    assert noise.kind == "noise" and noise.p_s is None
    assert sorted(set(noise.params["transients"])) == ["door", "footsteps", "knock", "machinery", "spike",
                                                        "vehicle"]


def test_demo_refuses_bad_settings(tmp_path):
    for flag, value in (("--n-windows", "0"), ("--epochs", "0"), ("--n-events", "-3")):
        r = subprocess.run([sys.executable, "-m", "tools", "demo", "--out", str(tmp_path / "d"), flag, value],
                           cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (flag, r.stdout, r.stderr)
        assert flag.lstrip("-").replace("-", "_") in r.stderr or flag in r.stderr
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "d").exists()
