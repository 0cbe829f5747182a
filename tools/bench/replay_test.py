"""replay-test throughput: simulated seconds of recording per wall second, whole command.

Everything a user waits for is inside the timing: reading the files, one fresh node
process per record (start-up, model load), the pty, the node's windows and model calls,
its idle exit, scoring and the summary plot. The baseline is real time (``--speed 1``),
so the ratio is how many times faster than real time a bench-top test runs.
"""

from __future__ import annotations

import time
from pathlib import Path


def write_records(folder: Path, rng, n_records: int = 3, duration_s: float = 60.0) -> float:
    """``n_records`` synthetic 3-component earthquakes as SAC; returns the seconds written."""
    from obspy import UTCDateTime

    from host_training.recordings.sac import write_record
    from host_training.synthetic import parametric as synth

    t = UTCDateTime(2026, 1, 1)
    for k in range(n_records):
        rec = synth.earthquake(rng, duration_s=duration_s, fs=100.0, p_s=20.0, pga_mps2=0.3, sp_s=4.0)
        write_record(rec.data, 100.0, t, folder / f"quake{k}", picks={"P": rec.p_s, "S": rec.s_s},
                     kind="earthquake")
        t += duration_s + 60.0
    return n_records * duration_s


def bench_replay_test(out, rng, model=None) -> dict:
    """Time ``run_replay_test`` at full speed on a few 60 s records."""
    from tools.replay.replay_test import ReplayTestConfig, run_replay_test

    out = Path(out)
    model = Path(model) if model else out / "model" / "earthquake_cnn_int16_sim.onnx"
    if not model.is_file():
        from .common import untrained_models

        model = untrained_models(out) / "earthquake_cnn_int16_sim.onnx"
    folder = out / "replay_test_records"
    simulated = write_records(folder, rng)
    t = time.perf_counter()
    result = run_replay_test([folder], ReplayTestConfig(model=str(model), out=str(out / "replay_test")),
                             progress=False)
    wall = time.perf_counter() - t
    return {"name": f"replay-test, {result['summary']['records']} x 60 s records, fresh node each",
            "baseline": "real time (--speed 1)", "baseline_s": simulated,
            "candidate": "replay-test --speed 0 (whole command)", "candidate_s": wall,
            "speedup": simulated / wall, "simulated_s_per_wall_s": simulated / wall}
