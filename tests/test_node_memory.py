"""The node process maps only what it runs (its memory target: 70 MB after an hour).

A real node on a real pty classifies a few seconds of frames; its ``/proc/PID/maps`` then
shows what it loaded. Two things it does not run cost it 9.7 MiB before they were left
out (``python -m tools.bench.window_path`` measures the RSS itself):

* the TLS/HTTP stack (``urllib.request`` -> http.client, email, ssl; 7.6 MiB) without a
  URL action;
* onnxruntime's usage telemetry (1.29+: a SQLite queue under ``~/.cache``, an upload
  thread, outbound HTTPS; 2.1 MiB), which no field station should run.
"""

import json
import time
from pathlib import Path

import numpy as np
from conftest import node_process, python_env, running

from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
from tools.replay import Writer, open_pty, record_frames

T0_US = 1_767_225_600_000_000  # 2026-01-01


def _frames_read(status: Path) -> int:
    try:
        return json.loads(status.read_text())["decoder"]["frames"]
    except (OSError, ValueError, KeyError):
        return 0


def test_node_loads_no_tls_stack_and_no_onnxruntime_telemetry(tiny_model, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = python_env()
    env.pop("ORT_DISABLE_TELEMETRY", None)  # the node must turn it off itself
    env["HOME"] = str(home)
    pty = open_pty()
    proc = node_process(tiny_model["sim"], pty.port, tmp_path, "--status-every-s", "0.2", env=env)
    with running(proc, pty):
        deadline = time.monotonic() + 30
        while not pty.configured() and time.monotonic() < deadline:  # the node opened the port
            time.sleep(0.05)
        data = np.random.default_rng(0).standard_normal((3, 600)) * 1e-3
        data[2] += 9.80665
        writer = Writer(pty, speed=0)
        for _seq, t_us, frame in record_frames(data, 100.0, T0_US, ADXL355_COUNTS_PER_MPS2):
            writer.send(frame, t_us)
        deadline = time.monotonic() + 30
        while _frames_read(tmp_path / "status.json") < 60 and time.monotonic() < deadline:
            time.sleep(0.1)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert _frames_read(tmp_path / "status.json") == 60, output
    assert json.loads((tmp_path / "status.json").read_text())["pipeline"]["windows"] > 0
    libraries = {line.split()[-1].rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line}
    tls = sorted(name for name in libraries if name.startswith(("libssl", "_ssl", "libcrypto")))
    assert not tls, f"node loaded the TLS stack without a URL action: {tls}"
    assert not any("onnxruntime.db" in name for name in libraries), "onnxruntime telemetry queue mapped"
    assert not (home / ".cache" / "Microsoft").exists(), "onnxruntime telemetry wrote under HOME"
