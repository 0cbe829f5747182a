"""Frame decoding speed: batch parsing against a plain struct + CRC loop in the same run.

``python -m tools.bench.protocol`` runs it alone. The baseline knows the frame size in
advance and does no sync search and no validation beyond the CRC-32; the candidates do
everything the protocol asks (sync, header CRC, bounds, CRC-32, borrowed-byte check).
"""

from __future__ import annotations

import struct
import zlib

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


def _baseline(stream: bytes, size: int, n_samples: int = 30):
    fmt = struct.Struct(f"<{n_samples}i")
    head = size - 4 - 4 * n_samples
    out = []
    for i in range(0, len(stream), size):
        chunk = stream[i:i + size]
        if zlib.crc32(chunk[2:-4]) == struct.unpack_from("<I", chunk, size - 4)[0]:
            out.append(fmt.unpack_from(chunk, head))
    return out


def _baseline_crc_only(stream: bytes, size: int, n_samples: int = 30):
    """The issue's reference loop (as tools.bench.kernels.bench_decoder): CRC and unpack, results dropped."""
    fmt = struct.Struct(f"<{n_samples}i")
    head = size - 4 - 4 * n_samples
    for i in range(0, len(stream), size):
        chunk = stream[i:i + size]
        zlib.crc32(chunk[2:-4])
        fmt.unpack_from(chunk, head)


def bench_protocol(rng, n_frames: int = 20000) -> list[dict]:
    """Decoding 10 x 3 frames (v1 and v2): batch arrays and Frame objects vs the plain loop."""
    from edge_runtime.protocol import FrameDecoder

    from .common import time_per_call as _time_per_call

    results = []
    for version in (1, 2):
        stream, size = _stream(rng, n_frames, version)
        assert sum(len(b) for b in FrameDecoder().feed_batches(stream)) == n_frames
        base = _time_per_call(lambda: _baseline(stream, size), min_time_s=1.0)  # noqa: B023
        batch = _time_per_call(lambda: FrameDecoder().feed_batches(stream), min_time_s=1.0)  # noqa: B023
        objs = _time_per_call(lambda: FrameDecoder().feed(stream), min_time_s=1.0)  # noqa: B023
        bare = _time_per_call(lambda: _baseline_crc_only(stream, size), min_time_s=1.0)  # noqa: B023
        results.append({
            "name": f"decode {n_frames} v{version} frames (10 samples x 3 channels)",
            "baseline": "fixed-size struct + CRC-32 loop (no sync search, no header checks)",
            "baseline_s": base,
            "candidate": "FrameDecoder.feed_batches (np.frombuffer structured dtype, all checks)",
            "candidate_s": batch, "speedup": base / batch,
            "frames_per_s": n_frames / batch, "baseline_frames_per_s": n_frames / base,
            "feed_frame_objects_s": objs, "feed_frames_per_s": n_frames / objs,
            "crc_only_loop_frames_per_s": n_frames / bare, "batch_vs_crc_only_loop": bare / batch,
        })
    return results


if __name__ == "__main__":
    for r in bench_protocol(np.random.default_rng(0)):
        print(f"{r['name']}: batch {r['frames_per_s'] / 1e6:.2f} M frames/s, Frame objects "
              f"{r['feed_frames_per_s'] / 1e6:.2f} M/s, baseline {r['baseline_frames_per_s'] / 1e6:.2f} M/s "
              f"(batch/baseline {r['speedup']:.2f} x; CRC-only loop "
              f"{r['crc_only_loop_frames_per_s'] / 1e6:.2f} M/s, "
              f"batch/that {r['batch_vs_crc_only_loop']:.2f} x)")
