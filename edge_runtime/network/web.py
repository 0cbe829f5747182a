"""The node's live status page (``[web] listen``): traces, class probabilities, events, health.

:class:`StatusBoard` keeps what the page shows in bounded buffers, filled on the loop's
thread: the minimum and maximum of each component per time bin over the last
``trace_s`` (:class:`TraceRing`), the class probabilities of the last ``windows``
windows, the last ``events`` events with their P and S picks, and the node's status,
taken once a second and kept as JSON text. Memory is fixed when the board is built.

:class:`StatusServer` serves the page (``web_static/``, read once at start, no outside
asset) and four JSON endpoints with the standard library's ``ThreadingHTTPServer`` on
threads of its own. A request only copies a snapshot under the board's lock, and the
loop only holds that lock for an append, so a slow or dead browser never delays a
window. Connections at once are bounded (one more is answered 503), a client that sends
nothing for ``CLIENT_TIMEOUT_S`` is closed, and a malformed request gets a 4xx.

Endpoints (docs/web.md):

* ``/api/status``: the node's status file as last taken, with the age of the last sample;
* ``/api/traces?after_us=T``: the bins after ``T`` (all held without it);
* ``/api/windows?after_us=T``: the class probabilities of the windows after ``T``;
* ``/api/events``: the recent events, newest first, and their picks;
* ``/api/poll?traces_after_us=T&windows_after_us=T&events_version=V``: the four in one
  answer (what the page asks once a second), the events only when their version is not ``V``.

Standard library and numpy only: the page needs no extra.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..logs import LimitedLog
from ..sink import Consumer, join_frames

log = logging.getLogger(__name__)

#: The page's files, served as they are (no build step).
STATIC = Path(__file__).with_name("web_static")
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}
#: A connection that sends no request this long is closed, s.
CLIENT_TIMEOUT_S = 15.0
#: Integer query parameters of the endpoints.
QUERY_INTS = ("after_us", "traces_after_us", "windows_after_us", "events_version")
#: Bins the ring may hold at most (memory bound of the trace_s x points_per_s product).
MAX_BINS = 72_000
#: Headers of every answer: nothing from outside the node, no framing, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
# Fields of an event record the page shows (docs/events.md).
EVENT_FIELDS = ("type", "station", "start_us", "end_us", "p_time_us", "p_prob", "s_time_us", "s_prob",
                "pga_mps2", "n_windows", "event_id", "source_class", "source_prob", "closed_by", "time_fix")


def parse_listen(listen: str) -> tuple[str, int]:
    """``("127.0.0.1", 8080)`` from ``"127.0.0.1:8080"`` (``"[::1]:8080"`` for IPv6)."""
    host, sep, port = str(listen).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"[web] listen = {listen!r}: expected host:port, like 127.0.0.1:8080")
    return host, int(port)


def _floats_json(a: np.ndarray, chunk: int = 2048) -> str:
    """JSON array of ``a``'s rows (7 significant digits; NaN and infinities as null).

    Formatted ``chunk`` values at a time: one numpy call holds the interpreter's lock
    throughout, and the loop's thread must not wait for a whole trace being formatted. A
    short row (what a page polling once a second asks for) is formatted by Python's own
    ``%``, which costs less than a numpy call's set-up.
    """
    a = np.where(np.isfinite(a), a, np.nan).astype(np.float64)
    rows = []
    for row in np.atleast_2d(a):
        if len(row) <= 64:
            text = ",".join(["%.7g" % v for v in row.tolist()])
        else:
            text = ",".join(",".join(np.char.mod("%.7g", row[k:k + chunk]))
                            for k in range(0, len(row), chunk))
        rows.append("[" + text.replace("nan", "null") + "]")
    return "[" + ",".join(rows) + "]"


class TraceRing:
    """Minimum and maximum of each component per time bin, for the last ``span_s``.

    Parameters
    ----------
    n_components : int
        Components of each sample.
    span_s : float
        Time held, s.
    bins_per_s : float
        Bins per second: each keeps the min and max of its samples (the envelope a
        plot at this resolution draws), so a spike never falls between two points.
    """

    def __init__(self, n_components: int, span_s: float = 300.0, bins_per_s: float = 10.0):
        self.bin_us = max(1, round(1e6 / bins_per_s))
        self.size = max(1, math.ceil(span_s * bins_per_s))
        if self.size > MAX_BINS:
            raise ValueError(f"[web] trace_s x points_per_s = {self.size} bins: at most {MAX_BINS}")
        self.n_components = n_components
        self.bins = np.zeros(self.size, np.int64)  # bin number: UTC us // bin_us
        self.lo = np.zeros((self.size, n_components), np.float32)
        self.hi = np.zeros((self.size, n_components), np.float32)
        self.count = 0
        self.head = 0  # slot of the next bin
        self.restarts = 0  # times the board's clock went back and the ring started again

    @property
    def last_bin(self) -> int | None:
        return int(self.bins[(self.head - 1) % self.size]) if self.count else None

    def add(self, t0_us: int, rate_hz: float, samples: np.ndarray) -> None:
        """One frame: ``(n, n_components)`` samples from ``t0_us`` (UTC us) at ``rate_hz``."""
        samples = np.asarray(samples, np.float32).reshape(-1, self.n_components)
        if not len(samples):
            return
        times_us = t0_us + np.round(np.arange(len(samples)) * (1e6 / rate_hz)).astype(np.int64)
        ids = times_us // self.bin_us
        starts = np.concatenate(([0], np.flatnonzero(np.diff(ids)) + 1))
        lo = np.minimum.reduceat(samples, starts, axis=0)
        hi = np.maximum.reduceat(samples, starts, axis=0)
        ids = ids[starts]
        last = self.last_bin
        if last is not None and ids[0] < last:  # the board's clock went back: a new stream
            self.count = self.head = 0
            self.restarts += 1
        elif last is not None and ids[0] == last:  # the frame goes on in the last bin
            k = (self.head - 1) % self.size
            np.minimum(self.lo[k], lo[0], out=self.lo[k])
            np.maximum(self.hi[k], hi[0], out=self.hi[k])
            ids, lo, hi = ids[1:], lo[1:], hi[1:]
        ids, lo, hi = ids[-self.size:], lo[-self.size:], hi[-self.size:]
        slots = (self.head + np.arange(len(ids))) % self.size
        self.bins[slots], self.lo[slots], self.hi[slots] = ids, lo, hi
        self.head = (self.head + len(ids)) % self.size
        self.count = min(self.count + len(ids), self.size)

    def since(self, after_us: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the bins after ``after_us`` (UTC us) and within the span, oldest first.

        Returns
        -------
        bins : numpy.ndarray
            int64, (k,): bin numbers (start time = bin x ``bin_us``).
        lo, hi : numpy.ndarray
            float32, (n_components, k): minimum and maximum of each bin.
        """
        start = (self.head - self.count) % self.size  # the oldest bin; the ring is two slices
        if start + self.count <= self.size:
            parts = [slice(start, start + self.count)]
        else:
            parts = [slice(start, self.size), slice(0, self.head)]
        bins = np.concatenate([self.bins[p] for p in parts])
        first = bins[-1] - self.size + 1 if len(bins) else 0
        if after_us is not None:
            first = max(first, after_us // self.bin_us + 1)
        k = int(np.searchsorted(bins, first))  # bins are in time order (a clock going back clears)
        lo = np.concatenate([self.lo[p] for p in parts])[k:]
        hi = np.concatenate([self.hi[p] for p in parts])[k:]
        return bins[k:], lo.T.copy(), hi.T.copy()


def _ints_json(a: np.ndarray, chunk: int = 4096) -> str:
    """JSON array of the integers ``a``, formatted ``chunk`` at a time (see :func:`_floats_json`)."""
    return "[" + ",".join(",".join(map(str, a[k:k + chunk].tolist())) for k in range(0, len(a), chunk)) + "]"


def _finite(value):
    """``value`` with every NaN and infinity (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _event_summary(record: dict) -> dict:
    """The fields of a trigger or event record the page shows, copied."""
    return {k: record[k] for k in EVENT_FIELDS if k in record}


def _picks(events: list[dict]) -> list[dict]:
    """P and S picks of ``events`` (newest first): phase, onset (UTC us), probability."""
    picks = []
    for e in events:
        for phase in ("P", "S"):
            onset = e.get(f"{phase.lower()}_time_us")
            if onset is not None:
                picks.append({"phase": phase, "time_us": onset, "prob": e.get(f"{phase.lower()}_prob"),
                              "event_start_us": e.get("start_us"), "station": e.get("station")})
    return picks


class StatusBoard:
    """What the page shows, in bounded buffers; filled by the loop, read by the server.

    Parameters
    ----------
    components : tuple of str
        Component codes in sample order (``("E", "N", "Z")``).
    trace_s : float
        Time of trace kept, s.
    points_per_s : float
        Bins per second of the trace (each a min and a max).
    windows : int
        Classified windows kept.
    events : int
        Events kept (a trigger and its closing record are one).
    """

    def __init__(self, components: tuple, trace_s: float = 300.0, points_per_s: float = 10.0,
                 windows: int = 1200, events: int = 50):
        self.components = tuple(components)
        self.trace_s = trace_s
        self.traces = TraceRing(len(self.components), trace_s, points_per_s)
        self.windows: deque = deque(maxlen=windows)  # (center_us, probs in class order, peak m/s^2)
        self.classes: tuple = ()
        self.events: OrderedDict = OrderedDict()  # (station, start_us) -> summary
        self.max_events = events
        self.events_version = 0  # +1 per record taken, so a page redraws only on change
        self.status_json = "null"
        self.status_taken_us: int | None = None
        self.last_sample_s: float | None = None  # monotonic time of the last frame
        self.last_sample_us: int | None = None  # UTC time of its last sample
        self._lock = threading.Lock()

    # ---------------------------------------------------------- the loop's side
    def add_samples(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        """One accepted frame, ``(n, n_components)`` m/s^2 from ``t0_us`` (UTC us)."""
        end_us = t0_us + round((len(samples_mps2) - 1) * 1e6 / rate_hz)
        with self._lock:
            self.traces.add(t0_us, rate_hz, samples_mps2)
            self.last_sample_s, self.last_sample_us = time.monotonic(), end_us

    def add_window(self, center_us: int, probs: dict, peak_mps2: float) -> None:
        """One classified window: its centre (UTC us), class -> probability, peak (m/s^2)."""
        classes = tuple(probs)
        row = (int(center_us), tuple(round(float(probs[c]), 4) for c in classes), round(float(peak_mps2), 6))
        with self._lock:
            if classes != self.classes:  # another model: its windows are another series
                self.windows.clear()
                self.classes = classes
            self.windows.append(row)

    def add_record(self, record: dict) -> None:
        """A trigger or closing record; the closing one replaces its trigger."""
        summary = _event_summary(record)
        key = (summary.get("station"), summary.get("start_us"))
        with self._lock:
            self.events.pop(key, None)
            self.events[key] = summary
            while len(self.events) > self.max_events:
                self.events.popitem(last=False)
            self.events_version += 1

    def set_status(self, status: dict, now_us: int) -> None:
        """The node's status at ``now_us`` (UTC us), encoded here: later changes cannot touch it."""
        try:
            text = json.dumps(status, default=str, allow_nan=False)
        except ValueError:  # a NaN or infinity somewhere: null, as a browser's JSON.parse needs
            text = json.dumps(_finite(status), default=str)
        with self._lock:
            self.status_json, self.status_taken_us = text, now_us

    # ---------------------------------------------------------- the server's side
    def status_body(self) -> str:
        with self._lock:
            text, taken_us = self.status_json, self.status_taken_us
            last_s, last_us = self.last_sample_s, self.last_sample_us
        age_s = None if last_s is None else round(time.monotonic() - last_s, 1)
        return (f'{{"taken_us":{json.dumps(taken_us)},"last_sample_us":{json.dumps(last_us)},'
                f'"last_sample_age_s":{json.dumps(age_s)},"components":{json.dumps(self.components)},'
                f'"node":{text}}}')

    def traces_body(self, after_us: int | None) -> str:
        with self._lock:
            bins, lo, hi = self.traces.since(after_us)
            restarts = self.traces.restarts
        return (f'{{"components":{json.dumps(self.components)},"bin_us":{self.traces.bin_us},'
                f'"span_s":{json.dumps(self.trace_s)},"restarts":{restarts},'
                f'"bins":{_ints_json(bins)},'
                f'"min":{_floats_json(lo)},"max":{_floats_json(hi)}}}')

    def windows_body(self, after_us: int | None) -> str:
        with self._lock:
            rows = [w for w in self.windows if after_us is None or w[0] > after_us]
            classes = self.classes
        return json.dumps({"classes": classes, "center_us": [r[0] for r in rows],
                           "probs": [list(r[1]) for r in rows], "peak_mps2": [r[2] for r in rows]},
                          separators=(",", ":"))

    def events_body(self, unless_version: int | None = None) -> str:
        """The recent events and picks; only ``{"version": V}`` when V is ``unless_version``."""
        with self._lock:
            version = self.events_version
            events = [] if version == unless_version else list(reversed(self.events.values()))
        if version == unless_version:
            return f'{{"version":{version}}}'
        return json.dumps({"version": version, "events": events, "picks": _picks(events)},
                          separators=(",", ":"), default=str)

    def poll_body(self, traces_after_us: int | None, windows_after_us: int | None,
                  events_version: int | None) -> str:
        """The page's one request a second: traces and windows after the times given, the
        events unless their version is ``events_version``, and the status."""
        return (f'{{"traces":{self.traces_body(traces_after_us)},'
                f'"windows":{self.windows_body(windows_after_us)},'
                f'"events":{self.events_body(events_version)},"status":{self.status_body()}}}')


class _Handler(BaseHTTPRequestHandler):
    """GET and HEAD of the page's files and the JSON endpoints; everything else is refused."""

    server_version = "SeismicTorchNode"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line
    timeout = CLIENT_TIMEOUT_S  # socket timeout: a silent client is closed

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        url = urlsplit(self.path)
        server: StatusServer = self.server.owner
        try:
            query = parse_qs(url.query, strict_parsing=False, max_num_fields=4)
            ints = {k: int(v[-1]) for k, v in query.items() if k in QUERY_INTS and v[-1] != ""}
        except ValueError:
            self.send_error(400, "after_us, traces_after_us, windows_after_us and events_version must be "
                                 "integers (times in UTC microseconds)")
            return
        found = server.body(url.path, ints)
        if found is None:
            self.send_error(404)
            return
        body, content_type = found
        self.log_request(200, len(body))
        # The status line, the headers send_response would add (Server, Date) and ours, and
        # the body in one write: one system call per answer, not one per part.
        head = "\r\n".join([f"{self.protocol_version} 200 OK", f"Server: {self.version_string()}",
                             f"Date: {self.date_time_string()}", f"Content-Type: {content_type}",
                             f"Content-Length: {len(body)}",
                             *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items())])
        self.wfile.write(head.encode("latin-1") + b"\r\n\r\n" + (body if send_body else b""))
        server.count("requests")

    def send_error(self, code, message=None, explain=None) -> None:
        self.server.owner.count("bad_requests")
        super().send_error(code, message, explain)

    def log_message(self, format, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("web: %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a bound on connections at once."""

    daemon_threads = True  # a hung client never holds the node's exit
    request_queue_size = 16

    def __init__(self, address: tuple, family: int, owner: StatusServer, max_clients: int):
        self.address_family = family
        self.owner = owner
        self.slots = threading.BoundedSemaphore(max_clients)
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.owner.count("refused")
            try:  # one short answer, never a wait
                request.setblocking(False)
                request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread could be started: the slot goes back
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        self.owner.faults(logging.WARNING, "web-request", "web: request from %s failed", client_address[0],
                          exc_info=True)


class StatusServer:
    """The page and its JSON endpoints over HTTP, on threads of their own.

    Parameters
    ----------
    board : StatusBoard
        What is shown.
    listen : str
        ``host:port``; port 0 picks a free one (:attr:`address` tells which).
    max_clients : int
        Connections at once; one more is answered 503 and closed.

    Raises
    ------
    ValueError
        An address that cannot be parsed or bound (in use, not this machine's): one line.
    """

    def __init__(self, board: StatusBoard, listen: str = "127.0.0.1:8080", max_clients: int = 16):
        self.board = board
        self.counts = {"requests": 0, "bad_requests": 0, "refused": 0}
        self.faults = LimitedLog(log)
        self._count_lock = threading.Lock()
        self._files = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in PAGES.items()}
        host, port = parse_listen(listen)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            self._httpd = _Server((host, port), family, self, max_clients)
        except OSError as exc:
            raise ValueError(f"web: cannot listen on {listen}: {exc.strerror or exc}") from None
        self.address = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 1.0},
                                        name="web", daemon=True)
        self._thread.start()
        log.info("web: status page on http://%s:%d/", *self.address)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def body(self, path: str, query=None) -> tuple[bytes, str] | None:
        """The answer to ``path`` (bytes, content type), or None for a path not served.

        ``query``: the request's integer parameters (:data:`QUERY_INTS`); an int is taken
        as ``after_us``.
        """
        if path in self._files:
            return self._files[path]
        query = {"after_us": query} if isinstance(query, int) else (query or {})
        after_us = query.get("after_us")
        board, kind = self.board, "application/json"
        if path == "/api/poll":
            return board.poll_body(query.get("traces_after_us"), query.get("windows_after_us"),
                                   query.get("events_version")).encode(), kind
        if path == "/api/status":
            return board.status_body().encode(), kind
        if path == "/api/traces":
            return board.traces_body(after_us).encode(), kind
        if path == "/api/windows":
            return board.windows_body(after_us).encode(), kind
        if path == "/api/events":
            return board.events_body().encode(), kind
        return None

    def count(self, what: str) -> None:
        with self._count_lock:
            self.counts[what] += 1

    def close(self) -> None:
        """Stop serving and release the port (connections in progress end with the process)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(2.0)


class WebOutput(Consumer):
    """The node's output feeding the status page; every callback is an append under a lock.

    Parameters
    ----------
    board : StatusBoard
    server : StatusServer
    status : callable, optional
        The node's status (``Node.status``), called from :meth:`tick` (the loop's thread).
    status_every_s : float
        Period of taking the status, s.
    """

    name = "web"

    def __init__(self, board: StatusBoard, server: StatusServer, status=None, status_every_s: float = 1.0,
                 batch_s: float = 0.5):
        self.board = board
        self.server = server
        self.status = status
        self.status_every_s = status_every_s
        self.batch_s = batch_s
        self._next_status_s = 0.0
        self._frames: list = []  # ("on_samples", (t0_us, rate_hz, samples)) not yet on the board
        self._frames_seen_s: float | None = None  # the first tick that saw them
        self._faults = server.faults

    def _guarded(self, what: str, update, *args) -> None:
        """``update(*args)``; a failure is logged (rate-limited), never raised into the loop."""
        try:
            update(*args)
        except Exception:  # the page must never cost the node a frame or a window
            self._faults(logging.ERROR, f"web-{what}", "web: %s not shown on the page", what, exc_info=True)

    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        # Kept and put on the board batch_s at a time: one binning of half a second costs
        # the loop what one frame's did, and the page asks once a second.
        self._frames.append(("on_samples", (t0_us, rate_hz, samples_mps2)))

    def _add_frames(self) -> None:
        frames, self._frames, self._frames_seen_s = self._frames, [], None
        for _, args in join_frames(frames):
            self._guarded("samples", self.board.add_samples, *args)

    def on_window(self, window) -> None:
        self._guarded("window", self.board.add_window, window.center_us, window.probs, window.peak_mps2)

    def on_trigger(self, record: dict) -> None:
        self._guarded("event", self.board.add_record, record)

    def on_event(self, record: dict) -> None:
        self._guarded("event", self.board.add_record, record)

    def tick(self, now_s: float) -> None:
        if self._frames:
            if self._frames_seen_s is None:
                self._frames_seen_s = now_s
            if now_s - self._frames_seen_s >= self.batch_s or len(self._frames) >= 256:
                self._add_frames()
        if now_s >= self._next_status_s:
            self._next_status_s = now_s + self.status_every_s
            self._guarded("status", self._take_status)

    def _take_status(self) -> None:
        status = self.status() if self.status is not None else {"web": self.counters()["web"]}
        self.board.set_status(status, time.time_ns() // 1000)

    def counters(self) -> dict:
        host, port = self.server.address
        return {"web": {"listen": f"{host}:{port}", **self.server.counts,
                        "trace_restarts": self.board.traces.restarts}}

    def close(self) -> None:
        self._add_frames()
        self.server.close()


def build_web_output(config, ctx) -> WebOutput:
    """The status page of ``config`` (``[web]``) for the model's components ``ctx.components``.

    Raises
    ------
    ValueError
        An address that cannot be bound, or buffers beyond the memory bound (one line).
    """
    board = StatusBoard(ctx.components, config.web_trace_s, config.web_points_per_s, config.web_windows,
                        config.web_events)
    server = StatusServer(board, config.web_listen, config.web_max_clients)
    return WebOutput(board, server, getattr(ctx, "status", None), batch_s=1.0)  # the page asks once a second
