"""Benchmarks (``make bench``): speed measured against a baseline in the same run.

Each benchmark times a candidate and its baseline on the same input in the same process
and reports both and their ratio; results go to ``<out>/bench.json`` with a bar chart
``<out>/bench.png``. Nothing here asserts on time: numbers are for people to read.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from .spectrogram import bench_spectrogram


def _time_per_call(fn, min_time_s: float = 0.5, repeat: int = 5) -> float:
    """Best-of-``repeat`` mean seconds per call, each repeat running >= ``min_time_s / repeat``."""
    fn()  # warm caches (matrices, sessions)
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t > min_time_s / repeat:
            break
        n *= 2
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def bench_preprocess(rng) -> dict:
    """The matrix chain against ObsPy detrend/taper/filter + SciPy resample, one window."""
    from obspy import Trace
    from scipy import signal

    from edge_runtime.preprocess import PreprocessConfig, filter_windows

    config = PreprocessConfig()
    x = rng.standard_normal((3, 200)) * 1e-2
    x[2] += 9.81

    def baseline():
        out = []
        for comp in x:
            tr = Trace(comp.copy(), header={"sampling_rate": 100.0}).detrend("linear")
            tr.data *= signal.windows.tukey(tr.stats.npts, config.taper_alpha)
            tr.filter("highpass", freq=config.highpass_hz, corners=config.highpass_corners,
                      zerophase=False)
            out.append(signal.resample(tr.data, config.n_out))
        return out

    base = _time_per_call(baseline)
    cand = _time_per_call(lambda: filter_windows(x, 100.0, config))
    return {"name": "preprocess one 2 s window (3 x 200 -> 3 x 80)",
            "baseline": "ObsPy detrend+taper+highpass, SciPy resample", "baseline_s": base,
            "candidate": "edge_runtime.preprocess matrix chain", "candidate_s": cand,
            "speedup": base / cand}


def bench_decoder(rng) -> dict:
    """Frame decoding against bare struct/CRC parsing of the same bytes."""
    import struct
    import zlib

    from edge_runtime.protocol import FrameDecoder, encode_frame

    frames = [encode_frame(i, i * 100_000, 100.0, rng.integers(-1000, 1000, (10, 3)).astype(np.int32))
              for i in range(1000)]
    stream = b"".join(frames)
    size = len(frames[0])

    def baseline():  # knows the frame size in advance: no sync search, no validation
        for i in range(0, len(stream), size):
            chunk = stream[i:i + size]
            zlib.crc32(chunk[2:-4])
            struct.unpack_from("<30i", chunk, 24)

    base = _time_per_call(baseline)
    cand = _time_per_call(lambda: FrameDecoder().feed(stream))
    return {"name": "decode 1000 frames (10 samples x 3 channels)",
            "baseline": "fixed-size struct + CRC loop", "baseline_s": base,
            "candidate": "FrameDecoder.feed (sync search, header CRC, bounds)", "candidate_s": cand,
            "speedup": base / cand, "frames_per_s": 1000 / cand}


def bench_inference(model_dir: Path, rng) -> dict:
    """onnxruntime latency of one window: float model against int16 + onnxsim model."""
    import onnxruntime as ort

    def session(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    x = rng.uniform(-1, 1, (1, 1, 80, 3)).astype(np.float32)
    x16 = (x * 32767).astype(np.int16)
    sf = session(model_dir / "earthquake_cnn.onnx")
    s16 = session(model_dir / "earthquake_cnn_int16_sim.onnx")
    base = _time_per_call(lambda: sf.run(None, {"modelInput": x}))
    cand = _time_per_call(lambda: s16.run(None, {"modelInput": x16}))
    return {"name": "EarthquakeCNN, one window, 1 thread",
            "baseline": "float ONNX", "baseline_s": base,
            "candidate": "int16-input ONNX + onnxsim", "candidate_s": cand,
            "speedup": base / cand}


def _models(out: Path) -> Path:
    """Untrained EarthquakeCNN exported like the demo's (latency does not depend on weights)."""
    from edge_runtime.metadata import ModelMetadata
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, EarthquakeCNN
    from quantization.int16 import quantize_int16
    from quantization.simplify import simplify

    folder = out / "model"
    meta = ModelMetadata(model="EarthquakeCNN", classes=list(PHASE_CLASSES))
    export_onnx(EarthquakeCNN().eval(), folder / "earthquake_cnn.onnx", meta)
    quantize_int16(folder / "earthquake_cnn.onnx", folder / "earthquake_cnn_int16.onnx")
    simplify(folder / "earthquake_cnn_int16.onnx", folder / "earthquake_cnn_int16_sim.onnx")
    return folder


def _bench_replay_test(out, rng, seed, soak_hours):
    from .replay_test import bench_replay_test

    return [bench_replay_test(out, rng)]


def _bench_quant(out, rng, seed, soak_hours):  # report in <out>/quant/
    from .quant import bench_quant

    return bench_quant(out, seed=seed)


def _bench_train(out, rng, seed, soak_hours):
    from .train import bench_train

    return [bench_train(rng)]


def _bench_prepare(out, rng, seed, soak_hours):  # `python -m tools.bench.prepare` for large sizes
    from .prepare import bench_prepare

    return bench_prepare(sizes=(50, 200), sac_records=(1, 4), seed=seed)


def _bench_protocol(out, rng, seed, soak_hours):
    from .protocol import bench_protocol

    return bench_protocol(rng)


def _bench_soak(out, rng, seed, soak_hours):
    from .soak import bench_soak

    return [bench_soak(out, seed=seed, hours=soak_hours)]


def _bench_window_path(out, rng, seed, soak_hours):
    from .window_path import run

    return run(out, rng, quick=soak_hours < 1)


# name -> fn(out, rng, seed, soak_hours) -> list of result dicts, in the order they run.
BENCHES = {
    "preprocess": lambda out, rng, seed, soak_hours: [bench_preprocess(rng)],
    "decoder": lambda out, rng, seed, soak_hours: [bench_decoder(rng)],
    "inference": lambda out, rng, seed, soak_hours: [bench_inference(_models(out), rng)],
    "replay_test": _bench_replay_test,
    "spectrogram": lambda out, rng, seed, soak_hours: [bench_spectrogram(rng)],
    "quant": _bench_quant,
    "train": _bench_train,
    "prepare": _bench_prepare,
    "protocol": _bench_protocol,
    "soak": _bench_soak,
    "window_path": _bench_window_path,
}


def run_bench(out="runs/bench", seed: int = 0, soak_hours: float = 24.0, only=None) -> dict:
    """Run the benchmarks named in ``only`` (all of :data:`BENCHES` when None) and write the report.

    Parameters
    ----------
    out : str or Path
        Folder for ``bench.json``, ``bench.png`` and each benchmark's own files.
    seed : int
        Seed of every random input.
    soak_hours : float
        Simulated hours of the soak run (``make bench``: 24 h); below 1 h the window-path
        benchmark runs in its quick mode too.
    only : list of str, optional
        Names from :data:`BENCHES`.
    """
    names = list(BENCHES) if only is None else list(only)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    results = []
    for name in names:
        results += BENCHES[name](out, rng, seed, soak_hours)
    report = {"machine": {"python": platform.python_version(), "processor": platform.machine(),
                          "system": platform.platform()}, "seed": seed, "results": results}
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    _plot(results, out / "bench.png")
    for r in results:
        print(f"{r['name']}\n  baseline  {r['baseline_s'] * 1e6:10.1f} us  {r['baseline']}\n"
              f"  candidate {r['candidate_s'] * 1e6:10.1f} us  {r['candidate']}\n"
              f"  ratio     {r['speedup']:10.2f} x")
    print(f"results in {out / 'bench.json'} and {out / 'bench.png'}")
    return report


def _plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.9 * len(results)))
    y = np.arange(len(results))
    ax.barh(y + 0.2, [r["baseline_s"] * 1e6 for r in results], 0.4, label="baseline")
    ax.barh(y - 0.2, [r["candidate_s"] * 1e6 for r in results], 0.4, label="candidate")
    ax.set_yticks(y, [r["name"] for r in results], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("time per call (us)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
