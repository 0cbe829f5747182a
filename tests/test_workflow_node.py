"""Issue 19, "Installs and the node": the node's everyday mistakes and counters, through the
real command (``python -m edge_runtime ...`` in its own process, on a real pty where a port
is needed).

* a regular file or a folder as ``--port`` is refused at start in one line; a port that is
  not there (yet) is waited for, logged once, and ``--idle-exit-s`` still ends the node;
* a folder as ``--status`` is refused at start, as a folder as ``--events`` is;
* ``edge_runtime status`` counts the frames the node took in and delivered;
* a component a record or a board does not have (a channel that carries nothing) is left
  out of the event's SAC snippet, and named, never written as data;
* ``python -m tools.bench.protocol --help`` prints help and runs nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from _helpers import feed_until_idle, start_node, status_of, wait_frames, wait_ready, wait_status
from conftest import REPO, python_env, running, stop
from event_schema import check_events

from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
from host_training.synthetic import parametric as synth
from tools.replay.pty import PtyLink, open_pty
from tools.replay.sender import Writer, count_frames, record_frames

T0_US = 1_767_225_600_000_000  # 2026-01-01


def node_run(model, out, *flags, timeout_s: float = 90.0) -> subprocess.CompletedProcess:
    """``python -m edge_runtime run`` to its end (a node that never ends fails the test)."""
    cmd = [sys.executable, "-m", "edge_runtime", "run", "--model", str(model), *map(str, flags)]
    try:
        return subprocess.run(cmd, cwd=REPO, env=python_env(), capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        output = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise AssertionError(f"the node still ran after {timeout_s} s: {output}") from None


def one_error_line(result) -> str:
    """The node's refusal: exit 2, no traceback, the error as one line on stderr."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# ---------------------------------------------------------------- the port
@pytest.mark.parametrize("kind", ["regular file", "folder"])
def test_a_regular_file_or_a_folder_as_port_is_refused_at_start(tiny_model, tmp_path, kind):
    port = tmp_path / "ttyUSB0"
    if kind == "folder":
        port.mkdir()
    else:
        port.write_bytes(b"\x00" * 100)
    result = node_run(tiny_model["sim"], tmp_path, "--port", port, "--events", tmp_path / "events.jsonl",
                      "--status", tmp_path / "status.json")
    line = one_error_line(result)
    assert str(port) in line and f"is a {kind}, not a serial device" in line, line
    assert not (tmp_path / "events.jsonl").exists()  # refused before anything was written


def test_a_missing_port_is_logged_once_and_idle_exit_still_ends_the_node(tiny_model, tmp_path):
    """A board that never appears: the node waits for it, says so once, and --idle-exit-s
    (a replay, a test) ends it with the idle exit's status 0, its final status written."""
    port = tmp_path / "ttyACM7"
    t0 = time.monotonic()
    result = node_run(tiny_model["sim"], tmp_path, "--port", port, "--events", tmp_path / "events.jsonl",
                      "--status", tmp_path / "status.json", "--idle-exit-s", "2", "--reconnect-max-s", "0.2")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - t0 < 60
    waits = [line for line in result.stderr.splitlines() if str(port) in line and "cannot open" in line]
    assert len(waits) == 1, result.stderr  # retried every 0.2 s for 2 s, said once
    assert "retrying until it appears" in waits[0], waits[0]
    assert "no bytes for 2.0 s: exiting" in result.stderr, result.stderr
    status = status_of(tmp_path)
    assert status["port_open"] is False and status["decoder"]["frames"] == 0
    assert status["port_waits"] >= 5  # the retries are counted, not logged


def test_a_port_that_appears_later_is_opened_and_read(tiny_model, tmp_path):
    """A USB board plugged in after the node started: waited for (one line), then read."""
    link = tmp_path / "ttyUSB-board"
    proc = start_node(tiny_model["sim"], link, tmp_path, "--reconnect-max-s", "0.2")
    board = None
    try:
        wait_status(tmp_path / "status.json", proc, lambda s: s["port_waits"] >= 3,
                    "retry the missing port 3 times")
        board = PtyLink(link)  # plugged in
        wait_ready(tmp_path, proc)
        writer = Writer(board.pty, speed=0)
        counts = np.random.default_rng(3).integers(-300, 300, (3, 500))
        for _seq, t_us, frame in count_frames(counts, 100.0, T0_US):
            writer.send(frame, t_us)
        wait_frames(tmp_path / "status.json", proc, 50)
        output = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if board is not None:
            board.close()
    assert proc.returncode == 0, output
    waits = [line for line in output.splitlines() if str(link) in line and "cannot open" in line]
    assert len(waits) == 1, output
    assert f"serial port {link} open" in output, output


def test_a_folder_as_status_is_refused_at_start_like_events(tiny_model, tmp_path):
    pty = open_pty()
    try:
        result = node_run(tiny_model["sim"], tmp_path, "--port", pty.port, "--events",
                          tmp_path / "events.jsonl", "--status", tmp_path, "--idle-exit-s", "30")
    finally:
        pty.close()
    line = one_error_line(result)
    assert line == f"error: status {tmp_path}: {tmp_path} is a folder, not a file", line


# ---------------------------------------------------------------- the status command
def status_command(path) -> dict:
    result = subprocess.run([sys.executable, "-m", "edge_runtime", "status", str(path)], cwd=REPO,
                            env=python_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_command_counts_the_frames_the_node_took_in_and_delivered(tiny_model, tmp_path):
    """1,800 frames decoded: ``edge_runtime status`` says 1,800 in and 1,800 delivered,
    while the node runs and after it stopped."""
    counts = np.random.default_rng(7).integers(-400, 400, (3, 18000))
    frames = [f for _seq, _t, f in count_frames(counts, 100.0, T0_US)]
    pty = open_pty()
    proc = start_node(tiny_model["sim"], pty.port, tmp_path)
    with running(proc, pty):
        wait_ready(tmp_path, proc)
        writer = Writer(pty, speed=0)
        for frame in frames:
            writer.send(frame, 0)
        wait_frames(tmp_path / "status.json", proc, 1800)
        live = status_command(tmp_path / "status.json")
        output = stop(proc)
    assert proc.returncode == 0, output
    assert live["pipeline"]["frames_in"] == live["decoder"]["frames"] == 1800, live["pipeline"]
    assert 1800 - 4 <= live["pipeline"]["frames_delivered"] <= 1800  # the reorder window's hold
    final = status_command(tmp_path / "status.json")
    pipeline = final["pipeline"]
    assert pipeline["frames_in"] == pipeline["frames_delivered"] == pipeline["frames"] == 1800, pipeline


# ---------------------------------------------------------------- snippets of missing components
@pytest.mark.parametrize("z_counts", [0, 5123], ids=["absent (zeros)", "dead (stuck)"])
def test_a_component_without_data_is_left_out_of_the_snippet(tiny_model, tmp_path, z_counts):
    """A two-component record (or a board whose Z channel died) declares an event: its SAC
    snippet holds E and N, read back with ObsPy sample for sample; Z is named as missing."""
    import obspy

    rec = synth.earthquake(np.random.default_rng(5), duration_s=40.0, p_s=10.0, sp_s=4.0, pga_mps2=0.3)
    counts = np.round(rec.data * ADXL355_COUNTS_PER_MPS2).astype(np.int64)
    counts[2] = z_counts
    out = tmp_path
    output = feed_until_idle(tiny_model["sim"], out, [f for _s, _t, f in count_frames(counts, 100.0, T0_US)],
                             "--snippets", str(out / "snippets"), "--station", "TWO", idle_exit_s=2,
                             timeout_s=120)
    events = [e for e in check_events(out / "events.jsonl") if e["type"] == "event"]
    assert len(events) == 1, output
    snippet = events[0]["snippet"]
    assert [f[-7:] for f in snippet["files"]] == ["HNE.SAC", "HNN.SAC"], snippet
    assert snippet["components_missing"] == ["Z"], snippet
    stream = obspy.read(str(out / "snippets" / "*.SAC"))
    assert sorted(tr.stats.channel for tr in stream) == ["HNE", "HNN"]
    for tr in stream:
        row = "EN".index(tr.stats.channel[-1])
        i0 = int(round((tr.stats.starttime.timestamp * 1e6 - T0_US) / 1e4))
        np.testing.assert_allclose(tr.data, counts[row, i0:i0 + tr.stats.npts] / ADXL355_COUNTS_PER_MPS2,
                                   rtol=1e-6, atol=1e-9)


def test_every_component_with_data_is_written(tiny_model, tmp_path):
    """The other side: three live components give three files and nothing named missing."""
    rec = synth.earthquake(np.random.default_rng(5), duration_s=40.0, p_s=10.0, sp_s=4.0, pga_mps2=0.3)
    frames = [f for _s, _t, f in record_frames(rec.data, 100.0, T0_US, ADXL355_COUNTS_PER_MPS2)]
    output = feed_until_idle(tiny_model["sim"], tmp_path, frames, "--snippets", str(tmp_path / "snippets"),
                             idle_exit_s=2, timeout_s=120)
    events = [e for e in check_events(tmp_path / "events.jsonl") if e["type"] == "event"]
    assert len(events) == 1, output
    assert [f[-7:] for f in events[0]["snippet"]["files"]] == ["HNE.SAC", "HNN.SAC", "HNZ.SAC"]
    assert "components_missing" not in events[0]["snippet"]


# ---------------------------------------------------------------- the protocol benchmark's help
def test_bench_protocol_help_prints_help_and_runs_nothing():
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tools.bench.protocol", "--help"], cwd=REPO,
                            env=python_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m tools.bench.protocol"), result.stdout
    assert "--frames" in result.stdout and "M/s" not in result.stdout  # no benchmark row
    assert time.monotonic() - t0 < 15  # the benchmark itself takes about 16 s

