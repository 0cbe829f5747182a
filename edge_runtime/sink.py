"""The event sink: where the node's events and samples leave the loop.

The loop hands the sink three things and nothing else: every accepted frame's samples
(:meth:`EventSink.on_samples`), every classified window (:meth:`EventSink.on_window`) and
the records the detector declares or closes (:meth:`EventSink.emit`). The sink first
passes records through its *hold* (the second stage, which keeps an event's closing
record until the event's source class is known), then hands each to its *consumers* in
order: waveform snippets, the event file, alert actions, and whatever output is added
to the registry in :mod:`edge_runtime.outputs`.

A consumer (:class:`Consumer`) implements only the callbacks it needs, in the manner of
pyserial's ``threaded.Protocol``. Callbacks run on the loop's thread, between two
windows: a consumer that talks to a network or a slow disk must only queue there and do
its work on a thread of its own, behind a bounded queue (as
:class:`~edge_runtime.actions.ActionQueue` does), so it never delays a window.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from .logs import LimitedLog

log = logging.getLogger(__name__)


class Consumer:
    """One output of the node; every callback is optional (the defaults do nothing).

    Consumers are called in the order of the output registry. A consumer may add fields
    to a record for the consumers after it (the snippet writer names its files in the
    event before the event file writes it). A consumer that raises stops that record:
    the consumers after it do not get it, the failure is counted in the pipeline's
    ``errors`` and logged (rate-limited).
    """

    #: Short name, used in log lines.
    name = "consumer"

    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        """One accepted frame, in time order: ``(n, n_components)`` m/s^2 from ``t0_us`` (UTC us)."""

    def on_counts(self, t0_us: int, rate_hz: float, counts: np.ndarray) -> None:
        """The same frame as the board sent it: ``(n, n_components)`` int32 ADC counts, the raw
        data of miniSEED outputs (SeedLink, archive); m/s^2 = counts / ``[node] counts_per_mps2``."""

    def on_window(self, window) -> None:
        """One classified window (:class:`~edge_runtime.detector.Scored`)."""

    def on_trigger(self, record: dict) -> None:
        """A declared event (``type: trigger``), before ISO times are added."""

    def on_event(self, record: dict) -> None:
        """A closed event (``type: event``), before ISO times are added."""

    def tick(self, now_s: float) -> None:
        """Once per turn of the loop (monotonic time ``now_s``): retries, timers."""

    def counters(self) -> dict:
        """Entries for the node's status file (keys unique across consumers)."""
        return {}

    def close(self) -> None:
        """The node is stopping: deliver or keep what is held, stop threads."""


def _overrides(consumer: Consumer, method: str) -> bool:
    consumer = getattr(consumer, "inner", consumer)  # a Queued consumer wants what it wraps wants
    return getattr(type(consumer), method) is not getattr(Consumer, method)


class Queued(Consumer):
    """Another consumer run on a thread of its own, behind a bounded queue.

    The loop only enqueues (records are copied first); the wrapped consumer's callbacks
    run on the worker, in order, and its :meth:`~Consumer.tick` runs there whenever the
    queue has been empty for ``tick_s``. A full queue (the output far behind, or hung)
    drops the item and counts it in ``<name>_dropped``: the loop never waits for an output.

    Parameters
    ----------
    inner : Consumer
        The output (a network client, an archive writer).
    maxsize : int
        Items waiting at most.
    tick_s : float
        Period of the wrapped consumer's ``tick`` when idle, s.
    close_timeout_s : float
        At shutdown, longest wait for the worker to finish what is queued, s.
    """

    def __init__(self, inner: Consumer, maxsize: int = 1024, tick_s: float = 0.5,
                 close_timeout_s: float = 2.0):
        self.inner = inner
        self.name = inner.name
        self.tick_s = tick_s
        self.close_timeout_s = close_timeout_s
        self.dropped = 0
        self._faults = LimitedLog(log)
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._work, name=f"output-{self.name}", daemon=True)
        self._thread.start()

    def _put(self, method: str, *args) -> None:
        try:
            self._queue.put_nowait((method, args))
        except queue.Full:
            self.dropped += 1

    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        self._put("on_samples", t0_us, rate_hz, samples_mps2)

    def on_counts(self, t0_us: int, rate_hz: float, counts: np.ndarray) -> None:
        self._put("on_counts", t0_us, rate_hz, counts)

    def on_window(self, window) -> None:
        self._put("on_window", window)

    def on_trigger(self, record: dict) -> None:
        self._put("on_trigger", dict(record))

    def on_event(self, record: dict) -> None:
        self._put("on_event", dict(record))

    def counters(self) -> dict:
        return {**self.inner.counters(), f"{self.name}_dropped": self.dropped}

    def close(self) -> None:
        try:
            self._queue.put((None, ()), timeout=self.close_timeout_s)
        except queue.Full:
            log.error("%s: output still %d items behind at shutdown; they are dropped", self.name,
                      self._queue.qsize())
        self._thread.join(self.close_timeout_s)

    def _work(self) -> None:
        while True:
            try:
                method, args = self._queue.get(timeout=self.tick_s)
            except queue.Empty:
                method, args = "tick", (time.monotonic(),)
            try:
                if method is None:
                    self.inner.close()
                    return
                getattr(self.inner, method)(*args)
            except Exception:  # an output's bug must not end its worker
                self._faults(logging.ERROR, f"output-{self.name}", "%s: %s failed", self.name, method,
                             exc_info=True)


class EventSink:
    """The hold and the consumers, fed by the loop.

    Parameters
    ----------
    consumers : list of Consumer
        In calling order.
    hold : SecondStage, optional
        Keeps closing records until their source class is known
        (:class:`~edge_runtime.second_stage.SecondStage`): fed every frame's samples,
        every batch of records, polled every turn and closed first at shutdown.
    faults : LimitedLog
        The node's rate limiter.
    count_error : callable
        Called once per record a consumer failed to take (the pipeline's ``errors``).
    """

    def __init__(self, consumers: list, hold=None, faults=None, count_error=None):
        self.consumers = list(consumers)
        self.hold = hold
        self.faults = faults or LimitedLog(log)
        self.count_error = count_error or (lambda: None)
        self._sample_consumers = [c for c in self.consumers if _overrides(c, "on_samples")]
        self._count_consumers = [c for c in self.consumers if _overrides(c, "on_counts")]
        self._window_consumers = [c for c in self.consumers if _overrides(c, "on_window")]

    @property
    def wants_samples(self) -> bool:
        """Whether anything reads the samples (else the loop need not hand them over)."""
        return self.hold is not None or bool(self._sample_consumers)

    @property
    def wants_counts(self) -> bool:
        """Whether anything reads the raw counts (miniSEED outputs)."""
        return bool(self._count_consumers)

    @property
    def wants_windows(self) -> bool:
        return bool(self._window_consumers)

    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        for consumer in self._sample_consumers:
            consumer.on_samples(t0_us, rate_hz, samples_mps2)
        if self.hold is not None:  # a deque append; the record is classified on its own thread
            self.hold.add(t0_us, rate_hz, samples_mps2)

    def on_counts(self, t0_us: int, rate_hz: float, counts: np.ndarray) -> None:
        for consumer in self._count_consumers:
            consumer.on_counts(t0_us, rate_hz, counts)

    def on_window(self, window) -> None:
        for consumer in self._window_consumers:
            consumer.on_window(window)

    def emit(self, records: list[dict]) -> None:
        """Records from the detector: through the hold, then to every consumer in order."""
        if self.hold is not None:
            records = self.hold.process(records)  # holds a closing record until its class is known
        for record in records:
            self._hand_on(record)

    def _hand_on(self, record: dict) -> None:
        trigger = record.get("type") == "trigger"
        for consumer in self.consumers:
            try:
                (consumer.on_trigger if trigger else consumer.on_event)(record)
            except Exception:  # a record one output cannot take must not stop the node
                self.count_error()
                self.faults(logging.ERROR, "event", "%s: event could not be written: %r", consumer.name,
                            record, exc_info=True)
                return

    def tick(self, now_s: float) -> None:
        """Once per turn: consumers' retries, then records the hold has released."""
        for consumer in self.consumers:
            consumer.tick(now_s)
        if self.hold is not None:
            for record in self.hold.poll():
                self._hand_on(record)

    def counters(self) -> dict:
        out = {}
        for consumer in self.consumers:
            out.update(consumer.counters())
        out["second_stage"] = self.hold.to_dict() if self.hold is not None else None
        return out

    def close(self) -> None:
        """Release what the hold keeps (classified or not), then close every consumer in order."""
        if self.hold is not None:
            for record in self.hold.close():
                self._hand_on(record)
        for consumer in self.consumers:
            consumer.close()
