"""The status page ([web]): its bounded buffers, its endpoints, hostile requests, a real
browser and a real node.

The buffers are checked against numpy (each bin's min and max), the endpoints with urllib
against a server on an ephemeral port of 127.0.0.1, hostile requests with raw sockets (the
server answers 4xx and goes on serving), and a client that never reads must not hold the
loop's side for a moment. Then headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium) loads the page, the traces are drawn on the canvas and a new event
appears without a reload; and a node process reading a pty serves its own page.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import ConfigError, read_toml
from edge_runtime.detector import Scored
from edge_runtime.network.web import MAX_BINS, StatusBoard, StatusServer, TraceRing, WebOutput

T0_US = 1_767_225_600_000_000  # 2026-01-01 00:00:00 UTC
RATE_HZ = 100.0
COMPONENTS = ("E", "N", "Z")
INSTALL_CHROMIUM = ("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install chromium chromium-driver (make test installs them)")


def quake(seconds: float, seed: int = 0, onset_s: float | None = None) -> np.ndarray:
    """(n, 3) m/s^2 at 100 Hz: noise on gravity, with a decaying 5 Hz burst from ``onset_s``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE_HZ)
    x = rng.normal(0.0, 2e-4, (n, 3))
    x[:, 2] += 9.80665
    if onset_s is not None:
        t = np.arange(n) / RATE_HZ - onset_s
        on = t >= 0
        x[on] += (0.05 * np.exp(-t[on] / 5.0) * np.sin(2 * np.pi * 5.0 * t[on]))[:, None]
    return x


def feed(board: StatusBoard, samples: np.ndarray, t0_us: int = T0_US, frame: int = 10) -> None:
    for k in range(0, len(samples), frame):
        board.add_samples(t0_us + round(k * 1e6 / RATE_HZ), RATE_HZ, samples[k:k + frame])


def trigger(start_us: int, **extra) -> dict:
    return {"type": "trigger", "station": "ST01", "start_us": start_us, "end_us": start_us + 500_000,
            "p_time_us": start_us - 300_000, "p_prob": 0.91, "s_time_us": None, "s_prob": 0.0,
            "pga_mps2": 0.04, "n_windows": 3, "model": "EarthquakeCNN", **extra}


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def raw(address: tuple, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``request`` as is on a new connection; everything the server sends until it closes."""
    with socket.create_connection(address, timeout=timeout_s) as sock:
        try:
            if request:
                sock.sendall(request)
        except OSError:  # the server answered and closed before reading it all
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


@pytest.fixture
def served():
    board = StatusBoard(COMPONENTS, trace_s=60, points_per_s=10, windows=100, events=5)
    server = StatusServer(board, "127.0.0.1:0", max_clients=4)
    yield board, server
    server.close()


# ------------------------------------------------------------------ buffers
def test_trace_bins_hold_each_bins_min_and_max():
    ring = TraceRing(3, span_s=60, bins_per_s=10)
    x = quake(30, onset_s=10)
    x[1234, 1] = 0.5  # a spike between two display points
    for k in range(0, len(x), 7):  # 7-sample frames: bins cut across frames
        ring.add(T0_US + k * 10_000, RATE_HZ, x[k:k + 7])
    bins, lo, hi = ring.since(None)
    assert len(bins) == 300 and np.all(np.diff(bins) == 1) and bins[0] == T0_US // 100_000
    per_bin = x.reshape(300, 10, 3)
    np.testing.assert_allclose(lo, per_bin.min(axis=1).T.astype(np.float32))
    np.testing.assert_allclose(hi, per_bin.max(axis=1).T.astype(np.float32))
    assert hi[1].max() == pytest.approx(0.5)
    later, _, _ = ring.since(int(bins[-10]) * ring.bin_us)
    assert list(later) == list(bins[-9:])


def test_trace_ring_memory_is_fixed_and_keeps_the_last_span():
    ring = TraceRing(3, span_s=60, bins_per_s=10)
    arrays = (ring.bins, ring.lo, ring.hi)
    x = quake(200)
    for k in range(0, len(x), 10):
        ring.add(T0_US + k * 10_000, RATE_HZ, x[k:k + 10])
    bins, lo, _ = ring.since(None)
    assert ring.count == ring.size == 600 and len(bins) == 600 and lo.shape == (3, 600)
    assert bins[-1] == (T0_US + 199_990_000) // 100_000 and bins[0] == bins[-1] - 599
    assert all(a is b for a, b in zip(arrays, (ring.bins, ring.lo, ring.hi), strict=True))  # never grown
    with pytest.raises(ValueError, match="at most"):
        TraceRing(3, span_s=MAX_BINS, bins_per_s=10)


def test_a_gap_leaves_no_bins_and_a_clock_going_back_starts_again():
    ring = TraceRing(3, span_s=60, bins_per_s=10)
    ring.add(T0_US, RATE_HZ, quake(1))
    ring.add(T0_US + 20_000_000, RATE_HZ, quake(1))  # 19 s without frames
    bins, _, _ = ring.since(None)
    assert len(bins) == 20 and bins[10] - bins[9] == 191
    ring.add(T0_US - 3_600_000_000, RATE_HZ, quake(1))  # the board's clock an hour back
    bins, _, _ = ring.since(None)
    assert len(bins) == 10 and ring.restarts == 1 and bins[0] == (T0_US - 3_600_000_000) // 100_000


def test_windows_and_events_are_bounded_and_a_close_replaces_its_trigger():
    board = StatusBoard(COMPONENTS, windows=100, events=5)
    for k in range(1000):
        board.add_window(T0_US + k * 250_000, {"noise": 0.9, "P": 0.05, "S": 0.05}, 1e-3)
    assert len(board.windows) == 100 and board.windows[0][0] == T0_US + 900 * 250_000
    for k in range(20):
        board.add_record(trigger(T0_US + k * 60_000_000))
    board.add_record(dict(trigger(T0_US + 19 * 60_000_000), type="event", event_id="ST01-x", s_time_us=T0_US,
                          s_prob=0.8, data=np.zeros(10)))  # fields the page does not show are left out
    events = json.loads(board.events_body())
    assert len(events["events"]) == 5 and events["version"] == 21
    newest = events["events"][0]
    assert newest["type"] == "event" and newest["event_id"] == "ST01-x" and "data" not in newest
    assert [p["phase"] for p in events["picks"][:2]] == ["P", "S"]


# ------------------------------------------------------------------ endpoints
def test_endpoints_answer_json_and_the_page_needs_nothing_from_outside(served):
    board, server = served
    feed(board, quake(90))  # more than the 60 s span
    board.add_window(T0_US + 1_000_000, {"noise": 0.2, "P": 0.7, "S": 0.1}, 0.01)
    board.add_window(T0_US + 1_250_000, {"noise": 0.1, "P": 0.2, "S": 0.7}, 0.02)
    board.add_record(trigger(T0_US + 2_000_000))
    board.set_status({"station": "ST01", "pipeline": {"frames": 900}, "rate": float("nan")}, T0_US)

    code, headers, body = get(server.url + "/api/status")
    status = json.loads(body)
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert status["node"]["pipeline"]["frames"] == 900 and status["node"]["rate"] is None  # NaN: null
    assert status["last_sample_us"] == T0_US + 89_990_000 and 0 <= status["last_sample_age_s"] < 60
    traces = json.loads(get(server.url + "/api/traces")[2])
    assert traces["components"] == list(COMPONENTS) and traces["bin_us"] == 100_000
    assert len(traces["bins"]) == 600 and len(traces["min"]) == 3 and len(traces["max"][2]) == 600
    assert min(traces["min"][2]) > 9.7 and max(traces["max"][2]) < 9.9
    after = traces["bins"][-5] * 100_000
    assert json.loads(get(f"{server.url}/api/traces?after_us={after}")[2])["bins"] == traces["bins"][-4:]
    windows = json.loads(get(f"{server.url}/api/windows?after_us={T0_US + 1_000_000}")[2])
    assert windows == {"classes": ["noise", "P", "S"], "center_us": [T0_US + 1_250_000],
                       "probs": [[0.1, 0.2, 0.7]], "peak_mps2": [0.02]}
    assert json.loads(get(server.url + "/api/events")[2])["events"][0]["start_us"] == T0_US + 2_000_000

    code, headers, page = get(server.url + "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    for asset in ("app.js", "style.css"):
        assert f'"{asset}"' in page.decode() and get(f"{server.url}/{asset}")[0] == 200
    for name in ("index.html", "app.js", "style.css"):  # no CDN, no web font, no outside address
        text = get(server.url + ("/" if name == "index.html" else f"/{name}"))[2].decode()
        assert "http://" not in text and "https://" not in text and "@import" not in text


def test_output_takes_windows_events_and_the_nodes_status_on_its_tick(served):
    board, server = served
    taken = []

    def status():
        taken.append(1)
        return {"station": "ST01", "uptime_s": len(taken)}

    output = WebOutput(board, server, status, status_every_s=1.0)
    output.on_samples(T0_US, RATE_HZ, quake(1))
    output.on_window(Scored(T0_US, {"noise": 0.5, "P": 0.5}, 0.1, data=np.zeros((3, 200))))
    output.on_trigger(trigger(T0_US))
    output.on_samples(T0_US, RATE_HZ, np.zeros((7, 2)))  # a wrong shape: logged, never raised
    for now_s in (10.0, 10.5, 11.0):
        output.tick(now_s)
    assert len(taken) == 2
    assert json.loads(board.status_body())["node"]["uptime_s"] == 2
    assert output.counters()["web"]["listen"] == f"127.0.0.1:{server.address[1]}"


def test_listen_is_checked_in_the_config_and_a_port_in_use_is_one_line(served, tmp_path):
    board, server = served
    config = tmp_path / "node.toml"
    config.write_text('[web]\nlisten = "localhost"\n')
    with pytest.raises(ConfigError, match=r"\[web\] listen = 'localhost': must be host:port"):
        read_toml(config)
    with pytest.raises(ValueError, match=r"^web: cannot listen on 127\.0\.0\.1:\d+: Address already in use$"):
        StatusServer(board, f"127.0.0.1:{server.address[1]}")
    with pytest.raises(ValueError, match="cannot listen on 192.0.2.1:8080"):  # not this machine's address
        StatusServer(board, "192.0.2.1:8080")


# ------------------------------------------------------------------ hostile requests and slow clients
@pytest.mark.parametrize("request_bytes, code", [
    (b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
    (b"GET /api/nothing HTTP/1.1\r\n\r\n", b"404"),
    (b"GET /api/traces?after_us=soon HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /api/traces?a=1&b=2&c=3&d=4&e=5 HTTP/1.1\r\n\r\n", b"400"),
    (b"POST /api/status HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"501"),
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"\x00\xff" * 500 + b"\r\n\r\n", b"400"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET / HTTP/1.1\r\nX-Long: " + b"b" * 70_000 + b"\r\n\r\n", b"431"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % k for k in range(150)) + b"\r\n", b"431"),
])
def test_hostile_requests_get_4xx_and_the_server_goes_on(served, request_bytes, code):
    board, server = served
    answer = raw(server.address, request_bytes)
    assert answer.split(b" ")[1] == code, answer[:200]
    assert get(server.url + "/api/status")[0] == 200
    assert server.counts["bad_requests"] >= 1


def test_connections_beyond_max_clients_get_503_until_one_ends(served):
    board, server = served
    idle = [socket.create_connection(server.address, timeout=10) for _ in range(4)]  # send nothing
    try:
        answer = raw(server.address, b"")  # refused before it could ask
        assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
        assert server.counts["refused"] == 1
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 30
    while get(server.url + "/api/status")[0] != 200:
        assert time.monotonic() < deadline, "the server did not serve again once the idle clients left"
        time.sleep(0.05)


def unsent_bytes(server: tuple, client: tuple) -> int:
    """Bytes in the kernel's send queue of the server's end of the IPv4 connection from
    ``client`` to ``server`` (both ``(host, port)``): /proc/net/tcp's tx_queue."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()  # local and remote address:port in hex, then state, tx_queue:rx_queue
        if fields[1].endswith(f":{server[1]:04X}") and fields[2].endswith(f":{client[1]:04X}"):
            return int(fields[4].split(":")[0], 16)
    return 0


def test_a_client_that_never_reads_never_delays_the_loop():
    board = StatusBoard(COMPONENTS, trace_s=600, points_per_s=120)  # the largest ring: MAX_BINS
    samples = np.random.default_rng(0).normal(0, 1e-3, (1000, 3))
    for k in range(600):  # 600 s at 1000 Hz: 72,000 bins, about 5 MB of JSON
        board.add_samples(T0_US + k * 1_000_000, 1000.0, samples)
    server = StatusServer(board, "127.0.0.1:0")
    stuck = socket.socket()
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(server.address)
        stuck.sendall(b"GET /api/traces HTTP/1.1\r\n\r\n")  # and never reads the answer
        # Bytes of the answer waiting in the server's send queue: its thread is now blocked
        # writing the rest (about 5 MB) to a client that reads nothing.
        deadline = time.monotonic() + 30
        while unsent_bytes(server.address, stuck.getsockname()) == 0:
            assert time.monotonic() < deadline, "the server did not start answering within 30 s"
            time.sleep(0.02)
        # A loop blocked by the page would never return; one that is merely slow (a loaded
        # machine) does, so the test waits for the loop in a thread instead of timing calls.
        loop = threading.Thread(target=lambda: [board.add_samples(T0_US + k * 1_000_000, 1000.0, samples)
                                                for k in range(600, 700)], daemon=True)
        loop.start()
        loop.join(60)
        assert not loop.is_alive(), "100 s of samples did not go in within 60 s: the page blocks the loop"
        assert unsent_bytes(server.address, stuck.getsockname()) > 0  # the page was still stuck meanwhile
        assert get(server.url + "/api/status")[0] == 200
    finally:
        stuck.close()
        server.close()


# ------------------------------------------------------------------ a real browser
def chrome(tmp_path):
    """Headless Chromium under Selenium, a fresh profile in ``tmp_path``; fails naming the install."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.fail(INSTALL_CHROMIUM)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser test needs selenium: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1400", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def text_of(driver, selector: str) -> str:
    """Text of the element ``selector`` selects ("" when none), read in one script: the page
    replaces its rows as it redraws, so an element found in one call may be gone in the next."""
    return driver.execute_script("const e = document.querySelector(arguments[0]);"
                                 "return e ? e.textContent : '';", selector)


COUNT_INKED_PIXELS = """
const c = document.getElementById(arguments[0]);
const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
return n;
"""


def test_browser_draws_the_traces_and_shows_a_new_event_without_a_reload(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    board = StatusBoard(COMPONENTS, trace_s=120)
    feed(board, quake(100, onset_s=60))
    for k in range(40):
        board.add_window(T0_US + 60_000_000 + k * 250_000, {"noise": 0.1, "P": 0.8, "S": 0.1}, 0.05)
    board.set_status({"station": "ST01", "uptime_s": 100.0, "pipeline": {"frames": 1000}}, T0_US)
    server = StatusServer(board, "127.0.0.1:0")
    driver = chrome(tmp_path)
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 30, poll_frequency=0.1)
        wait.until(lambda d: int(d.find_element(By.ID, "traces").get_attribute("data-columns") or 0) > 0)
        assert driver.execute_script(COUNT_INKED_PIXELS, "traces") > 2000
        assert int(driver.find_element(By.ID, "probs").get_attribute("data-points")) == 40
        assert driver.find_element(By.ID, "station").text == "ST01"
        assert driver.find_element(By.ID, "no-events").is_displayed()
        driver.execute_script("window.notReloaded = true;")

        start_us = T0_US + 60_500_000
        board.add_record(trigger(start_us))
        row = f'#events tr[data-start-us="{start_us}"]'
        wait.until(lambda d: "open" in text_of(d, row))  # the page redraws: read in one script
        board.add_record(dict(trigger(start_us), type="event", s_time_us=start_us + 5_000_000, s_prob=0.8))
        wait.until(lambda d: "closed" in text_of(d, row))
        assert driver.execute_script(
            "return [...document.querySelectorAll('#picks li')].map(li => li.textContent[0]);") == ["P", "S"]
        assert driver.execute_script("return window.notReloaded === true;")

        feed(board, quake(5, seed=3), t0_us=T0_US + 100_000_000)  # the traces go on, live
        wait.until(lambda d: "00:01:44" in text_of(d, "#clock"))
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
        assert loaded and all(u.startswith(server.url) for u in loaded), loaded
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
        server.close()


# ------------------------------------------------------------------ a real node
def test_node_serves_its_status_page(tiny_model, tmp_path):
    """``[web] listen`` on a node reading a pty: /api/status answers and the traces fill."""
    from _helpers import start_node, wait_frames, wait_ready, wait_status
    from conftest import running, stop

    from edge_runtime.protocol import encode_frame
    from tools.replay.pty import open_pty
    from tools.replay.sender import Writer

    config = tmp_path / "node.toml"
    config.write_text('[node]\nstation = "ST01"\n\n[web]\nlisten = "127.0.0.1:0"\n')
    counts = (np.random.default_rng(5).normal(0, 300, size=(2000, 3))).astype(np.int32)
    pty = open_pty()
    proc = start_node(tiny_model["sim"], pty.port, tmp_path, "--config", str(config))
    with running(proc, pty):
        wait_ready(tmp_path, proc)
        status = wait_status(tmp_path / "status.json", proc, lambda s: "web" in s, "open its status page")
        host, port = status["web"]["listen"].rsplit(":", 1)
        assert host == "127.0.0.1"
        writer = Writer(pty, speed=0)
        for i, k in enumerate(range(0, len(counts), 10)):  # 20 s of 10-sample frames
            writer.send(encode_frame(i, T0_US + k * 10_000, RATE_HZ, counts[k:k + 10]), 0)
        wait_frames(tmp_path / "status.json", proc, 200)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # the page takes the node's status once a second, the samples each half second
            page_status = json.loads(get(url + "/api/status")[2])
            if (page_status["node"] or {}).get("pipeline", {}).get("frames", 0) >= 200 \
                    and (page_status.get("last_sample_us") or 0) >= T0_US + 19_990_000:
                break
            assert time.monotonic() < deadline, f"the page never showed the 200 frames: {page_status}"
            time.sleep(0.1)
        assert page_status["node"]["station"] == "ST01"
        assert page_status["last_sample_us"] == T0_US + 19_990_000
        traces = json.loads(get(url + "/api/traces")[2])
        assert traces["components"] == ["E", "N", "Z"] and len(traces["bins"]) == 200
        assert traces["bins"][0] == T0_US // 100_000
        assert all(np.isfinite(v).all() for v in traces["max"])
        windows = json.loads(get(url + "/api/windows")[2])
        assert windows["classes"] and len(windows["center_us"]) > 0
        assert get(url + "/")[0] == 200
        output = stop(proc)
    assert proc.returncode == 0, output
    assert f"web: status page on http://127.0.0.1:{port}/" in output
