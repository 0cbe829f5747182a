"""The offline detectability measure of a synthetic network (``tools.network_test.detectability``).

The node's own window chain, model, event detector and network pick trigger on a record,
without a pty or a broker: a clear P gives a P pick at its onset; the pick thresholds are
the node's ``[mqtt]`` ones unless given; one strong earthquake in a small network of the
network test's generator is picked on at least four stations.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, python_env

from tools.network_test import detectability as det


def test_a_clear_p_is_picked_at_its_onset(tiny_model):
    from edge_runtime.backends import load_backend
    from host_training.synthetic.parametric import earthquake

    rec = earthquake(np.random.default_rng(3), duration_s=60.0, p_s=20.0, pga_mps2=0.3, sp_s=6.0,
                     sigma_mps2=5e-4)
    model = str(tiny_model["sim"])
    config = det.node_config(model, "N000")
    picks = det.station_picks(det.classify_record(rec.data, load_backend(model), config), config)
    p = [x["time_us"] / 1e6 - det.T0_US / 1e6 for x in picks if x["phase"] == "P"]
    assert p and min(abs(t - 20.0) for t in p) <= 0.5, picks


def test_pick_thresholds_are_the_nodes_unless_given(tiny_model):
    model = str(tiny_model["sim"])
    node = det.node_config(model, "N000")
    assert (node.mqtt_pick_prob, node.mqtt_pick_min_pga_mps2, node.mqtt_pick_windows) == (0.3, 0.004, 2)
    assert det._thresholds("0.2::1") == {"pick_prob": 0.2, "pick_windows": 1}
    lower = det.node_config(model, "N000", **det._thresholds("0.2::1"))
    assert (lower.mqtt_pick_prob, lower.mqtt_pick_min_pga_mps2, lower.mqtt_pick_windows) == (0.2, 0.004, 1)


@pytest.mark.parametrize("args, says", [
    (["--thresholds", "0.3:0.005"], "PROB:PGA_MPS2:WINDOWS"),
    (["--thresholds", "0.3:x:2"], "PGA_MPS2 are numbers"),
    (["--model", "/nonexistent/model.onnx"], "detectability:"),
])
def test_mistakes_are_one_line(args, says, tiny_model):
    argv = (["--model", str(tiny_model["sim"])] if "--model" not in args else []) + args
    command = [sys.executable, "-m", "tools.network_test.detectability", *argv, "--events", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=python_env(), timeout=120)
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_strong_earthquake_is_detectable(tiny_model):
    result = det.measure(str(tiny_model["sim"]), events=1, seed=2, stations=6, magnitudes=(4.4, 4.5),
                         noise_hours=0.02, thresholds=[{}, {"pick_prob": 0.9}])
    node, strict = result["results"]
    assert node["quakes"][0]["p_stations"] >= 4 and node["detectable"] == 1, node
    assert strict["quakes"][0]["p_stations"] <= node["quakes"][0]["p_stations"]
    assert node["noise_station_hours"] == pytest.approx(0.12)
    assert node["pick_prob"] == 0.3 and strict["pick_prob"] == 0.9


def test_node_noise_windows_join_the_training_set():
    from host_training.synthetic.parametric import synthetic_dataset
    from tools.network_test.model import with_node_noise

    base = synthetic_dataset(20, seed=1)
    mixed = with_node_noise(base, 30, seed=1)
    added = mixed.metadata[len(base):]
    assert len(mixed) == len(base) + 30 and mixed.waveforms.shape[1:] == base.waveforms.shape[1:]
    assert {r["label"] for r in added} == {"noise"}
    assert {r["split"] for r in added} == {"train", "val", "test"}
    quiet = np.array([not r["transient"] for r in added])
    assert 5 <= quiet.sum() <= 25
    rms = mixed.waveforms[len(base):, 0][quiet].std(axis=-1)  # E: self-noise and drift, no gravity
    assert 2e-4 < rms.min() and rms.max() < 6e-3
    assert with_node_noise(base, 0, seed=1) is base


def test_the_default_detector_is_trained_once_and_copied_from_the_cache(tiny_model, tmp_path, monkeypatch):
    """network-test without --model: a detector cached for this recipe, seed and training
    code is copied into OUT/model, not trained again; another seed or recipe is another
    entry, and a cache entry without its model is trained again (training refused here)."""
    import shutil

    from tools.network_test import model as nt_model

    cache = tmp_path / "cache"
    key = nt_model.recipe_key("physics", 1)
    assert key != nt_model.recipe_key("physics", 2) and key != nt_model.recipe_key("parametric", 1)
    assert key == nt_model.recipe_key("physics", 1)  # the same checkout, the same key
    (cache / key).mkdir(parents=True)
    shutil.copy2(tiny_model["sim"], cache / key / "model_int16_sim.onnx")

    def refuse(*args, **kwargs):
        raise RuntimeError("training started")

    monkeypatch.setattr(nt_model, "train_detector", refuse)
    for out in ("run1", "run2"):
        path = nt_model.tiny_model(tmp_path / out / "model", cache=cache)
        assert path == tmp_path / out / "model" / "model_int16_sim.onnx"
        assert path.read_bytes() == tiny_model["sim"].read_bytes()
    (cache / key / "model_int16_sim.onnx").unlink()  # a broken entry: trained again
    with pytest.raises(RuntimeError, match="training started"):
        nt_model.tiny_model(tmp_path / "run3" / "model", cache=cache)
