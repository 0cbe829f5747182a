"""One-call timings of the node's kernels against their plain references, in one process.

The window chain (:mod:`edge_runtime.preprocess`) against ObsPy and SciPy, the frame
decoder against a bare struct/CRC loop, and inference of the int16 + onnxsim model
against the float one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import time_per_call


def bench_preprocess(rng) -> dict:
    """The matrix chain against ObsPy detrend/taper/filter + SciPy resample, one window."""
    from obspy import Trace
    from scipy import signal

    from edge_runtime.preprocess import PreprocessConfig, filter_windows
    from edge_runtime.sensors import G_MPS2

    config = PreprocessConfig()
    x = rng.standard_normal((3, 200)) * 1e-2
    x[2] += G_MPS2

    def baseline():
        out = []
        for comp in x:
            tr = Trace(comp.copy(), header={"sampling_rate": 100.0}).detrend("linear")
            tr.data *= signal.windows.tukey(tr.stats.npts, config.taper_alpha)
            tr.filter("highpass", freq=config.highpass_hz, corners=config.highpass_corners,
                      zerophase=False)
            out.append(signal.resample(tr.data, config.n_out))
        return out

    base = time_per_call(baseline)
    cand = time_per_call(lambda: filter_windows(x, 100.0, config))
    return {"name": "preprocess one 2 s window (3 x 200 -> 3 x 80)",
            "baseline": "ObsPy detrend+taper+highpass, SciPy resample", "baseline_s": base,
            "candidate": "edge_runtime.preprocess matrix chain", "candidate_s": cand,
            "speedup": base / cand}


def bench_decoder(rng) -> dict:
    """Frame decoding against bare struct/CRC parsing of the same bytes."""
    import struct
    import zlib

    from edge_runtime.protocol import FrameDecoder, encode_frame

    frames = [encode_frame(i, i * 100_000, 100.0, rng.integers(-1000, 1000, (10, 3)).astype(np.int32))
              for i in range(1000)]
    stream = b"".join(frames)
    size = len(frames[0])

    def baseline():  # knows the frame size in advance: no sync search, no validation
        for i in range(0, len(stream), size):
            chunk = stream[i:i + size]
            zlib.crc32(chunk[2:-4])
            struct.unpack_from("<30i", chunk, 24)

    base = time_per_call(baseline)
    cand = time_per_call(lambda: FrameDecoder().feed(stream))
    return {"name": "decode 1000 frames (10 samples x 3 channels)",
            "baseline": "fixed-size struct + CRC loop", "baseline_s": base,
            "candidate": "FrameDecoder.feed (sync search, header CRC, bounds)", "candidate_s": cand,
            "speedup": base / cand, "frames_per_s": 1000 / cand}


def bench_inference(model_dir: Path, rng) -> dict:
    """onnxruntime latency of one window: float model against int16 + onnxsim model."""
    import onnxruntime as ort

    def session(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    x = rng.uniform(-1, 1, (1, 1, 80, 3)).astype(np.float32)
    x16 = (x * 32767).astype(np.int16)
    sf = session(model_dir / "earthquake_cnn.onnx")
    s16 = session(model_dir / "earthquake_cnn_int16_sim.onnx")
    base = time_per_call(lambda: sf.run(None, {"modelInput": x}))
    cand = time_per_call(lambda: s16.run(None, {"modelInput": x16}))
    return {"name": "EarthquakeCNN, one window, 1 thread",
            "baseline": "float ONNX", "baseline_s": base,
            "candidate": "int16-input ONNX + onnxsim", "candidate_s": cand,
            "speedup": base / cand}
