"""replay-test's host side holds a record once: digitizing makes no float copy of it, and the
ledger of frames sent costs a byte per frame (allocations counted by tracemalloc, which
numpy reports to; no timing)."""

from __future__ import annotations

import tracemalloc

import numpy as np
from obspy import UTCDateTime

from edge_runtime.sensors import get_sensor
from host_training.recordings.record import Record
from tools.replay.ledger import Ledger
from tools.replay.records import digitize


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_digitize_in_chunks_gives_the_whole_record_counts_without_a_float_copy():
    """Counts and clipping as the whole record digitized at once (self-noise drawn in the
    same order); beyond the int32 counts, only chunk-sized temporaries."""
    sensor = get_sensor("adxl355-2g")
    rng = np.random.default_rng(2)
    n = 1_000_003  # not a multiple of the chunk
    data = rng.normal(0.0, 5.0, (3, n))  # m/s^2: some beyond the 2 g range, clipped
    data[1] = 0.0  # N missing
    record = Record(id="XX.MEM..HN_20260101T000000", station="XX.MEM.", starttime=UTCDateTime(2026, 1, 1),
                    sampling_rate_hz=100.0, data=data, present=(True, False, True),
                    channels=("HNE", None, "HNZ"))
    whole = data.copy()
    whole[[1]] = sensor.self_noise(np.random.default_rng(7), (1, n), 100.0)
    want, want_clipped = sensor.digitize(whole)
    (counts, notes), peak = _peak_bytes(lambda: digitize(record, sensor, "self-noise",
                                                         np.random.default_rng(7), chunk=1 << 16))
    np.testing.assert_array_equal(counts, want)
    assert counts.dtype == np.int32 and notes == {"clipped": want_clipped, "missing": "N"}
    assert want_clipped > 0
    # Old: a float64 copy (24 MB) and whole-record float temporaries on top of the counts.
    assert peak < counts.nbytes + 4 * (1 << 20), peak
    counts0, notes0 = digitize(record, sensor, "zeros", None)
    assert not counts0[1].any() and notes0["missing"] == "N"


def test_ledger_holds_a_byte_per_frame_and_counts_as_before():
    """Frames lost between the first and last intact frame of each board session."""
    ledger = Ledger()
    flags = (np.random.default_rng(3).random(300_000) > 0.01).tolist()

    def fill():
        for i, ok in enumerate(flags):
            ledger.sent(i, ok)
            if i in (100_000, 200_000):
                ledger.unplugged(5)

    _, peak = _peak_bytes(fill)
    assert peak < 1 << 20, peak  # was a (sequence, intact) tuple per frame: ~25 MB here
    expected = ledger.expected()
    lost = 0
    for part in (flags[:100_001], flags[100_001:200_001], flags[200_001:]):
        first, last = part.index(True), len(part) - 1 - part[::-1].index(True)
        lost += part[first:last + 1].count(False)
    assert expected == {"frames_sent": 300_000, "frames_intact": sum(flags), "frames_lost": lost,
                        "unplugs": 2, "frames_unsent": 10,
                        # the line faults of issue 23, none injected here
                        "frames_duplicate": 0, "frames_reordered": 0, "frames_late": 0}
    ledger.unplugged(1)
    ledger.sent(0, False)  # a session with no intact frame: nothing provably lost in it
    assert ledger.expected()["frames_lost"] == lost
