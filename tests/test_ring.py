"""Ring buffer and sliding windows."""

import numpy as np
import pytest

from edge_runtime.protocol import Frame
from edge_runtime.ring import RingBuffer, SlidingWindows, cut_windows
from edge_runtime.sequencing import StreamSequencer


class Sequenced:
    """SlidingWindows fed through the node's frame-ordering state machine, as the node does."""

    def __init__(self, sw):
        self.sw, self.seq = sw, StreamSequencer()

    def _out(self, deliveries):
        windows = []
        for d in deliveries:
            f = d.frame
            windows += self.sw.push(f.samples, f.timestamp_us, f.sampling_rate_hz,
                                    lost_frames=d.lost_frames, restart=d.restart)
        return windows

    def push(self, samples, t_us, rate, sequence):
        return self._out(self.seq.push(Frame(sequence, t_us, rate, samples)))

    def drain(self):
        return self._out(self.seq.drain())


def test_ring_keeps_latest_samples():
    ring = RingBuffer(8, 2)
    data = np.arange(40, dtype=float).reshape(20, 2)
    ring.extend(data[:5])
    ring.extend(data[5:20])
    np.testing.assert_array_equal(ring.get(20, 8), data[12:20])
    with pytest.raises(IndexError):
        ring.get(20, 9)


def feed(sw, data, fs=100.0, t0_us=0, frame=10):
    windows = []
    for i in range(0, data.shape[0], frame):
        windows += sw.push(data[i:i + frame], t0_us + int(i * 1e6 / fs), fs)
    return windows


def test_windows_are_contiguous_slices_with_times():
    fs = 100.0
    data = np.arange(1000 * 3, dtype=float).reshape(1000, 3)
    windows = feed(SlidingWindows(2.0, 0.25), data, fs, t0_us=5_000_000)
    assert len(windows) == 1 + (1000 - 200) // 25
    for k, w in enumerate(windows):
        start = 25 * k
        np.testing.assert_array_equal(w.data, data[start:start + 200].T)
        assert w.start_us == 5_000_000 + int(start * 1e4)
        assert w.center_us == w.start_us + 1_000_000


@pytest.mark.parametrize("fs, window_s, step_s, n", [(100.0, 2.0, 0.25, 1000), (200.0, 2.0, 0.29, 1234),
                                                    (50.0, 1.5, 1.0, 74), (100.0, 2.0, 0.25, 199)])
def test_cut_windows_is_the_node_cut_of_a_continuous_record(fs, window_s, step_s, n):
    """The offline cut (host transfer check, qemu bundle check) gives the node's windows."""
    data = np.random.default_rng(1).standard_normal((3, n))
    live = feed(SlidingWindows(window_s, step_s), data.T.copy(), fs)
    windows, starts = cut_windows(data, fs, window_s, step_s)
    assert windows.shape[0] == len(live) == len(starts)
    for w, node, start in zip(windows, live, starts, strict=True):
        np.testing.assert_array_equal(w, node.data)
        assert node.start_us == int(round(start * 1e6 / fs))


def test_one_big_push_equals_many_small_ones():
    data = np.random.default_rng(0).standard_normal((3000, 3))
    big = SlidingWindows(2.0, 0.25).push(data, 0, 100.0)
    small = feed(SlidingWindows(2.0, 0.25), data)
    assert len(big) == len(small)
    for a, b in zip(big, small, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.start_us == b.start_us


def test_long_gap_restarts_windows():
    sw = SlidingWindows(2.0, 0.5)
    data = np.zeros((300, 3))
    first = feed(sw, data, t0_us=0)
    later = feed(sw, data, t0_us=4_000_000)  # 1 s missing: more than max_fill_s
    assert sw.gaps == 1 and sw.filled_gaps == 0
    assert later[0].start_us == 4_000_000  # no window spans the gap
    assert len(first) == len(later)


def test_short_hole_is_interpolated_and_windows_go_on():
    """One lost 10-sample frame: filled linearly, windows keep their 0.25 s cadence."""
    sw = SlidingWindows(2.0, 0.25)
    ss = Sequenced(sw)
    ramp = np.repeat(np.arange(600, dtype=float)[:, None], 3, axis=1)  # value = sample index
    windows = []
    for i in range(0, 600, 10):
        if i != 300:
            windows += ss.push(ramp[i:i + 10], i * 10_000, 100.0, i // 10)
    windows += ss.drain()
    assert sw.gaps == 0 and sw.filled_gaps == 1 and sw.filled_samples == 10
    assert len(windows) == 1 + (600 - 200) // 25
    # The window over the hole (samples 300-309): linear interpolation restores a ramp.
    (over,) = [w for w in windows if w.start_us == 225 * 10_000]
    np.testing.assert_allclose(over.data[0], np.arange(225, 425))
    assert [w.start_us for w in windows] == [25 * k * 10_000 for k in range(len(windows))]


def test_small_clock_jitter_is_not_a_gap():
    sw = SlidingWindows(2.0, 0.5)
    data = np.zeros((10, 3))
    for i in range(100):
        jitter = 3000 if i % 2 else -3000  # +-3 ms on a 10 ms sample period
        sw.push(data, i * 100_000 + jitter, 100.0)
    assert sw.gaps == 0


def test_rate_or_channel_change_restarts():
    sw = SlidingWindows(2.0, 0.5)
    sw.push(np.zeros((300, 3)), 0, 100.0)
    w = sw.push(np.zeros((300, 2)), 3_000_000, 100.0)
    assert w[0].data.shape == (2, 200)
    w = sw.push(np.zeros((500, 2)), 6_000_000, 125.0)
    assert w[0].data.shape == (2, 250)


def test_adc_clock_off_nominal_rate_is_not_a_gap():
    """A 1 % fast ADC clock: timestamps drift from the nominal rate, windows keep coming."""
    sw = SlidingWindows(2.0, 0.25)
    true_period_us = 1e6 / 101.0  # the board says 100 Hz, samples at 101 Hz
    ss = Sequenced(sw)
    n_windows = 0
    for i in range(6000):  # 10 minutes of 10-sample frames
        n_windows += len(ss.push(np.zeros((10, 3)), int(i * 10 * true_period_us), 100.0, i))
    assert sw.gaps == 0
    assert n_windows == 1 + (60000 - 200) // 25


def test_measured_rate_jitter_is_the_same_stream():
    sw = SlidingWindows(2.0, 0.25)
    ss = Sequenced(sw)
    n_windows = 0
    for i in range(600):
        rate = 100.0 + (0.001 if i % 2 else -0.001)  # boards that report a measured rate
        n_windows += len(ss.push(np.zeros((10, 3)), i * 100_000, rate, i))
    assert sw.gaps == 0 and n_windows > 200


def test_lost_one_sample_frame_found_by_sequence():
    """With 1-sample frames a loss is within timestamp jitter; the sequence number shows it."""
    sw = SlidingWindows(2.0, 0.5)
    ss = Sequenced(sw)
    for i in range(300):
        if i != 150:
            ss.push(np.zeros((1, 3)), i * 10_000, 100.0, i)
    assert sw.filled_gaps == 1 and sw.filled_samples == 1 and sw.gaps == 0
    restart = SlidingWindows(2.0, 0.5, max_fill_s=0)
    rs = Sequenced(restart)
    for i in range(300):
        if i != 150:
            rs.push(np.zeros((1, 3)), i * 10_000, 100.0, i)
    assert restart.gaps == 1 and restart.last_gap_s == pytest.approx(0.01)


def test_time_going_backwards_is_a_negative_gap():
    sw = SlidingWindows(2.0, 0.5)
    sw.push(np.zeros((300, 3)), 10_000_000, 100.0)
    sw.push(np.zeros((10, 3)), 12_000_000, 100.0)  # 1 s earlier than expected
    assert sw.gaps == 1 and sw.last_gap_s == pytest.approx(-1.0)


@pytest.mark.parametrize("jitter_us", [-15_000, 0, 15_000])
def test_lost_one_sample_frame_with_jitter_fills_exactly_one(jitter_us):
    """The sequence gives the count; timestamps that jitter by 1.5 samples do not matter."""
    sw = SlidingWindows(2.0, 0.5)
    ss = Sequenced(sw)
    for i in range(300):
        if i == 150:
            continue
        t_us = i * 10_000 + (jitter_us if i == 151 else 0)
        ss.push(np.full((1, 3), float(i)), t_us, 100.0, i)
    assert sw.gaps == 0 and sw.filled_gaps == 1 and sw.filled_samples == 1


def test_forward_clock_step_is_followed_without_inventing_samples():
    sw = SlidingWindows(2.0, 0.25)
    ss = Sequenced(sw)
    windows = []
    for i in range(60):
        step = 400_000 if i >= 30 else 0  # the board's clock jumps +0.4 s, no frame lost
        windows += ss.push(np.zeros((10, 3)), i * 100_000 + step, 100.0, i)
    assert sw.clock_steps == 1 and sw.filled_samples == 0 and sw.gaps == 0
    assert len(windows) == 1 + (600 - 200) // 25


def test_stuck_clock_keeps_window_times_monotonic():
    """Timestamps freeze while samples keep coming: the node keeps its own time base."""
    sw = SlidingWindows(2.0, 0.25)
    ss = Sequenced(sw)
    windows = []
    for i in range(100):
        t_us = min(i, 40) * 100_000  # the board's clock stops at frame 40
        windows += ss.push(np.zeros((10, 3)), t_us, 100.0, i)
    starts = [w.start_us for w in windows]
    assert sw.gaps == 0 and sw.clock_steps == 59
    assert starts == sorted(starts) and starts[-1] == (1000 - 200) * 10_000


def sequenced(pairs, drain=True, **kwargs):
    """Push (sequence, time in frames of 0.1 s) pairs; return [(seq, lost, restart)] and counts."""
    seq = StreamSequencer(**kwargs)
    out = []
    for s, t in pairs:
        out += seq.push(Frame(s % 2**32, int(1_767_225_600_000_000 + t * 100_000), 100.0,
                              np.zeros((10, 3), np.int32)))
    if drain:
        out += seq.drain()
    counts = {k: v for k, v in seq.counts.items() if v and k not in ("frames_in", "frames_delivered")}
    return [(d.frame.sequence, d.lost_frames, d.restart) for d in out][1:], counts


# One row per line of the table in docs/serial-protocol.md ("Frame ordering").
ORDERING_TABLE = [
    ("next frame", [(0, 0), (1, 1), (2, 2)], [(1, 0, False), (2, 0, False)], {}),
    ("clock step", [(0, 0), (1, 1), (2, 6)], [(1, 0, False), (2, 0, False)], {}),
    ("sequence skip, no sample missing", [(0, 0), (1, 1), (5, 2), (6, 3)],
     [(1, 0, False), (5, 0, False), (6, 0, False)], {"sequence_skips": 1}),
    ("reordered frame", [(0, 0), (1, 1), (3, 3), (2, 2), (4, 4)],
     [(1, 0, False), (2, 0, False), (3, 0, False), (4, 0, False)], {"frames_reordered": 1}),
    ("gap given up", [(0, 0), (1, 1)] + [(s, s) for s in range(3, 8)],
     [(1, 0, False), (3, 1, False), (4, 0, False), (5, 0, False), (6, 0, False), (7, 0, False)],
     {"frames_lost": 1}),
    ("long outage", [(0, 0), (2**17 + 1, 2**17 + 1)], [(2**17 + 1, 2**17, False)], {"frames_lost": 2**17}),
    ("jump, time unaccounted, d ≤ 65,536", [(0, 0), (1000, 50)], [(1000, 999, False)], {"frames_lost": 999}),
    ("jump, time unaccounted, d > 65,536", [(0, 0), (100_000, 50)], [(100_000, 0, True)],
     {"sequence_resets": 1}),
    ("duplicate", [(0, 0), (1, 1), (2, 2), (1, 1)], [(1, 0, False), (2, 0, False)], {"frames_duplicate": 1}),
    ("stale frame", [(0, 0), (1, 1)] + [(s, s) for s in range(3, 8)] + [(2, 2)],
     [(1, 0, False), (3, 1, False), (4, 0, False), (5, 0, False), (6, 0, False), (7, 0, False)],
     {"frames_stale": 1, "frames_late": 1}),  # came after all: not lost as well (issue 23)
    ("board restart", [(0, 0), (1, 1), (2, 2), (0, 3), (1, 4)], [(1, 0, False), (2, 0, False), (0, 0, True),
                                                                 (1, 0, False)], {"sequence_resets": 1}),
    ("uint32 wrap", [(2**32 - 1, 0), (0, 1)], [(0, 0, False)], {}),
]


@pytest.mark.parametrize("case,pairs,delivered,counts", ORDERING_TABLE, ids=[r[0] for r in ORDERING_TABLE])
def test_frame_ordering_table(case, pairs, delivered, counts):
    assert sequenced(pairs) == (delivered, counts)


def test_ordering_table_is_the_documented_one():
    from conftest import REPO

    doc = (REPO / "docs" / "serial-protocol.md").read_text()
    for case, *_ in ORDERING_TABLE:
        if case != "uint32 wrap":
            assert f"| {case} |" in doc, case


def test_reorder_window_holds_at_most_four_frames():
    delivered, _ = sequenced([(0, 0), (1, 1)] + [(s, s) for s in range(3, 7)], drain=False)
    assert delivered == [(1, 0, False)]  # 3..6 held, waiting for 2
    delivered, _ = sequenced([(0, 0), (1, 1)] + [(s, s) for s in range(3, 8)], drain=False)
    assert delivered[1] == (3, 1, False)  # the fifth held frame gives 2 up


def test_other_board_is_dropped():
    seq = StreamSequencer(board_id=7)
    f = Frame(0, 1_767_225_600_000_000, 100.0, np.zeros((10, 3), np.int32), 2, 8, 0, "gps")
    assert seq.push(f) == [] and seq.counts["frames_other_board"] == 1
