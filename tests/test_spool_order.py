"""Spools keep their order by a sequence, not by the wall clock (issue 23)."""

import time

from edge_runtime.spool import Spool


def test_clock_stepped_back_does_not_reorder_held_records(tmp_path, monkeypatch):
    """NTP steps the clock back after a cold boot without RTC: order must not follow it."""
    clock = iter([1_900_000_000_000_000_000, 1_800_000_000_000_000_000, 1_700_000_000_000_000_000,
                  1_750_000_000_000_000_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    spool = Spool(tmp_path / "q")
    for i in range(3):
        spool.put({"event": i})
    # A restart (a new Spool on the same folder), the clock still behind: after the others.
    Spool(tmp_path / "q").put({"event": 3})
    assert [r["event"] for _, r in Spool(tmp_path / "q").pending()] == [0, 1, 2, 3]


def test_order_survives_records_done_in_between(tmp_path):
    spool = Spool(tmp_path / "q")
    ids = [spool.put({"event": i}) for i in range(4)]
    spool.done(ids[3])  # the newest delivered: a later record still sorts after the rest
    spool.done(ids[0])
    Spool(tmp_path / "q").put({"event": 4})
    assert [r["event"] for _, r in spool.pending()] == [1, 2, 4]
