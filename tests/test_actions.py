"""Alert actions: a local HTTP server that fails then recovers, a command that fails then works,
a queue on disk that outlives the process. Nothing is lost, nothing delivered twice."""

import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edge_runtime.actions import ActionQueue, CommandAction, HttpAction, wait_delivered
from edge_runtime.logs import LimitedLog


class AlertServer:
    """A real HTTP server on localhost answering 503 to the first ``fail`` POSTs, then 200."""

    def __init__(self, fail: int):
        self.fail = fail
        self.attempts = 0
        self.received: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.attempts += 1
                if server.attempts <= server.fail:
                    self.send_response(503, "outage")
                else:
                    server.received.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/events"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(predicate, timeout_s: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds or the (generous) deadline passes: a loaded machine
    may take seconds for what an idle one does in milliseconds, never a fixed window."""
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def server():
    s = AlertServer(fail=3)
    yield s
    s.close()


def events(n):
    return [{"type": "event", "id": k, "station": "ST01"} for k in range(n)]


def test_http_alerts_survive_an_outage_in_order(server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    queue = ActionQueue(HttpAction(server.url, timeout_s=10.0), tmp_path / "spool", retry_s=0.05,
                        retry_max_s=0.2)
    try:
        for e in events(4):
            queue.submit(e)
        assert wait_delivered([queue], 20.0)
    finally:
        queue.close()
    assert [e["id"] for e in server.received] == [0, 1, 2, 3]  # in order, each once
    assert server.attempts == 3 + 4 and queue.failures == 3 and queue.delivered == 4
    assert "HTTP 503" in caplog.text and "delivered again" in caplog.text


def test_alerts_queued_during_an_outage_are_sent_after_a_restart(tmp_path):
    """The node stops while the network is down; the next start delivers what was queued."""
    down = AlertServer(fail=10**6)
    queue = ActionQueue(HttpAction(down.url, timeout_s=10.0), tmp_path / "spool", retry_s=0.05,
                        retry_max_s=0.1)
    for e in events(3):
        queue.submit(e)
    queue.close()
    down.close()
    assert len(list((tmp_path / "spool").glob("*.json"))) == 3  # on disk, durable
    up = AlertServer(fail=0)
    queue = ActionQueue(HttpAction(up.url, timeout_s=10.0), tmp_path / "spool", retry_s=0.05)
    try:
        assert wait_delivered([queue], 20.0)
    finally:
        queue.close()
        up.close()
    assert [e["id"] for e in up.received] == [0, 1, 2]


def test_unreachable_url_is_retried_not_dropped(tmp_path):
    queue = ActionQueue(HttpAction("http://127.0.0.1:9/", timeout_s=0.5), tmp_path / "spool", retry_s=0.05,
                        retry_max_s=0.1)
    try:
        queue.submit({"type": "event", "id": 1})
        assert wait_until(lambda: queue.failures >= 2)
        assert queue.pending() == 1  # still queued: retried, never dropped
    finally:
        queue.close()


def test_command_gets_the_event_on_stdin_and_is_retried(tmp_path):
    """A command that fails twice (exit 1), then appends its stdin to a file."""
    script = tmp_path / "alert.py"
    out = tmp_path / "alerts.jsonl"
    state = tmp_path / "tries"
    script.write_text(
        "import sys, pathlib\n"
        f"state = pathlib.Path({str(state)!r})\n"
        "n = int(state.read_text()) if state.exists() else 0\n"
        "state.write_text(str(n + 1))\n"
        "if n < 2:\n    sys.exit('modem not ready')\n"
        f"open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    queue = ActionQueue(CommandAction([sys.executable, str(script)], timeout_s=20.0), tmp_path / "spool",
                        retry_s=0.05, retry_max_s=0.1)
    try:
        queue.submit({"type": "event", "id": 7})
        assert wait_delivered([queue], 30.0)
    finally:
        queue.close()
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [7]
    assert queue.failures == 2


def test_hanging_command_is_killed_after_its_timeout(tmp_path):
    action = CommandAction([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.3)
    from edge_runtime.actions import DeliveryError

    with pytest.raises(DeliveryError, match="no exit within 0.3 s; killed"):
        action.deliver(b"{}")


def test_failures_are_logged_through_the_rate_limiter(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    faults = LimitedLog(logging.getLogger("test.actions"), first=3, interval_s=3600)
    queue = ActionQueue(HttpAction("http://127.0.0.1:9/", timeout_s=0.2), tmp_path / "spool", retry_s=0.01,
                        retry_max_s=0.01, faults=faults)
    try:
        queue.submit({"type": "event"})
        assert wait_until(lambda: queue.failures > 10)
    finally:
        queue.close()
    assert queue.failures > 10
    assert faults.lines["action-http"] == 3  # many failures, three lines
