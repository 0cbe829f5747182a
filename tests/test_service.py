"""The live pipeline without I/O: frames in, counters and events out."""

import numpy as np

from edge_runtime.backend import OnnxBackend
from edge_runtime.protocol import Frame
from edge_runtime.service import NodeConfig, Pipeline


def make_pipeline(tiny_model):
    path = tiny_model["sim"]
    return Pipeline(OnnxBackend(path), NodeConfig(port="unused", model=str(path)))


def frame(seq, t_us, n=10, channels=3, value=0):
    return Frame(seq, t_us, 100.0, np.full((n, channels), value, dtype=np.int32))


def test_lost_frames_counted_from_sequence_numbers(tiny_model):
    pipe = make_pipeline(tiny_model)
    for seq in (0, 1, 2, 5, 6):
        pipe.on_frame(frame(seq, seq * 100_000))
    assert pipe.counts["frames_lost"] == 2
    pipe.on_frame(frame(2**32 - 1, 700_000))  # far away: the board restarted
    pipe.on_frame(frame(0, 800_000))  # uint32 wrap: nothing lost
    assert pipe.counts["frames_lost"] == 2 and pipe.counts["sequence_resets"] == 1


def test_wrong_channel_count_is_dropped_not_fatal(tiny_model, caplog):
    pipe = make_pipeline(tiny_model)
    assert pipe.on_frame(frame(0, 0, channels=2)) == []
    assert pipe.counts["frames_rejected"] == 1
    assert "2 channels, model expects 3" in caplog.text


def test_dead_sensor_windows_are_not_classified(tiny_model):
    pipe = make_pipeline(tiny_model)
    for seq in range(40):  # 4 s of a constant (disconnected) signal
        pipe.on_frame(frame(seq, seq * 100_000, value=1234))
    assert pipe.counts["windows"] == 0 and pipe.counts["windows_dead"] > 0
