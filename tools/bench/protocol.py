"""Frame decoding speed at the read sizes the node makes, against a plain struct + CRC loop.

The node reads what its port has waiting (``edge_runtime.reader.SerialSource``): one frame
at a time when the board streams at real time, about 4 KiB (the tty line discipline's
buffer) when it bursts, and up to ``SerialSource.MAX_READ_BYTES`` (256 KiB) from a backlog
after a reconnect or in a replay. Each size is timed for v1 and v2 10 x 3 frames, in the
same run, for:

- the baseline: a plain loop that knows the frame size, keeps the bytes a read left over
  for the next, checks the CRC-32 and unpacks the samples (no sync search, no header
  checks);
- ``FrameDecoder.feed_batches`` (arrays), every check the protocol asks (sync, header CRC,
  bounds, CRC-32, borrowed-byte check);
- ``FrameDecoder.feed`` (a :class:`~edge_runtime.protocol.Frame` per frame): what the node
  calls (``edge_runtime.sources.SerialFrames.read``).

The three are timed in turn, repeat by repeat, so that each repeat sees the same load, and
the best repeat of each counts. They run after the node's own start-up step for its heap
(``edge_runtime.heap.settle_python_heap``, which ``edge_runtime.service.run`` calls once the
model is loaded: the heap frozen out of the collector's passes, young passes spaced), undone
afterwards for the calling process; ``--heap as-is`` times them under the collector's
defaults instead. ``--clock cpu`` times the process's CPU time instead of
the wall clock: on a machine others load, it moves less with their work. Ratios are
baseline time / decoder time (> 1: the decoder is faster); the 1-minute load average is
printed with them. ``python -m tools.bench.protocol`` runs it alone.
"""

from __future__ import annotations

import argparse
import gc
import os
import struct
import time
import zlib
from contextlib import contextmanager

import numpy as np

T0_US = 1_767_225_600_000_000


def _stream(rng, n_frames: int, version: int) -> tuple[bytes, int]:
    from edge_runtime.protocol import encode_frame, encode_frame_v2

    counts = rng.integers(-30000, 30000, (n_frames, 10, 3)).astype(np.int32)
    if version == 1:
        frames = [encode_frame(i, T0_US + i * 100_000, 100.0, counts[i]) for i in range(n_frames)]
    else:
        frames = [encode_frame_v2(i, T0_US + i * 100_000, 100.0, counts[i], board_id=0xC0FFEE,
                                  time_fix="gps") for i in range(n_frames)]
    return b"".join(frames), len(frames[0])


def _baseline(reads: list[bytes], size: int, n_samples: int = 30) -> int:
    """Fixed-size struct + CRC-32 loop over the reads, carrying a cut frame to the next read."""
    fmt = struct.Struct(f"<{n_samples}i")
    crc = struct.Struct("<I")
    head = size - 4 - 4 * n_samples
    buf = bytearray()
    out = []
    for data in reads:
        buf += data
        whole = len(buf) - len(buf) % size
        for i in range(0, whole, size):
            chunk = buf[i:i + size]
            if zlib.crc32(chunk[2:-4]) == crc.unpack_from(chunk, size - 4)[0]:
                out.append(fmt.unpack_from(chunk, head))
        del buf[:whole]
    return len(out)


def _decode(reads: list[bytes], frames: bool) -> int:
    from edge_runtime.protocol import FrameDecoder

    decoder = FrameDecoder()
    if frames:
        return sum(len(decoder.feed(data)) for data in reads) + len(decoder.flush())
    return sum(len(b) for data in reads for b in decoder.feed_batches(data)) + len(decoder.flush())


def read_sizes(frame_bytes: int) -> dict[str, int]:
    """The node's read sizes: one frame, 4 KiB, a backlog (``SerialSource.MAX_READ_BYTES``)."""
    from edge_runtime.reader import SerialSource

    return {"one frame": frame_bytes, "4 KiB": 4096, "backlog": SerialSource.MAX_READ_BYTES}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
HEAPS = ("node", "as-is")


@contextmanager
def heap_as(heap: str = "node"):
    """``"node"``: the node's start-up step for its heap, the same call
    (:func:`edge_runtime.heap.settle_python_heap`), undone on leaving (the collector's
    thresholds restored, what it froze unfrozen); ``"as-is"``: nothing."""
    if heap not in HEAPS:
        raise ValueError(f"heap {heap!r} not one of {', '.join(HEAPS)}")
    if heap == "as-is":
        yield
        return
    from edge_runtime.heap import settle_python_heap

    threshold, was_frozen = gc.get_threshold(), gc.get_freeze_count()
    settle_python_heap()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if not was_frozen:
            gc.unfreeze()


def time_in_turn(fns: dict, min_time_s: float, repeat: int = 5, clock: str = "wall") -> dict:
    """Best-of-``repeat`` seconds per call of each function, the functions timed in turn
    within each repeat (so that a change of load falls on all of them), each repeat
    running every function for at least ``min_time_s / repeat``."""
    now = CLOCKS[clock]
    calls = {}
    for name, fn in fns.items():
        fn()  # warm caches
        n = 1
        while True:
            t = now()
            for _ in range(n):
                fn()
            if now() - t > min_time_s / repeat:
                break
            n *= 2
        calls[name] = n
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t = now()
            for _ in range(calls[name]):
                fn()
            best[name] = min(best[name], (now() - t) / calls[name])
    return best


def bench_protocol(rng, n_frames: int = 20000, min_time_s: float = 0.5, clock: str = "wall",
                   heap: str = "node") -> list[dict]:
    """Decode 10 x 3 frames (v1 and v2) at each read size; decoder and plain loop in the same
    run, with the node's heap step (:func:`heap_as`)."""
    with heap_as(heap):
        return _bench_versions(rng, n_frames, min_time_s, clock, heap)


def _bench_versions(rng, n_frames: int, min_time_s: float, clock: str, heap: str) -> list[dict]:
    results = []
    for version in (1, 2):
        stream, size = _stream(rng, n_frames, version)
        for label, read_bytes in read_sizes(size).items():
            reads = [stream[i:i + read_bytes] for i in range(0, len(stream), read_bytes)]
            assert _baseline(reads, size) == _decode(reads, False) == _decode(reads, True) == n_frames
            t = time_in_turn({"base": lambda: _baseline(reads, size),  # noqa: B023
                              "batch": lambda: _decode(reads, False),  # noqa: B023
                              "feed": lambda: _decode(reads, True)}, min_time_s, clock=clock)  # noqa: B023
            base, batch, objs = t["base"], t["batch"], t["feed"]
            results.append({
                "name": f"decode v{version} 10 x 3 frames, reads of {label} ({read_bytes} B)",
                "version": version, "read": label, "read_bytes": read_bytes, "frames": n_frames,
                "baseline": "plain struct + CRC-32 loop (known frame size, carry-over, no header checks)",
                "baseline_s": base, "candidate": "FrameDecoder.feed_batches (every check)",
                "candidate_s": batch, "speedup": base / batch,
                "frames_per_s": n_frames / batch, "baseline_frames_per_s": n_frames / base,
                "feed_s": objs, "feed_frames_per_s": n_frames / objs, "feed_vs_baseline": base / objs,
                "clock": clock, "heap": heap, "load_avg_1min": os.getloadavg()[0],
            })
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.protocol",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000, help="frames per stream")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds each timing runs at least")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall clock, or this process's CPU time (less moved by others' load)")
    parser.add_argument("--heap", choices=HEAPS, default="node",
                        help="after the node's start-up step for its heap "
                             "(edge_runtime.heap.settle_python_heap), or the collector's defaults")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.min_time <= 0:
        parser.error("--frames must be >= 1 and --min-time > 0")
    results = bench_protocol(np.random.default_rng(args.seed), args.frames, args.min_time, args.clock,
                             args.heap)
    print(f"{args.clock} clock, load average {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} CPUs")
    print("heap: " + ("as the node runs it (edge_runtime.heap.settle_python_heap, the node's start-up "
                      "step)" if args.heap == "node" else "the garbage collector's defaults"))
    print(f"{'':4} {'read':10} {'plain loop':>12} {'feed_batches':>14} {'ratio':>7} "
          f"{'feed':>12} {'ratio':>7}")
    for r in results:
        print(f"v{r['version']:<3} {r['read']:10} {r['baseline_frames_per_s'] / 1e6:8.3f} M/s "
              f"{r['frames_per_s'] / 1e6:10.3f} M/s {r['speedup']:6.2f}x "
              f"{r['feed_frames_per_s'] / 1e6:8.3f} M/s {r['feed_vs_baseline']:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
