"""A stop that reaches the node inside ``run()`` before it is ready: no start-up, exit 0.

systemd stops a slow start with SIGTERM; ``run()`` installs its handlers first, so the
signal only sets the stop flag. The node must then not announce itself ready (READY=1 to
the manager, "ready in" in its log) but finish what it has begun and exit 0 at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from _helpers import open_when_read
from conftest import REPO, python_env, stop

from edge_runtime.spool import SUFFIX


def test_sigterm_inside_run_before_ready_is_not_a_start(tiny_model, tmp_path):
    """The node is held at a known step inside ``run()``: writing out an earlier run's
    spooled event, whose record file is a FIFO that this test writes only after the signal.

    The event writer reads its spools in ``JsonlWriter.start()``, after the model has been
    loaded and before the ready step. A writer opens a FIFO without blocking only while a
    reader has it open (ENXIO before), so the signal goes exactly while the node reads it.
    The record is then written, so the node finishes the step it was in (the held event
    reaches the file) and must stop there: exit 0, no READY=1 on its notify socket (which
    does get STOPPING=1: the socket works), no "ready in".
    """
    out = tmp_path / "out"
    spool = out / "events.jsonl.spool"
    spool.mkdir(parents=True)
    held = spool / f"{1:020d}-1-000001{SUFFIX}"
    os.mkfifo(held)
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = tmp_path / "notify"
    manager.bind(str(address))
    env = dict(python_env(), NOTIFY_SOCKET=str(address))
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", "--port", "/dev/null",
                             "--model", str(tiny_model["sim"]), "--events", str(out / "events.jsonl")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    writer = None
    try:
        writer = open_when_read(held, proc, "spool")
        proc.send_signal(15)  # SIGTERM, inside run(): the node's own handler sets the flag
        os.write(writer, json.dumps({"type": "note", "held": 1}).encode())
        os.close(writer)
        writer = None
        output = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if writer is not None:
            os.close(writer)
    manager.setblocking(False)
    messages = []
    while True:
        try:
            messages.append(manager.recv(4096).decode())
        except BlockingIOError:
            break
    manager.close()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert "signal 15" in output, output  # run()'s handler took it, not __main__'s early one
    assert "ready in" not in output, output
    assert not any("READY=1" in m.splitlines() for m in messages), messages
    assert any("STOPPING=1" in m.splitlines() for m in messages), messages
    assert '"held": 1' in (out / "events.jsonl").read_text()  # the step begun was finished
