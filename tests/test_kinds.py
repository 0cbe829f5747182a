"""Model kinds: one registry (edge_runtime.kinds), asked everywhere, the names compared nowhere else."""

import ast

import numpy as np
import pytest
from conftest import REPO

from edge_runtime.kinds import (
    EARTHQUAKE_CNN,
    KINDS,
    SPECTROGRAM_CNN,
    get_kind,
    kind_of_option,
    kinds_of_stage,
)
from edge_runtime.metadata import ModelMetadata

PRODUCT = ("edge_runtime", "host_training", "quantization", "tools", "network_center")
REGISTRY = REPO / "edge_runtime" / "kinds.py"


def _product_files():
    for package in PRODUCT:
        yield from sorted((REPO / package).rglob("*.py"))


def test_model_names_are_written_only_in_the_registry():
    """A model name as a string anywhere in product code but kinds.py is a comparison or a
    table keyed by name waiting to happen: ask the kind (get_kind, KINDS, EARTHQUAKE_CNN.name)."""
    names = set(KINDS)
    found = []
    for path in _product_files():
        if path == REGISTRY:
            continue
        tree = ast.parse(path.read_text(), str(path))
        exported = {id(c) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
                    for c in ast.walk(n.value)}  # __all__ names Python objects (the torch classes)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in exported:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not found, "model names outside edge_runtime/kinds.py:\n" + "\n".join(found)


def test_no_comparison_with_a_model_name_in_product_code():
    """Also through a name bound to a string elsewhere: nothing compares ``.model`` or a
    ``model_name`` with ``==`` / ``!=`` against a constant."""
    found = []
    for path in _product_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            constant = any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides)
            about_model = any((isinstance(s, ast.Attribute) and s.attr in ("model", "model_name"))
                              or (isinstance(s, ast.Name) and s.id == "model_name") for s in sides)
            if constant and about_model:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, "model kind decided by a string comparison:\n" + "\n".join(found)


def test_the_host_registers_a_torch_class_under_every_kind():
    from host_training.models import MODEL_CLASSES, MODELS

    assert set(MODELS) == set(KINDS)
    for name, cls in MODELS.items():
        assert cls.kind is KINDS[name]
        assert MODEL_CLASSES[name] == KINDS[name].classes


def test_lookups_and_their_errors():
    assert get_kind("EarthquakeCNN") is EARTHQUAKE_CNN
    assert kind_of_option("spectrogram") is SPECTROGRAM_CNN
    assert kind_of_option("SpectrogramCNN") is SPECTROGRAM_CNN
    assert kinds_of_stage("record") == [SPECTROGRAM_CNN]
    with pytest.raises(ValueError, match=r"^m.onnx: unknown model kind 'ThirdCNN'; known: EarthquakeCNN, "
                                         r"SpectrogramCNN$"):
        get_kind("ThirdCNN", "m.onnx")
    with pytest.raises(ValueError, match="expected one of earthquake, spectrogram"):
        kind_of_option("third")


def test_input_spec_follows_the_metadata():
    meta = ModelMetadata(model="EarthquakeCNN", classes=["P", "S", "noise"], components=["E", "N", "Z"])
    assert EARTHQUAKE_CNN.input_spec(meta) == ((1, 80, 3), "float32")
    meta.input_scheme = "int16_maxabs"
    assert EARTHQUAKE_CNN.input_spec(meta) == ((1, 80, 3), "int16")
    image = ModelMetadata(model="SpectrogramCNN", classes=["earthquake", "active_source"],
                          extra={"spectrogram": {"height": 90}})
    assert SPECTROGRAM_CNN.input_spec(image) == ((3, 90, 150), "float32")
    # The default shapes are the metadata defaults' shapes.
    assert EARTHQUAKE_CNN.input_spec(ModelMetadata(model="EarthquakeCNN", classes=[]))[0] == \
        EARTHQUAKE_CNN.input_shape


def test_model_input_is_the_node_chain():
    """A window kind's input is the node's window chain; a record kind's the spectrogram image."""
    from edge_runtime.preprocess import prepare_windows, to_model_input
    from edge_runtime.spectrogram import SpectrogramConfig, spectrogram_images
    from edge_runtime.spectrogram import to_model_input as image_input

    rng = np.random.default_rng(0)
    meta = ModelMetadata(model="EarthquakeCNN", classes=["P", "S", "noise"], components=["E", "N", "Z"])
    windows = rng.standard_normal((2, 3, 200))
    int16, _ = prepare_windows(windows, 100.0, meta.preprocess_config())
    np.testing.assert_array_equal(EARTHQUAKE_CNN.model_input(windows, 100.0, meta), to_model_input(int16))
    config = SpectrogramConfig(record_s=20.0, pre_s=5.0)
    image_meta = ModelMetadata(model="SpectrogramCNN", classes=["earthquake", "active_source"],
                               extra={"spectrogram": config.to_dict()})
    record = rng.standard_normal((3, 2000))
    np.testing.assert_array_equal(SPECTROGRAM_CNN.model_input(record[None], 100.0, image_meta),
                                  image_input(spectrogram_images(record, 100.0, config)[None]))
