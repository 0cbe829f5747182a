"""Static (calibrated) quantization with onnxruntime, in the QDQ format.

Three schemes, all with symmetric max-abs scales (the seed's ``quantize`` applied to
weights and activations: ``scale = max|x| / q_max``, zero point 0):

- ``int8``: 8-bit activations and weights, the scheme CPU integer kernels exist for;
- ``a16w8``: 16-bit activations, 8-bit weights;
- ``a16w16``: 16-bit activations and weights, the most literal reading of "the int16
  scheme". onnxruntime's CPU provider has no 16-bit convolution or GEMM kernels: both
  16-bit schemes run as dequantize -> float kernel -> quantize and measure what 16-bit
  rounding does to accuracy, not speed.

Calibration: max-abs (``minmax`` with symmetric ranges), by default. It is the seed's own
rule, it needs one pass, and it never clips: the windows this model must get right are
the ones with an onset, whose activations are the largest in the set, which is exactly
what percentile or entropy calibration would saturate. ``percentile`` and ``entropy``
remain available to measure that choice; on EarthquakeCNN (512 train windows, 522 test
windows, int8) max-abs and entropy both agreed with float on 100 % of the test windows
(entropy's thresholds came out at the maxima), percentile (99.999) on 99.62 %.

``quant_pre_process`` runs for its shape inference only; its own optimization step is
replaced by onnxruntime's extended optimizations, which also fuse GELU (see below).

The graph that is fast
----------------------
Measured on EarthquakeCNN (onnxruntime 1.32, x86-64 with AVX-512 VNNI, one thread, one
window, p50, ratio to the float model in the same run; ``make bench`` reruns it):

========================================================  =======
graph                                                     vs float
========================================================  =======
all operators quantized, GELU as exported (Div/Erf/Add/Mul)  x4.3
same, per-channel weights                                    x4.4
Conv+Gemm only, GELU as exported                             x3.4
Conv+Gemm only, GELU fused to one ``Gelu`` first             x1.75
same + MaxPool quantized                                     x1.73
same, per-channel weights                                    x1.75
fused, only the two largest Conv quantized                   x1.55
========================================================  =======

The exported GELU is five operators; onnxruntime fuses them into one ``Gelu`` kernel in
the float model, but once Q/DQ nodes sit between them (or a DequantizeLinear feeds them)
the fusion no longer matches, and each piece runs as a float kernel wrapped in its own
quantize/dequantize pair. Fusing GELU *before* quantizing (onnxruntime's own extended
optimizations, saved offline; they are hardware-independent) and quantizing only Conv and
Gemm leaves one float ``Gelu`` between a ``QLinearConv`` and the next quantize: that
saves half the time. It does not beat float: EarthquakeCNN computes only 0.27 M
multiply-adds per window, so its 15 float kernels cost about 1 us each in launch overhead,
and every float island (GELU) adds a DequantizeLinear and a QuantizeLinear (29 kernels).
Per-channel scales cost nothing measurable and bought no agreement; quantizing MaxPool
saved nothing. Activations default to int8 (zero point 0). Whether onnxruntime fuses int8
(rather than uint8) activations into integer kernels depends on the CPU (session option
``session.qdqisint8allowed``, on by default on ARM64, on for this VNNI machine); where it is
off, use ``activation_type="uint8"`` (still symmetric, zero point 128).
LiteRT's int8 model (``quantization.tflite``) runs GELU inside the integer
graph and is the fast int8 variant on the node.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.metadata import set_metadata
from edge_runtime.preprocess import PreprocessConfig

from .files import ModelFileError, derived_metadata, load_onnx, save_onnx

log = logging.getLogger(__name__)

SCHEMES = ("int8", "a16w8", "a16w16")
CALIBRATIONS = ("minmax", "percentile", "entropy")


def calibration_windows(dataset, n: int = 512, seed: int = 0, split: str = "train",
                        config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Seeded sample of model inputs from a ``WindowDataset`` split for calibration.

    Windows the node would drop (amplitude outside the seed's limits) are left out, as
    the node never shows them to the model.

    Returns
    -------
    numpy.ndarray
        ``(n, 1, n_samples, n_components)`` float32 inputs in [-1, 1].
    """
    part = dataset.split(split)
    if len(part) == 0:
        raise ValueError(f"calibration set is empty: the dataset has no '{split}' windows")
    x, keep = part.model_inputs(config)
    x = x[keep]
    if len(x) == 0:
        raise ValueError(f"calibration set is empty: no '{split}' window passes the amplitude limits")
    rng = np.random.default_rng(seed)
    take = rng.choice(len(x), size=min(n, len(x)), replace=False)
    return x[np.sort(take)]


def check_calibration(x: np.ndarray, session_input, source: str = "calibration set") -> np.ndarray:
    """Check windows against a model input (``onnxruntime`` ``NodeArg``); float32 copy."""
    x = np.asarray(x)
    if x.size == 0 or len(x) == 0:
        raise ValueError(f"{source} is empty")
    want = [d if isinstance(d, int) else None for d in session_input.shape]
    if x.ndim != len(want) or any(w is not None and w != s for w, s in zip(want[1:], x.shape[1:],
                                                                               strict=True)):
        raise ValueError(f"{source}: windows of shape {tuple(x.shape[1:])} do not fit the model "
                         f"input {session_input.name!r} {tuple(want[1:])}")
    if not np.isfinite(x).all():
        raise ValueError(f"{source}: holds NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float32)


def window_reader(x: np.ndarray, input_name: str, batch: int = 1):
    """An onnxruntime ``CalibrationDataReader`` over an array of model inputs."""
    from onnxruntime.quantization import CalibrationDataReader

    class WindowReader(CalibrationDataReader):
        def __init__(self):
            self.start = 0

        def get_next(self):
            if self.start >= len(x):
                return None
            feed = {input_name: x[self.start:self.start + batch]}
            self.start += batch
            return feed

        def rewind(self):
            self.start = 0

    return WindowReader()


def fuse_operators(src, dst) -> list:
    """Save ``src`` after onnxruntime's extended (hardware-independent) graph
    optimizations: BatchNorm into Conv, the five GELU operators into one ``Gelu``.
    Shape inference follows, as ``quant_pre_process`` would do. Returns the op types."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    fused = str(dst) + ".fused.onnx"
    options.optimized_model_filepath = fused
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    quant_pre_process(fused, str(dst), skip_optimization=True)
    Path(fused).unlink()
    return [n.op_type for n in onnx.load(str(dst)).graph.node]


def quantize_static_model(src, dst, calibration: np.ndarray, scheme: str = "int8",
                          per_channel: bool = False, fuse: bool = True,
                          op_types=("Conv", "Gemm"), calibrate: str = "minmax",
                          activation_type: str = "int8") -> dict:
    """Quantize a float ONNX model statically (QDQ) and write it to ``dst``.

    Parameters
    ----------
    src, dst : str or Path
        Float model (``float_maxabs`` input scheme) and output file.
    calibration : numpy.ndarray
        Model inputs, e.g. from :func:`calibration_windows`.
    scheme : str
        One of :data:`SCHEMES`.
    per_channel : bool
        One weight scale per output channel instead of per tensor.
    fuse : bool
        Fuse GELU (and BatchNorm) before quantizing; see the module docstring.
    op_types : sequence of str
        Operator types to quantize; everything else stays float.
    calibrate : str
        One of :data:`CALIBRATIONS`.
    activation_type : str
        ``int8`` or ``uint8`` (symmetric either way, zero point 0 or 128) for ``scheme="int8"``.

    Returns
    -------
    dict
        What was done: scheme, options, file size in bytes, op types of the result.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not one of {SCHEMES}")
    if calibrate not in CALIBRATIONS:
        raise ValueError(f"calibration {calibrate!r} is not one of {CALIBRATIONS}")
    if activation_type not in ("int8", "uint8"):
        raise ValueError(f"activation type {activation_type!r} is not int8 or uint8")
    _, meta = load_onnx(src, expect_scheme="float_maxabs")
    if meta.extra.get("quantization"):
        raise ModelFileError(f"{src}: already quantized ({meta.extra['quantization']}); "
                             "give the float model")
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    x = check_calibration(calibration, model_input)
    a8 = QuantType.QInt8 if activation_type == "int8" else QuantType.QUInt8
    act, weight = {"int8": (a8, QuantType.QInt8), "a16w8": (QuantType.QInt16, QuantType.QInt8),
                   "a16w16": (QuantType.QInt16, QuantType.QInt16)}[scheme]
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibrate]
    with tempfile.TemporaryDirectory(prefix="seismictorch-static-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        if fuse:
            fuse_operators(src, prepared)
        else:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(prepared), skip_optimization=True)
        out = Path(tmp) / "quantized.onnx"
        quantize_static(str(prepared), str(out), window_reader(x, model_input.name),
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                        per_channel=per_channel, activation_type=act, weight_type=weight,
                        calibrate_method=method,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "CalibPercentile": 99.999})
        proto = onnx.load(str(out))
    info = {"step": "static", "scheme": scheme, "format": "QDQ", "per_channel": per_channel,
            "fused_before": fuse, "op_types": list(op_types), "calibration": calibrate,
            "calibration_windows": int(len(x)), "symmetric": True,
            "activation_type": "int16" if scheme != "int8" else activation_type}
    dst = save_onnx(set_metadata(proto, derived_metadata(meta, **info)), dst)
    info.update(bytes=dst.stat().st_size, ops=sorted({n.op_type for n in proto.graph.node}))
    log.info("wrote %s (%s, %d bytes)", dst, scheme, info["bytes"])
    return info
