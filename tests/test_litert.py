"""LiteRT: .tflite conversion (litert-torch), int8 (ai-edge-quantizer) and the node's LiteRT
backend (ai-edge-litert), tested like the onnxruntime one, with real interpreters."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, python_env
from test_isolation import BLOCK_IMPORTS, FEED_60_FRAMES

from edge_runtime.backends import OnnxBackend, load_backend
from edge_runtime.preprocess import prepare_windows

try:
    import litert_torch  # noqa: F401
    from ai_edge_litert import schema_py_generated  # noqa: F401
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401
except ImportError as exc:  # a missing runtime must fail the tests, not skip them
    raise ImportError(f"{exc}: install the LiteRT packages: .venv/bin/pip install -e '.[tflite,convert]'") \
        from None

from edge_runtime.backends.litert import LiteRTBackend  # noqa: E402
from quantization.__main__ import main  # noqa: E402
from quantization.files import load_onnx  # noqa: E402
from quantization.tflite import convert_checkpoint, convert_tflite  # noqa: E402


@pytest.fixture(scope="module")
def tflite_models(tiny_model, tmp_path_factory):
    """Float .tflite from the torch model; int8 .tflite through the command line."""
    from host_training.checkpoints import save_checkpoint
    from host_training.models import PHASE_CLASSES
    from host_training.train import TrainConfig

    folder = tmp_path_factory.mktemp("tflite")
    _, meta = load_onnx(tiny_model["float"])
    float_info = convert_tflite(copy.deepcopy(tiny_model["model"]), folder / "model_float.tflite", meta)
    ckpt = save_checkpoint(folder / "best.pt", tiny_model["model"], "EarthquakeCNN", PHASE_CLASSES,
                           meta.preprocess, TrainConfig(epochs=1))
    data = tiny_model["dataset"].save(folder / "data")
    rc = main(["tflite", str(ckpt), str(folder / "model_int8.tflite"), "--like", str(tiny_model["float"]),
               "--int8", "--data", str(data), "--windows", "64"])
    assert rc == 0
    return dict(float=folder / "model_float.tflite", int8=folder / "model_int8.tflite", ckpt=ckpt,
                data=data, float_info=float_info, folder=folder)


def _test_windows(tiny_model):
    part = tiny_model["dataset"].split("test")
    int16, _ = prepare_windows(part.waveforms, part.sampling_rate_hz, OnnxBackend(tiny_model["float"])
                               .metadata.preprocess_config())
    return int16


def test_float_tflite_matches_onnxruntime(tiny_model, tflite_models):
    windows = _test_windows(tiny_model)
    litert = load_backend(tflite_models["float"])
    assert isinstance(litert, LiteRTBackend)
    reference = OnnxBackend(tiny_model["float"]).predict(windows)
    got = litert.predict(windows)
    assert got.shape == reference.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, reference, atol=1e-4)
    assert tflite_models["float_info"]["max_abs_logit_diff"] < 1e-4


def test_int8_tflite_is_integer_and_agrees(tiny_model, tflite_models):
    backend = LiteRTBackend(tflite_models["int8"])
    # A real integer graph: int8 in, int8 out, the file's scales convert at the edges.
    assert backend._in["dtype"] == np.int8 and backend._out["dtype"] == np.int8
    assert tflite_models["int8"].stat().st_size < 0.5 * tflite_models["float"].stat().st_size
    windows = _test_windows(tiny_model)
    a = OnnxBackend(tiny_model["float"]).predict(windows).argmax(1)
    b = backend.predict(windows).argmax(1)
    assert (a == b).mean() >= 0.97
    q = backend.metadata.extra["quantization"]
    assert q["scheme"] == "int8" and q["calibration_windows"] == 64 and "litert-torch" in q["tool"]


def test_metadata_travels_in_the_tflite_file(tiny_model, tflite_models):
    onnx_meta = OnnxBackend(tiny_model["float"]).metadata
    for path in (tflite_models["float"], tflite_models["int8"]):
        meta = LiteRTBackend(path).metadata
        assert meta.classes == onnx_meta.classes and meta.components == onnx_meta.components
        assert meta.preprocess == onnx_meta.preprocess and meta.input_scheme == "float_maxabs"


def test_litert_backend_refuses_what_it_cannot_run(tiny_model, tflite_models, tmp_path):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    with pytest.raises(ValueError, match="model.onnx: not a LiteRT"):
        LiteRTBackend(tiny_model["float"])
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 4 + b"TFL3" + b"\x01" * 64)
    with pytest.raises(ValueError, match="junk.tflite: cannot load LiteRT model"):
        LiteRTBackend(junk)
    with pytest.raises(ValueError, match="no such model file"):
        LiteRTBackend(tmp_path / "missing.tflite")
    # Same graph without the SeismicTorch metadata entry: refused by the node.
    data = tflite_models["float"].read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    model.metadata = [m for m in model.metadata if m.name not in ("seismictorch", b"seismictorch")]
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(bytes(builder.Output()))
    with pytest.raises(ValueError, match="bare.tflite: no 'seismictorch' metadata"):
        LiteRTBackend(bare)
    assert LiteRTBackend(bare, require_metadata=False).metadata is None


def test_checkpoint_and_onnx_of_different_models_are_refused(tiny_model, tflite_models, tmp_path):
    from host_training.checkpoints import save_checkpoint
    from host_training.models import PHASE_CLASSES, build_model
    from host_training.train import TrainConfig

    other = save_checkpoint(tmp_path / "other.pt", build_model("EarthquakeCNN", seed=99), "EarthquakeCNN",
                            PHASE_CLASSES, {}, TrainConfig(epochs=1))
    dst = tmp_path / "x.tflite"
    with pytest.raises(ValueError, match="was not exported from"):
        convert_checkpoint(other, dst, tiny_model["float"])
    with pytest.raises(ValueError, match="a quantized model|input scheme"):
        convert_checkpoint(tflite_models["ckpt"], dst, tiny_model["int16"])
    assert not dst.exists()


def test_report_covers_both_backends(tiny_model, tflite_models, tmp_path):
    from quantization.report import quantization_report

    report = quantization_report([tiny_model["float"], tflite_models["float"], tflite_models["int8"]],
                                 tflite_models["data"], tmp_path, rounds=2, memory=False)
    rows = {r["model"]: r for r in report["variants"]}
    assert rows["model_float.tflite"]["runtime"] == "litert"
    assert rows["model_float.tflite"]["agreement"] == 1.0
    assert rows["model_int8.tflite"]["scheme"] == "int8"
    assert json.loads((tmp_path / "report.json").read_text())["reference"] == "model.onnx"


NODE_CHILD = BLOCK_IMPORTS + r"""import numpy as np
from edge_runtime.backends import load_backend
from edge_runtime.protocol import FrameDecoder, encode_frame
from edge_runtime.service import NodeConfig, Pipeline

try:
    backend = load_backend(sys.argv[1])
except ValueError as exc:
    print("refused:", exc)
    sys.exit(3)
pipe = Pipeline(backend, NodeConfig(port="unused", model=sys.argv[1]))
""" + FEED_60_FRAMES

HOST = ["torch", "scipy", "obspy", "h5py", "matplotlib", "onnx", "onnxsim", "host_training",
        "quantization", "tools", "litert_torch", "ai_edge_quantizer"]


def test_node_runs_a_tflite_model_without_host_packages(tflite_models):
    result = subprocess.run([sys.executable, "-c", NODE_CHILD, str(tflite_models["int8"]), ",".join(HOST)],
                            capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "windows 17" in result.stdout


def test_node_without_litert_refuses_a_tflite_model_with_a_hint(tflite_models):
    blocked = ",".join(HOST + ["ai_edge_litert"])
    result = subprocess.run([sys.executable, "-c", NODE_CHILD, str(tflite_models["float"]), blocked],
                            capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "pip install ai-edge-litert" in result.stdout
