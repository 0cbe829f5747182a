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
from pathlib import Path

import numpy as np
from _helpers import wait_frames, wait_status
from conftest import node_process, python_env, running, stop

from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
from tools.replay.pty import open_pty
from tools.replay.sender import Writer, record_frames

T0_US = 1_767_225_600_000_000  # 2026-01-01
N_FRAMES = 60  # 6 s at 100 Hz: past the first window


def test_node_loads_no_tls_stack_and_no_onnxruntime_telemetry(tiny_model, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = python_env()
    env.pop("ORT_DISABLE_TELEMETRY", None)  # the node must turn it off itself
    env["HOME"] = str(home)
    status_path = tmp_path / "status.json"
    pty = open_pty()
    proc = node_process(tiny_model["sim"], pty.port, tmp_path, "--status-every-s", "0.2", env=env)
    with running(proc, pty):
        # Deadlines for a loaded 2-core machine: start-up (numpy, onnxruntime, the model)
        # can take tens of seconds there; on an idle one it takes ~1 s. Each wait fails
        # naming what the node did not do, with its output.
        wait_status(status_path, proc, lambda s: s["port_open"], "open its port", timeout_s=90)
        data = np.random.default_rng(0).standard_normal((3, N_FRAMES * 10)) * 1e-3
        data[2] += 9.80665
        writer = Writer(pty, speed=0)
        for _seq, t_us, frame in record_frames(data, 100.0, T0_US, ADXL355_COUNTS_PER_MPS2):
            writer.send(frame, t_us)
        wait_frames(status_path, proc, N_FRAMES, timeout_s=60)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        output = stop(proc)
    assert proc.returncode == 0, output
    status = json.loads(status_path.read_text())  # the last one, written as the node stopped
    assert status["decoder"]["frames"] == N_FRAMES, output
    assert status["pipeline"]["windows"] > 0, output
    libraries = {line.split()[-1].rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line}
    tls = sorted(name for name in libraries if name.startswith(("libssl", "_ssl", "libcrypto")))
    assert not tls, f"node loaded the TLS stack without a URL action: {tls}"
    assert not any("onnxruntime.db" in name for name in libraries), "onnxruntime telemetry queue mapped"
    assert not (home / ".cache" / "Microsoft").exists(), "onnxruntime telemetry wrote under HOME"
