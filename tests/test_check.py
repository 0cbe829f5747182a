"""`python -m edge_runtime check`: the stored self-test passes on a good model, fails on a tampered one."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, python_env

from edge_runtime.metadata import METADATA_KEY


def check(*args):
    return subprocess.run([sys.executable, "-m", "edge_runtime", "check", *map(str, args)], cwd=REPO,
                          env=python_env(), capture_output=True, text=True, timeout=120)


def tamper(src, dst, weights=None, metadata=None):
    """Copy an ONNX file, nudging its largest float initializer and/or editing its metadata."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    if weights is not None:
        init = max((i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT),
                   key=lambda i: np.prod(i.dims))
        w = numpy_helper.to_array(init).copy()
        w.flat[: w.size // 4] += weights  # a quarter of one layer's weights changed
        init.CopyFrom(numpy_helper.from_array(w, init.name))
    if metadata is not None:
        for prop in proto.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = json.dumps(metadata(json.loads(prop.value)))
    onnx.save(proto, str(dst))
    return dst


def test_check_passes_on_the_exported_models(tiny_model):
    for key in ("sim", "float"):
        result = check(tiny_model[key])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "self-test window (model metadata)" in result.stdout and result.stdout.strip().endswith("PASS")


def test_check_fails_on_tampered_weights(tiny_model, tmp_path):
    bad = tamper(tiny_model["sim"], tmp_path / "tampered.onnx", weights=0.05)
    result = check(bad)
    assert result.returncode == 1, result.stdout
    assert "FAIL self-test window" in result.stdout and "must not run this model" in result.stdout


def test_check_and_run_refuse_metadata_that_disagrees_with_the_graph(tiny_model, tmp_path):
    def four_classes(meta):
        meta["classes"] = ["P", "S", "noise", "blast"]
        return meta

    bad = tamper(tiny_model["sim"], tmp_path / "classes.onnx", metadata=four_classes)
    result = check(bad)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: graph output has 3 classes, metadata lists 4 " \
                                    "['P', 'S', 'noise', 'blast']"
    result = subprocess.run([sys.executable, "-m", "edge_runtime", "run", "--port", "/dev/ttyNONE",
                             "--model", str(bad)], cwd=REPO, env=python_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "graph output has 3 classes" in result.stderr


def test_check_fails_without_a_stored_self_test_and_reads_one_beside_the_model(tiny_model, tmp_path):
    from edge_runtime.selftest import run_selftest

    def strip(meta):
        test = meta["extra"].pop("selftest")
        strip.test = test
        return meta

    bare = tamper(tiny_model["sim"], tmp_path / "bare.onnx", metadata=strip)
    report = run_selftest(bare)
    assert not report["ok"] and "no stored self-test" in report["lines"][-1]
    (tmp_path / "selftest.json").write_text(json.dumps(strip.test))  # the bundle's copy
    report = run_selftest(bare)
    assert report["ok"] and "selftest.json" in report["lines"][2]
    strip.test["probs"] = list(np.roll(strip.test["probs"], 1))
    (tmp_path / "selftest.json").write_text(json.dumps(strip.test))
    assert not run_selftest(bare)["ok"]


def test_config_check_uses_the_configured_model(tiny_model, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nport = "/dev/ttyX"\nmodel = "{tiny_model["sim"]}"\n')
    from edge_runtime.__main__ import main

    assert main(["check", "--config", str(config)]) == 0
    with pytest.raises(SystemExit):
        main(["check", "--atol"])
