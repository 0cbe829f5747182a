"""replay-test waits for each node to open its pty: a node that never does is named, with
the port, the wait and the end of its output, in one line (real node processes, real files)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, python_env
from obspy import Stream, Trace, UTCDateTime

from tools.replay.node import wait_for_port
from tools.replay.replay_test import ReplayTestConfig, run_replay_test


def test_node_that_exits_is_named_with_its_error(tmp_path):
    """The real node refusing a setting: its one error line is in the message."""
    log_path = tmp_path / "node.log"
    port = str(tmp_path / "tty")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", "--port", port,
                                 "--model", str(tmp_path / "m.onnx"), "--threads", "0",
                                 "--events", str(tmp_path / "e.jsonl")],
                                cwd=REPO, env=python_env(), stdout=log, stderr=subprocess.STDOUT)
        with pytest.raises(RuntimeError) as info:
            wait_for_port(tmp_path / "status.json", proc, timeout_s=60, log_path=log_path,
                          name="node for record XX.STA")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"node for record XX.STA (port {port}) exited with code 2 ")
    assert message.endswith("its output ends: error: --threads = 0: must be > 0"), message


def test_node_that_never_opens_is_named_with_port_wait_and_output_tail(tmp_path):
    """A process that keeps running without opening the port: the wait is named, the last
    lines of its output (from its pipe once it was ended) close the one line."""
    lines = [f"loading step {i}" for i in range(6)]
    script = f"import time; print({chr(10).join(lines)!r}, flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script, "--port", "/dev/pts/999"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with pytest.raises(RuntimeError) as info:
            wait_for_port(tmp_path / "status.json", proc, timeout_s=1.5, log_path=None)
    finally:
        proc.kill()
        proc.wait()
    message = str(info.value)
    assert "\n" not in message
    # Still running at the deadline: its pipe cannot be read without blocking, so "no output".
    assert message == "edge runtime did not open its port /dev/pts/999 within 1.5 s; no output"
    log_path = tmp_path / "node.log"
    log_path.write_text("\n".join(lines) + "\n\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--port", "P"])
    try:
        with pytest.raises(RuntimeError) as info:
            wait_for_port(tmp_path / "status.json", proc, timeout_s=0.5, log_path=log_path)
    finally:
        proc.kill()
        proc.wait()
    assert str(info.value) == ("edge runtime did not open its port P within 0.5 s; its output ends: "
                               "loading step 3 | loading step 4 | loading step 5")


def test_replay_test_reports_the_failed_node_in_one_line(tiny_model, tmp_path):
    """Through run_replay_test: the record's row and the printed line carry the node's error."""
    t0 = UTCDateTime(2026, 3, 1)
    rng = np.random.default_rng(1)
    stream = Stream([Trace(rng.standard_normal(1000) * 1e-3, header={
        "network": "XX", "station": "STA", "channel": f"HN{c}", "sampling_rate": 100.0,
        "starttime": t0}) for c in "ENZ"])
    stream.write(str(tmp_path / "XX.STA.mseed"), format="MSEED")
    printed = []
    config = ReplayTestConfig(model=str(tiny_model["sim"]), out=str(tmp_path / "out"),
                              node_args=["--threads", "0"])
    result = run_replay_test([tmp_path / "XX.STA.mseed"], config, units="m/s^2", progress=False,
                             printer=printed.append)
    row, = result["rows"]
    assert row["node_exit"] == 2
    assert "node for record XX.STA" in row["error"] and "exited with code 2" in row["error"]
    assert row["error"].endswith("its output ends: error: --threads = 0: must be > 0"), row["error"]
    line, = [p for p in printed if "node run failed" in p]
    assert "\n" not in line and "--threads = 0" in line and "node.log" in line
