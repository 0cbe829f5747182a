"""Quantized variants of EarthquakeCNN against the float model, and the static-graph choices.

Two tables, both timed interleaved in one process on one thread (``quantization.latency``):

1. the quantization report: every variant ``python -m quantization all`` builds (int16
   input, static int8 / A16W8 / A16W16, LiteRT float / int8), one window through the
   node's backend, against the float ONNX model; the report's JSON, table and PNG are
   written to ``<out>/quant/``;
2. the static QDQ graph choices of :mod:`quantization.static` (GELU fused or not,
   per-tensor or per-channel, which operators quantized), runtime call only.

A small model is trained on synthetic windows first (seconds), so accuracy and agreement
in the report are real; latency does not depend on the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _trained_model(folder: Path, seed: int):
    import torch

    from edge_runtime.kinds import EARTHQUAKE_CNN
    from edge_runtime.metadata import ModelMetadata
    from edge_runtime.preprocess import PreprocessConfig
    from host_training.checkpoints import save_checkpoint
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, build_model
    from host_training.synthetic.parametric import synthetic_dataset
    from host_training.train import TrainConfig, train

    torch.set_num_threads(2)
    dataset = synthetic_dataset(300, seed=seed)
    data = dataset.save(folder / "data")
    parts = {s: dataset.split(s) for s in ("train", "val")}
    x = {s: p.model_inputs()[0] for s, p in parts.items()}
    y = {s: p.labels(PHASE_CLASSES) for s, p in parts.items()}
    model = build_model(EARTHQUAKE_CNN.name, seed=seed)
    config = TrainConfig(epochs=5, batch_size=32, seed=seed)
    train(model, x["train"], y["train"], x["val"], y["val"], config, progress=False)
    meta = ModelMetadata(model=EARTHQUAKE_CNN.name, classes=list(PHASE_CLASSES), components=["E", "N", "Z"],
                         preprocess=PreprocessConfig().to_dict())
    float_path = folder / "earthquake_cnn.onnx"
    export_onnx(model, float_path, meta)
    ckpt = save_checkpoint(folder / "best.pt", model, EARTHQUAKE_CNN.name, PHASE_CLASSES, meta.preprocess,
                           config)
    return float_path, ckpt, data, x["train"], model


def _seed_style_export(model, float_path: Path, dst: Path) -> Path:
    """The same weights exported as the seed did (TorchScript exporter, opset 17): GELU
    arrives as Div/Erf/Add/Mul, the graph that made the first QDQ trial 2.5x slower."""
    import onnx
    import torch

    from edge_runtime.metadata import set_metadata
    from quantization.files import load_onnx

    _, meta = load_onnx(float_path)
    torch.onnx.export(model.eval(), (torch.zeros(1, 1, 80, 3),), str(dst), dynamo=False, opset_version=17,
                      input_names=[meta.input_name], output_names=["logits"],
                      dynamic_axes={meta.input_name: {0: "batch"}, "logits": {0: "batch"}})
    onnx.save(set_metadata(onnx.load(str(dst)), meta), str(dst))
    return dst


def static_choices(float_path: Path, calibration: np.ndarray, folder: Path, rounds: int = 20) -> list:
    """Runtime-call latency of static int8 graphs built with each choice, vs float.
    ``seed_style_opset17.onnx`` must sit beside ``float_path`` (see :func:`_seed_style_export`)."""
    import onnxruntime as ort

    from quantization.latency import interleaved_latency, summarize
    from quantization.static import quantize_static_model

    opset17 = float_path.with_name("seed_style_opset17.onnx")
    choices = {  # name: (float model it starts from, quantize_static_model options)
        "opset-17 export, every op quantized (GELU split)": (opset17, dict(
            fuse=False, op_types=("Conv", "Gemm", "MaxPool", "Mul", "Add", "Div", "Erf", "Reshape"))),
        "opset-17 export, Conv+Gemm, GELU split": (opset17, dict(fuse=False)),
        "opset-17 export, Conv+Gemm, GELU fused first": (opset17, dict()),
        "Conv+Gemm+Gelu (Q/DQ around GELU too)": (float_path, dict(op_types=("Conv", "Gemm", "Gelu"))),
        "Conv+Gemm (default)": (float_path, dict()),
        "Conv+Gemm, per-channel weights": (float_path, dict(per_channel=True)),
        "Conv+Gemm+MaxPool": (float_path, dict(op_types=("Conv", "Gemm", "MaxPool"))),
        "Conv only": (float_path, dict(op_types=("Conv",))),
        "Conv+Gemm, uint8 activations": (float_path, dict(activation_type="uint8")),
    }
    paths = {"float": float_path}
    for k, (name, (src, kwargs)) in enumerate(choices.items()):
        paths[name] = folder / f"choice_{k}.onnx"
        quantize_static_model(src, paths[name], calibration[:128], **kwargs)

    def session(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    x = calibration[:1]
    sessions = {name: session(p) for name, p in paths.items()}
    calls = {n: (lambda s=s: s.run(None, {"modelInput": x})) for n, s in sessions.items()}
    times = interleaved_latency(calls, rounds=rounds)
    base = summarize(times["float"])["p50_us"] * 1e-6
    results = []
    for name in choices:
        cand = summarize(times[name])["p50_us"] * 1e-6
        results.append({"name": f"static int8 QDQ graph: {name}", "baseline": "float ONNX, session.run",
                        "baseline_s": base, "candidate": f"{name}, session.run", "candidate_s": cand,
                        "speedup": base / cand, "bytes": paths[name].stat().st_size})
    return results


def bench_quant(out="runs/bench", seed: int = 0, rounds: int = 20) -> list:
    """Both tables as ``tools.bench`` result rows (baseline = float ONNX in the same run)."""
    from quantization.pipeline import run_all

    folder = Path(out) / "quant"
    folder.mkdir(parents=True, exist_ok=True)
    float_path, ckpt, data, x_train, model = _trained_model(folder, seed)
    _seed_style_export(model, float_path, float_path.with_name("seed_style_opset17.onnx"))
    report = run_all(float_path, data, folder / "variants", ckpt, rounds=rounds, windows=256)["report"]
    rows = report["variants"]
    ref = rows[0]
    results = []
    for r in rows[1:]:
        results.append({"name": f"EarthquakeCNN {r['model']} ({r['runtime']}, {r['scheme']}), one window",
                        "baseline": f"{ref['model']} (onnxruntime float), backend.predict",
                        "baseline_s": ref["latency_p50_us"] * 1e-6,
                        "candidate": f"{r['model']}, backend.predict",
                        "candidate_s": r["latency_p50_us"] * 1e-6,
                        "speedup": (ref["latency_p50_us"] * 1e-6) / (r["latency_p50_us"] * 1e-6),
                        "p99_ratio": r["latency_p99_us"] / ref["latency_p99_us"],
                        "runtime_only_ratio": ref["runtime_p50_us"] / r["runtime_p50_us"],
                        "accuracy_delta_pp": r["accuracy_delta_pp"], "agreement": r["agreement"],
                        "bytes": r["bytes"]})
    results += static_choices(float_path, x_train, folder, rounds=rounds)
    (folder / "bench_quant.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    for row in bench_quant():
        print(f"{row['name']}: x{row['speedup']:.2f} ({row['candidate_s'] * 1e6:.1f} us vs "
              f"{row['baseline_s'] * 1e6:.1f} us)")
