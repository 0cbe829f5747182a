"""Reading and writing model files for the quantization steps.

Every step reads its input through :func:`load_onnx` (one clear line for a file that is
missing, is not ONNX, or carries no SeismicTorch metadata) and writes through
:func:`atomic_path` (a temporary file in the destination folder, renamed into place only
when the step succeeded), so a failed step never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from edge_runtime.metadata import METADATA_KEY, ModelMetadata


class ModelFileError(ValueError):
    """A model file that a step cannot use; the message is one line naming the file."""


def load_onnx(path, expect_model: str | None = None, expect_scheme: str | None = None):
    """Load an ONNX file and its :class:`~edge_runtime.metadata.ModelMetadata`.

    Parameters
    ----------
    path : str or Path
        ``.onnx`` file written by ``host_training export`` or a quantization step.
    expect_model : str, optional
        Architecture the step needs (``EarthquakeCNN``, ``SpectrogramCNN``).
    expect_scheme : str, optional
        Input scheme the step needs (``float_maxabs`` or ``int16_maxabs``).

    Returns
    -------
    proto : onnx.ModelProto
    metadata : ModelMetadata

    Raises
    ------
    FileNotFoundError, ModelFileError
        With a one-line message naming ``path``.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        proto = onnx.load(str(path))
    except (DecodeError, RuntimeWarning, ValueError, OSError) as exc:
        raise ModelFileError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if not proto.graph.node:
        raise ModelFileError(f"{path}: not an ONNX model (no graph nodes)")
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ModelFileError(f"{path}: no '{METADATA_KEY}' metadata; export it with "
                             "`python -m host_training export`")
    meta = ModelMetadata.from_json(props[METADATA_KEY], source=str(path))
    if expect_model is not None and meta.model != expect_model:
        raise ModelFileError(f"{path}: a {meta.model} model; this step needs {expect_model}")
    if expect_scheme is not None and meta.input_scheme != expect_scheme:
        raise ModelFileError(f"{path}: input scheme {meta.input_scheme!r}; this step needs "
                             f"{expect_scheme!r} (give it the float model)")
    return proto, meta


def derived_metadata(meta: ModelMetadata, **quantization) -> ModelMetadata:
    """Copy of ``meta`` whose ``extra['quantization']`` records what a step did."""
    extra = dict(meta.extra)
    extra["quantization"] = {**extra.get("quantization", {}), **quantization}
    return ModelMetadata(**{**meta.__dict__, "extra": extra})


@contextlib.contextmanager
def atomic_path(dst, suffix: str | None = None):
    """Yield a temporary path beside ``dst``; rename it onto ``dst`` only on success.

    The temporary file lives in the destination folder so the final ``os.replace`` is an
    atomic rename on the same file system; on any exception it is removed.
    """
    dst = check_output_file(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=suffix or dst.suffix or ".tmp",
                               dir=dst.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def check_output_file(dst) -> Path:
    """``dst`` as a Path; a one-line :class:`ModelFileError` when it is a folder, not a file name."""
    dst = Path(dst)
    if dst.is_dir():
        raise ModelFileError(f"{dst}: is a folder; give the file to write (e.g. {dst / 'model.onnx'})")
    return dst


def check_loads(path) -> None:
    """Open ``path`` in onnxruntime, the runtime the node uses: the check that matters
    (``onnx.checker`` does not know onnxruntime's fused operators such as ``Gelu``)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelFileError(f"{path}: onnxruntime cannot load the result ({exc})") from None


def save_onnx(proto, dst) -> Path:
    """Write ``proto`` to ``dst`` atomically, after checking that onnxruntime loads it."""
    import onnx

    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save(proto, str(tmp))
        check_loads(tmp)
    return dst
