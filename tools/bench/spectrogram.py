"""Spectrogram image: the numpy path of the node against the seed's matplotlib + OpenCV path.

:func:`seed_spectrogram_image` is the seed's ``stream_to_spectrogram_ndarray`` kept as a
reference (tests and this benchmark only; it needs matplotlib and opencv-python-headless
from the ``dev`` extra). One change: the seed drew every component into the same pyplot
figure without clearing it, so each ``savefig`` redrew all earlier meshes and a long
process leaked memory; here each component gets a fresh figure of the same (default)
size, which is the seed's picture and the seed's speed on its first record.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import numpy as np


def seed_spectrogram_image(record: np.ndarray, fs: float) -> np.ndarray:
    """The seed's image of a ``(3, n)`` (E, N, Z) record: ``(100, 150, 3)`` uint8, (Z, X, Y).

    scipy.signal.spectrogram (nperseg 256, noverlap 128) -> pcolormesh of 10 log10 Sxx in
    grey, autoscaled -> PNG in memory -> cv2.imdecode -> cv2.resize to 150 x 100 ->
    grey. Channels last, as the seed returns it.
    """
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.signal

    channels = []
    for trace in record:
        frequencies, times, sxx = scipy.signal.spectrogram(trace, fs=fs, nperseg=256, noverlap=128)
        fig = plt.figure()
        plt.pcolormesh(times, frequencies, 10 * np.log10(sxx), shading="auto", cmap="gray")
        plt.axis("off")
        stream = BytesIO()
        plt.savefig(stream, format="png", bbox_inches="tight", pad_inches=0)
        plt.close(fig)
        img = cv2.imdecode(np.frombuffer(stream.getvalue(), dtype=np.uint8), 1)
        img = cv2.resize(img, (150, 100))
        channels.append(np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)))
    return np.stack([channels[2], channels[0], channels[1]], axis=-1)


def example_record(rng, duration_s: float = 480.0, fs: float = 100.0) -> np.ndarray:
    """A seed-length (480 s) earthquake record, ``(3, n)`` m/s^2 (E, N, Z)."""
    from host_training.synthetic.parametric import earthquake

    return earthquake(rng, duration_s=duration_s, fs=fs, p_s=rng.uniform(100.0, 200.0)).data


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def bench_spectrogram(rng) -> dict:
    """One 480 s, 3-component, 100 Hz record to a (3, 100, 150) image, both ways."""
    from edge_runtime.spectrogram import spectrogram_image

    from .common import time_per_call

    record = example_record(rng)
    seed_img = seed_spectrogram_image(record, 100.0)
    ours = spectrogram_image(record, 100.0)
    seed_img = np.moveaxis(seed_img, -1, 0)
    # Per component: the seed autoscaled each component's picture on its own, which a
    # fixed dB range undoes on purpose; the whole stack is reported too.
    per_component = [pearson(seed_img[c], ours[c]) for c in range(3)]
    base = time_per_call(lambda: seed_spectrogram_image(record, 100.0), min_time_s=1.0, repeat=3)
    cand = time_per_call(lambda: spectrogram_image(record, 100.0))
    return {"name": "spectrogram image, 480 s 3-component record at 100 Hz",
            "baseline": "seed: scipy + matplotlib pcolormesh -> PNG -> OpenCV decode/resize",
            "baseline_s": base,
            "candidate": "edge_runtime.spectrogram (numpy, fixed dB range)", "candidate_s": cand,
            "speedup": base / cand, "pearson_vs_seed_per_component_ZEN": per_component,
            "pearson_vs_seed_whole_image": pearson(seed_img, ours)}


# ---------------------------------------------------------------------------- node measurement

_NODE_CHILD = r'''
import json, sys, threading, time
import numpy as np

def rss():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out

window_model, source_model, counts_path = sys.argv[1:4]
from edge_runtime.backends import OnnxBackend
from edge_runtime.protocol import Frame
from edge_runtime.second_stage import SecondStage, SourceClassifier
from edge_runtime.service import NodeConfig, Pipeline
mem = {"imports": rss()}
pipe = Pipeline(OnnxBackend(window_model, threads=1), NodeConfig(port="unused", model=window_model))
mem["window_model"] = rss()
stage = None
if source_model != "-":
    stage = pipe.second_stage = SecondStage(SourceClassifier(source_model, threads=1))
    mem["both_models"] = rss()
counts = np.load(counts_path)
T0 = 1_767_225_600_000_000
frames = [Frame(i, T0 + i * 100_000, 100.0, counts[i * 10:(i + 1) * 10]) for i in range(len(counts) // 10)]
trigger_s = 20.0
record_end_frame = int((trigger_s - (stage.config.pre_s if stage else 15.0)
                        + (stage.config.record_s if stage else 60.0)) * 10)
paced_frames = 50  # 5 s of 0.1 s frames, fed at their real pace

def paced(first):
    rows, t_start = [], time.perf_counter()
    for k, f in enumerate(frames[first:first + paced_frames]):
        due = t_start + 0.1 * k
        while time.perf_counter() < due:
            time.sleep(0.0005)
        w0 = pipe.counts["windows"]
        t = time.perf_counter()
        pipe.on_frame(f)
        done = time.perf_counter()
        rows.append(dict(t=done, process_ms=(done - t) * 1e3, late_ms=(done - due) * 1e3,
                         windows=pipe.counts["windows"] - w0))
    return rows

def summary(rows):
    p = np.array([r["process_ms"] for r in rows if r["windows"]])
    late = np.array([r["late_ms"] for r in rows])
    return {"frames": len(rows), "frames_with_windows": int(p.size),
            "window_frame_ms_median": float(np.median(p)), "window_frame_ms_p90": float(np.percentile(p, 90)),
            "window_frame_ms_max": float(p.max()), "late_ms_median": float(np.median(late)),
            "late_ms_max": float(late.max())}

for f in frames[:100]:
    pipe.on_frame(f)
baseline = paced(100)                       # no record being classified
if stage is not None:
    start = T0 + int(trigger_s * 1e6)
    stage.process([{"type": "trigger", "start_us": start, "p_time_us": start}])
    stage.process([{"type": "event", "start_us": start, "p_time_us": start, "end_us": start + 10**7}])
for f in frames[100 + paced_frames:record_end_frame - 5]:
    pipe.on_frame(f)
busy_started = time.perf_counter()
during = paced(record_end_frame - 5)        # the record completes 0.5 s in; the worker runs
result = {}
if stage is not None:
    deadline = time.time() + 60
    lines = []
    while not lines and time.time() < deadline:
        lines = stage.poll()
        time.sleep(0.01)
    result = lines[0] if lines else {}
    latency_s = (result.get("source_latency_ms") or 0) / 1e3
    # Frames processed while the worker was classifying (it starts when the record completes).
    t_submit = during[5]["t"] if len(during) > 5 else busy_started
    overlap = [r for r in during if t_submit <= r["t"] <= t_submit + latency_s + 0.05]
    result = {k: result.get(k) for k in ("source_class", "source_prob", "source_latency_ms", "source_error")}
    result["frames_during_classification"] = len(overlap)
    result["during_classification"] = summary(overlap) if any(r["windows"] for r in overlap) else None
stress = None
if stage is not None:
    # Worst case: the second stage classifies records back to back (its worker thread busy
    # all the time) while frames keep arriving at their real pace.
    record = counts[:6000].T / 26146.0
    stop, n_done = threading.Event(), [0]

    def hammer():
        while not stop.is_set():
            stage.classifier.classify(record, 100.0)
            n_done[0] += 1

    worker = threading.Thread(target=hammer)
    worker.start()
    rows = paced(record_end_frame + paced_frames)
    stop.set()
    worker.join()
    stress = dict(summary(rows), records_classified=n_done[0])
mem["end"] = rss()
print(json.dumps({"rss_mb": mem, "baseline": summary(baseline), "while_second_stage_runs": summary(during),
                  "second_stage_busy_all_the_time": stress, "second_stage": result}))
'''


def measure_node(source_model, window_model=None, out="runs/bench/node", seed: int = 0) -> dict:
    """Node memory and timing with the second stage (a child process importing only edge_runtime).

    Feeds 0.1 s frames of an earthquake record into the live ``Pipeline`` with a
    ``SecondStage`` attached: 5 s at real pace with nothing to classify (baseline), then 5 s
    at real pace during which a 60 s record completes and is classified on the worker
    thread (one onnxruntime thread), then 5 s at real pace while a second thread
    classifies records back to back (the second stage never idle: the worst case). Reports
    the time each window-producing frame took, how late each frame was processed against
    its real-time arrival, the second stage's latency, and VmRSS / VmHWM (peak) after
    loading each model and at the end.
    """
    import subprocess
    import sys

    from edge_runtime.metadata import ModelMetadata
    from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
    from host_training.synthetic.parametric import earthquake
    from tools.replay.sender import to_counts

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if window_model is None:  # latency and memory do not depend on the weights
        from edge_runtime.kinds import EARTHQUAKE_CNN
        from host_training.export import export_onnx
        from host_training.models import PHASE_CLASSES, EarthquakeCNN

        window_model = out / "earthquake_cnn.onnx"
        export_onnx(EarthquakeCNN().eval(), window_model,
                    ModelMetadata(model=EARTHQUAKE_CNN.name, classes=list(PHASE_CLASSES),
                                  components=["E", "N", "Z"]))
    rec = earthquake(np.random.default_rng(seed), duration_s=120.0, p_s=20.0, pga_mps2=0.3)
    counts_path = out / "counts.npy"
    np.save(counts_path, to_counts(rec.data, ADXL355_COUNTS_PER_MPS2).T)
    report = {}
    for name, model in (("window_model_only", "-"), ("both_models", str(source_model))):
        done = subprocess.run([sys.executable, "-c", _NODE_CHILD, str(window_model), model, str(counts_path)],
                              capture_output=True, text=True, timeout=300,
                              env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"node measurement failed: {done.stderr.strip().splitlines()[-1]}")
        report[name] = json.loads(done.stdout.strip().splitlines()[-1])
    report.update(window_model=str(window_model), source_model=str(source_model))
    (out / "node.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.bench.spectrogram",
                                     description="Spectrogram image against the seed's path, and the node's "
                                                 "memory and timing with the second stage.")
    parser.add_argument("--source-model",
                        help="SpectrogramCNN ONNX (e.g. dynamic int8) for the node measurement")
    parser.add_argument("--window-model", default=None,
                        help="EarthquakeCNN ONNX (default: an untrained export)")
    parser.add_argument("--out", default="runs/bench/node", help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    if not args.source_model:
        print(json.dumps(bench_spectrogram(np.random.default_rng(0)), indent=2))
        return 0
    if not Path(args.source_model).is_file():
        print(f"error: {args.source_model}: no such model file", file=__import__("sys").stderr)
        return 2
    print(json.dumps(measure_node(args.source_model, args.window_model, args.out), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
