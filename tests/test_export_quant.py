"""Export, metadata, int16 input scheme and simplification, all run in onnxruntime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_runtime.backends import OnnxBackend
from edge_runtime.metadata import METADATA_KEY, ModelMetadata
from host_training.evaluate import predict_torch
from quantization.int16 import dataset_agreement, int16_input_model


def test_tiny_model_learns(tiny_model):
    assert tiny_model["val_accuracy"] >= 0.9


def test_torch_and_onnxruntime_agree(tiny_model):
    x = tiny_model["x"]["test"]
    session = ort.InferenceSession(str(tiny_model["float"]), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"modelInput": x})
    assert np.abs(got - predict_torch(tiny_model["model"], x)).max() <= 1e-5
    assert tiny_model["exported"]["max_abs_diff"] <= 1e-5
    # Dynamic batch: one window at a time, as the node runs it.
    (one,) = session.run(None, {"modelInput": x[:1]})
    np.testing.assert_allclose(one, got[:1], atol=1e-5)


def test_metadata_carries_what_the_node_needs(tiny_model):
    for path in ("float", "int16", "sim"):
        backend = OnnxBackend(tiny_model[path])
        meta = backend.metadata
        assert meta.classes == ["P", "S", "noise"] and meta.components == ["E", "N", "Z"]
        assert meta.preprocess["target_rate_hz"] == 40.0 and meta.preprocess["highpass_hz"] == 0.5
    assert OnnxBackend(tiny_model["float"]).metadata.input_scheme == "float_maxabs"
    assert OnnxBackend(tiny_model["sim"]).metadata.input_scheme == "int16_maxabs"


def test_int16_model_agrees_with_float_model(tiny_model):
    part = tiny_model["dataset"].split("test")
    result = dataset_agreement(tiny_model["float"], tiny_model["sim"], part)
    assert result["class_agreement"] >= 0.99
    assert result["max_abs_logit_diff"] < 1e-2


def test_int16_graph_reproduces_seed_normalize(tiny_model):
    """int16 model on the node's counts == float model on normalize(counts), to rounding.

    The node's counts always reach full scale (quantize maps max |x| to 32767), which is
    what lets the graph divide by the constant 32767 folded into the first Conv."""
    from edge_runtime.preprocess import normalize, quantize

    rng = np.random.default_rng(3)
    counts = quantize(normalize(rng.standard_normal((8, 80, 3)) * rng.uniform(1e-3, 10, (8, 1, 1))))
    counts = counts[:, None].astype(np.int16)
    counts[0] = 0  # an all-zero window must not give NaN
    assert np.abs(counts[1:]).max(axis=(1, 2, 3)).min() >= 32766
    s16 = ort.InferenceSession(str(tiny_model["int16"]), providers=["CPUExecutionProvider"])
    sf = ort.InferenceSession(str(tiny_model["float"]), providers=["CPUExecutionProvider"])
    peak = np.abs(counts.astype(np.float32)).max(axis=(1, 2, 3), keepdims=True)
    x = counts.astype(np.float32) / np.where(peak > 0, peak, 1)
    (a,) = s16.run(None, {"modelInput": counts})
    (b,) = sf.run(None, {"modelInput": x})
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_simplify_keeps_metadata_and_shrinks_graph(tiny_model):
    before = onnx.load(str(tiny_model["int16"]))
    after = onnx.load(str(tiny_model["sim"]))
    # The dynamo exporter already folds batch norm, so onnxsim may find nothing left to remove.
    assert len(after.graph.node) <= len(before.graph.node)
    assert {p.key for p in after.metadata_props} >= {METADATA_KEY}


def test_int16_rewrite_for_opset18(tiny_model):
    model = onnx.load(str(tiny_model["float"]))
    # The exporter writes opset 20 (GELU is one operator there); ReduceMax takes axes as input.
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    out = int16_input_model(model)
    session = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"modelInput": np.ones((2, 1, 80, 3), np.int16)})
    assert y.shape == (2, 3)


def test_node_refuses_a_model_without_metadata(tiny_model, tmp_path):
    model = onnx.load(str(tiny_model["float"]))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="bare.onnx: no 'seismictorch' metadata"):
        OnnxBackend(path)


def test_node_refuses_unknown_schema():
    with pytest.raises(ValueError, match="schema"):
        ModelMetadata.from_json('{"schema": 99, "model": "x", "classes": []}', source="m.onnx")
    with pytest.raises(ValueError, match="input_scheme"):
        ModelMetadata.from_json('{"schema": 1, "model": "x", "classes": [], "input_scheme": "int8"}')


def test_node_refuses_a_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: cannot load ONNX model"):
        OnnxBackend(path)
