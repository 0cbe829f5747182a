"""The node's dependency pins: written once (pyproject's extras), read by the bundle."""

import tomllib
from pathlib import Path

import pytest
from conftest import REPO

from edge_runtime.backends import RUNTIMES
from edge_runtime.requirements import BUNDLE_CAPS, bundle_requirements, extra_requirements, requirement_name


def test_pins_come_from_pyproject_and_the_bundle_adds_only_its_cap():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra_requirements("edge") == extras["edge"]
    bundled = bundle_requirements()
    assert [requirement_name(r) for r in bundled] == [requirement_name(r) for r in extras["edge"]]
    for written, pinned in zip(extras["edge"], bundled, strict=True):
        cap = BUNDLE_CAPS.get(requirement_name(written))
        assert pinned == (f"{written},{cap}" if cap else written)
    # Every optional runtime names an extra that exists.
    assert all(r.extra in extras for r in RUNTIMES.values() if r.extra)


def test_an_installed_tree_reads_the_same_pins(tmp_path):
    """Without a pyproject.toml beside the package, the installed distribution's metadata."""
    missing = tmp_path / "pyproject.toml"
    assert extra_requirements("edge", missing) == extra_requirements("edge")
    assert extra_requirements("tflite", missing) == extra_requirements("tflite")
    with pytest.raises(ValueError, match="no extra 'nodes'"):
        extra_requirements("nodes", missing)
    with pytest.raises(ValueError, match="no extra 'nodes'"):
        extra_requirements("nodes")


def test_the_bundle_uses_them():
    from tools.deploy.bundle import REQUIREMENTS, _requirements

    assert REQUIREMENTS == bundle_requirements()
    assert _requirements([], Path("m.onnx")) == REQUIREMENTS
    assert _requirements(["onnxruntime>=1.17"], Path("m.tflite")) == [
        r for r in REQUIREMENTS if requirement_name(r) != "onnxruntime"] + ["onnxruntime>=1.17",
                                                                           *extra_requirements("tflite")]
