"""Every quantization step on the tiny trained model, run in real onnxruntime sessions."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_runtime.backends import OnnxBackend
from quantization.__main__ import main
from quantization.files import ModelFileError
from quantization.int16 import quantize_int16
from quantization.report import choose, format_table, quantization_report
from quantization.static import calibration_windows, quantize_static_model


def _ops_after_load(path, tmp_path):
    """Operator types onnxruntime runs (hardware-independent optimizations; int8 QDQ
    fusion allowed as on the node's ARM CPU, whatever this machine's x86 extensions)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.add_session_config_entry("session.qdqisint8allowed", "1")
    options.optimized_model_filepath = str(tmp_path / f"opt_{path.name}")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


@pytest.fixture(scope="module")
def data_folder(tiny_model, tmp_path_factory):
    return tiny_model["dataset"].save(tmp_path_factory.mktemp("quant_data") / "data")


@pytest.fixture(scope="module")
def calibration(tiny_model):
    return calibration_windows(tiny_model["dataset"], n=64, seed=0)


@pytest.fixture(scope="module")
def int8_model(tiny_model, calibration, tmp_path_factory):
    dst = tmp_path_factory.mktemp("static") / "model_int8.onnx"
    info = quantize_static_model(tiny_model["float"], dst, calibration, scheme="int8")
    return dst, info


def test_int16_input_adds_only_a_cast(tiny_model, tmp_path):
    """The int16 model runs the float model's kernels plus one Cast (the 1/32767 scale is
    folded into the first Conv), so the halved input costs nothing."""
    float_ops = _ops_after_load(tiny_model["float"], tmp_path)
    int16_ops = _ops_after_load(tiny_model["int16"], tmp_path)
    assert int16_ops == ["Cast"] + float_ops
    assert OnnxBackend(tiny_model["int16"]).input_dtype == np.int16


def test_static_int8_fuses_gelu_and_agrees(tiny_model, int8_model, tmp_path):
    path, info = int8_model
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Gelu" in ops and "Erf" not in ops  # GELU fused before quantizing: one float island
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Symmetric max-abs scales: every zero point is 0.
    model = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(np.all(z == 0) for z in zero_points)
    backend = OnnxBackend(path)
    assert backend.metadata.extra["quantization"]["scheme"] == "int8"
    assert info["bytes"] < 0.6 * tiny_model["float"].stat().st_size
    # onnxruntime turns the QDQ pairs around Conv into integer convolutions.
    assert _ops_after_load(path, tmp_path).count("QLinearConv") == 3


@pytest.mark.parametrize("scheme", ["int8", "a16w8", "a16w16"])
def test_static_schemes_keep_the_float_decisions(tiny_model, calibration, int8_model, data_folder,
                                                 tmp_path, capsys, scheme):
    path = int8_model[0] if scheme == "int8" else tmp_path / f"model_{scheme}.onnx"
    if scheme != "int8":
        quantize_static_model(tiny_model["float"], path, calibration, scheme=scheme)
    assert main(["compare", str(tiny_model["float"]), str(path), "--data", str(data_folder)]) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "accuracy" in out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["agreement"] >= 0.97
    assert abs(result["accuracy_delta_pp"]) <= 3.0
    assert result["accuracy_reference"] >= 0.85


def test_compare_reports_accuracy_apart_from_agreement(tiny_model, data_folder, capsys):
    assert main(["compare", str(tiny_model["float"]), str(tiny_model["int16"]),
                 "--data", str(data_folder)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    part = tiny_model["dataset"].split("test")
    assert result["n"] <= len(part)
    assert result["agreement"] >= 0.99
    # Accuracy is measured against the labels, not against the other model.
    assert result["accuracy_reference"] != 1.0 or result["agreement"] == 1.0
    assert set(result) >= {"accuracy_reference", "accuracy_candidate", "agreement"}


def test_compare_refuses_models_in_the_wrong_order(tiny_model, data_folder, capsys):
    rc = main(["compare", str(tiny_model["int16"]), str(tiny_model["float"]), "--data", str(data_folder)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "wrong order" in err and "Traceback" not in err


def test_dynamic_quantizes_the_dense_layers(tiny_model, tmp_path, capsys):
    dst = tmp_path / "model_dynamic.onnx"
    assert main(["dynamic", str(tiny_model["float"]), str(dst)]) == 0
    info = json.loads(capsys.readouterr().out)
    # EarthquakeCNN's dense layers hold 77 % of its 33 k weights; int8 stores them in a quarter
    # (SpectrogramCNN, 99 % dense: 25 % of the float file; measured in the README).
    assert info["layers"] == 3 and info["size_ratio"] < 0.6
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert "MatMulInteger" in ops and "Gemm" not in ops
    x = tiny_model["x"]["test"]
    a = ort.InferenceSession(str(tiny_model["float"]), providers=["CPUExecutionProvider"]).run(
        None, {"modelInput": x})[0]
    b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"modelInput": x})[0]
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97


def test_report_measures_every_variant_and_choose_writes_the_choice(tiny_model, int8_model, data_folder,
                                                                    tmp_path):
    models = [tiny_model["float"], tiny_model["int16"], int8_model[0]]
    report = quantization_report(models, data_folder, tmp_path, rounds=2, memory=True)
    for name in ("report.json", "report.txt", "report.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = {r["model"]: r for r in report["variants"]}
    assert set(rows) == {"model.onnx", "model_int16.onnx", "model_int8.onnx"}
    ref = rows["model.onnx"]
    assert ref["agreement"] == 1.0 and ref["accuracy_delta_pp"] == 0.0
    for r in rows.values():
        assert set(r["f1"]) == {"P", "S", "noise"}
        assert r["latency_p99_us"] >= r["latency_p50_us"] > 0
        assert r["peak_memory_kib"] is not None and r["peak_memory_kib"] > 0
        assert r["bytes"] == Path(r["path"]).stat().st_size
    assert rows["model_int16.onnx"]["scheme"] == "int16 input"
    assert "model_int8.onnx" in format_table(report)
    choice = choose(tmp_path / "report.json")
    written = json.loads((tmp_path / "chosen_model.json").read_text())
    assert written == choice and choice["model"] in rows
    passing = [r for r in rows.values() if r["accuracy_delta_pp"] >= -0.5 and r["agreement"] >= 0.99]
    assert choice["latency_p50_us"] == min(r["latency_p50_us"] for r in passing)


def test_choose_skips_a_fast_variant_outside_the_gate(tmp_path):
    def row(name, acc, agree, p50):
        return {"model": name, "path": name, "runtime": "onnxruntime", "scheme": "x", "accuracy": acc,
                "agreement": agree, "accuracy_delta_pp": 100 * (acc - 0.95), "latency_p50_us": p50,
                "latency_ratio": p50 / 10, "bytes": 1}

    report = {"reference": "f.onnx", "variants": [row("f.onnx", 0.95, 1.0, 10.0),
                                                  row("fast_bad.onnx", 0.94, 0.995, 5.0),
                                                  row("disagrees.onnx", 0.95, 0.98, 6.0),
                                                  row("ok.onnx", 0.947, 0.995, 8.0)]}
    choice = choose(report, tmp_path / "c.json", gate_pp=0.5)
    assert choice["model"] == "ok.onnx"
    assert choice["rejected"] == ["fast_bad.onnx", "disagrees.onnx"]
    assert choose(report, tmp_path / "c.json", gate_pp=2.0)["model"] == "fast_bad.onnx"
    report["variants"][3]["runtime"] = "litert"
    assert choose(report, tmp_path / "c.json", runtimes=["onnxruntime"])["model"] == "f.onnx"


@pytest.mark.parametrize("step", ["int16", "simplify", "dynamic", "static"])
def test_a_file_that_is_not_onnx_gives_one_line(step, tmp_path, data_folder, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01this is not a model\xff\xfe")
    dst = tmp_path / "out" / "x.onnx"
    extra = ["--data", str(data_folder)] if step == "static" else []
    assert main([step, str(junk), str(dst)] + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.onnx" in err and "not an ONNX model" in err
    assert not dst.exists()
    assert not dst.parent.exists() or not any(dst.parent.iterdir())


def test_wrong_kind_of_model_and_bad_calibration_leave_nothing(tiny_model, tmp_path, capsys):
    dst = tmp_path / "x.onnx"
    # An int16-input model is not a float model to quantize again.
    assert main(["static", str(tiny_model["int16"]), str(dst), "--data", "unused"]) == 2
    assert main(["dynamic", str(tiny_model["int16"]), str(dst)]) == 2
    with pytest.raises(ModelFileError, match="input scheme 'int16_maxabs'"):
        quantize_int16(tiny_model["int16"], dst)
    with pytest.raises(ValueError, match="calibration set is empty"):
        quantize_static_model(tiny_model["float"], dst, np.zeros((0, 1, 80, 3), np.float32))
    with pytest.raises(ValueError, match=r"do not fit the model input"):
        quantize_static_model(tiny_model["float"], dst, np.zeros((4, 1, 40, 3), np.float32))
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)
    assert not dst.exists() and list(tmp_path.iterdir()) == []


def test_help_lists_every_step(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for step in ("int16", "simplify", "static", "dynamic", "tflite", "compare", "report", "choose", "all"):
        assert step in out


def test_all_builds_reports_and_chooses(tiny_model, data_folder, tmp_path, capsys):
    out = tmp_path / "quant"
    assert main(["all", str(tiny_model["float"]), "--data", str(data_folder), "--out", str(out),
                 "--windows", "32", "--rounds", "1", "--no-memory"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["model"] for r in report["variants"]] == [
        "model.onnx", "model_int16.onnx", "model_int8.onnx", "model_a16w8.onnx", "model_a16w16.onnx"]
    choice = json.loads((out / "chosen_model.json").read_text())
    assert (out / choice["model"]).is_file() and choice["model"] in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["windows"] == 32 and config["seed"] == 0
