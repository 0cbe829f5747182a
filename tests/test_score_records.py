"""Scoring real-shaped records: the two-terminal `tools score`, rates the node cannot take,
detections with poor picks and records that start after P."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO, python_env
from fixtures_records import quake, trace, write_sac
from obspy import UTCDateTime

from host_training.recordings.reader import read_records
from tools.replay.score import Truth, score_record

US = 1_000_000


def test_rates_above_the_node_are_decimated_without_aliasing(tmp_path):
    """2 kHz -> 1 kHz with an anti-alias filter: 5 Hz kept, 700 Hz gone (not folded to 300 Hz)."""
    from tools.replay.records import check_rate, fit_rate

    fs, n = 2000.0, 8000
    t = np.arange(n) / fs
    x = 0.1 * np.sin(2 * np.pi * 5.0 * t) + 0.05 * np.sin(2 * np.pi * 700.0 * t)
    start = UTCDateTime(2026, 1, 1, 0, 0, 0, 250000)
    write_sac(trace(x * 1e9, "FST", "HNZ", start, fs=fs), tmp_path / "FST.SAC", idep="iacc")
    (rec,), _ = read_records([tmp_path])
    fitted = fit_rate(rec, {"target_rate_hz": 40.0}, max_rate_hz=1000.0)
    assert fitted.sampling_rate_hz == 1000.0 and fitted.starttime == start
    assert any("decimated 2000 -> 1000 Hz (factor 2" in a for a in fitted.actions)
    z = fitted.data[2, 500:-500]  # away from the edges
    spectrum = np.abs(np.fft.rfft(z)) / (len(z) / 2)
    freqs = np.fft.rfftfreq(len(z), 1 / 1000.0)
    assert spectrum[np.argmin(abs(freqs - 5.0))] == pytest.approx(0.1, rel=0.02)
    assert spectrum[np.argmin(abs(freqs - 300.0))] < 1e-3  # 700 Hz would alias here
    assert not fitted.data[:2].any()  # missing components stay zeros
    check_rate(fitted, {"highpass_hz": 0.5})  # the node takes it now
    slow = fit_rate(rec, {"target_rate_hz": 4000.0}, max_rate_hz=1e4)  # kept, with a note
    assert slow.sampling_rate_hz == 2000.0 and "below the model's 4000 Hz input rate" in slow.actions[-1]
    with pytest.raises(ValueError, match="below the node's 10 Hz minimum"):
        check_rate(replace(fitted, sampling_rate_hz=5.0), {"highpass_hz": 0.5})


def test_a_detection_with_a_poor_pick_and_a_record_that_starts_after_p():
    quake_truth = Truth("q", "earthquake", 1000.0, 1060.0, p_s=1020.0)
    # The node declared at P (start 1019.5) but its picker looked 5 s too early.
    early = dict(start_us=int(1019.5 * US), end_us=1040 * US, p_time_us=1015 * US)
    row, _ = score_record([early], quake_truth)
    assert row["detected"] and row["p_error_s"] == -5.0 and row["false_events"] == 0
    # A pick within tolerance is preferred over a declaration with a poor pick.
    good = dict(start_us=1021 * US, end_us=1030 * US, p_time_us=int(1020.5 * US))
    row, _ = score_record([early, good], quake_truth)
    assert row["p_error_s"] == 0.5 and row["repeat_events"] == 1 and row["false_events"] == 0
    # Declared 30 s after P: not a detection of this P.
    late = dict(start_us=1050 * US, end_us=1055 * US, p_time_us=1049 * US)
    row, _ = score_record([late], quake_truth)
    assert row["detected"] is False and row["false_events"] == 1
    # The record begins 1.7 s after P (no pre-event noise): any event in it detects, no P error.
    mid = Truth("m", "earthquake", 1021.7, 1080.0, p_s=1020.0, s_s=1021.0)
    row, _ = score_record([dict(start_us=1023 * US, end_us=1070 * US, p_time_us=1050 * US,
                                s_time_us=1060 * US)], mid)
    assert row["detected"] and row["started_after_p"] and row["p_error_s"] is None
    assert row["s_error_s"] is None  # S also before the first window


def score_cli(*args):
    return subprocess.run([sys.executable, "-m", "tools", "score", *map(str, args)], cwd=REPO,
                          env=python_env(), capture_output=True, text=True, timeout=120)


def test_two_terminal_score_prints_the_per_record_table(tmp_path, rng):
    """Records as `tools replay --time auto` sent them (1995 moved 50 years), events as a node wrote."""
    from tools.replay.records import read_waveform_records

    folder = tmp_path / "records"
    folder.mkdir()
    t_old, t_new = UTCDateTime(1995, 1, 17, 5, 46), UTCDateTime(2026, 3, 1, 12)
    for start, station in ((t_old, "OLD"), (t_new, "NEW")):
        data = quake(rng, 1000, 100.0, 4.0)
        for i, cha in enumerate(("HNE", "HNN", "HNZ")):
            write_sac(trace(data[i] * 1e9, station, cha, start), folder / f"XX.{station}..{cha}.SAC",
                      idep="iacc", t1=4.0, kt1="P")
    sent = read_waveform_records([folder], time_mode="auto")
    starts = sorted(s for _, _, s in sent)
    shift = 18_262 * 86_400
    assert starts == sorted([int((t_old.timestamp + shift) * US), int(t_new.timestamp * US)])
    events = tmp_path / "events.jsonl"
    p_old = int((t_old.timestamp + shift + 4.2) * US)
    events.write_text("\n".join(json.dumps(e) for e in [
        {"type": "trigger", "start_us": p_old, "end_us": p_old + 500_000},
        {"type": "event", "start_us": p_old, "end_us": p_old + 5 * US, "p_time_us": p_old,
         "pga_mps2": 0.4, "p_prob": 0.9}]) + "\n")
    result = score_cli(events, folder)
    assert result.returncode == 1, result.stderr  # NEW was missed
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["record", "Hz", "s", "comp", "kind", "detected"]
    old = next(line for line in lines if line.startswith("XX.OLD"))
    assert old.split()[1:7] == ["100", "10", "ENZ", "earthquake", "yes", "+0.20"]
    assert next(line for line in lines if line.startswith("XX.NEW")).split()[5] == "MISSED"
    assert "earthquakes detected 1/2  false events 0" in result.stdout
    report = json.loads(score_cli(events, folder, "--json").stdout)
    assert sorted(r["time_shift_s"] for r in report["rows"]) == [0.0, shift]
    # Bad input: one line each, exit 2.
    for args, message in (((tmp_path / "none.jsonl", folder), "no such events file"),
                          ((events, tmp_path / "empty"), "no usable record"),
                          ((events, folder, "--time", "someday"), "--time 'someday'")):
        bad = score_cli(*args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr
