"""Event output survives an unwritable target and loses nothing."""

import json
import os

import pytest

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


def test_short_write_is_cut_back_and_retried_whole(tmp_path):
    """A write cut short by the file-size limit (as by a full disk) leaves no fragment."""
    import resource
    import subprocess
    import sys

    from conftest import REPO, python_env

    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"n": 0, "pad": "y" * 40}) + "\n")  # 60 of the 100 bytes allowed
    code = (
        "import json, resource, sys\n"
        "from edge_runtime.events import JsonlWriter\n"
        f"w = JsonlWriter({str(path)!r}, spools=[{str(tmp_path / 'spool')!r}])\n"
        "w.start()\n"
        "ok = w.write({'n': 1, 'pad': 'x' * 60})\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)\n"
        "ok2 = w.flush()\n"
        "print(json.dumps([ok, ok2, w.held, w.spooled]))\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))

    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=python_env(), preexec_fn=limit,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [False, True, 0, 1]  # held in the spool, then written whole
    assert [json.loads(x)["n"] for x in path.read_text().splitlines()] == [0, 1]


def test_start_keeps_a_torn_line_aside_and_closes_an_open_event(tmp_path):
    path = tmp_path / "e.jsonl"
    trigger = {"type": "trigger", "station": "ST", "start_us": 1_767_225_600_000_000}
    done = {"type": "trigger", "station": "ST", "start_us": 1}
    path.write_text(json.dumps(done) + "\n" + json.dumps({**done, "type": "event"}) + "\n" +
                    json.dumps(trigger) + "\n" + '{"type": "ev')
    w = JsonlWriter(path, spools=[tmp_path / "spool"])
    w.start()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[:3] == [done, {**done, "type": "event"}, trigger]
    (closing,) = lines[3:]
    assert closing["closed_by"] == "restart" and closing["start_us"] == trigger["start_us"]
    assert closing["event_id"] == "ST-20260101T000000.000"
    (aside,) = tmp_path.glob("e.jsonl.torn-*")
    assert aside.read_text() == '{"type": "ev'
    assert w.torn_kept == 1 and w.closed_on_start == 1
    w2 = JsonlWriter(path, spools=[tmp_path / "spool"])
    w2.start()  # a second start finds nothing to repair
    assert w2.torn_kept == 0 and w2.closed_on_start == 0


def test_an_event_whose_close_is_spooled_is_not_closed_twice(tmp_path):
    from edge_runtime.spool import Spool

    path = tmp_path / "e.jsonl"
    trigger = {"type": "trigger", "station": "ST", "start_us": 5}
    path.write_text(json.dumps(trigger) + "\n")
    Spool(tmp_path / "spool").put({**trigger, "type": "event"})
    w = JsonlWriter(path, spools=[tmp_path / "spool"])
    w.start()
    assert [json.loads(x)["type"] for x in path.read_text().splitlines()] == ["trigger", "event"]
    assert w.closed_on_start == 0 and w.held == 0


def test_spool_survives_and_keeps_order_and_sets_rotten_records_aside(tmp_path):
    from edge_runtime.spool import Spool

    s = Spool(tmp_path / "q", max_items=3)
    ids = [s.put({"n": i}) for i in range(3)]
    with pytest.raises(OSError, match="limit"):
        s.put({"n": 3})
    (tmp_path / "q" / (ids[1] + ".json")).write_text("{torn")
    again = Spool(tmp_path / "q")  # a new process
    assert [r["n"] for _, r in again.pending()] == [0, 2] and again.bad == 1
    assert (tmp_path / "q" / "bad" / (ids[1] + ".json")).exists()
    again.done(ids[0])
    assert len(again) == 1


def test_report_held_says_where(tmp_path, caplog):
    target = tmp_path / "events.jsonl"
    target.mkdir()
    w = JsonlWriter(target, spools=[tmp_path / "spool"])
    w.write({"n": 1})
    assert w.report_held() == 1
    assert f"kept in {tmp_path / 'spool'}" in caplog.text
    w = JsonlWriter(target, spools=[])
    w.write({"n": 2})
    assert w.report_held() == 1 and "NOT WRITTEN anywhere" in caplog.text and '"n": 2' in caplog.text


def test_a_fragment_that_cannot_be_cut_is_never_fused_to_a_record(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"n": 0}\n{"n": 1, "tor')
    w = JsonlWriter(path, spools=[tmp_path / "spool"])
    w._good = path.stat().st_size  # as after a start that could keep nothing aside
    assert w.write({"n": 2})
    assert path.read_text().splitlines()[-1] == '{"n": 2}'
