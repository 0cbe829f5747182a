"""Data preparation: windows/s of every ``prepare`` command and peak memory at two sizes.

Each command runs in a child process on generated inputs of a small and a large size
(STEAD layout, the same traces in SeisBench's bucketed layout, SAC station folders of
480 s records, and a merge of the prepared outputs); the child reports its own peak RSS.
The "baseline" of a row is the small size, the "candidate" the large one, both in s per
window: a ratio near 1 and an RSS that does not grow with the size show that the readers
stream. Run on its own with ``python -m tools.bench.prepare --sizes 2000 20000``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.helpformat import HelpFormatter

# Peak RSS from /proc (VmHWM, this process image only): getrusage's ru_maxrss keeps the
# parent's peak across fork + exec on Linux, which would report the parent's size.
CHILD = """
import json, resource, sys, time
from host_training.prepare.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
seconds = time.perf_counter() - t
try:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
    peak = int(hwm) / 1024
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rc": rc, "seconds": seconds, "peak_rss_mb": peak}))
"""


def _run(argv) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, argv), "--no-progress"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"prepare {argv[:2]} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stead_to_seisbench(hdf5, csv_path, folder, bucket_size: int = 256) -> None:
    """The STEAD sample in SeisBench's layout: buckets (n, 3, 6000), Z N E, counts, HH."""
    import h5py

    folder = Path(folder)
    folder.mkdir(parents=True)
    with h5py.File(hdf5, "r") as src, h5py.File(folder / "waveforms.hdf5", "w") as dst, \
            open(csv_path, newline="") as fh, open(folder / "metadata.csv", "w", newline="") as out:
        fmt = dst.create_group("data_format")
        for key, value in (("dimension_order", "CW"), ("component_order", "ZNE"), ("unit", "counts"),
                           ("measurement", "velocity"), ("sampling_rate", 100.0)):
            fmt[key] = value
        data = dst.create_group("data")
        writer = None
        batch, rows, k = [], [], 0

        def flush():
            nonlocal batch, rows, k
            if batch:
                data.create_dataset(f"bucket{k}", data=np.stack(batch))
                for i, row in enumerate(rows):
                    row["trace_name"] = f"bucket{k}${i},:3,:6000"
                    writer.writerow(row)
                k += 1
            batch, rows = [], []

        for row in csv.DictReader(fh):
            if row["trace_name"] not in src["data"]:
                continue
            x = src["data"][row["trace_name"]][()]
            if x.shape != (6000, 3):
                continue
            sb = {"trace_name": "", "trace_category": row["trace_category"], "station_channels": "HH",
                  "trace_sampling_rate_hz": 100.0, "source_id": row.get("source_id", ""),
                  "station_code": row.get("receiver_code", ""), "station_network_code": "XX",
                  "trace_start_time": row.get("trace_start_time", ""),
                  "trace_p_arrival_sample": row.get("p_arrival_sample", ""),
                  "trace_s_arrival_sample": row.get("s_arrival_sample", "")}
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(sb))
                writer.writeheader()
            batch.append(x.T[::-1])
            rows.append(sb)
            if len(batch) == bucket_size:
                flush()
        flush()


def write_sac_folders(root, n_records: int, seed: int = 0, duration_s: float = 480.0) -> None:
    """``n_records`` 480 s event records at 100 Hz, one station folder each, picks in headers."""
    from obspy import Trace, UTCDateTime
    from obspy.io.sac import SACTrace

    rng = np.random.default_rng(seed)
    n = int(duration_s * 100)
    t = np.arange(n) / 100.0
    for i in range(n_records):
        folder = Path(root) / f"ST{i:04d}"
        folder.mkdir(parents=True)
        p = float(rng.uniform(60, 300))
        tt = np.clip(t - p, 0, None)
        x = rng.normal(0, 1e-3, (3, n))
        x[2] += 0.3 * np.sin(2 * np.pi * 8 * tt) * np.exp(-tt / 2) * (tt > 0)
        ts = np.clip(t - p - 5, 0, None)
        x[:2] += 0.8 * np.sin(2 * np.pi * 3 * ts) * np.exp(-ts / 4) * (ts > 0)
        for comp, data in zip("ENZ", x, strict=True):
            tr = Trace((data * 100).astype(np.float32))  # gal, as the original's data
            tr.stats.update({"network": "XX", "station": f"ST{i:04d}", "channel": f"HL{comp}",
                             "sampling_rate": 100.0, "starttime": UTCDateTime(2024, 1, 1) + 600 * i})
            sac = SACTrace.from_obspy_trace(tr)
            sac.a, sac.ka, sac.t0, sac.kt0 = sac.b + p, "P", sac.b + p + 5, "S"
            sac.write(str(folder / f"XX.ST{i:04d}..HL{comp}.SAC"))


def bench_prepare(sizes=(1000, 4000), sac_records=(10, 40), seed: int = 0, workdir=None) -> list:
    """Rows for ``bench.json`` (s per window at two sizes) with windows/s and peak RSS."""
    from host_training.prepare.stead import write_stead_sample

    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        runs = {}
        for size, n_sac in zip(sizes, sac_records, strict=True):
            d = tmp / str(size)
            d.mkdir()
            write_stead_sample(d / "stead.hdf5", d / "stead.csv", size, seed=seed)
            stead_to_seisbench(d / "stead.hdf5", d / "stead.csv", d / "sb")
            write_sac_folders(d / "sac", n_sac, seed=seed)
            r = {"stead": _run(["prepare", "stead", "--hdf5", d / "stead.hdf5", "--csv", d / "stead.csv",
                                "--out", d / "o_stead", "--seed", seed]),
                 "seisbench": _run(["prepare", "seisbench", d / "sb", "--out", d / "o_sb", "--seed", seed]),
                 "sac": _run(["prepare", "sac", "--events", d / "sac", "--units", "gal",
                              "--out", d / "o_sac", "--seed", seed])}
            r["merge"] = _run(["prepare", "merge", d / "o_stead", d / "o_sac", "--out", d / "o_merge",
                               "--seed", seed])
            for name, out in (("stead", "o_stead"), ("seisbench", "o_sb"), ("sac", "o_sac"),
                              ("merge", "o_merge")):
                report = json.loads((d / out / "prepare_report.json").read_text())
                r[name]["windows"] = report["windows"]
                r[name]["inputs"] = n_sac if name == "sac" else size
            runs[size] = r
        small, large = (runs[s] for s in sizes)
        for name, unit in (("stead", "STEAD traces"), ("seisbench", "SeisBench traces"),
                           ("sac", "480 s SAC records"), ("merge", "STEAD+SAC windows")):
            a, b = small[name], large[name]
            per_a, per_b = a["seconds"] / max(a["windows"], 1), b["seconds"] / max(b["windows"], 1)
            def text(r, unit=unit):
                return (f"{r['inputs']} {unit}: {r['windows']} windows, "
                        f"{r['windows'] / r['seconds']:.0f} windows/s, peak RSS {r['peak_rss_mb']:.0f} MB")

            results.append({
                "name": f"prepare {name}: {a['inputs']} vs {b['inputs']} {unit}",
                "baseline": text(a),
                "baseline_s": per_a,
                "candidate": text(b),
                "candidate_s": per_b, "speedup": per_a / per_b,
                "windows_per_s": [a["windows"] / a["seconds"], b["windows"] / b["seconds"]],
                "peak_rss_mb": [a["peak_rss_mb"], b["peak_rss_mb"]],
                "windows": [a["windows"], b["windows"]],
            })
    return results


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m tools.bench.prepare", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--sizes", type=int, nargs=2, default=(2000, 20000), help="STEAD traces, small and large")
    p.add_argument("--sac-records", type=int, nargs=2, default=(20, 200), help="SAC records, small and large")
    p.add_argument("--out", default="runs/bench_prepare", help="folder for bench_prepare.json")
    p.add_argument("--workdir", default=None, help="where the generated inputs go (default: system temp)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.sizes) <= 0 or min(args.sac_records) <= 0:
        print("error: --sizes and --sac-records must be positive", file=sys.stderr)
        return 2
    results = bench_prepare(tuple(args.sizes), tuple(args.sac_records), args.seed, args.workdir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_prepare.json").write_text(json.dumps({"config": vars(args), "results": results}, indent=2))
    for r in results:
        print(f"{r['name']}\n  small  {r['baseline']}\n  large  {r['candidate']}\n"
              f"  s/window ratio small/large {r['speedup']:.2f}")
    print(f"-> {out / 'bench_prepare.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
