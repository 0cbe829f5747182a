"""Backends: one protocol for every runtime, one suffix-to-runtime table asked by everyone."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, python_env

from edge_runtime.backends import (
    RUNTIMES,
    Backend,
    OnnxBackend,
    TensorInfo,
    load_backend,
    runtime_for,
    softmax,
)
from edge_runtime.preprocess import prepare_windows, to_model_input


def test_suffix_table():
    assert runtime_for("a/model.onnx").name == "onnxruntime"
    assert runtime_for(Path("model_int8.TFLITE")).name == "litert"
    assert runtime_for("model.tflite").extra == "tflite" and runtime_for("m.onnx").extra == ""
    assert {r.label for r in RUNTIMES.values()} == {"onnx", "litert"}


@pytest.mark.parametrize("name", ["model.pt", "model.bin", "model"])
def test_unknown_suffix_is_one_clear_error(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(b"\x08\x01")
    for call in (runtime_for, load_backend):
        with pytest.raises(ValueError) as err:
            call(path)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{path}: unknown model file type")
        assert ".onnx (onnxruntime), .tflite (litert)" in message


def test_every_runtime_suffix_is_evaluated_and_bundled():
    from host_training.evaluate import BACKENDS, OnnxPredictor
    from tools.deploy.bundle import BundleError, _runtime

    assert {s for s, loader in BACKENDS.items() if loader is OnnxPredictor} == set(RUNTIMES)
    assert _runtime(Path("m.tflite")) == "litert" and _runtime(Path("m.onnx")) == "onnxruntime"
    with pytest.raises(BundleError, match="unknown model file type"):
        _runtime(Path("m.h5"))


def test_opening_an_onnx_model_never_imports_litert(tiny_model):
    code = ("import sys\nfrom edge_runtime.backends import load_backend\nload_backend(sys.argv[1])\n"
            "assert 'ai_edge_litert' not in sys.modules\n"
            "assert 'edge_runtime.backends.litert' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code, str(tiny_model["float"])], capture_output=True,
                            text=True, env=python_env(), cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr


def test_onnx_backend_describes_itself_and_runs(tiny_model):
    backend = OnnxBackend(tiny_model["sim"])
    assert isinstance(backend, Backend) and backend.runtime == "onnxruntime"
    (model_input,) = backend.inputs
    assert model_input == TensorInfo("modelInput", (model_input.shape[0], 1, 80, 3), "int16")
    assert backend.outputs[0].shape[-1] == 3 and backend.outputs[0].dtype == "float32"
    part = tiny_model["dataset"].split("test")
    config = backend.metadata.preprocess_config()
    int16, _ = prepare_windows(part.waveforms[:4], part.sampling_rate_hz, config)
    x = to_model_input(int16, backend.input_dtype)
    logits = backend.run(x)
    np.testing.assert_array_equal(logits, backend.logits(int16))
    np.testing.assert_allclose(backend.predict(int16), softmax(logits))
    (bound,) = backend.bind(x[:1])()
    np.testing.assert_array_equal(bound, logits[:1])


def test_softmax_one_row_and_many_agree():
    logits = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    many = softmax(logits)
    np.testing.assert_allclose(np.concatenate([softmax(logits[i:i + 1]) for i in range(5)]), many, rtol=1e-15)
    np.testing.assert_allclose(many.sum(1), 1.0)
