"""Build every variant of one float model, report on them and choose one: ``quantization all``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_runtime.kinds import get_kind

log = logging.getLogger(__name__)


def build_variants(float_model, data, out, checkpoint=None, windows: int = 512, seed: int = 0,
                   progress=print) -> list:
    """Write the node's candidate models of ``float_model`` into ``out``; their paths.

    A kind that takes int16 windows (``ModelKind.int16_input``: EarthquakeCNN): float
    (copied), int16 input, static int8 / A16W8 / A16W16 (QDQ, GELU fused, Conv+Gemm), and
    with ``checkpoint`` LiteRT float and int8. Any other kind (SpectrogramCNN): float and
    dynamic int8. Calibration windows come from the ``train`` split.
    """
    import shutil

    from host_training.datasets.splits import open_dataset

    from .dynamic import quantize_dynamic_model
    from .files import load_onnx
    from .int16 import quantize_int16
    from .static import calibration_windows, quantize_static_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, meta = load_onnx(float_model, expect_scheme="float_maxabs")
    stem = Path(float_model).stem
    ref = out / f"{stem}.onnx"
    if Path(float_model).resolve() != ref.resolve():
        shutil.copyfile(float_model, ref)
    paths = [ref]
    if not get_kind(meta.model, str(float_model)).int16_input:
        progress("dynamic int8 (dense weights)")
        quantize_dynamic_model(ref, out / f"{stem}_dynamic.onnx")
        return paths + [out / f"{stem}_dynamic.onnx"]
    x = calibration_windows(open_dataset(data), n=windows, seed=seed)
    progress(f"int16 input ({len(x)} calibration windows from the train split)")
    paths.append(quantize_int16(ref, out / f"{stem}_int16.onnx"))
    for scheme in ("int8", "a16w8", "a16w16"):
        progress(f"static {scheme} (QDQ)")
        quantize_static_model(ref, out / f"{stem}_{scheme}.onnx", x, scheme=scheme)
        paths.append(out / f"{stem}_{scheme}.onnx")
    if checkpoint is not None:
        from .tflite import convert_checkpoint

        for name, calib in (("float", None), ("int8", x)):
            progress(f"LiteRT {name}")
            convert_checkpoint(checkpoint, out / f"{stem}_{name}.tflite", ref, calib)
            paths.append(out / f"{stem}_{name}.tflite")
    return paths


def run_all(float_model, data, out, checkpoint=None, gate_pp: float = 0.5, windows: int = 512,
            seed: int = 0, rounds: int = 30, memory: bool = True) -> dict:
    from .report import choose, format_table, quantization_report

    out = Path(out)
    paths = build_variants(float_model, data, out, checkpoint, windows, seed,
                           progress=lambda s: print(f"  building: {s}", flush=True))
    print(f"  measuring {len(paths)} variants (accuracy, agreement, latency, memory)", flush=True)
    report = quantization_report(paths, data, out, reference=paths[0], rounds=rounds, memory=memory)
    choice = choose(report, out / "chosen_model.json", gate_pp=gate_pp)
    (out / "config.json").write_text(json.dumps(
        {"float_model": str(float_model), "data": str(data), "checkpoint": str(checkpoint or ""),
         "gate_pp": gate_pp, "windows": windows, "seed": seed, "rounds": rounds}, indent=2))
    print(format_table(report))
    print(f"chosen: {choice['model']} ({choice['latency_p50_us']:.1f} us p50, "
          f"accuracy {choice['accuracy_delta_pp']:+.2f} pp vs float); written to {out / 'chosen_model.json'}")
    return {"report": report, "choice": choice}
