"""One report over every model variant and backend, and the choice the node deploys.

For each model file (ONNX run by onnxruntime, ``.tflite`` run by LiteRT) on the same test
split, fed exactly as the node feeds it:

- file size;
- accuracy, macro F1 and per-class F1 (``host_training.evaluate``, the project's one
  evaluator);
- agreement with the reference (float) model: the fraction of windows where both pick
  the same class. Agreement is not accuracy: a variant can agree on 99 % and still lose
  accuracy if its disagreements fall on windows the float model got right;
- latency per window, p50 and p99, one thread, all variants timed interleaved in one
  process (:mod:`quantization.latency`), one call = the backend's ``predict`` on one int16
  window, the node's full per-window cost after preprocessing;
- latency of the runtime call alone (``runtime_p50_us``: session run / interpreter invoke
  on a prepared input), to separate the model from the backend's numpy work;
- peak memory: resident memory a fresh process gains while loading the model and
  classifying windows (Linux ``/proc``: peak after, less resident before).

:func:`choose` names the fastest variant whose accuracy is within ``gate_pp`` percentage
points of the reference and whose agreement is at least ``min_agreement``, and writes it
to ``chosen_model.json``, which ``tools.deploy.bundle`` reads.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_runtime.backends import load_backend
from edge_runtime.kinds import get_kind
from edge_runtime.preprocess import prepare_windows, to_model_input

from .files import atomic_path
from .latency import interleaved_latency, summarize

log = logging.getLogger(__name__)

CHOICE_FILE = "chosen_model.json"

_MEMORY_CHILD = r"""
import importlib, json, sys
import numpy as np
from edge_runtime.backends import load_backend, runtime_for
from edge_runtime.kinds import get_kind
path, n_components, n_samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
importlib.import_module(runtime_for(path).package)  # the runtime's own memory is not the model's

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

windows = np.random.default_rng(0).integers(-32767, 32768, (20, n_components, n_samples)).astype(np.int16)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
backend = load_backend(path, threads=1)
if get_kind(backend.metadata.model).stage == "window":
    for i in range(len(windows)):
        backend.predict(windows[i:i + 1])
else:  # record models: the runtime on an input of the graph's shape
    shape = [1] + [d if isinstance(d, int) else 1 for d in backend.inputs[0].shape[1:]]
    for _ in range(3):
        backend.run(np.zeros(shape, np.float32))
print(json.dumps({"before_kib": before, "after_kib": status("VmHWM")}))
"""


def runtime_call(backend, window_int16):
    """A zero-argument call of the runtime alone (no numpy around it) on one prepared window."""
    return backend.bind(to_model_input(window_int16, backend.input_dtype))


def peak_memory_kib(path, n_components: int, n_samples: int) -> float | None:
    """Peak resident memory (KiB) a fresh process gains loading ``path`` and classifying 20
    windows: ``VmHWM`` after, less ``VmRSS`` before, with the peak reset once the runtime is
    imported (Linux ``/proc``; None elsewhere)."""
    try:
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path), str(n_components),
                              str(n_samples)], capture_output=True, text=True, timeout=300, check=True)
        raw = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("%s: peak memory not measured (%s)", path, type(exc).__name__)
        return None
    return float(raw["after_kib"] - raw["before_kib"])


def describe(backend) -> dict:
    """Backend name and quantization scheme of a loaded model."""
    meta = backend.metadata
    q = meta.extra.get("quantization") or {}
    runtime = backend.runtime
    scheme = q.get("scheme") or ("int16 input" if meta.input_scheme == "int16_maxabs" else "float")
    if q.get("step") == "dynamic":
        scheme = "dynamic int8 weights"
    if meta.input_scheme == "int16_maxabs" and q.get("step") not in (None, "int16"):
        scheme += " + int16 input"
    return {"runtime": runtime, "scheme": scheme, "step": q.get("step", "export")}


def quantization_report(models, data, out, split: str = "test", reference=None, rounds: int = 30,
                        memory: bool = True, seed: int = 0) -> dict:
    """Evaluate, time and size every model; write ``report.json``, ``report.txt``, ``report.png``.

    Parameters
    ----------
    models : sequence of str or Path
        ``.onnx`` and ``.tflite`` files of one architecture.
    data : str or Path
        Dataset folder (host_training layout).
    out : str or Path
        Output folder.
    split : str
        Split to score on.
    reference : str or Path, optional
        The float model agreement is measured against; default the first of ``models``.
    rounds : int
        Latency rounds (20 single-window calls per variant per round).
    memory : bool
        Measure peak memory in a child process per model.

    Returns
    -------
    dict
        What ``report.json`` holds.
    """
    from host_training.datasets.splits import open_dataset, select_split

    models = [Path(m) for m in models]
    if not models:
        raise ValueError("no model to report on")
    reference = Path(reference) if reference is not None else models[0]
    if reference not in models:
        models.insert(0, reference)
    if len({m.name for m in models}) != len(models):
        raise ValueError("two models share a file name; the report names variants by file name")
    part = select_split(open_dataset(data), data, split)
    rows, probs_of, backends, inputs = _score_variants(models, part, data, split)
    _compare_with_reference(rows, probs_of, reference.name)
    # Latency: one window at a time, the node's call, every variant interleaved.
    config = backends[reference.name].metadata.preprocess_config()
    int16, _ = prepare_windows(part.waveforms[:1], part.sampling_rate_hz, config)
    window = int16[:1]
    times = interleaved_latency(_latency_calls(backends, window, inputs), rounds=rounds)
    base = summarize(times[reference.name])["p50_us"]
    for r in rows:
        lat = summarize(times[r["model"]])
        r.update(latency_p50_us=lat["p50_us"], latency_p99_us=lat["p99_us"],
                 latency_ratio=lat["p50_us"] / base,
                 runtime_p50_us=summarize(times[("raw", r["model"])])["p50_us"])
        r["peak_memory_kib"] = (peak_memory_kib(r["path"], window.shape[1], window.shape[2])
                                if memory else None)
    import platform

    report = {"data": str(data), "split": split, "reference": reference.name, "threads": 1,
              "machine": {"processor": platform.machine(), "system": platform.platform(),
                          "python": platform.python_version()},
              "latency": "p50/p99 of single-window backend.predict calls, interleaved, one thread",
              "variants": rows}
    _write_report(report, Path(out))
    return report


def _score_variants(models, part, data, split):
    """Each model's accuracy on ``part`` (``host_training.evaluate``) and its node backend.

    Returns
    -------
    rows : list of dict
        One report row per model (size, runtime, scheme, accuracy, F1).
    probs_of : dict
        File name -> ``(n, n_classes)`` probabilities.
    backends : dict
        File name -> the node's backend for the file, for timing.
    inputs : numpy.ndarray
        The last model's inputs (a record model is timed on the first).
    """
    from host_training.evaluate import load_predictor, score

    rows, probs_of, backends = [], {}, {}
    for path in models:
        predictor = load_predictor(path)
        probs, y, keep, inputs = predictor.predict(part, data)
        if len(y) == 0:
            raise ValueError(f"{data}: no window of split {split!r} passes the amplitude limits")
        metrics, _ = score(probs, y, predictor.classes)
        backend = load_backend(path)
        backends[path.name] = backend
        probs_of[path.name] = probs
        rows.append({"model": path.name, "path": str(path), **describe(backend),
                     "model_name": backend.metadata.model, "bytes": path.stat().st_size,
                     "n": metrics["n"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                     "f1": {c: v["f1"] for c, v in metrics["per_class"].items()}})
    names = {r["model_name"] for r in rows}
    if len(names) > 1:
        raise ValueError(f"models of different architectures in one report: {sorted(names)}")
    return rows, probs_of, backends, inputs


def _compare_with_reference(rows, probs_of, reference: str) -> None:
    """Add agreement, accuracy difference (percentage points) and size ratio to each row."""
    ref = probs_of[reference].argmax(1)
    ref_row = next(r for r in rows if r["model"] == reference)
    for r in rows:
        r["agreement"] = float((probs_of[r["model"]].argmax(1) == ref).mean())
        r["accuracy_delta_pp"] = 100 * (r["accuracy"] - ref_row["accuracy"])
        r["size_ratio"] = r["bytes"] / ref_row["bytes"]


def _latency_calls(backends: dict, window_int16, inputs) -> dict:
    """Zero-argument calls to time: per file name the node's call, per ``("raw", name)`` the
    runtime alone. A window model's node call is ``predict`` on one int16 window; a record
    model's is the runtime on the model input of one record."""
    first = next(iter(backends.values()))
    if get_kind(first.metadata.model).stage == "window":
        calls = {n: (lambda b=b: b.predict(window_int16)) for n, b in backends.items()}
        calls.update({("raw", n): runtime_call(b, window_int16) for n, b in backends.items()})
        return calls
    image = np.ascontiguousarray(inputs[:1], dtype=np.float32)
    calls = {}
    for n, b in backends.items():
        calls[n] = calls[("raw", n)] = b.bind(image)
    return calls


def _write_report(report: dict, out: Path) -> None:
    """``report.json``, ``report.txt`` (:func:`format_table`) and ``report.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    table = format_table(report)
    with atomic_path(out / "report.txt") as tmp:
        tmp.write_text(table + "\n")
    plot_report(report, out / "report.png")


def format_table(report: dict) -> str:
    """The report as a plain-text table (one row per variant)."""
    rows = report["variants"]
    classes = list(rows[0]["f1"])
    head = (f"{'model':34s} {'runtime':11s} {'scheme':22s} {'kB':>8s} {'acc %':>6s} {'dpp':>5s} "
            f"{'agree %':>7s} " + " ".join(f"{'F1 ' + c:>8s}" for c in classes)
            + f" {'p50 us':>7s} {'p99 us':>7s} {'xref':>5s} {'rt us':>6s} {'mem MiB':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        mem = f"{r['peak_memory_kib'] / 1024:7.1f}" if r.get("peak_memory_kib") is not None else f"{'-':>7s}"
        lines.append(f"{r['model'][:34]:34s} {r['runtime']:11s} {r['scheme'][:22]:22s} "
                     f"{r['bytes'] / 1000:8.1f} {100 * r['accuracy']:6.2f} {r['accuracy_delta_pp']:+5.2f} "
                     f"{100 * r['agreement']:7.2f} " + " ".join(f"{r['f1'][c]:8.3f}" for c in classes)
                     + f" {r['latency_p50_us']:7.1f} {r['latency_p99_us']:7.1f} {r['latency_ratio']:5.2f}"
                     f" {r['runtime_p50_us']:6.1f} {mem}")
    return "\n".join(lines)


def plot_report(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["variants"]
    names = [r["model"] for r in rows]
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.2 + 0.45 * len(rows)), sharey=True)
    p50 = np.array([r["latency_p50_us"] for r in rows])
    p99 = np.array([r["latency_p99_us"] for r in rows])
    axes[0].barh(y, p50, xerr=[np.zeros_like(p50), p99 - p50], color="tab:blue", capsize=3)
    axes[0].set_xlabel("latency per window (us), p50 bar, p99 whisker")
    axes[1].barh(y, [100 * r["accuracy"] for r in rows], color="tab:green")
    axes[1].plot([100 * r["agreement"] for r in rows], y, "k|", ms=12)
    axes[1].set_title("bar: accuracy   |: agreement with the reference", fontsize=8)
    lo = min(100 * min(r["accuracy"] for r in rows), 100 * min(r["agreement"] for r in rows))
    axes[1].set_xlim(max(0.0, lo - 2), 100.5)
    axes[1].set_xlabel(f"% of {report['split']} windows")
    axes[2].barh(y, [r["bytes"] / 1e3 for r in rows], color="tab:gray")
    axes[2].set_xlabel("file size (kB)")
    axes[0].set_yticks(y, names, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(f"{rows[0]['model_name']}: variants on the {report['split']} split, one thread", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def choose(report, out=None, gate_pp: float = 0.5, min_agreement: float = 0.99,
           runtimes=("onnxruntime", "litert")) -> dict:
    """Pick the fastest variant within the accuracy gate and write it for the bundle.

    Parameters
    ----------
    report : dict or str or Path
        :func:`quantization_report`'s result or its ``report.json``.
    out : str or Path, optional
        Where to write the choice (default: ``chosen_model.json`` beside ``report.json``).
    gate_pp : float
        Largest accuracy loss against the reference, in percentage points.
    min_agreement : float
        Smallest agreement with the reference (fraction).
    runtimes : sequence of str
        Runtimes the node has (``onnxruntime``; ``litert`` when ai-edge-litert is installed).

    Returns
    -------
    dict
        The chosen row with the gate that admitted it.
    """
    source = None
    if not isinstance(report, dict):
        source = Path(report)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no such report")
        try:
            report = json.loads(source.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{source}: not a report.json (not JSON)") from None
    if "variants" not in report or not report["variants"]:
        raise ValueError(f"{source or 'report'}: no variants; write it with `python -m quantization report`")
    if gate_pp < 0 or not 0 <= min_agreement <= 1:
        raise ValueError(f"gate_pp={gate_pp} must be >= 0 and min_agreement={min_agreement} in [0, 1]")
    passing = [r for r in report["variants"] if r["accuracy_delta_pp"] >= -gate_pp
               and r["agreement"] >= min_agreement and r.get("runtime", "onnxruntime") in runtimes]
    if not passing:  # the reference passes its own gate unless its runtime is excluded
        raise ValueError(f"no variant passes the gate on runtimes {list(runtimes)}")
    best = min(passing, key=lambda r: r["latency_p50_us"])
    choice = {"model": best["model"], "path": best["path"], "runtime": best["runtime"],
              "scheme": best["scheme"], "accuracy": best["accuracy"], "agreement": best["agreement"],
              "accuracy_delta_pp": best["accuracy_delta_pp"], "latency_p50_us": best["latency_p50_us"],
              "latency_ratio": best["latency_ratio"], "bytes": best["bytes"],
              "reference": report["reference"], "gate_pp": gate_pp, "min_agreement": min_agreement,
              "runtimes": list(runtimes),
              "candidates": [r["model"] for r in passing],
              "rejected": [r["model"] for r in report["variants"] if r not in passing]}
    if out is None:
        out = (source.parent if source is not None else Path(".")) / CHOICE_FILE
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(choice, indent=2))
    log.info("chose %s (%.1f us, accuracy %+.2f pp)", best["model"], best["latency_p50_us"],
             best["accuracy_delta_pp"])
    return choice
