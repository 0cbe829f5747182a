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
    #: Whether contiguous frames may reach it joined into one (:func:`join_frames`), as
    #: :class:`Queued` hands them over when true: a consumer whose result does not depend
    #: on where frames were cut (a miniSEED packer).
    joins_frames = False

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


def join_frames(items: list) -> list:
    """``(method, args)`` items with runs of contiguous frames joined into one frame each.

    Two ``on_samples`` (or two ``on_counts``) frames join when the second starts within
    half a sample of where the first ends, at the same rate and with the same
    components: the joined frame starts at the first's time, as a consumer that keeps
    one stretch per gap (a miniSEED packer) would have placed the second one anyway.
    Other items are kept as they are, in order.
    """
    out, run = [], []  # run: contiguous frames of one method, not yet joined
    n = 0  # samples in the run

    def close_run():
        nonlocal n
        n = 0
        if len(run) == 1:
            out.append(run[0])
        elif run:
            method, (t0_us, rate_hz, _) = run[0]
            out.append((method, (t0_us, rate_hz, np.concatenate([a[2] for _, a in run]))))
        run.clear()

    for item in items:
        method, args = item
        if method not in ("on_samples", "on_counts"):
            close_run()
            out.append(item)
            continue
        if run:
            first_method, (t0_us, rate_hz, data) = run[0]
            t, r, d = args
            if not (method == first_method and r == rate_hz and d.shape[1:] == data.shape[1:]
                    and d.dtype == data.dtype and abs(t - (t0_us + n * 1e6 / rate_hz)) <= 0.5e6 / rate_hz):
                close_run()
        run.append(item)
        n += len(args[2])
    close_run()
    return out


class Queued(Consumer):
    """Another consumer run on a thread of its own, behind a bounded queue.

    The loop only appends (records are copied first) and hands what it appended over to
    the worker in batches: frames and windows once a turn of the loop
    (:meth:`EventSink.tick`) finds them there ``batch_s`` after the turn that first did,
    anything else (a trigger, an event) at once with the frames before it. One wake-up of
    the worker per batch instead of one per frame is what keeps an output's CPU small at
    real time. The wrapped consumer's callbacks run on the worker, in order, and its
    :meth:`~Consumer.tick` runs there whenever nothing has come for ``tick_s``. An output
    whose ``joins_frames`` is true gets each run of contiguous frames of a batch as one
    frame (:func:`join_frames`). Items waiting (appended, not yet done by the worker) are
    at most ``maxsize``: one more (the output far behind, or hung) is dropped and counted
    in ``<name>_dropped``: the loop never waits for an output.

    Parameters
    ----------
    inner : Consumer
        The output (a network client, an archive writer).
    maxsize : int
        Items (frames, windows, records) waiting at most.
    tick_s : float
        Period of the wrapped consumer's ``tick`` when idle, s.
    close_timeout_s : float
        At shutdown, longest wait for the worker to finish what is queued, s.
    batch_s : float
        Longest time a frame or window waits in the loop's batch before it is handed over, s.
    """

    #: Items appended without a tick before they are handed over anyway (a caller that never ticks).
    BATCH_ITEMS = 256
    #: What waits for the batch; anything else is handed over at once.
    BATCHED = frozenset({"on_samples", "on_counts", "on_window"})

    def __init__(self, inner: Consumer, maxsize: int = 1024, tick_s: float = 1.0,
                 close_timeout_s: float = 2.0, batch_s: float = 0.5):
        self.inner = inner
        self.name = inner.name
        self.maxsize = maxsize
        self.tick_s = tick_s
        self.close_timeout_s = close_timeout_s
        self.batch_s = batch_s
        self.dropped = 0
        self._faults = LimitedLog(log)
        self._join = bool(getattr(inner, "joins_frames", False))
        self._batch: list = []  # (method, args) appended by the loop, not yet handed over
        self._batch_seen_s: float | None = None  # the first hand_over(now_s) that saw them
        self._taken = 0  # items the loop accepted (written by the loop's thread only)
        self._done = 0  # items the worker finished (written by the worker only)
        self._queue: queue.Queue = queue.Queue()  # batches and wake-ups; items bounded by maxsize
        self._thread = threading.Thread(target=self._work, name=f"output-{self.name}", daemon=True)
        self._thread.start()

    def _put(self, method: str, *args) -> None:
        if self._taken - self._done >= self.maxsize:
            self.dropped += 1
            return
        self._taken += 1
        self._batch.append((method, args))
        if method not in self.BATCHED or len(self._batch) >= self.BATCH_ITEMS:
            self.hand_over()  # a record (or a subclass's own item) goes at once, with the frames before it

    def hand_over(self, now_s: float | None = None) -> None:
        """Give the batch to the worker: now, or with ``now_s`` (the loop's monotonic time,
        s) once ``batch_s`` has passed since a call with ``now_s`` first saw it."""
        if not self._batch:
            return
        if now_s is not None:
            if self._batch_seen_s is None:
                self._batch_seen_s = now_s
            if now_s - self._batch_seen_s < self.batch_s:
                return
        batch, self._batch, self._batch_seen_s = self._batch, [], None
        self._queue.put(("batch", batch))

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
        self.hand_over()
        self._queue.put((None, ()))
        self._thread.join(self.close_timeout_s)
        if self._thread.is_alive():
            log.error("%s: output still %d items behind at shutdown; they are dropped", self.name,
                      self._taken - self._done)

    def _work(self) -> None:
        while True:
            try:
                method, args = self._queue.get(timeout=self.tick_s)
            except queue.Empty:
                method, args = "tick", (time.monotonic(),)
            if method == "batch":
                self._run_batch(args)
                continue
            self._call(method, args)
            if method is None:
                return

    def _run_batch(self, batch: list) -> None:
        n = len(batch)
        for method, args in join_frames(batch) if self._join else batch:
            self._call(method, args)
        self._done += n

    def _call(self, method, args) -> None:
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
        self._queued = [c for c in self.consumers if isinstance(c, Queued)]

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
        for consumer in self._queued:
            consumer.hand_over(now_s)  # the frames of the last batch_s, in one wake-up of its worker
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
