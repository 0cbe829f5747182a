"""Replaying by hand, as a new user does it every week (issue 19): `tools replay` into a node
started from the command it prints, `tools score` on what that node wrote, `make replay` on the
fixtures a fresh clone has, and the everyday mistakes answered with one line.

Every test goes through the real command: ``python -m tools ...`` or ``make ...`` in a
subprocess, a real pty and a real node process.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import read_until
from conftest import REPO, python_env

FIXTURES = REPO / "tools" / "fixtures" / "records"
ONE = FIXTURES / "XX.ONE..HNZ.SAC"
# What the Makefile and docs/replay.md promise of the shipped fixtures: 1, 2 and 3 components, a
# 4 ms offset, a gap in counts + StationXML, a 1995 record with lower-case names.
PROMISED = {"XX.ONE..HNZ.SAC", "XX.TWO..HN1.SAC", "XX.TWO..HN2.SAC", "XX.OFS..HNE.SAC", "XX.OFS..HNN.SAC",
            "XX.OFS..HNZ.SAC", "XX.CNT.mseed", "XX.CNT.xml", "xx.old..hne.sac", "xx.old..hnn.sac",
            "xx.old..hnz.sac", "catalog.csv"}


def tools(*args, cwd=REPO, timeout=180, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools", *map(str, args)], cwd=cwd, env=python_env(),
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def one_line_error(result, *expected: str) -> str:
    """The command failed with one line on stderr holding every ``expected`` text, no traceback."""
    err = result.stderr.strip().splitlines()
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    assert len(err) == 1, result.stderr
    for text in expected:
        assert text in err[0], err[0]
    return err[0]


# ------------------------------------------------------------------ fixtures in a fresh clone
def test_a_fresh_clone_has_every_promised_fixture():
    tracked = subprocess.run(["git", "ls-files", "tools/fixtures/records"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    names = {Path(p).name for p in tracked}
    assert PROMISED <= names, f"not in git: {sorted(PROMISED - names)}"
    # nothing in the folder is left out of git by .gitignore (*.sac, *.mseed)
    ignored = subprocess.run(["git", "status", "--porcelain", "--ignored", "tools/fixtures"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    assert "!!" not in ignored, ignored
    assert sum((REPO / p).stat().st_size for p in tracked) < 200_000


@pytest.mark.slow
def test_make_replay_replays_every_promised_record(tiny_model, tmp_path):
    out = tmp_path / "replay"
    stamp = tmp_path / "venv-ready"  # the venv runs this test: make must not reinstall it
    stamp.touch()
    result = subprocess.run(["make", "--no-print-directory", "replay", f"MODEL={tiny_model['sim']}",
                             f"REPLAY_OUT={out}", f"STAMP={stamp}"], cwd=REPO, env=python_env(),
                            capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    stations = sorted(r["record"].split(".")[1] for r in summary["rows"])
    assert stations == ["CNT", "OFS", "OLD", "ONE", "TWO"], (stations, summary["skipped"])
    assert summary["skipped"] == [] and summary["summary"]["node_failures"] == 0
    rows = {r["record"].split(".")[1]: r for r in summary["rows"]}
    assert rows["OLD"]["time_shift_s"] > 0 and rows["CNT"]["components"] == "ENZ"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# ------------------------------------------------------------------ everyday mistakes
def test_replay_mistakes_get_one_line(tmp_path):
    regular = tmp_path / "not-a-port"
    regular.write_text("")
    cases = [(["--port", tmp_path / "ttyUSB9"], ["--port", "no such"]),
             (["--port", regular], ["--port", "not a serial"]),
             (["--port", tmp_path], ["--port", "not a serial"]),
             (["--pty", "--samples-per-frame", "0"], ["--samples-per-frame 0"]),
             (["--pty", "--samples-per-frame", "5000"], ["--samples-per-frame 5000"]),
             (["--pty", "--corrupt", "5"], ["corrupt=5"]),
             (["--pty", "--faults", "drop=2"], ["drop=2"]),
             (["--pty", "--faults", "unplug=0.1"], ["unplug", "replay-test"]),
             (["--pty", "--speed", "-1"], ["--speed -1"]),
             (["--pty", "--counts-per-mps2", "0"], ["--counts-per-mps2 0"]),
             (["--pty", "--model", tmp_path / "none.onnx"], ["--model", "no such file"])]
    for extra, expected in cases:
        result = tools("replay", ONE, *extra, cwd=tmp_path, stdin="\n\n", timeout=120)
        one_line_error(result, *expected)
    assert not (tmp_path / "runs").exists()  # refused before a pty was made


@pytest.mark.slow
def test_replay_into_a_pty_nobody_opened_says_so(tmp_path):
    t = time.monotonic()
    result = tools("replay", ONE, "--pty", "--speed", "0", cwd=tmp_path, stdin="\n\n", timeout=120)
    one_line_error(result, "runs/replay_pty/tty", "node")
    assert time.monotonic() - t < 25  # not the writer's 30 s timeout first


def test_replay_test_refuses_a_second_stage_model(tmp_path):
    from test_second_stage import write_model

    spectro = write_model(tmp_path / "source.onnx")
    result = subprocess.run([sys.executable, "-m", "tools", "replay-test", str(ONE), "--model", str(spectro),
                             "--out", str(tmp_path / "out")], cwd=REPO, env=python_env(),
                            capture_output=True, text=True, timeout=120)
    line = one_line_error(result, "SpectrogramCNN", "--source-model", "EarthquakeCNN")
    assert result.returncode == 2, line
    assert not (tmp_path / "out" / "records").exists()  # no node was started
    result = tools("replay", ONE, "--pty", "--model", spectro, cwd=tmp_path, stdin="\n\n")
    one_line_error(result, "SpectrogramCNN")


# ------------------------------------------------------------------ the same names
def _long_options(command: str) -> set[str]:
    text = tools(command, "--help").stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", text))


def test_replay_and_replay_test_name_the_same_things_alike():
    replay, replay_test, score = (_long_options(c) for c in ("replay", "replay-test", "score"))
    shared = {"--faults", "--units", "--catalog", "--inventory", "--time", "--sensor", "--speed",
              "--samples-per-frame", "--model"}
    assert shared <= replay, shared - replay
    assert shared <= replay_test, shared - replay_test
    assert {"--units", "--catalog", "--inventory", "--time"} <= score
    # the old per-fault flags still work, but are no longer offered beside --faults
    assert not {"--corrupt", "--drop", "--truncate", "--garbage", "--fault-seed"} & replay


# ------------------------------------------------------------------ replay by hand, then score


@pytest.mark.slow
def test_replay_by_hand_then_score_finds_the_node_events(tiny_model, tmp_path):
    """The printed node command, run as printed (the model filled in), writes events where the
    printed score command reads them."""
    from tools.replay.node import end_node

    records = [FIXTURES / f"XX.OFS..HN{c}.SAC" for c in "ENZ"]
    replay = subprocess.Popen([sys.executable, "-m", "tools", "replay", *map(str, records), "--pty",
                               "--speed", "0", "--model", str(tiny_model["sim"])], cwd=tmp_path,
                              env=python_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    node = None
    try:
        shown = read_until(replay, "press Enter")
        node_line = next(line.strip() for line in shown.splitlines() if "-m edge_runtime run" in line)
        argv = shlex.split(node_line)
        assert argv[:4] == ["python", "-m", "edge_runtime", "run"] and "--events" in argv, node_line
        assert argv[argv.index("--model") + 1] == str(tiny_model["sim"])
        events = tmp_path / argv[argv.index("--events") + 1]
        status = tmp_path / argv[argv.index("--status") + 1]
        node = subprocess.Popen([sys.executable, *argv[1:]], cwd=tmp_path, env=python_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while not (status.is_file() and json.loads(status.read_text() or "{}").get("port_open")):
            assert node.poll() is None and time.monotonic() < deadline, node.stdout.read()
            time.sleep(0.1)
        replay.stdin.write("\n")
        replay.stdin.flush()
        done = read_until(replay, "press Enter once", timeout_s=120)
        sent = json.loads(next(line for line in done.splitlines() if line.startswith("{")))
        deadline = time.monotonic() + 60
        while json.loads(status.read_text() or "{}").get("decoder", {}).get("frames", 0) < sent["frames"]:
            assert time.monotonic() < deadline, status.read_text()
            time.sleep(0.2)
        node.send_signal(signal.SIGTERM)  # closes any open event, as on idle exit
        node.wait(timeout=60)
        score_line = next(line.strip() for line in done.splitlines() if "-m tools score" in line)
        replay.stdin.write("\n")
        replay.stdin.flush()
        assert replay.wait(timeout=60) == 0
    finally:
        for proc in (node, replay):
            if proc is not None:
                end_node(proc, grace_s=0)
    assert events.is_file(), f"the node wrote no {events}"
    argv = shlex.split(score_line)
    assert argv[:4] == ["python", "-m", "tools", "score"] and argv[4] == os.path.relpath(events, tmp_path)
    result = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=python_env(), capture_output=True,
                            text=True, timeout=120)
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr
    assert "XX.OFS" in result.stdout and "skipped" not in result.stdout, result.stdout
