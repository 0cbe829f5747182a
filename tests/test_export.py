"""Export: dynamo exporter, names, dynamic batch, current opset, metadata the node reads, parity."""

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort

from edge_runtime.backends import OnnxBackend
from edge_runtime.metadata import METADATA_KEY, ModelMetadata
from host_training.checkpoints import load_checkpoint
from host_training.datasets.splits import data_card_hash
from host_training.evaluate import predict_torch


def test_metadata_holds_what_the_node_needs_plus_version_and_data_card(tiny_run):
    meta = OnnxBackend(tiny_run["onnx"]).metadata
    assert meta.model == "EarthquakeCNN" and meta.classes == ["P", "S", "noise"]
    assert meta.components == ["E", "N", "Z"] and meta.input_name == "modelInput"
    assert meta.input_scheme == "float_maxabs" and meta.input_shape == [1, 80, 3]
    assert meta.preprocess["target_rate_hz"] == 40.0 and meta.preprocess["window_s"] == 2.0
    card = (tiny_run["data"] / "data_card.json").read_bytes()
    assert meta.data_card_sha256 == hashlib.sha256(card).hexdigest()
    assert (
        meta.model_version.startswith("run-e") and meta.model_version == tiny_run["exported"]["model_version"]
    )
    assert meta.extra["train_config"]["optimizer"] == "adam"


def test_graph_names_dynamic_batch_opset_and_parity(tiny_run):
    from host_training.datasets.window_dataset import WindowDataset

    proto = onnx.load(str(tiny_run["onnx"]))
    assert [i.name for i in proto.graph.input] == ["modelInput"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 20
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}  # folded by the exporter
    model, _ = load_checkpoint(tiny_run["checkpoint"])
    x, _ = WindowDataset.load(tiny_run["data"]).split("test").model_inputs()
    session = ort.InferenceSession(str(tiny_run["onnx"]), providers=["CPUExecutionProvider"])
    for batch in (x[:1], x[:5], x):
        (got,) = session.run(None, {"modelInput": batch})
        assert np.abs(got - predict_torch(model, batch)).max() <= 1e-5
    assert tiny_run["exported"]["max_abs_diff"] <= 1e-5


def test_node_still_reads_metadata_written_before_the_new_fields(tiny_run):
    proto = onnx.load(str(tiny_run["onnx"]))
    raw = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    for key in ("model_version", "data_card_sha256", "input_shape"):
        raw.pop(key)
    old = ModelMetadata.from_json(json.dumps(raw), source="old.onnx")
    assert old.model_version == "" and old.input_shape == [] and old.classes == ["P", "S", "noise"]


def test_data_card_hash_prefers_the_cards_own(tmp_path):
    assert data_card_hash(tmp_path) is None
    (tmp_path / "data_card.json").write_text(json.dumps({"card_sha256": "ab" * 32, "counts": {}}))
    assert data_card_hash(tmp_path) == "ab" * 32
