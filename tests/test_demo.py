"""The quick-start demo, end to end, at reduced size (the full one runs in `make demo`)."""

import json
import subprocess
import sys

from conftest import REPO, python_env


def test_demo_runs_the_whole_chain(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "tools", "demo", "--out", str(out), "--n-events", "600",
         "--epochs", "6", "--speed", "0"],
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
