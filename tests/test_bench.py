"""`make bench` writes its numbers and figure (no timing is asserted anywhere)."""

import json

from tools.bench import run_bench


def test_bench_writes_results(tmp_path):
    report = run_bench(tmp_path, soak_hours=0.2)  # make bench soaks 24 h
    names = [r["name"] for r in report["results"]]
    assert len(names) >= 3
    for r in report["results"]:
        assert r["baseline_s"] > 0 and r["candidate_s"] > 0
        assert r["speedup"] == r["baseline_s"] / r["candidate_s"]
    assert json.loads((tmp_path / "bench.json").read_text())["results"][0]["name"] == names[0]
    assert (tmp_path / "bench.png").stat().st_size > 0
