"""The whole chain once, on synthetic data: ``make demo`` / ``python -m tools demo``.

synthetic windows -> EarthquakeCNN -> ONNX -> int16 input + onnxsim -> SAC records ->
serial replay through a pty -> ``python -m edge_runtime`` in its own process ->
events.jsonl -> score against the SAC picks.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.service import ADXL355_COUNTS_PER_MPS2

from .faults import FaultConfig

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
    counts_per_mps2: float = ADXL355_COUNTS_PER_MPS2
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


def wait_for_port(status_path: Path, proc, timeout_s: float = 30.0) -> None:
    """Block until the node reports its serial port open (pyserial flushes on open)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edge runtime exited early with code {proc.returncode}")
        try:
            if json.loads(status_path.read_text()).get("port_open"):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"edge runtime did not open its port within {timeout_s} s")


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

    from .faults import FaultInjector
    from .replay import Writer, open_pty, read_waveform_records, replay_records
    from .score import format_table, load_events, score, truths_from_sac

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
    t = _step(5, f"replay through a pty at {pace} into `python -m edge_runtime run` (separate process)")
    events_path, status_path = out / "events.jsonl", out / "node_status.json"
    for path in (events_path, status_path):
        path.unlink(missing_ok=True)
    pty = open_pty()
    node_log = open(out / "node.log", "w")
    cmd = [sys.executable, "-m", "edge_runtime", "run", "--port", pty.port,
           "--model", str(model_dir / "earthquake_cnn_int16_sim.onnx"),
           "--events", str(events_path), "--status", str(status_path),
           "--station", config.station, "--counts-per-mps2", str(config.counts_per_mps2),
           "--idle-exit-s", "3"]
    repo = str(Path(__file__).resolve().parents[1])  # the node imports edge_runtime from here
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(status_path, proc)
        records = read_waveform_records(sorted(sac_dir.rglob("*.SAC")))
        writer = Writer(pty, speed=config.speed, alive=lambda: proc.poll() is None)
        sent = replay_records(records, writer, config.counts_per_mps2,
                              config.samples_per_frame, FaultInjector(config.faults), progress=True)
        proc.wait(timeout=120)
    except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
        print(f"      FAILED: {exc}; see {out / 'node.log'}")
        return 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        pty.close()
        node_log.close()
    if proc.returncode != 0:
        print(f"      FAILED: the node exited with code {proc.returncode}; see {out / 'node.log'}")
        return 1
    node_status = json.loads(status_path.read_text())
    summary["replay"] = sent
    summary["node"] = node_status
    print(f"      sent {sent['frames']} frames ({sent['bytes']} bytes), injected faults "
          f"{ {k: v for k, v in sent['faults'].items() if k != 'frames'} }; node decoded "
          f"{node_status['decoder']['frames']} frames, dropped {node_status['decoder']['crc_errors']} "
          f"on CRC, classified {node_status['pipeline']['windows']} windows "
          f"({time.monotonic() - t:.1f} s)")

    _step(6, "score events against the SAC picks")
    result = score(load_events(events_path), truths_from_sac(sac_dir))
    summary["score"] = result
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(format_table(result))
    print(f"\noutputs in {out}/ (events.jsonl, node.log, model/, sac/, summary.json); "
          f"total {summary['elapsed_s']} s")
    return 0 if result["summary"]["passed"] else 1
