"""A ``.tflite`` model for the node's second backend (LiteRT), float and int8.

Conversion uses ``litert-torch`` (Google's maintained PyTorch -> LiteRT converter, the
successor of ai-edge-torch) straight from the trained torch module, and int8 uses
``ai-edge-quantizer`` (static, calibrated on the same windows as the ONNX static step).
The node runs the file with ``ai-edge-litert``, the maintained LiteRT runtime: the older
``tflite-runtime`` wheel had its last release in 2023 and has no Python 3.11+ builds for
current Raspberry Pi OS, so it is not used.

The node's metadata (the same JSON as in the ONNX file, see
:mod:`edge_runtime.metadata`) is embedded in the flatbuffer's ``metadata`` table under
the key ``seismictorch``, so a ``.tflite`` file is as self-describing as an ``.onnx`` one.

Measured on EarthquakeCNN (x86-64, one thread, one window, same run): onnxruntime float
13.8 us, LiteRT float (XNNPACK) 6.7 us, LiteRT int8 5.2 us. LiteRT quantizes GELU inside
the integer graph, which onnxruntime's QDQ graph cannot (see :mod:`quantization.static`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from edge_runtime.kinds import get_kind
from edge_runtime.metadata import METADATA_KEY, ModelMetadata

from .files import ModelFileError, atomic_path, derived_metadata, load_onnx

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[tflite,convert]' (ai-edge-litert, litert-torch)"


@contextlib.contextmanager
def quiet_native_output():
    """Silence the converter's own chatter (progress lines, absl and MLIR logs written by
    C++ straight to file descriptors 1 and 2, Python warnings) unless debug logging is on."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The root logger itself (not getLogger("root")): the converter's imports raise its level
        # and would leave every later log line of the process unseen.
        loggers = [logging.root, logging.getLogger("torchao"), logging.getLogger("absl")]
        quiet_loggers = {lg: lg.level for lg in loggers}
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for lg, level in quiet_loggers.items():
                lg.setLevel(level)


def embed_metadata(tflite_bytes: bytes, metadata: ModelMetadata) -> bytes:
    """Return the flatbuffer with ``metadata`` stored under :data:`METADATA_KEY`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite_bytes, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata.to_json().encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entries = [m for m in (model.metadata or []) if m.name not in (METADATA_KEY, METADATA_KEY.encode())]
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    builder = flatbuffers.Builder(len(tflite_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def convert_tflite(model, dst, metadata: ModelMetadata, calibration: np.ndarray | None = None) -> dict:
    """Convert a torch model to ``.tflite`` with ``litert-torch``; int8 when calibrated.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model (eval mode is set here).
    dst : str or Path
        Output ``.tflite`` file, written only when conversion succeeded.
    metadata : ModelMetadata
        The node's metadata (``input_scheme`` must be ``float_maxabs``).
    calibration : numpy.ndarray, optional
        Model inputs; when given, the model is quantized to int8 (weights and
        activations, ai-edge-quantizer's ``static_wi8_ai8`` recipe) on these windows.

    Returns
    -------
    dict
        File size, largest |logit| difference to torch on the calibration (or random)
        windows, and what was done.
    """
    import tempfile

    import torch

    try:
        with quiet_native_output():
            import litert_torch
    except ImportError:
        raise ModelFileError(f"litert-torch is not installed: {INSTALL_HINT}") from None
    if metadata.input_scheme != "float_maxabs":
        raise ModelFileError("the LiteRT models take float windows; give float_maxabs metadata")
    model = model.cpu().eval()
    shape = get_kind(metadata.model).input_shape
    if calibration is not None:
        calibration = np.ascontiguousarray(calibration, dtype=np.float32)
        if len(calibration) == 0:
            raise ValueError("calibration set is empty")
        if calibration.shape[1:] != shape:
            raise ValueError(f"calibration set: windows of shape {calibration.shape[1:]} do not fit "
                             f"{metadata.model} input {shape}")
    dst = Path(dst)
    int8 = calibration is not None
    with tempfile.TemporaryDirectory(prefix="seismictorch-tflite-") as tmp:
        float_path = Path(tmp) / "float.tflite"
        with quiet_native_output():
            litert_torch.convert(model, (torch.zeros((1,) + shape),)).export(str(float_path))
        path = float_path
        if int8:
            with quiet_native_output():
                from ai_edge_quantizer import quantizer, recipe

                q = quantizer.Quantizer(str(float_path), recipe.static_wi8_ai8())
                signature = _signature(float_path)
                feeds = [{signature[1]: calibration[i:i + 1]} for i in range(len(calibration))]
                result = q.quantize(q.calibrate({signature[0]: feeds}))
                path = Path(tmp) / "int8.tflite"
                result.export_model(str(path), overwrite=True)
        info = {"step": "tflite", "tool": f"litert-torch {litert_torch.__version__}",
                "scheme": "int8" if int8 else "float",
                "calibration_windows": int(len(calibration)) if int8 else 0}
        data = embed_metadata(path.read_bytes(), derived_metadata(metadata, **info))
        with atomic_path(dst) as out:
            out.write_bytes(data)
            check = calibration[:64] if int8 else np.random.default_rng(0).uniform(
                -1, 1, (16,) + shape).astype(np.float32)
            got = run_tflite(out, check)
    with torch.no_grad():
        ref = model(torch.from_numpy(check)).numpy()
    info.update(path=str(dst), bytes=dst.stat().st_size,
                max_abs_logit_diff=float(np.abs(got - ref).max()),
                class_agreement=float((got.argmax(1) == ref.argmax(1)).mean()))
    log.info("wrote %s (%s, %d bytes)", dst, info["scheme"], info["bytes"])
    return info


def _signature(path) -> tuple:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def run_tflite(path, x: np.ndarray) -> np.ndarray:
    """Float logits of a ``.tflite`` model on float inputs ``x``, one window at a time."""
    from edge_runtime.backends.litert import LiteRTBackend

    return LiteRTBackend(path, require_metadata=False).run(x)


def convert_checkpoint(checkpoint, dst, like, calibration: np.ndarray | None = None) -> dict:
    """``python -m quantization tflite``: a trained checkpoint to ``.tflite``.

    ``like`` is the float ONNX file exported from the same checkpoint: its metadata is
    copied, so both files describe the model identically, and the two must agree on
    random windows (a mismatched pair is refused).
    """
    import onnxruntime as ort
    import torch

    from host_training.checkpoints import load_checkpoint

    _, meta = load_onnx(like, expect_scheme="float_maxabs")
    if meta.extra.get("quantization"):
        raise ModelFileError(f"{like}: a quantized model; give the float ONNX export")
    model, info = load_checkpoint(checkpoint)
    if info["model"] != meta.model:
        raise ModelFileError(f"{checkpoint}: a {info['model']} checkpoint but {like} is {meta.model}")
    x = np.random.default_rng(0).uniform(-1, 1, (8,) + get_kind(meta.model).input_shape).astype(np.float32)
    session = ort.InferenceSession(str(like), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {meta.input_name: x})
    with torch.no_grad():
        torch_logits = model.eval()(torch.from_numpy(x)).numpy()
    if np.abs(onnx_logits - torch_logits).max() > 1e-3:
        raise ModelFileError(f"{like} was not exported from {checkpoint} (their outputs differ)")
    return convert_tflite(model, dst, meta, calibration)
