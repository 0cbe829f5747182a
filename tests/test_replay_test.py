"""replay-test end to end: real files -> real pty -> a real node process per record -> score."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, python_env
from fixtures_records import build_fixture_set, quake, trace, write_sac
from obspy import UTCDateTime

from tools.replay.faults import FaultConfig, parse_faults
from tools.replay.replay_test import ReplayTestConfig, run_replay_test


def replay_test(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "tools", "replay-test", *map(str, args)], cwd=REPO,
                          env=python_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(5)
    truth = build_fixture_set(folder, rng, seconds=6.0, p_s=2.5)
    # Beyond the +/-2 g of the replayed sensor: clipped and counted.
    strong = quake(rng, 600, 100.0, 2.5, pga=40.0)
    write_sac(trace(strong[0] * 1e9, "CLP", "HNZ", UTCDateTime(2026, 4, 1)), folder / "XX.CLP..HNZ.SAC",
              idep="iacc")
    # 2 kHz: above the node's 1 kHz; decimated (anti-alias FIR) and replayed.
    fast = quake(rng, 12000, 2000.0, 2.5)
    write_sac(trace(fast[2] * 1e9, "FST", "HNZ", UTCDateTime(2026, 4, 3), fs=2000.0),
              folder / "XX.FST..HNZ.SAC", idep="iacc")
    # 5 Hz: below what the node takes (and too coarse for the model's window): refused, others run.
    write_sac(trace(strong[0, :100] * 1e7, "LOW", "HNZ", UTCDateTime(2026, 4, 2), fs=5.0),
              folder / "XX.LOW..HNZ.SAC", idep="iacc")
    return folder, truth


def test_every_case_replays_through_a_node_and_is_scored(tiny_model, fixture_dir, tmp_path):
    folder, truth = fixture_dir
    out = tmp_path / "out"
    result = replay_test(folder, "--model", tiny_model["sim"], "--catalog", folder / "catalog.csv",
                         "--out", out, "--json", "--idle-exit-s", "5")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 1, result.stderr[-3000:]  # the corrupt file was skipped
    report = json.loads(result.stdout)
    rows = {r["record"].split(".")[1]: r for r in report["rows"]}
    assert sorted(rows) == sorted([*truth, "CLP", "FST"])
    assert rows["FST"]["rate_hz"] == 1000.0 and any("decimated 2000 -> 1000 Hz" in a
                                                    for a in rows["FST"]["actions"])
    skipped = sorted(report["skipped"])
    assert [w.rsplit("/", 1)[-1] for w, _ in skipped] == ["XX.BAD..HNZ.SAC", "XX.LOW..HNZ.SAC"]
    assert "corrupt" in skipped[0][1] and "sampling rate 5 Hz below the node's 10 Hz minimum" in skipped[1][1]
    for name, row in rows.items():
        assert row["node_exit"] == 0 and row["error"] is None, (name, row)
        assert row["frames_sent"] == row["frames_decoded"] == row["frames_accepted"] > 0, (name, row)
        assert all(c["ok"] for c in row["ledger"]), (name, row["ledger"])
        assert sum(row["window_classes"].values()) == row["windows"] > 0, (name, row)
    # Pre-2000: moved with its picks into the node's window; nothing rejected for its time.
    assert rows["OLD"]["time_shift_s"] > 0 and rows["OLD"]["dropped"]["rejected"] == {}
    assert rows["OLD"]["true_p"] - rows["OLD"]["time_shift_s"] == pytest.approx(truth["OLD"]["p"].timestamp)
    assert rows["ONE"]["missing_as"] == "zeros" and rows["ONE"]["components"] == "--Z"
    assert rows["TWO"]["components"] == "EN-" and rows["OFS"]["missing_as"] is None
    assert rows["CLP"]["clipped"] > 0 and rows["OFS"]["clipped"] == 0
    assert rows["OFS"]["detected"] is not None and rows["OFS"]["kind"] == "earthquake"
    summary = report["summary"]
    assert summary["records"] == 7 and summary["skipped"] == 2 and summary["node_failures"] == 0
    assert (out / "summary.json").is_file() and (out / "summary.png").is_file()


def test_line_faults_unplug_and_drift_match_the_node_counters(tiny_model, fixture_dir, tmp_path):
    """Unplug: the link vanishes, then the pty; a new pty comes back behind the link."""
    folder, _ = fixture_dir
    faults = parse_faults("corrupt=0.03,drop=0.02,garbage=0.05,unplug=0.04,unplug_s=0.5,drift_ppm=300,seed=2")
    config = ReplayTestConfig(model=str(tiny_model["sim"]), out=str(tmp_path), idle_exit_s=5.0,
                              faults=faults)
    result = run_replay_test([folder / "XX.OFS..HNE.SAC", folder / "XX.OFS..HNN.SAC",
                              folder / "XX.OFS..HNZ.SAC"], config, progress=False)
    (row,) = result["rows"]
    assert row["node_exit"] == 0 and row["error"] is None, row
    assert row["faults"].get("unplugged", 0) >= 1 and row["faults"].get("corrupted", 0) >= 1, row["faults"]
    failed = [c for c in row["ledger"] if not c["ok"]]
    assert not failed, failed


def test_time_modes_move_records_and_picks_together(fixture_dir):
    from host_training.recordings.reader import read_records
    from tools.replay.records import time_shift_s

    folder, truth = fixture_dir
    (old,), _ = read_records([folder / "xx.old..hn?.sac"])
    now = UTCDateTime(2026, 6, 1).timestamp
    shift = time_shift_s(old, "auto", now_s=now)
    # Whole 50-year steps (whole days): 1995 -> 2045, the same shift whatever the clock says.
    assert shift == 18_262 * 86_400 == time_shift_s(old, "auto") and time_shift_s(old, "keep") == 0.0
    assert old.shifted(shift).starttime.strftime("%Y %H:%M:%S") == "2045 05:46:00"
    assert time_shift_s(old, "now", now_s=now) == round(now - old.starttime.timestamp)
    moved = old.shifted(shift)
    assert moved.picks["P"].time - moved.starttime == pytest.approx(truth["OLD"]["p"] - old.starttime)
    (new,), _ = read_records([folder / "XX.ONE..HNZ.SAC"])
    assert time_shift_s(new, "auto", now_s=now) == 0.0  # inside 2000-2100: kept
    assert new.shifted(time_shift_s(new, "2030-01-01T00:00:00")).starttime == UTCDateTime(2030, 1, 1)
    with pytest.raises(ValueError, match="--time"):
        time_shift_s(new, "someday")


def test_bad_input_is_one_line_without_traceback(tiny_model, tmp_path):
    result = replay_test(tmp_path / "missing.sac", "--model", tiny_model["sim"], "--out", tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert f"skipped {tmp_path / 'missing.sac'}: no such file" in result.stdout
    result = replay_test(tmp_path, "--model", tmp_path / "nope.onnx")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --model {tmp_path / 'nope.onnx'}: no such file"
    result = replay_test(tmp_path, "--model", tiny_model["sim"], "--units", "furlongs", "--out", tmp_path)
    assert result.returncode == 2 and "furlongs" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="unplug"):
        FaultConfig(unplug=2.0)


def test_missing_components_as_zeros_or_sensor_self_noise(fixture_dir):
    from edge_runtime.sensors import get_sensor
    from host_training.recordings.reader import read_records
    from tools.replay.records import digitize

    folder, _ = fixture_dir
    (one,), _ = read_records([folder / "XX.ONE..HNZ.SAC"])
    sensor = get_sensor("adxl355-2g")
    counts, notes = digitize(one, sensor, "zeros", np.random.default_rng(0))
    assert notes == {"clipped": 0, "missing": "EN"} and not counts[:2].any() and counts[2].any()
    counts, _ = digitize(one, sensor, "self-noise", np.random.default_rng(0))
    rms = counts[:2].std() / sensor.counts_per_mps2
    assert rms == pytest.approx(sensor.self_noise_rms_mps2(one.sampling_rate_hz), rel=0.2)


def test_scoring_delay_false_events_per_noise_hour_and_unknown_kinds():
    from tools.replay.score import Truth, score

    us = 1_000_000
    quake = Truth("q", "earthquake", 1000.0, 1060.0, p_s=1020.0, s_s=1025.0)
    no_pick = Truth("f", "earthquake", 2000.0, 2030.0)  # FEMA-like: no P known
    noise = Truth("n", "noise", 3000.0, 3360.0)
    unknown = Truth("u", "", 4000.0, 4030.0)
    events = [
        dict(start_us=1020 * us, end_us=1040 * us, p_time_us=int(1020.3 * us), s_time_us=1024 * us,
             pga_mps2=0.5, p_prob=0.9),
        dict(start_us=1005 * us, end_us=1008 * us, p_time_us=None, pga_mps2=0.1, p_prob=0.6),  # before P
        dict(start_us=1045 * us, end_us=1050 * us, p_time_us=None, pga_mps2=0.1, p_prob=0.6),  # a repeat
        dict(start_us=2003 * us, end_us=2020 * us, p_time_us=None, pga_mps2=2.0, p_prob=0.0),
        dict(start_us=3100 * us, end_us=3110 * us, p_time_us=None, pga_mps2=0.1, p_prob=0.7),
        dict(start_us=4010 * us, end_us=4020 * us, p_time_us=None, pga_mps2=0.1, p_prob=0.7),
    ]
    triggers = [dict(start_us=1020 * us, end_us=int(1020.5 * us))]
    result = score(events, [quake, no_pick, noise, unknown], triggers=triggers, window_s=2.0)
    rows = {r["record"]: r for r in result["rows"]}
    assert rows["q"]["detected"] and rows["q"]["p_error_s"] == 0.3 and rows["q"]["s_error_s"] == -1.0
    assert rows["q"]["delay_s"] == 1.5  # trigger window centre + 1 s - P
    assert rows["q"]["false_events"] == rows["q"]["false_in_noise"] == rows["q"]["repeat_events"] == 1
    assert rows["f"]["detected"] and rows["f"]["false_events"] == 0 and rows["f"]["p_error_s"] is None
    assert rows["n"]["detected"] is None and rows["n"]["false_in_noise"] == 1
    assert rows["u"]["false_events"] == 0 and rows["u"]["events"] == 1  # unknown: neither true nor false
    s = result["summary"]
    noise_h = (360.0 + (1020.0 - 2.0 - 1000.0)) / 3600
    assert s["noise_hours"] == round(noise_h, 4) and s["false_per_noise_hour"] == round(2 / noise_h, 2)
    assert s["earthquakes"] == 2 and s["detected"] == 2 and s["false_events"] == 2 and not s["passed"]
    assert s["repeat_events"] == 1 and s["events"] == 6
