"""`make bench` writes its numbers and figure (no timing is asserted anywhere).

The suite runs the cheap benchmarks end to end; the expensive ones (training, quantization
variants, replay through node processes, the soak) are run by `make bench` and by their own
modules' tests, and here only checked to be registered and importable.
"""

import importlib
import json

import pytest

from tools.bench.suite import BENCHES, run_bench

CHEAP = ["preprocess", "decoder", "inference", "spectrogram", "protocol"]


def test_bench_writes_results(tmp_path):
    report = run_bench(tmp_path, soak_hours=0.05, only=CHEAP)
    names = [r["name"] for r in report["results"]]
    assert len(names) >= len(CHEAP)
    for r in report["results"]:
        assert r["baseline_s"] > 0 and r["candidate_s"] > 0
        assert r["speedup"] == r["baseline_s"] / r["candidate_s"]
    assert json.loads((tmp_path / "bench.json").read_text())["results"][0]["name"] == names[0]
    assert (tmp_path / "bench.png").stat().st_size > 0


@pytest.mark.parametrize("module", ["replay_test", "quant", "train", "prepare", "protocol", "soak",
                                    "window_path", "spectrogram"])
def test_every_benchmark_module_is_registered_and_imports(module):
    assert module in BENCHES
    importlib.import_module(f"tools.bench.{module}")


def test_unknown_benchmark_named(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark nope"):
        run_bench(tmp_path, only=["nope"])
