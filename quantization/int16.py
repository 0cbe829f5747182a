"""The seed's int16 ``quantize`` scheme, moved to the model's input.

The seed fed the model ``normalize(quantize(normalize(x)))``: the window is scaled to
the full int16 range and then back to [-1, 1]. This step rewrites a float model so it
takes the int16 window itself (``Cast -> /max|x| -> original graph``): the node sends
half the bytes into the runtime, the last normalize runs inside the graph, and the
float path of the seed is reproduced to rounding.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_runtime.metadata import ModelMetadata
from edge_runtime.preprocess import PreprocessConfig, prepare_windows, to_model_input

log = logging.getLogger(__name__)


def int16_input_model(model_proto):
    """Return a copy of ``model_proto`` whose input is the int16 window.

    The new input keeps the original name and shape with element type int16; the graph
    computes ``x / max|x|`` per window (1 when the window is all zeros) and feeds the
    original graph with it.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    graph = model.graph
    (inp,) = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    name = inp.name
    inner = name + "_float"
    for node in graph.node:
        for k, v in enumerate(node.input):
            if v == name:
                node.input[k] = inner
    inp.type.tensor_type.elem_type = TensorProto.INT16
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    one = helper.make_tensor(name + "_one", TensorProto.FLOAT, [], [1.0])
    zero = helper.make_tensor(name + "_zero", TensorProto.FLOAT, [], [0.0])
    graph.initializer.extend([one, zero])
    rank = len(inp.type.tensor_type.shape.dim)
    axes = list(range(1, rank))
    nodes = [
        helper.make_node("Cast", [name], [name + "_cast"], to=TensorProto.FLOAT),
        helper.make_node("Abs", [name + "_cast"], [name + "_abs"]),
    ]
    if opset >= 18:
        axes_t = helper.make_tensor(name + "_axes", TensorProto.INT64, [len(axes)], axes)
        graph.initializer.append(axes_t)
        nodes.append(helper.make_node("ReduceMax", [name + "_abs", name + "_axes"],
                                      [name + "_max"], keepdims=1))
    else:
        nodes.append(helper.make_node("ReduceMax", [name + "_abs"], [name + "_max"],
                                      axes=axes, keepdims=1))
    nodes += [
        helper.make_node("Greater", [name + "_max", name + "_zero"], [name + "_nonzero"]),
        helper.make_node("Where", [name + "_nonzero", name + "_max", name + "_one"], [name + "_scale"]),
        helper.make_node("Div", [name + "_cast", name + "_scale"], [inner]),
    ]
    for k, node in enumerate(nodes):
        graph.node.insert(k, node)
    onnx.checker.check_model(model)
    return model


def quantize_int16(src, dst) -> Path:
    """Write the int16-input version of ``src`` to ``dst`` and update its metadata."""
    import onnx

    from host_training.export import get_metadata, set_metadata

    proto = onnx.load(str(src))
    meta = get_metadata(proto)
    if meta.input_scheme != "float_maxabs":
        raise ValueError(f"{src}: input scheme is already {meta.input_scheme!r}")
    out = int16_input_model(proto)
    new_meta = ModelMetadata(**{**meta.__dict__, "input_scheme": "int16_maxabs"})
    set_metadata(out, new_meta)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(dst))
    log.info("wrote %s (int16 input)", dst)
    return dst


def agreement(float_model, int16_model, windows_int16: np.ndarray, windows_float: np.ndarray) -> dict:
    """Compare a float model on float windows with an int16 model on their int16 versions.

    Parameters
    ----------
    float_model, int16_model : str or Path
        ONNX files.
    windows_int16 : numpy.ndarray
        ``(N, 1, n, c)`` int16 inputs for ``int16_model``.
    windows_float : numpy.ndarray
        ``(N, 1, n, c)`` float32 inputs for ``float_model`` (normalized, not quantized).

    Returns
    -------
    dict
        Class agreement (fraction) and max |logit difference|.
    """
    import onnxruntime as ort

    def run(path, x):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    a = run(float_model, windows_float)
    b = run(int16_model, windows_int16)
    return {"n": int(len(a)), "class_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(a - b).max())}


def dataset_agreement(float_model, int16_model, dataset,
                      config: PreprocessConfig = PreprocessConfig()) -> dict:
    """:func:`agreement` on the windows of a ``WindowDataset``, each model fed as the node
    would feed it: the float model normalized windows, the int16 model their int16 counts.
    """
    x_float, _ = dataset.model_inputs(config, quantized=False)
    int16, _ = prepare_windows(dataset.waveforms, dataset.sampling_rate_hz, config)
    return agreement(float_model, int16_model, to_model_input(int16, np.int16), x_float)
