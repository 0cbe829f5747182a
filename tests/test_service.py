"""The live pipeline without I/O: frames in, counters and events out (real tiny model)."""

import numpy as np
import pytest
from event_schema import check_events

from edge_runtime.backends import OnnxBackend
from edge_runtime.detector import DetectorConfig
from edge_runtime.event_record import with_iso_times
from edge_runtime.protocol import Frame
from edge_runtime.service import ADXL355_COUNTS_PER_MPS2, NodeConfig, Pipeline
from host_training.synthetic import parametric as synth
from tools.replay.sender import to_counts

T0 = 1_767_225_600_000_000  # 2026-01-01, microseconds


def make_pipeline(tiny_model, **detector):
    path = tiny_model["sim"]
    config = NodeConfig(port="unused", model=str(path), detector=DetectorConfig(**detector))
    return Pipeline(OnnxBackend(path), config)


def frame(seq, t_us, n=10, channels=3, value=0, rate=100.0):
    return Frame(seq, T0 + t_us, rate, np.full((n, channels), value, dtype=np.int32))


def quake_frames(seed=5, drop=(), duration_s=40.0):
    """10-sample frames of a synthetic earthquake (P at 10 s, S at 14 s), minus ``drop``."""
    rng = np.random.default_rng(seed)
    rec = synth.earthquake(rng, duration_s=duration_s, p_s=10.0, sp_s=4.0, pga_mps2=0.3)
    counts = to_counts(rec.data, ADXL355_COUNTS_PER_MPS2).T
    for seq in range(counts.shape[0] // 10):
        if seq not in drop:
            yield Frame(seq, T0 + seq * 100_000, 100.0, counts[seq * 10:(seq + 1) * 10])


def run(pipe, frames):
    out = []
    for f in frames:
        out += pipe.on_frame(f)
    out += pipe.flush()
    check_events([with_iso_times(e) for e in out])  # as the event file would hold them
    return out


def test_lost_frames_counted_from_sequence_numbers(tiny_model):
    pipe = make_pipeline(tiny_model)
    for seq in (0, 1, 2, 5, 6):
        pipe.on_frame(frame(seq, seq * 100_000))
    pipe.flush()  # gives the gap up now (the reorder window would wait for 3 and 4)
    assert pipe.counts["frames_lost"] == 2 and pipe.counts["sequence_resets"] == 0
    pipe.on_frame(frame(2**32 - 1, 700_000))  # the counter jumped: the board restarted
    pipe.on_frame(frame(0, 800_000))  # uint32 wrap: nothing lost
    assert pipe.counts["frames_lost"] == 2 and pipe.counts["sequence_resets"] == 1


def test_long_outage_is_counted_as_lost_frames_not_a_restart(tiny_model):
    pipe = make_pipeline(tiny_model)
    pipe.on_frame(frame(0, 0))
    missing = 2**17  # 3.6 h of 10-sample frames at 100 Hz
    pipe.on_frame(frame(missing + 1, (missing + 1) * 100_000))
    pipe.drain()  # the gap's last slots are held for the reorder window (4 frames) until the line is quiet
    assert pipe.counts["frames_lost"] == missing and pipe.counts["sequence_resets"] == 0


def test_duplicate_frame_is_dropped(tiny_model):
    pipe = make_pipeline(tiny_model)
    pipe.on_frame(frame(0, 0))
    pipe.on_frame(frame(0, 0))
    pipe.drain()  # a stream's first frame is held for the reorder window (issue 23)
    assert pipe.counts["frames"] == 1 and pipe.counts["frames_duplicate"] == 1
    assert pipe.windows.gaps == 0


@pytest.mark.parametrize("bad,kind", [
    (dict(channels=2), "2 channels, model expects 3"),
    (dict(t_us=2**62), "is not between 2000 and 2100"),  # nanoseconds sent as microseconds
    (dict(rate=4000.0), "outside 10.0-1000.0 Hz"),
    (dict(rate=0.5), "outside 10.0-1000.0 Hz"),
])
def test_bad_frames_are_rejected_with_a_reason(tiny_model, caplog, bad, kind):
    pipe = make_pipeline(tiny_model)
    assert pipe.on_frame(frame(0, bad.pop("t_us", 0), **bad)) == []
    assert pipe.counts["frames_rejected"] == 1 and pipe.counts["frames"] == 0
    assert kind in caplog.text and "seq=0" in caplog.text


def test_dead_sensor_windows_are_not_classified(tiny_model):
    pipe = make_pipeline(tiny_model)
    for seq in range(40):  # 4 s of a constant (disconnected) signal
        pipe.on_frame(frame(seq, seq * 100_000, value=1234))
    assert pipe.counts["windows"] == 0 and pipe.counts["windows_dead"] > 0


def test_a_quake_is_one_event(tiny_model):
    events = [e for e in run(make_pipeline(tiny_model), quake_frames()) if e["type"] == "event"]
    assert len(events) == 1
    assert abs(events[0]["p_time_us"] - (T0 + 10_000_000)) < 500_000


def test_short_hole_is_filled_and_the_event_stays_whole(tiny_model):
    """Three frames (0.3 s) lost in the S coda: filled, one event, the loss counted."""
    pipe = make_pipeline(tiny_model)
    events = [e for e in run(pipe, quake_frames(drop={160, 161, 162})) if e["type"] == "event"]
    assert pipe.windows.filled_gaps == 1 and pipe.counts["frames_lost"] == 3
    assert len(events) == 1


def test_lost_frame_at_the_p_wave_does_not_hide_it(tiny_model):
    """A frame lost 0.2 s after P: the P pick survives (a restart would blind 2 s)."""
    events = [e for e in run(make_pipeline(tiny_model), quake_frames(drop={102}))
              if e["type"] == "event"]
    assert len(events) == 1
    assert abs(events[0]["p_time_us"] - (T0 + 10_000_000)) < 500_000


def test_gap_between_fill_and_off_s_keeps_the_event_open(tiny_model):
    pipe = make_pipeline(tiny_model)  # off_s 8 s; 1 s lost in the S coda
    events = [e for e in run(pipe, quake_frames(drop=set(range(160, 170)))) if e["type"] == "event"]
    assert pipe.windows.gaps == 1 and len(events) == 1


def test_gap_longer_than_off_s_closes_the_event(tiny_model):
    pipe = make_pipeline(tiny_model, off_s=2.0)
    closed_at = []
    for f in quake_frames(drop=set(range(150, 180))):  # 3 s lost during the S wave
        for e in pipe.on_frame(f):
            if e["type"] == "event":
                closed_at.append(f.sequence)
    # closed by the gap itself, not later: once frame 180 leaves the reorder window (4 frames),
    # when frame 184 arrives
    assert closed_at and closed_at[0] == 184


def test_dead_sensor_mid_event_closes_it(tiny_model):
    """Shaking, then the sensor goes flat: dead windows reach the detector as noise."""
    pipe = make_pipeline(tiny_model, off_s=2.0)
    out = []
    frames = list(quake_frames())
    for f in frames[:160]:
        out += pipe.on_frame(f)
    assert pipe.detector.open is not None
    for seq in range(160, 260):
        out += pipe.on_frame(frame(seq, seq * 100_000, value=5000))
    assert pipe.detector.open is None and [e["type"] for e in out][-1] == "event"


def test_outage_then_a_longer_frame_is_not_a_restart(tiny_model):
    """Frame lengths vary (1-1024 samples): a 1 s outage followed by a 40-sample frame."""
    pipe = make_pipeline(tiny_model)
    for seq in range(30):
        pipe.on_frame(frame(seq, seq * 100_000))
    pipe.on_frame(frame(40, 4_000_000, n=40))
    pipe.drain()  # the gap's last slots are held for the reorder window until the line is quiet
    assert pipe.counts["frames_lost"] == 10 and pipe.counts["sequence_resets"] == 0


def test_stuck_board_clock_mid_event_still_closes_it(tiny_model):
    pipe = make_pipeline(tiny_model, off_s=2.0)
    out = []
    for f in quake_frames(duration_s=60.0):
        t_us = min(f.timestamp_us, T0 + 16_000_000)  # the clock stops during the S wave
        out += pipe.on_frame(Frame(f.sequence, t_us, 100.0, f.samples))
    assert [e["type"] for e in out].count("event") == 1
    assert pipe.detector.open is None


def test_rate_limiter_over_a_day_of_port_faults(caplog):
    """A port retried every 10 s for a day: 8,640 faults, a few hundred lines, every one counted."""
    import logging

    from edge_runtime.logs import LimitedLog

    now = [0.0]
    faults = LimitedLog(logging.getLogger("test.faults"), clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="test.faults")
    for _ in range(8640):
        faults(logging.ERROR, "port", "serial port %s: cannot open", "/dev/ttyX")
        faults(logging.ERROR, "status", "status: cannot write")  # another fault, its own budget
        now[0] += 10.0
    assert faults.counts == {"port": 8640, "status": 8640}
    port_lines = [r.getMessage() for r in caplog.records if "serial port" in r.getMessage()]
    assert len(port_lines) == faults.lines["port"] == 5 + 8640 * 10 // 600 - 1
    assert "similar suppressed" in port_lines[-1]
    suppressed = sum(int(m.split("; ")[1].split()[0]) for m in port_lines[5:])
    assert 5 + len(port_lines[5:]) + suppressed + 59 >= 8640 - 1  # nothing unaccounted but the last interval
    faults.recovered("port", "serial port open")
    assert "cleared after 8640 occurrences" in caplog.records[-1].getMessage()
    faults(logging.ERROR, "port", "serial port %s: cannot open", "/dev/ttyX")  # a new outage shows at once
    assert caplog.records[-1].getMessage().startswith("serial port /dev/ttyX: cannot open")


def test_snippets_of_events_in_the_same_second_never_overwrite_each_other(tiny_model, tmp_path):
    import obspy

    from edge_runtime.logs import LimitedLog
    from edge_runtime.outputs import OUTPUTS, OutputContext
    from edge_runtime.service import log

    path = tiny_model["sim"]
    config = NodeConfig(port="unused", model=str(path), snippets=str(tmp_path / "snip"))
    pipe = Pipeline(OnnxBackend(path), config)
    context = OutputContext(tuple(pipe.backend.metadata.components), pipe.prep.window_s, LimitedLog(log))
    snippets = OUTPUTS["snippets"](config, context)
    pipe.sample_listeners.append(snippets.on_samples)
    for i in range(200):  # 20 s of frames into the snippet recorder
        pipe.on_frame(frame(i, i * 100_000, value=i % 7))
    events = [{"type": "event", "start_us": T0 + 10_000_000 + dt, "p_time_us": None,
               "end_us": T0 + 12_000_000} for dt in (0, 0, 400_000)]
    for event in events:
        snippets.on_event(event)
    files = [f for e in events for f in e["snippet"]["files"]]
    assert len(files) == 9 and len(set(files)) == 9
    assert len(obspy.read(str(tmp_path / "snip" / "*.SAC"))) == 9
