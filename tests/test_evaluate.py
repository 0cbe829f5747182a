"""One evaluator for a checkpoint and its ONNX exports, on the same windows."""

import json

import numpy as np
import pytest

from host_training.__main__ import main
from host_training.evaluate import (
    evaluate,
    phase_confusion,
    precision_recall_curve,
    reliability,
    roc_curve,
    score,
)


def test_checkpoint_and_onnx_are_judged_on_the_same_windows(tiny_run, tmp_path):
    a = evaluate(tiny_run["checkpoint"], tiny_run["data"], "test", out=tmp_path / "pt")
    b = evaluate(tiny_run["onnx"], tiny_run["data"], "test", out=tmp_path / "onnx")
    assert (a["backend"], b["backend"]) == ("torch", "onnx")
    assert a["n"] == b["n"] > 0 and a["dropped"] == b["dropped"]
    assert a["confusion"] == b["confusion"]
    assert a["per_class"]["S"]["roc_auc"] == pytest.approx(b["per_class"]["S"]["roc_auc"], abs=1e-6)
    for name in (
        "metrics.json",
        "curves.json",
        "confusion.png",
        "roc.png",
        "precision_recall.png",
        "reliability.png",
    ):
        assert (tmp_path / "onnx" / name).stat().st_size > 0, name
    lines = (tmp_path / "onnx" / "predictions.csv").read_text().splitlines()
    assert len(lines) == b["n"] + 1 and lines[0].endswith("true,predicted,confidence,p_P,p_S,p_noise")
    saved = json.loads((tmp_path / "onnx" / "metrics.json").read_text())
    assert (
        saved["phase_confusion"]["P_S_windows"]
        == a["per_class"]["P"]["support"] + a["per_class"]["S"]["support"]
    )
    assert set(saved["per_class"]["P"]) >= {"precision", "recall", "f1", "support", "average_precision"}


def test_int16_input_model_through_the_same_evaluator(tiny_run, tmp_path):
    from quantization.int16 import quantize_int16

    path = quantize_int16(tiny_run["onnx"], tmp_path / "m16.onnx")
    a = evaluate(tiny_run["onnx"], tiny_run["data"], "test")
    b = evaluate(path, tiny_run["data"], "test")
    assert b["input_scheme"] == "int16_maxabs" and b["n"] == a["n"]
    assert abs(a["accuracy"] - b["accuracy"]) <= 1.0 / a["n"] + 1e-9


def test_worst_misclassified_windows_are_plotted(tiny_run, tmp_path, capsys):
    """An untrained model makes mistakes: the worst ones come out as a figure and in metrics.json."""
    from edge_runtime.preprocess import PreprocessConfig
    from host_training.checkpoints import save_checkpoint
    from host_training.models import PHASE_CLASSES, build_model
    from host_training.train import TrainConfig

    ckpt = save_checkpoint(
        tmp_path / "untrained.pt",
        build_model("EarthquakeCNN", 9),
        "EarthquakeCNN",
        PHASE_CLASSES,
        PreprocessConfig().to_dict(),
        TrainConfig(),
    )
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(ckpt),
                "--data",
                str(tiny_run["data"]),
                "--split",
                "all",
                "--worst",
                "4",
            ]
        )
        == 0
    )
    out = tmp_path / "untrained_eval_all"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["worst"]) == 4
    confidences = [w["confidence"] for w in metrics["worst"]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(w["true"] != w["predicted"] and w.get("record") for w in metrics["worst"])
    assert (out / "worst_misclassified.png").stat().st_size > 0
    assert "P<->S" in capsys.readouterr().out


def test_roc_auc_is_the_probability_a_positive_outranks_a_negative(rng):
    y = rng.integers(0, 2, 300).astype(bool)
    s = rng.normal(size=300) + y
    s[:20] = s[20:40]  # ties count one half
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        len(pos) * len(neg)
    )
    assert roc_curve(y, s)["auc"] == pytest.approx(pairwise, abs=1e-12)


def test_average_precision_by_hand():
    # scores ranked: pos, neg, pos -> precision at the positives 1 and 2/3, AP = (1 + 2/3) / 2
    pr = precision_recall_curve(np.array([1, 0, 1], bool), np.array([0.9, 0.8, 0.7]))
    assert pr["average_precision"] == pytest.approx((1 + 2 / 3) / 2)


def test_phase_confusion_reads_the_originals_matrix():
    """The original's validation confusion (SEED_NOTES): 588 P as S, 197 S as P."""
    cm = [[2833, 588, 12], [197, 3194, 125], [4, 47, 7687]]
    ps = phase_confusion(cm, ["P", "S", "noise"])
    assert (ps["P_as_S"], ps["S_as_P"], ps["P_S_windows"]) == (588, 197, 3433 + 3516)
    assert ps["rate"] == pytest.approx(785 / 6949)
    assert phase_confusion([[1, 0], [0, 1]], ["earthquake", "active_source"]) is None


def test_reliability_and_score_on_known_probabilities():
    probs = np.array([[0.9, 0.05, 0.05]] * 10 + [[0.1, 0.6, 0.3]] * 10)
    y = np.array([0] * 9 + [1] + [1] * 6 + [2] * 4)
    rel = reliability(probs, y)
    assert rel["ece"] == pytest.approx(0.0, abs=1e-12)  # 90 % right at 0.9, 60 % right at 0.6
    metrics, curves = score(probs, y, ["P", "S", "noise"])
    assert metrics["accuracy"] == pytest.approx(15 / 20)
    assert metrics["per_class"]["noise"]["recall"] == 0.0 and set(curves) == {"roc", "pr", "reliability"}


def test_accuracy_grouped_by_recorded_components():
    from host_training.evaluate import grouped_accuracy

    probs = np.eye(3)[[0, 1, 1, 0, 2, 2]]
    y = np.array([0, 0, 1, 1, 2, 2])  # the two mistakes are P<->S on the two-component windows
    rows = [{"channels": c, "sensor": "adxl355"} for c in ("ENZ", "EN", "ENZ", "EN", "ENZ", "EN")]
    by = grouped_accuracy(probs, y, ["P", "S", "noise"], rows)
    assert set(by) == {"channels"}  # a constant column says nothing
    assert by["channels"]["ENZ"] == {"n": 3, "accuracy": 1.0, "P_S_rate": 0.0}
    assert by["channels"]["EN"] == {"n": 3, "accuracy": 1 / 3, "P_S_rate": 1.0}
