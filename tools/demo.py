"""The whole chain once, on synthetic data: ``make demo`` / ``python -m tools demo``.

synthetic windows -> EarthquakeCNN -> ONNX -> int16 input + onnxsim -> SAC records ->
replay-test (:mod:`tools.replay_test`): each record through a pty into a fresh
``python -m edge_runtime`` process -> events.jsonl -> score against the SAC picks.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .faults import FaultConfig
from .replay_test import wait_for_port  # noqa: F401  (tests import it from here)

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Everything the demo draws or chooses; written to ``<out>/config.json``."""

    out: str = "runs/demo"
    seed: int = 7
    n_events: int = 2000
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    threads: int = 2
    station: str = "DEMO"
    sampling_rate_hz: float = 100.0
    sensor: str = "adxl355-2g"
    samples_per_frame: int = 10
    speed: float = 20.0
    # (PGA m/s^2, S-P s) of the replayed earthquakes: weak, moderate, strong.
    earthquakes: list = field(default_factory=lambda: [[0.05, 2.5], [0.2, 5.0], [0.6, 8.5]])
    record_s: float = 60.0
    noise_record_s: float = 120.0
    faults: FaultConfig = field(default_factory=lambda: FaultConfig(corrupt=0.001, garbage=0.01, seed=11))


def _step(n: int, title: str) -> float:
    print(f"\n[{n}/6] {title}", flush=True)
    return time.monotonic()


def make_records(config: DemoConfig) -> list:
    """The replayed records: one per earthquake of the config, then a noise record."""
    from obspy import UTCDateTime

    from host_training.data import synth

    rng = np.random.default_rng(config.seed + 1)
    fs = config.sampling_rate_hz
    t = UTCDateTime(2026, 1, 1)
    records = []
    for k, (pga, sp) in enumerate(config.earthquakes, 1):
        rec = synth.earthquake(rng, duration_s=config.record_s, fs=fs, p_s=rng.uniform(15, 25),
                               pga_mps2=pga, sp_s=sp)
        records.append((f"quake{k}", rec, t))
        t += config.record_s + 30.0
    rec = synth.noise_mix(rng, duration_s=config.noise_record_s, fs=fs)
    records.append(("noise", rec, t))
    return records


def _node_totals(rows: list) -> dict:
    """Counters of the nodes of all records, summed."""
    total = {"frames_sent": 0, "faults": {}, "decoder": {}, "pipeline": {}}
    for r in rows:
        total["frames_sent"] += r["frames_sent"]
        for k, v in r["faults"].items():
            total["faults"][k] = total["faults"].get(k, 0) + v
        status = json.loads((Path(r["workdir"]) / "node_status.json").read_text())
        for part in ("decoder", "pipeline"):
            for k, v in status.get(part, {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    total[part][k] = total[part].get(k, 0) + v
    return total


def run_demo(config: DemoConfig) -> int:
    import torch

    from edge_runtime.metadata import ModelMetadata
    from edge_runtime.preprocess import PreprocessConfig
    from host_training.data.sac import write_record
    from host_training.data.synth import synthetic_dataset
    from host_training.evaluate import classification_report, predict_torch
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, build_model, count_parameters
    from host_training.plots import plot_confusion, plot_history
    from host_training.train import TrainConfig, save_checkpoint, train
    from quantization.int16 import dataset_agreement, quantize_int16
    from quantization.simplify import simplify

    from .replay_test import ReplayTestConfig, format_report, run_replay_test

    started = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    summary = {"config": asdict(config)}
    if config.threads:
        torch.set_num_threads(config.threads)
    prep = PreprocessConfig()

    t = _step(1, f"synthetic dataset: {config.n_events} earthquakes, P / S / noise windows")
    dataset = synthetic_dataset(config.n_events, seed=config.seed, fs=config.sampling_rate_hz,
                                progress=True)
    dataset.save(out / "dataset")
    print(f"      {len(dataset)} windows -> {out / 'dataset'} ({time.monotonic() - t:.1f} s)")

    t = _step(2, f"train EarthquakeCNN on CPU, {config.epochs} epochs")
    parts = {s: dataset.split(s) for s in ("train", "val", "test")}
    x = {s: p.model_inputs(prep)[0] for s, p in parts.items()}
    y = {s: p.labels(PHASE_CLASSES) for s, p in parts.items()}
    model = build_model("EarthquakeCNN", config.seed)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               seed=config.seed)
    result = train(model, x["train"], y["train"], x["val"], y["val"], train_config)
    report = classification_report(y["test"], predict_torch(model, x["test"]).argmax(1), PHASE_CLASSES)
    model_dir = out / "model"
    save_checkpoint(model_dir / "earthquake_cnn.pt", model, "EarthquakeCNN", PHASE_CLASSES,
                    prep.to_dict(), train_config, extra={"test": report})
    plot_history(result["history"], model_dir / "history.png")
    plot_confusion(report, model_dir / "confusion_test.png")
    summary["training"] = {"best_epoch": result["best_epoch"],
                           "best_val_accuracy": result["best_val_accuracy"],
                           "test_accuracy": report["accuracy"], "test_confusion": report["confusion"],
                           "parameters": count_parameters(model)}
    print(f"      test accuracy {report['accuracy']:.3f} on {report['n']} windows; confusion "
          f"(rows P, S, noise) {report['confusion']} ({time.monotonic() - t:.1f} s)")

    t = _step(3, "export ONNX, int16 input scheme, onnxsim")
    metadata = ModelMetadata(model="EarthquakeCNN", classes=list(PHASE_CLASSES),
                             components=["E", "N", "Z"], preprocess=prep.to_dict(),
                             extra={"trained_on": "synthetic", "seed": config.seed,
                                    "test_accuracy": round(report["accuracy"], 4)})
    exported = export_onnx(model, model_dir / "earthquake_cnn.onnx", metadata,
                           check_inputs=x["test"][:256])
    int16_path = quantize_int16(model_dir / "earthquake_cnn.onnx", model_dir / "earthquake_cnn_int16.onnx")
    simplified = simplify(int16_path, model_dir / "earthquake_cnn_int16_sim.onnx")
    agree = dataset_agreement(model_dir / "earthquake_cnn.onnx",
                              model_dir / "earthquake_cnn_int16_sim.onnx", parts["test"], prep)
    summary["export"] = {"onnx": exported, "simplify": simplified, "int16_vs_float": agree}
    print(f"      torch vs onnxruntime max |diff| {exported['max_abs_diff']:.1e}; "
          f"int16 model agrees with float on {100 * agree['class_agreement']:.2f} % of "
          f"{agree['n']} test windows; nodes {simplified['nodes_before']} -> "
          f"{simplified['nodes_after']} ({time.monotonic() - t:.1f} s)")
    if agree["class_agreement"] < 0.99:
        print("      FAILED: int16 model disagrees with the float model on more than 1 %")
        return 1

    t = _step(4, "write synthetic records as SAC with P/S pick headers")
    sac_dir = out / "sac"
    for name, rec, start in make_records(config):
        picks = {"P": rec.p_s, "S": rec.s_s} if rec.p_s is not None else None
        write_record(rec.data, rec.sampling_rate_hz, start, sac_dir / name, station=config.station,
                     picks=picks, kind=rec.kind)
    print(f"      {len(config.earthquakes)} earthquake records and 1 noise record -> {sac_dir}")

    pace = f"{config.speed:g}x real time" if config.speed > 0 else "full speed"
    t = _step(5, f"replay-test: each record through a pty at {pace} into a fresh "
                 "`python -m edge_runtime run` process")
    replay_config = ReplayTestConfig(model=str(model_dir / "earthquake_cnn_int16_sim.onnx"),
                                     out=str(out / "replay"), sensor=config.sensor,
                                     speed=config.speed, samples_per_frame=config.samples_per_frame,
                                     faults=config.faults, seed=config.seed)
    result = run_replay_test([sac_dir], replay_config, progress=True)
    node = _node_totals(result["rows"])
    summary["replay"] = {"summary": result["summary"], "skipped": result["skipped"]}
    summary["node"] = node
    print(f"      sent {node['frames_sent']} frames, injected faults {node['faults']}; nodes "
          f"decoded {node['decoder']['frames']} frames, dropped {node['decoder']['crc_errors']} on CRC, "
          f"classified {node['pipeline']['windows']} windows ({time.monotonic() - t:.1f} s)")

    _step(6, "score events against the SAC picks")
    summary["score"] = {"rows": result["rows"], "summary": result["summary"]}
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(format_report(result))
    print(f"\noutputs in {out}/ (model/, sac/, replay/summary.json, replay/records/*/node.log, "
          f"summary.json); total {summary['elapsed_s']} s")
    s = result["summary"]
    if s["skipped"] or s["node_failures"] or s["ledger_failures"]:
        return 1
    return 0 if result["summary"]["passed"] else 1
