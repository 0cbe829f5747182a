"""Soak: a day of replayed data at maximum speed, clean and through line faults.

The same synthetic day (background, earthquakes every ~15 min) is encoded as 10-sample
frames at 100 Hz and fed, in the same process and in lockstep, to two nodes' decoder +
frame sequencer + window chain + model + detector (``edge_runtime.service.Pipeline``):
one clean, one through faults — 1 % of frames with a flipped bit, adjacent frames swapped,
frames 6 frames late (after their gap was given up), stale duplicates, frames the node
refuses (an impossible count), unplugs that lose a few seconds of bytes cut mid-frame, and
board restarts (sequence back to 0) whose first two frames arrive swapped, as do the
day's first two. It runs in-process rather than through a pty: a pty at this volume
(864,000 frames) would measure the kernel, not the node, and take hours.

Checks (reported, and ``ok`` in the result):

- accounting: frames sent = delivered + lost + duplicates + stale + rejected, exactly, and
  the node's ``frames_lost`` equals the frames the faults destroyed (late frames are taken
  back out), ``frames_duplicate`` + ``frames_stale`` the stale copies and late frames sent,
  ``frames_late`` the late frames, ``frames_rejected`` the refused ones,
  ``frames_reordered`` the swaps (at the start and after restarts too),
  ``sequence_resets`` the restarts;
- recall of the faulty run equals the clean run's, false events are no more;
- RSS flat: resident memory sampled every simulated hour.

``python -m tools.bench.soak --hours 24`` runs it alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_runtime.helpformat import HelpFormatter

T0_US = 1_767_225_600_000_000  # 2026-01-01
RATE = 100.0
FRAME = 10  # samples per frame
SEGMENT_S = 600  # the day is built 10 minutes at a time


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak_model(out: Path, seed: int = 1, allow_untrained: bool = False) -> tuple[Path, str]:
    """The demo's int16 model when ``make demo`` made one, else a tiny model trained here.

    ``allow_untrained``: a short smoke run may use the untrained model ``run_bench`` exports
    for its latency benchmarks (recall then means nothing; the accounting still does).
    """
    demo = Path("runs/demo/model/earthquake_cnn_int16_sim.onnx")
    if demo.exists():
        return demo, "runs/demo (make demo)"
    untrained = out / "model" / "earthquake_cnn_int16_sim.onnx"
    if allow_untrained and untrained.exists():
        return untrained, "untrained bench model (short smoke run: recall not meaningful)"
    import torch

    from edge_runtime.kinds import EARTHQUAKE_CNN
    from edge_runtime.metadata import ModelMetadata
    from edge_runtime.preprocess import PreprocessConfig
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, build_model
    from host_training.synthetic.parametric import synthetic_dataset
    from host_training.train import TrainConfig, train
    from quantization.int16 import quantize_int16
    from quantization.simplify import simplify

    torch.set_num_threads(2)
    folder = out / "soak_model"
    folder.mkdir(parents=True, exist_ok=True)
    dataset = synthetic_dataset(400, seed=seed)
    parts = {s: dataset.split(s) for s in ("train", "val")}
    x = {s: p.model_inputs()[0] for s, p in parts.items()}
    y = {s: p.labels(PHASE_CLASSES) for s, p in parts.items()}
    model = build_model(EARTHQUAKE_CNN.name, seed=seed)
    train(model, x["train"], y["train"], x["val"], y["val"],
          TrainConfig(epochs=6, batch_size=32, seed=seed), progress=False)
    meta = ModelMetadata(model=EARTHQUAKE_CNN.name, classes=list(PHASE_CLASSES), components=["E", "N", "Z"],
                         preprocess=PreprocessConfig().to_dict())
    export_onnx(model, folder / "model.onnx", meta)
    quantize_int16(folder / "model.onnx", folder / "model_int16.onnx")
    simplify(folder / "model_int16.onnx", folder / "model_int16_sim.onnx")
    return folder / "model_int16_sim.onnx", "tiny model trained by the soak (no runs/demo)"


class Node:
    """Decoder + pipeline of one simulated node, fed bytes."""

    def __init__(self, model: Path):
        from edge_runtime.backends import OnnxBackend
        from edge_runtime.protocol import FrameDecoder
        from edge_runtime.service import NodeConfig, Pipeline

        self.decoder = FrameDecoder()
        self.pipeline = Pipeline(OnnxBackend(model), NodeConfig(port="unused", model=str(model)))
        self.events: list[dict] = []

    def feed(self, data: bytes, chunk: int = 4096) -> None:
        for i in range(0, len(data), chunk):
            for frame in self.decoder.feed(data[i:i + chunk]):
                self.events += self.pipeline.on_frame(frame)

    def finish(self) -> None:
        for frame in self.decoder.flush():
            self.events += self.pipeline.on_frame(frame)
        self.events += self.pipeline.flush()


def day_segments(rng, hours: float):
    """Yield ``(t0_us, counts (n, 3) int32, p_times_us)`` 10-minute segments of the day."""
    from edge_runtime.sensors import DEFAULT_SENSOR, get_sensor
    from host_training.synthetic import parametric as synth

    cpm = get_sensor(DEFAULT_SENSOR).counts_per_mps2
    n_seg = int(round(hours * 3600 / SEGMENT_S))
    for k in range(n_seg):
        t0 = T0_US + k * SEGMENT_S * 1_000_000
        data = synth.quiet(rng, duration_s=SEGMENT_S).data
        p_times = []
        if k % 3 != 2:  # two quakes per half hour; every third segment is quiet
            start = rng.uniform(30.0, SEGMENT_S - 70.0)
            rec = synth.earthquake(rng, duration_s=40.0, pga_mps2=float(np.exp(rng.uniform(np.log(0.1),
                                                                                           np.log(1.0)))))
            i = int(start * RATE)
            data[:, i:i + rec.data.shape[1]] = rec.data
            p_times.append(t0 + int((start + rec.p_s) * 1e6))
        yield t0, np.round(data * cpm).astype(np.int32).T, p_times


def score(events: list[dict], p_times: list[int], tolerance_s: float = 3.0) -> dict:
    """Quakes detected (an event whose P pick, or span, covers the true P) and false events."""
    closed = [e for e in events if e.get("type") == "event"]
    hit = set()
    false = 0
    for e in closed:
        lo = min(x for x in (e.get("p_time_us"), e["start_us"]) if x is not None) - tolerance_s * 1e6
        hi = e["end_us"] + tolerance_s * 1e6
        match = [i for i, p in enumerate(p_times) if lo <= p <= hi]
        if match:
            hit.update(match)
        else:
            false += 1
    return {"quakes": len(p_times), "detected": len(hit), "recall": len(hit) / max(1, len(p_times)),
            "events": len(closed), "false_events": false}


FAULTS = ("corrupted", "unplug_lost", "swapped", "late", "duplicates", "rejected", "restarts",
          "restart_swaps", "unplugs")


def segment_wire(frames: list[bytes], fault_rng, rates: dict, sent: dict, unplug: bool,
                 restart: bool, refused) -> list[bytes]:
    """What one segment's frames become on a faulty line; ``sent`` counts each fault.

    Faults sit on a grid, so no two touch the same frames and the counts stay exact:
    a bit flip, an adjacent swap, a frame 6 frames late (after its gap was given up), a
    stale copy of a frame 5-20 back (one that reached the node), frame ``i`` with an
    impossible count (``refused(i)``: the node refuses it), an unplug that loses 50
    frames cut mid-frame.
    A restart (``restart``) swaps the new stream's first two frames.
    """
    n, wire, i, destroyed = len(frames), [], 0, set()
    unplug_at = int(fault_rng.integers(100, n - 700)) if unplug else -1
    if restart or sent["frames"] == 0:  # a stream's first two frames swapped
        wire, i = [frames[1], frames[0]], 2
        sent["restart_swaps" if restart else "swapped"] += 1
        sent["frames"] += 2
    edges = np.cumsum([rates[k] for k in ("corrupt", "swap", "late", "duplicate", "reject")])
    while i < n:
        if 0 <= unplug_at <= i and i + 60 < n:  # unplugged mid-frame for 5 s: bytes lost
            wire.append(frames[i][:int(fault_rng.integers(1, len(frames[i]) - 1))])
            sent["unplug_lost"] += 50
            sent["unplugs"] += 1
            destroyed.update(range(i, i + 50))
            step, unplug_at = 50, -1
        else:
            fault = int(np.searchsorted(edges, fault_rng.uniform(), side="right")) if i + 8 < n else 5
            if fault == 0 and i:
                b = bytearray(frames[i])
                b[int(fault_rng.integers(0, len(b)))] ^= 1 << int(fault_rng.integers(0, 8))
                wire += [bytes(b), frames[i + 1]]
                sent["corrupted"] += 1
                destroyed.add(i)
                step = 2
            elif fault == 1:
                wire += [frames[i + 1], frames[i], frames[i + 2]]
                sent["swapped"] += 1
                step = 3
            elif fault == 2:
                wire += frames[i + 1:i + 7] + [frames[i]]
                sent["late"] += 1
                step = 7
            elif fault == 3 and i >= 20 and (j := i - int(fault_rng.integers(5, 20))) not in destroyed:
                wire += [frames[i], frames[j]]
                sent["duplicates"] += 1
                sent["frames"] += 1
                step = 1
            elif fault == 4 and i:
                wire += [refused(i), frames[i + 1]]
                sent["rejected"] += 1
                step = 2
            else:
                wire.append(frames[i])
                step = 1
        sent["frames"] += step
        i += step
    return wire


def accounting_checks(sent: dict, pf: dict, pc: dict) -> dict:
    """Every frame sent accounted for, exactly, and each fault counted where it belongs."""
    destroyed = sent["corrupted"] + sent["unplug_lost"]
    return {
        "sent = delivered + lost + duplicate + stale + rejected":
            sent["frames"] == pf["frames"] + pf["frames_lost"] + pf["frames_duplicate"] + pf["frames_stale"]
            + pf["frames_rejected"],
        "lost = destroyed by faults": pf["frames_lost"] == destroyed,
        "stale copies and late frames counted":
            pf["frames_duplicate"] + pf["frames_stale"] == sent["duplicates"] + sent["late"],
        "late frames counted": pf["frames_late"] == sent["late"],
        "rejected counted": pf["frames_rejected"] == sent["rejected"],
        "swaps put back (at start and after restarts too)":
            pf["frames_reordered"] == sent["swapped"] + sent["restart_swaps"],
        "restarts counted": pf["sequence_resets"] == sent["restarts"],
        "clean run lost nothing": pc["frames_lost"] == 0 and pc["frames"] == sent["unique"],
    }


def bench_soak(out="runs/bench", seed: int = 0, hours: float = 24.0, corrupt: float = 0.01,
               swap: float = 0.002, late: float = 0.001, duplicate: float = 0.001, reject: float = 0.0005,
               unplug_every_h: float = 3.0, restarts: int = 2, progress: bool = True) -> dict:
    """Run the soak; return the figures (see the module docstring)."""
    from edge_runtime.protocol import encode_frame

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng, fault_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    rates = {"corrupt": corrupt, "swap": swap, "late": late, "duplicate": duplicate, "reject": reject}
    model, model_note = soak_model(out, allow_untrained=hours < 1)
    clean, faulty = Node(model), Node(model)
    n_seg = int(round(hours * 3600 / SEGMENT_S))
    unplugs = set(range(2, n_seg, max(1, int(round(unplug_every_h * 3600 / SEGMENT_S)))))
    quiet = [k for k in range(n_seg) if k % 3 == 2 and k not in unplugs]
    restart_at = set(quiet[len(quiet) // (restarts + 1)::max(1, len(quiet) // (restarts + 1))][:restarts])
    sent = dict.fromkeys(("frames", "unique", *FAULTS), 0)
    p_all, rss, seq, clean_s, faulty_s = [], [], 0, 0.0, 0.0
    started = time.monotonic()
    for k, (t0, counts, p_times) in enumerate(day_segments(rng, hours)):
        p_all += p_times
        n_frames = counts.shape[0] // FRAME
        if k in restart_at:  # a clean power cycle of the board: the counter restarts
            seq = 0
            sent["restarts"] += 1
        frames = [encode_frame(seq + i, t0 + i * 100_000, RATE, counts[i * FRAME:(i + 1) * FRAME])
                  for i in range(n_frames)]
        impossible = np.full((FRAME, 3), -2**31, np.int32)  # INT32_MIN for a NaN: the node refuses it

        def refused(i, first=seq, t0=t0, impossible=impossible):
            return encode_frame(first + i, t0 + i * 100_000, RATE, impossible)
        seq += n_frames
        sent["unique"] += n_frames
        t = time.perf_counter()
        clean.feed(b"".join(frames))
        clean_s += time.perf_counter() - t
        wire = segment_wire(frames, fault_rng, rates, sent, k in unplugs, k in restart_at, refused)
        t = time.perf_counter()
        faulty.feed(b"".join(wire))
        faulty_s += time.perf_counter() - t
        if (k + 1) % int(3600 / SEGMENT_S) == 0:
            rss.append(round(rss_mib(), 1))
            if progress:
                print(f"soak: {(k + 1) * SEGMENT_S / 3600:.0f} h simulated, "
                      f"{time.monotonic() - started:.0f} s, RSS {rss[-1]} MiB", flush=True)
    clean.finish()
    faulty.finish()
    return _report(out, hours, model, model_note, sent, clean, faulty, p_all, rss, clean_s, faulty_s,
                   started)


def _report(out, hours, model, model_note, sent, clean, faulty, p_all, rss, clean_s, faulty_s,
            started) -> dict:
    pc, pf = clean.pipeline.counts, faulty.pipeline.counts
    accounting = {k: pf[k] for k in ("frames_lost", "frames_duplicate", "frames_stale", "frames_late",
                                     "frames_rejected", "frames_reordered", "sequence_resets")}
    accounting.update(sent_frames=sent["frames"], sent_unique=sent["unique"], delivered=pf["frames"],
                      destroyed_by_faults=sent["corrupted"] + sent["unplug_lost"],
                      decoder=faulty.decoder.stats.to_dict(), decoder_pending_bytes=faulty.decoder.pending)
    checks = accounting_checks(sent, pf, pc)
    sc, sf = score(clean.events, p_all), score(faulty.events, p_all)
    checks["recall unchanged"] = sf["detected"] == sc["detected"]
    checks["false events not more"] = sf["false_events"] <= sc["false_events"]
    warm = rss[1:] if len(rss) > 2 else rss
    rss_growth = (warm[-1] - warm[0]) if warm else 0.0
    checks["RSS flat (< 5 MiB growth after the first hour)"] = rss_growth < 5.0
    result = {
        "name": f"soak: {hours:g} h of 100 Hz x 3 frames, 1 % corrupt + reorder + late + duplicates + "
                "rejected + unplugs + restarts",
        "baseline": "clean stream, same decoder + pipeline", "baseline_s": clean_s,
        "candidate": "faulty stream", "candidate_s": faulty_s, "speedup": clean_s / faulty_s,
        "simulated_hours": hours, "model": str(model), "model_note": model_note,
        "mode": "in-process decoder + sequencer + window chain + model + detector (no pty)",
        "sent": sent, "accounting": accounting, "clean": sc, "faulty": sf,
        "clean_counts": dict(pc), "faulty_counts": dict(pf),
        "rss_mib_per_hour": rss, "rss_growth_mib": rss_growth,
        "wall_s": round(time.monotonic() - started, 1), "checks": checks, "ok": all(checks.values()),
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.soak", description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours of data")
    parser.add_argument("--out", default="runs/bench", help="folder of soak.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the faults")
    args = parser.parse_args(argv)
    if args.hours <= 0:
        parser.error(f"--hours must be > 0, got {args.hours}")
    r = bench_soak(args.out, seed=args.seed, hours=args.hours)
    print(json.dumps({k: r[k] for k in ("sent", "accounting", "clean", "faulty", "rss_mib_per_hour",
                                        "checks", "ok", "wall_s")}, indent=2, default=str))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
