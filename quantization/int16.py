"""The seed's int16 ``quantize`` scheme as a property of the model: int16 windows in.

The seed fed the model ``normalize(quantize(normalize(x)))``: each window is scaled to the
full int16 range (max |x| -> 32767) and back to [-1, 1]. This step rewrites a float model
so it takes the int16 counts themselves; the node passes half the bytes into the runtime
and the last ``normalize`` happens inside the graph.

Why it now costs nothing
------------------------
The first version normalized inside the graph per window: ``Cast -> Abs -> ReduceMax ->
Greater -> Where -> Div``. onnxruntime cannot fuse any of these into the convolution, so
each ran as its own kernel on a 240-value tensor, and on one thread the int16 model was
13-16 % slower than the float one (a kernel launch costs about a microsecond; the whole
EarthquakeCNN runs in about 15 us). But ``quantize`` always maps a window's max |x| to
32767 (32766 at worst, from truncation), so the per-window divide is a divide by the
constant 32767 to within 1/32767 relative, the rounding of the counts themselves. That
constant folds into the first convolution, which is linear in its input:
``Conv(W, b)(c / 32767) == Conv(W / 32767, b)(c)``. The rewritten graph is ``Cast ->
original graph with scaled first-layer weights``: one extra node, a cast of 240 values.
All-zero windows give zero counts and the same output as the float model on zeros.

When the input feeds anything but a single ``Conv``, the scale stays a separate ``Mul``
(still two cheap nodes instead of six).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_runtime.kinds import KINDS, get_kind
from edge_runtime.metadata import set_metadata
from edge_runtime.preprocess import PreprocessConfig, prepare_windows, to_model_input

from .files import ModelFileError, derived_metadata, load_onnx, save_onnx

log = logging.getLogger(__name__)

INT16_FULL_SCALE = 32767.0


def int16_input_model(model_proto):
    """Return a copy of ``model_proto`` whose input is the int16 window (counts).

    The new input keeps the original name and shape with element type int16. The graph
    casts it to float and scales by 1 / 32767, folded into the first convolution's
    weights when the input feeds exactly one ``Conv`` with constant weights.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    (inp,) = [i for i in graph.input if i.name not in inits]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"graph input {inp.name!r} is not float32; is it already int16?")
    name = inp.name
    cast = name + "_float"
    consumers = [n for n in graph.node if name in n.input]
    conv = consumers[0] if len(consumers) == 1 and consumers[0].op_type == "Conv" else None
    weight = inits.get(conv.input[1]) if conv is not None and conv.input[0] == name else None
    used_elsewhere = weight is not None and sum(weight.name in n.input for n in graph.node) > 1
    if weight is not None and not used_elsewhere:
        w = numpy_helper.to_array(weight).astype(np.float32) / np.float32(INT16_FULL_SCALE)
        weight.CopyFrom(numpy_helper.from_array(w, weight.name))
        conv.input[0] = cast
        nodes = [helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT)]
    else:
        scaled = name + "_scaled"
        scale = helper.make_tensor(name + "_scale", TensorProto.FLOAT, [], [1.0 / INT16_FULL_SCALE])
        graph.initializer.append(scale)
        for node in consumers:
            for k, v in enumerate(node.input):
                if v == name:
                    node.input[k] = scaled
        nodes = [helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT),
                 helper.make_node("Mul", [cast, scale.name], [scaled])]
    inp.type.tensor_type.elem_type = TensorProto.INT16
    for k, node in enumerate(nodes):
        graph.node.insert(k, node)
    onnx.checker.check_model(model)
    return model


def quantize_int16(src, dst) -> Path:
    """Write the int16-input version of the float model ``src`` to ``dst``.

    The metadata's ``input_scheme`` becomes ``int16_maxabs``; ``dst`` is written only
    when the rewrite succeeded.
    """
    proto, meta = load_onnx(src, expect_scheme="float_maxabs")
    kind = get_kind(meta.model, str(src))
    if not kind.int16_input:
        takes = ", ".join(k.name for k in KINDS.values() if k.int16_input)
        raise ModelFileError(f"{src}: a {kind.name} model does not take the node's int16 windows; "
                             f"int16 input applies to {takes} (quantization dynamic suits {kind.name})")
    out = int16_input_model(proto)
    new_meta = derived_metadata(meta, int16="Cast + 1/32767 folded into the first Conv")
    new_meta.input_scheme = "int16_maxabs"
    dst = save_onnx(set_metadata(out, new_meta), dst)
    log.info("wrote %s (int16 input)", dst)
    return dst


def run_model(path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Logits of an ONNX model on ``x`` (its input dtype) with onnxruntime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def agreement(float_model, int16_model, windows_int16: np.ndarray, windows_float: np.ndarray,
              labels: np.ndarray | None = None) -> dict:
    """Compare a float model on float windows with an int16 model on their int16 versions.

    Parameters
    ----------
    float_model, int16_model : str or Path
        ONNX files.
    windows_int16 : numpy.ndarray
        ``(N, 1, n, c)`` int16 inputs for ``int16_model``.
    windows_float : numpy.ndarray
        ``(N, 1, n, c)`` float32 inputs for ``float_model``.
    labels : numpy.ndarray, optional
        ``(N,)`` true class indices; when given, both models' accuracies are reported too.

    Returns
    -------
    dict
        ``class_agreement`` (fraction of windows where both models pick the same class:
        agreement, not accuracy), ``max_abs_logit_diff`` and, with labels,
        ``accuracy_float`` and ``accuracy_int16``.
    """
    a = run_model(float_model, windows_float)
    b = run_model(int16_model, windows_int16)
    out = {"n": int(len(a)), "class_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
           "max_abs_logit_diff": float(np.abs(a - b).max())}
    if labels is not None:
        out["accuracy_float"] = float((a.argmax(1) == labels).mean())
        out["accuracy_int16"] = float((b.argmax(1) == labels).mean())
    return out


def dataset_agreement(float_model, int16_model, dataset,
                      config: PreprocessConfig = PreprocessConfig(), classes=None) -> dict:
    """:func:`agreement` on the windows of a ``WindowDataset``, each model fed as the node
    would feed it: the float model normalized windows, the int16 model their int16 counts.
    With ``classes`` (logit order), accuracies against the dataset's labels are added.
    """
    x_float, _ = dataset.model_inputs(config, quantized=False)
    int16, _ = prepare_windows(dataset.waveforms, dataset.sampling_rate_hz, config)
    labels = dataset.labels(classes) if classes is not None else None
    return agreement(float_model, int16_model, to_model_input(int16, np.int16), x_float, labels)
