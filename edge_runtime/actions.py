"""Alert actions per event: run a command, POST to a URL; never lost to an outage.

Each action has its own retry queue on disk (:class:`~edge_runtime.spool.Spool`): an
event is stored durably first, then delivered by a worker thread, and removed from the
queue only once delivered. A failed delivery (command exit status not 0, a timeout,
a network error, an HTTP status outside 2xx) is retried with exponential back-off, in
order, across restarts of the node. The hot path only appends to the queue: a slow
network never delays the next window.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from pathlib import Path

from .event_record import with_iso_times
from .logs import LimitedLog
from .sink import Consumer
from .spool import Spool

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """One failed attempt; the message says why in one line."""


class CommandAction:
    """Run ``argv`` with the event JSON on stdin; exit status 0 is success.

    Parameters
    ----------
    argv : list of str
        Program and arguments (no shell).
    timeout_s : float
        A run longer than this is killed and counts as failed.
    """

    name = "command"

    def __init__(self, argv: list, timeout_s: float = 10.0):
        self.argv = list(argv)
        self.timeout_s = timeout_s

    def deliver(self, payload: bytes) -> None:
        try:
            result = subprocess.run(self.argv, input=payload, capture_output=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise DeliveryError(f"{self.argv[0]}: no exit within {self.timeout_s:g} s; killed") from None
        except OSError as exc:
            raise DeliveryError(f"{self.argv[0]}: cannot run ({exc.strerror or exc})") from None
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise DeliveryError(f"{self.argv[0]}: exit status {result.returncode} {tail[0]}".rstrip())

    def __str__(self) -> str:
        return " ".join(self.argv)


class HttpAction:
    """POST the event JSON to ``url``; a 2xx answer is success.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` URL.
    timeout_s : float
        Connection and read timeout, s.
    """

    name = "http"

    def __init__(self, url: str, timeout_s: float = 5.0):
        self.url = url
        self.timeout_s = timeout_s

    def deliver(self, payload: bytes) -> None:
        # Imported here, not at the top: urllib.request pulls in http.client, email and ssl,
        # 7.6 MiB of the node's resident memory that a node without a URL never uses.
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url, data=payload, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(str(reason)) from None
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    def __str__(self) -> str:
        return self.url


class ActionQueue:
    """One action, its disk queue and the worker thread that drains it.

    Parameters
    ----------
    action : CommandAction or HttpAction
        What to do with each event.
    folder : str or Path
        The action's spool folder.
    retry_s, retry_max_s : float
        First and longest wait between attempts after a failure, s.
    faults : LimitedLog
        The node's rate limiter.
    """

    def __init__(self, action, folder, retry_s: float = 5.0, retry_max_s: float = 300.0,
                 faults: LimitedLog | None = None):
        self.action = action
        self.spool = Spool(folder)
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.faults = faults or LimitedLog(log)
        self.kind = f"action-{action.name}"
        self.delivered = 0
        self.failures = 0
        self.held: list[dict] = []  # events the spool could not store (disk full): kept in memory
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=self.kind, daemon=True)
        self._thread.start()

    def submit(self, event: dict) -> None:
        """Queue ``event`` (durably when the disk allows) and wake the worker."""
        with self._lock:
            self.held.append(event)
            self._store_held()
        self._wake.set()

    def _store_held(self) -> None:
        while self.held:
            try:
                self.spool.put(self.held[0])
            except OSError as exc:
                self.faults(logging.ERROR, "disk", "%s: cannot queue an alert on disk (%s); keeping %d in "
                            "memory", self.spool.folder, exc, len(self.held))
                return
            self.held.pop(0)

    def pending(self) -> int:
        return len(self.spool) + len(self.held)

    def _run(self) -> None:
        wait_s = self.retry_s
        while not self._stop.is_set():
            self._wake.clear()  # before looking, so a submit during the scan is not missed
            with self._lock:
                self._store_held()
            failed = False
            for rid, record in self.spool.pending():
                if self._stop.is_set():
                    return
                try:
                    self.action.deliver(json.dumps(record, sort_keys=True).encode())
                except DeliveryError as exc:
                    self.failures += 1
                    self.faults(logging.WARNING, self.kind, "alert %s failed (%s); %d queued, retrying in "
                                "%.1f s", self.action, exc, len(self.spool), wait_s)
                    failed = True
                    break
                except Exception:  # a bug in delivery must not kill the worker
                    self.failures += 1
                    self.faults(logging.ERROR, self.kind, "alert %s failed", self.action, exc_info=True)
                    failed = True
                    break
                self.spool.done(rid)
                self.delivered += 1
                if self.faults.failing(self.kind):
                    self.faults.recovered(self.kind, "alert %s delivered again", self.action)
            if failed:
                self._wake.wait(wait_s)
                wait_s = min(2 * wait_s, self.retry_max_s)
            else:
                wait_s = self.retry_s
                self._wake.wait(self.retry_max_s)  # a submit wakes it; otherwise look again now and then

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the worker; what is undelivered stays queued on disk for the next start."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def to_dict(self) -> dict:
        return {"target": str(self.action), "delivered": self.delivered, "failures": self.failures,
                "queued": self.pending()}


# Longest a stopping node waits for pending alerts (systemd's stop timeout is 90 s).
ACTIONS_GRACE_S = 3.0


def _command(config):
    return CommandAction(config.command, config.command_timeout_s) if config.command else None


def _http(config):
    return HttpAction(config.url, config.url_timeout_s) if config.url else None


# Kinds of alert action: spool sub-folder -> factory(config) returning the action, or None
# when the config does not ask for it. A new kind is a class with ``name``, ``deliver(bytes)``
# and ``__str__`` above, its keys in config.SETTINGS ([actions]) and one entry here.
ACTION_KINDS = {"command": _command, "http": _http}


def build_actions(config, faults: LimitedLog | None = None) -> list[ActionQueue]:
    """The action queues a :class:`~edge_runtime.config.NodeConfig` asks for."""
    queues = []
    for folder, factory in ACTION_KINDS.items():
        action = factory(config)
        if action is not None:
            queues.append(ActionQueue(action, Path(config.spool) / folder, config.retry_s, config.retry_max_s,
                                      faults))
    return queues


class AlertActions(Consumer):
    """The alert actions as an output of the sink: each closed event to every action queue.

    Parameters
    ----------
    queues : list of ActionQueue
        Possibly empty (the status file then shows ``actions: []``).
    grace_s : float
        At shutdown, longest wait for pending alerts; what is left stays queued on disk
        and goes out at the next start.
    """

    name = "actions"

    def __init__(self, queues: list, grace_s: float = ACTIONS_GRACE_S):
        self.queues = list(queues)
        self.grace_s = grace_s

    def on_event(self, event: dict) -> None:
        for queue in self.queues:
            queue.submit(json.loads(json.dumps(with_iso_times(event), default=str)))

    def counters(self) -> dict:
        return {"actions": [q.to_dict() for q in self.queues]}

    def close(self) -> None:
        # A last chance for alerts of events closed just now.
        wait_delivered(self.queues, self.grace_s)
        for queue in self.queues:
            queue.close()


def wait_delivered(queues, timeout_s: float) -> bool:
    """Block until every queue is empty or ``timeout_s`` passes (tests, shutdown)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(q.pending() == 0 for q in queues):
            return True
        time.sleep(0.05)
    return all(q.pending() == 0 for q in queues)
