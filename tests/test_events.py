"""Event output survives an unwritable target and loses nothing."""

import json
import os

from edge_runtime.events import JsonlWriter, iso_utc


def test_writes_json_lines_with_iso_times(tmp_path):
    w = JsonlWriter(tmp_path / "out" / "events.jsonl", spools=[tmp_path / "spool"])
    assert w.write({"type": "event", "p_time_us": 1_767_225_600_250_000, "s_time_us": None})
    (line,) = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    event = json.loads(line)
    assert event["p_time"] == "2026-01-01T00:00:00.250+00:00" and event["s_time"] is None


def test_failed_writes_are_spooled_and_retried(tmp_path, caplog):
    target = tmp_path / "events.jsonl"
    target.mkdir()  # a directory where the file should be: every open() fails
    w = JsonlWriter(target, spools=[tmp_path / "spool"])
    assert not w.write({"n": 1})
    assert not w.write({"n": 2})
    assert w.held == 2 and w.failing and not w.backlog  # on disk, not only in memory
    assert w.where_held() == [str(tmp_path / "spool")]
    assert sum("cannot write events" in r.message for r in caplog.records) == 1  # once per streak
    os.rmdir(target)
    assert w.write({"n": 3})
    assert [json.loads(x)["n"] for x in target.read_text().splitlines()] == [1, 2, 3]
    assert w.written == 3 and w.held == 0


def test_full_disk_is_reported_not_raised(tmp_path):
    w = JsonlWriter("/dev/full", max_backlog=2, spools=[])
    for i in range(3):
        assert not w.write({"n": i})
    assert w.dropped == 1 and len(w.backlog) == 2


def test_iso_utc():
    assert iso_utc(0) == "1970-01-01T00:00:00.000+00:00"


def test_unrepresentable_time_becomes_null(tmp_path):
    w = JsonlWriter(tmp_path / "e.jsonl", spools=[tmp_path / "spool"])
    assert w.write({"p_time_us": 2**62})
    assert json.loads((tmp_path / "e.jsonl").read_text())["p_time"] is None
