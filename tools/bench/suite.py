"""The benchmark suite (``make bench``): speed measured against a baseline in the same run.

Each benchmark times a candidate and its baseline on the same input in the same process
and reports both and their ratio; results go to ``<out>/bench.json`` with a bar chart
``<out>/bench.png``. Nothing here asserts on time: numbers are for people to read.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from .common import untrained_models
from .kernels import bench_decoder, bench_inference, bench_preprocess
from .spectrogram import bench_spectrogram


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


def _bench_protocol(out, rng, seed, soak_hours):  # quick: 2,000 frames, 0.05 s per timing
    from .protocol import bench_protocol

    quick = soak_hours < 1
    return bench_protocol(rng, n_frames=2000 if quick else 20000, min_time_s=0.05 if quick else 0.5)


def _bench_soak(out, rng, seed, soak_hours):
    from .soak import bench_soak

    return [bench_soak(out, seed=seed, hours=soak_hours)]


def _bench_scan(out, rng, seed, soak_hours):  # details in <out>/scan/scan_bench.json
    from .scan import bench_scan

    return bench_scan(out, rng, quick=soak_hours < 1)


def _bench_network_center(out, rng, seed, soak_hours):  # 1,000 nodes; quick: 200
    from .network_center import bench_network_center

    return [bench_network_center(rng, n_nodes=200 if soak_hours < 1 else 1000)]


def _bench_window_path(out, rng, seed, soak_hours):
    from .window_path import run

    return run(out, rng, quick=soak_hours < 1)


def _bench_outputs(out, rng, seed, soak_hours):  # details in <out>/outputs/outputs.json
    from .outputs import run

    return run(out, rng, quick=soak_hours < 1)


# name -> fn(out, rng, seed, soak_hours) -> list of result dicts, in the order they run.
BENCHES = {
    "preprocess": lambda out, rng, seed, soak_hours: [bench_preprocess(rng)],
    "decoder": lambda out, rng, seed, soak_hours: [bench_decoder(rng)],
    "inference": lambda out, rng, seed, soak_hours: [bench_inference(untrained_models(out), rng)],
    "replay_test": _bench_replay_test,
    "spectrogram": lambda out, rng, seed, soak_hours: [bench_spectrogram(rng)],
    "quant": _bench_quant,
    "train": _bench_train,
    "prepare": _bench_prepare,
    "protocol": _bench_protocol,
    "soak": _bench_soak,
    "window_path": _bench_window_path,
    "scan": _bench_scan,
    "outputs": _bench_outputs,
    "network_center": _bench_network_center,
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
        Simulated hours of the soak run (``make bench``: 24 h); below 1 h the window-path,
        protocol, scan, outputs and network-centre benchmarks run in their quick modes too.
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


def main_bench(args) -> int:
    """``python -m tools bench``: 2 with one line for an unknown benchmark name."""
    import sys

    try:
        run_bench(args.out, args.seed, soak_hours=args.soak_hours, only=args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
