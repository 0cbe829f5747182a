"""Graph simplification with onnxsim (constant folding, redundant-node removal)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def simplify(src, dst) -> dict:
    """Simplify ``src`` into ``dst``; metadata is kept and the result is validated.

    Returns
    -------
    dict
        Node counts and file sizes before and after.
    """
    import onnx
    from onnxsim import simplify as onnxsim_simplify

    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    simplified, ok = onnxsim_simplify(model)
    if not ok:
        raise RuntimeError(f"{src}: onnxsim could not validate the simplified model")
    del simplified.metadata_props[:]
    for key, value in props.items():
        entry = simplified.metadata_props.add()
        entry.key, entry.value = key, value
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(simplified, str(dst))
    result = {"nodes_before": len(model.graph.node), "nodes_after": len(simplified.graph.node),
              "bytes_before": Path(src).stat().st_size, "bytes_after": dst.stat().st_size}
    log.info("simplified %s -> %s: %s", src, dst, result)
    return result
