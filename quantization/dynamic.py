"""Dynamic (weight-only calibrated at run time) int8 quantization for SpectrogramCNN.

SpectrogramCNN's first dense layer holds 41.8 M of its 42.1 M weights (32640 x 1280):
the float file is about 168 MB, too large to ship to a node over a slow link and to keep
in a Pi's page cache beside everything else. Dynamic quantization stores those weights
as int8 (one scale per tensor, or per output column) and quantizes the activations on
the fly per inference, so it needs no calibration set and no change to the float input.

onnxruntime's dynamic quantizer handles ``MatMul`` but not ``Gemm``, which is what the
exporter writes for ``nn.Linear``; :func:`gemm_to_matmul` rewrites each ``Gemm`` with a
constant weight into ``MatMul`` (weight transposed once, offline) + ``Add`` first. The
convolutions stay float: they hold 0.2 M weights, and onnxruntime's ``ConvInteger`` is
slower than its float convolution.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.metadata import set_metadata

from .files import ModelFileError, derived_metadata, load_onnx, save_onnx

log = logging.getLogger(__name__)


def gemm_to_matmul(proto) -> int:
    """Rewrite ``Gemm(A, B, C)`` with constant ``B`` (alpha = beta = 1, transA = 0) as
    ``MatMul(A, B') + C`` in place. Returns the number of nodes rewritten."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "Gemm" or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
            continue
        weight = inits[node.input[1]]
        w = numpy_helper.to_array(weight)
        if attrs.get("transB", 0):
            w = np.ascontiguousarray(w.T)
        weight.CopyFrom(numpy_helper.from_array(w, weight.name))
        product = node.output[0] + "_matmul"
        index = list(graph.node).index(node)
        new = [helper.make_node("MatMul", [node.input[0], weight.name], [product],
                                name=node.name + "_MatMul")]
        if len(node.input) > 2 and node.input[2]:
            new.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                        name=node.name + "_Add"))
        else:
            new[0].output[0] = node.output[0]
        graph.node.remove(node)
        for k, n in enumerate(new):
            graph.node.insert(index + k, n)
        rewritten += 1
    if rewritten:  # shapes recorded for the old layout would contradict the new one
        del graph.value_info[:]
        for inp in [i for i in graph.input if i.name in inits]:
            graph.input.remove(inp)
    return rewritten


def quantize_dynamic_model(src, dst, per_channel: bool = False) -> dict:
    """Quantize the dense layers of a float ONNX model to int8 weights (dynamic).

    Parameters
    ----------
    src, dst : str or Path
        Float model and output file (written only on success).
    per_channel : bool
        One weight scale per output column instead of one per layer.

    Returns
    -------
    dict
        File sizes before and after, their ratio, and the rewritten layers.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto, meta = load_onnx(src, expect_scheme="float_maxabs")
    if meta.extra.get("quantization"):
        raise ModelFileError(f"{src}: already quantized; give the float model")
    n = gemm_to_matmul(proto)
    if n == 0 and not any(node.op_type == "MatMul" for node in proto.graph.node):
        raise ModelFileError(f"{src}: no dense layer (Gemm/MatMul) to quantize")
    with tempfile.TemporaryDirectory(prefix="seismictorch-dynamic-") as tmp:
        matmul = Path(tmp) / "matmul.onnx"
        onnx.save(proto, str(matmul))
        out = Path(tmp) / "quantized.onnx"
        quantize_dynamic(str(matmul), str(out), op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QInt8, per_channel=per_channel)
        quantized = onnx.load(str(out))
    info = {"step": "dynamic", "weights": "int8", "per_channel": per_channel, "layers": n}
    dst = save_onnx(set_metadata(quantized, derived_metadata(meta, **info)), dst)
    info.update(bytes_before=Path(src).stat().st_size, bytes_after=dst.stat().st_size)
    info["size_ratio"] = info["bytes_after"] / info["bytes_before"]
    log.info("wrote %s: %d -> %d bytes (%.1f %%)", dst, info["bytes_before"], info["bytes_after"],
             100 * info["size_ratio"])
    return info
