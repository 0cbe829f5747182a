"""sd_notify readiness and watchdog against a datagram socket the test listens on, as systemd does."""

import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, python_env

from edge_runtime.sdnotify import Notifier
from tools.replay.pty import open_pty


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def receive(sock, until, timeout_s=30.0):
    """Datagrams until one holds ``until`` (or the time is up)."""
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if until in got[-1]:
            break
    return got


def test_notifier_messages_and_watchdog_period(listener):
    path, sock = listener
    now = [100.0]
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}, clock=lambda: now[0])
    assert n.enabled and n.watchdog_s == 2.0 and n.ping_every_s() == 1.0
    assert n.ready("reading /dev/ttyX")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=reading /dev/ttyX"
    assert not n.watchdog()  # not due yet
    now[0] += 1.0
    assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping() and sock.recv(4096) == b"STOPPING=1"


def test_notifier_without_systemd_is_silent_and_survives_a_dead_socket(tmp_path):
    assert not Notifier({}).ready() and not Notifier({}).watchdog()
    other_pid = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_s is None  # the watchdog is meant for another process
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not gone.ready() and gone.errors == 1


def test_node_process_sends_ready_then_watchdog_then_stopping(tiny_model, listener, tmp_path):
    path, sock = listener
    pty = open_pty()
    env = python_env() | {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", "--port", pty.port,
                             "--model", str(tiny_model["sim"]), "--events", str(tmp_path / "e.jsonl"),
                             "--status", str(tmp_path / "run" / "status.json")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        got = receive(sock, "READY=1")
        assert got and got[-1].startswith("READY=1"), got
        pings = [m for m in receive(sock, "never", timeout_s=1.0) if m == "WATCHDOG=1"]
        assert len(pings) >= 3  # every 0.1 s (half of WATCHDOG_USEC) while the line is quiet
        assert (tmp_path / "run" / "status.json").exists()  # the status folder was created
        proc.terminate()
        assert "STOPPING=1" in receive(sock, "STOPPING=1")
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        pty.close()
    assert proc.returncode == 0, output
    assert "ready in" in output
