"""One continuous record through the node's decisions, a chunk of windows at a time.

The node (:class:`edge_runtime.service.Pipeline`) cuts a window out of its ring buffer
whenever one is complete, classifies the windows of a frame in one call and hands each to
its detector. On a record the node takes as one unbroken stream (every frame accepted, no
hole, no clock step: see :func:`continuous`), the windows are known in advance: window ``j``
holds samples ``[j * n_step, j * n_step + n_window)`` and starts at ``start_us + start *
period_us``. :class:`ChunkedStream` cuts them as a strided view of the samples (the ring's
own values: counts / counts_per_mps2, float64), runs a batch through the node's own window
chain (``Pipeline.prepare``: one stacked matmul per window whichever the batch, the same
numbers), its own ``_plausible`` and its own model call (``backend.predict``), and feeds
the node's own :class:`~edge_runtime.detector.EventDetector` only where it can decide anything:

While no event is open and no triggering window is pending, a window that does not trigger
changes nothing in the detector but its look-back (``recent``: the windows of the last
``lookback_s`` since the last reset). Such windows are skipped; before the next triggering
window the look-back is rebuilt exactly as the skipped updates would have left it, and from
there every window goes to the detector until it is idle again. Events come out with the
same times, picks and probabilities as the node's.

The model itself runs only where a decision can read its output (unless ``classify_all``).
A window triggers only if its peak filtered acceleration reaches the detector's
``min_pga_mps2``, and every window the detector reads lies within ``lookback_s`` before or
``off_s`` after such a *candidate*: the look-back before the first triggering window, the
windows of an open event (it closes ``off_s`` after its last trigger). Windows outside
those spans (on a quiet day, nearly all) are counted but not classified; their class
would change no trigger, event, pick or probability. They are the
``windows_unclassified`` of the scan's statistics.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from edge_runtime.detector import Scored
from edge_runtime.preprocess import DEAD_PEAK_MPS2
from edge_runtime.ring import window_samples

BATCH_WINDOWS = 256  # windows per model call: ORT's cost per window is lowest near this batch
LOOKBACK_KEEP = 200  # the detector's look-back bound (EventDetector.recent's maxlen)


def window_batches(samples: np.ndarray, n_window: int, n_step: int, first: int = 0,
                   batch: int = BATCH_WINDOWS):
    """The windows of ``samples`` ``(C, n)`` starting at sample ``first`` and every ``n_step``
    after, ``batch`` at a time: ``(i, raw)`` with ``i`` the index of the batch's first window
    and ``raw`` ``(N, C, n_window)`` contiguous, as the node stacks its windows (one copy of a
    strided view of the samples)."""
    view = np.lib.stride_tricks.sliding_window_view(samples, n_window, axis=1)[:, first::n_step]
    for i in range(0, view.shape[1], batch):
        yield i, np.ascontiguousarray(view[:, i:i + batch].transpose(1, 0, 2))


class _Batch(NamedTuple):
    """A batch of windows after the look-back context kept from the one before it (itself
    a batch without context)."""

    centers: np.ndarray  # (n_ctx + N,) window centres, UTC us
    probs: np.ndarray  # (n_ctx + N, n_classes); a NaN row: not classified (yet)
    peak: np.ndarray  # (n_ctx + N,) peak filtered acceleration, m/s^2
    raw: np.ndarray  # (N, C, n_window) this batch's samples, m/s^2
    int16: np.ndarray  # (N, C, n_out) this batch's model inputs
    context: _Batch | None = None  # the n_ctx windows before, whose rows lead the first three

    @property
    def n_ctx(self) -> int:
        return 0 if self.context is None else len(self.context.raw)


def continuous(counts_shape, start_us: int, rate_hz: float, pipeline) -> bool:
    """Whether the node takes this record as one unbroken stream of windows.

    Every frame must pass the node's checks (channels, 2000-2100 time stamps, rate limits;
    digitized counts are never beyond the sensor's word) and the frames' time stamps must
    continue each other exactly, which they do when a sample period is a whole number of
    microseconds (:func:`tools.scan.frames.joinable`).
    """
    from edge_runtime.service import EARLIEST_US, LATEST_US

    from .frames import joinable

    n_channels, n = counts_shape
    config = pipeline.config
    end_us = start_us + int(round(n * 1e6 / rate_hz))
    return (n_channels == pipeline.n_components and joinable(rate_hz)
            and EARLIEST_US <= start_us and end_us <= LATEST_US
            and config.min_rate_hz <= rate_hz <= config.max_rate_hz)


class ChunkedStream:
    """The node's windows, classes and events of one continuous record, fed in chunks.

    Parameters
    ----------
    pipeline : edge_runtime.service.Pipeline
        A fresh node pipeline: its window chain, backend, detector and counters are used.
    rate_hz : float
        Sampling rate of the record (a whole-microsecond period), Hz.
    start_us : int
        Time of the record's first sample, UTC microseconds.
    classify_all : bool
        Run the model on every live window, as the node does, so that the pipeline's
        per-class window counts cover them all; by default only the windows a decision can
        read are classified (the events are the same either way).
    """

    def __init__(self, pipeline, rate_hz: float, start_us: int, classify_all: bool = False):
        self.pipeline = pipeline
        self.rate_hz = rate_hz
        self.start_us = start_us
        self.classify_all = classify_all
        self.period_us = int(round(1e6 / rate_hz))
        self.n_window, self.n_step = window_samples(pipeline.prep.window_s, pipeline.config.step_s, rate_hz)
        # As Window.center_us computes it: start + 0.5 * n * 1e6 / rate, truncated.
        self.half_us = 0.5 * self.n_window * 1e6 / rate_hz
        self.tail = None  # (C, k) samples after the last window start not yet cut, m/s^2
        self.tail_index = 0  # absolute index of tail's first sample
        self.next_start = 0  # absolute index of the next window's first sample
        det = pipeline.detector
        self.lookback_us = det.config.lookback_s * 1e6
        # The span around a candidate whose windows are classified; two steps of margin.
        margin_us = 2 * self.n_step * self.period_us
        self.before_us = self.lookback_us + margin_us
        self.after_us = det.config.off_s * 1e6 + margin_us
        self.classify_until_us = -np.inf  # windows centred up to here are classified (a candidate's span)
        self.noise = np.zeros(len(pipeline.classes))
        self.noise[pipeline.noise_index] = 1.0
        self.context: _Batch | None = None  # up to 200 windows before the batch

        pipeline.windows.rate_hz = rate_hz  # what counters() and the node report

    def push(self, samples_mps2: np.ndarray) -> list[dict]:
        """Add ``(C, m)`` samples (float64 m/s^2) continuing the record; return events declared."""
        if self.tail is not None:
            samples_mps2 = np.concatenate([self.tail, samples_mps2], axis=1)
        base = self.tail_index
        n_have = samples_mps2.shape[1]
        last_start = base + n_have - self.n_window  # the last start whose window is complete
        out = []
        if last_start >= self.next_start:
            starts = np.arange(self.next_start, last_start + 1, self.n_step)
            for i, raw in window_batches(samples_mps2, self.n_window, self.n_step, self.next_start - base):
                out += self._classify(raw, starts[i:i + len(raw)])
            self.next_start = int(starts[-1]) + self.n_step
        keep_from = min(self.next_start, base + n_have)
        self.tail = samples_mps2[:, keep_from - base:].copy()
        self.tail_index = keep_from
        return out

    def _classify(self, raw: np.ndarray, starts: np.ndarray) -> list[dict]:
        """One batch of windows through the node's window chain, counters and detector.

        As :meth:`Pipeline.classify` and :meth:`Pipeline._plausible`: a dead window (no
        signal) and a window beyond the sensor's full scale are noise without the model,
        the latter with its peak capped; the model's classes wait for :meth:`_detect`.
        """
        p = self.pipeline
        int16, peak = p.prepare(raw, self.rate_hz)
        live = peak > DEAD_PEAK_MPS2
        probs = np.full((len(peak), len(p.classes)), np.nan)  # NaN: not classified (yet)
        probs[~live] = self.noise
        probs, peak = p._plausible(probs, peak)  # counts them, sets them to noise, caps the peak
        p.window_classes["noise"] += int((live & ~np.isnan(probs[:, 0])).sum())  # the implausible ones
        n_live = int(live.sum())
        p.counts["windows"] += n_live
        p.counts["windows_dead"] += len(peak) - n_live
        window_start_us = self.start_us + starts * self.period_us
        centers = (window_start_us.astype(np.float64) + self.half_us).astype(np.int64)
        return self._detect(centers, probs, peak, raw, int16)

    def _model(self, idx: np.ndarray, b: _Batch) -> None:
        """Classify windows ``idx`` (of context + batch) with the node's model call, into
        ``b.probs``, and count their classes as the node does."""
        p = self.pipeline
        in_context, in_batch = idx[idx < b.n_ctx], idx[idx >= b.n_ctx] - b.n_ctx
        for rows, source, offset in ((in_context, b.context, 0), (in_batch, b, b.n_ctx)):
            if not len(rows):
                continue
            x = source.int16 if len(rows) == len(source.int16) else source.int16[rows]  # all: no copy
            probs = p.backend.predict(x)
            b.probs[rows + offset] = probs
            by_class = np.bincount(np.argmax(probs, axis=1), minlength=len(p.classes))
            for name, k in zip(p.classes, by_class.tolist(), strict=True):
                p.window_classes[name] += k

    def _needed(self, b: _Batch) -> np.ndarray:
        """Indices of the windows to classify now: every one not yet classified
        (``classify_all``), or those within a candidate's span (module docstring)."""
        pending = np.isnan(b.probs[:, 0])
        if self.classify_all:
            return np.flatnonzero(pending)
        candidates = b.centers[b.peak >= self.pipeline.detector.config.min_pga_mps2]
        inside = np.zeros(len(b.centers) + 1, dtype=np.int64)
        np.add.at(inside, np.searchsorted(b.centers, candidates - self.before_us, side="left"), 1)
        np.add.at(inside, np.searchsorted(b.centers, candidates + self.after_us, side="right"), -1)
        # the span of a candidate of an earlier batch reaching into this one
        span = (np.cumsum(inside[:-1]) > 0) | (b.centers <= self.classify_until_us)
        if len(candidates):
            self.classify_until_us = max(self.classify_until_us, int(candidates[-1] + self.after_us))
        return np.flatnonzero(span & pending)

    def _detect(self, centers, probs, peak, raw, int16) -> list[dict]:
        """Classify what a decision can read, then feed the detector every window it can
        decide on; skip the idle, quiet ones."""
        p = self.pipeline
        det = p.detector
        c = det.config
        ctx = self.context
        if ctx is not None:
            b = _Batch(np.concatenate([ctx.centers, centers]), np.concatenate([ctx.probs, probs]),
                       np.concatenate([ctx.peak, peak]), raw, int16, ctx)
        else:
            b = _Batch(centers, probs, peak, raw, int16)
        n_ctx = b.n_ctx
        ensure = self._needed(b)
        if len(ensure):
            self._model(ensure, b)
        with np.errstate(invalid="ignore"):  # windows not classified (NaN) never trigger
            hits = np.flatnonzero((1.0 - b.probs[n_ctx:, p.noise_index] >= c.trigger_prob)
                                  & (peak >= c.min_pga_mps2))
        out = []
        i, n = 0, len(centers)
        while i < n:
            if det.open is None and not det.pending:
                after = hits[hits >= i]
                if not len(after):
                    break
                i = int(after[0])
                det.recent = deque((self._scored(k, b) for k in self._lookback(i + n_ctx, b.centers)),
                                   maxlen=LOOKBACK_KEEP)
            out += p._count(det.update(self._scored(i + n_ctx, b)))
            i += 1
        self._keep_context(b)
        return out

    def _lookback(self, k: int, centers_all) -> range:
        """Indices of the windows the detector's look-back holds after window ``k - 1`` went by idle."""
        if k == 0:
            return range(0)
        first = int(np.searchsorted(centers_all[:k], centers_all[k - 1] - self.lookback_us, side="left"))
        return range(max(first, k - LOOKBACK_KEEP), k)

    def _scored(self, k: int, b: _Batch) -> Scored:
        if np.isnan(b.probs[k, 0]):
            self._late(k, b)
        data = b.context.raw[k] if k < b.n_ctx else b.raw[k - b.n_ctx]
        probs = dict(zip(self.pipeline.classes, b.probs[k].tolist(), strict=True))
        return Scored(int(b.centers[k]), probs, float(b.peak[k]), data, self.rate_hz)

    def _late(self, k: int, b: _Batch) -> None:
        """Classify window ``k`` now. Never reached (the detector reads only windows of a
        candidate's span, classified before it runs); if it were, decisions stay the node's."""
        self._model(np.array([k]), b)

    def _keep_context(self, b: _Batch) -> None:
        """The windows the next batch's first window may look back to. Their samples are a
        view of this batch's when the look-back lies in it (the batch, 1.2 MiB at 100 Hz, is
        kept until the next one instead of copying 200 windows of it every batch)."""
        k = len(b.centers)
        first = self._lookback(k, b.centers).start if k else 0
        if first >= b.n_ctx:
            raws, codes = b.raw[first - b.n_ctx:], b.int16[first - b.n_ctx:]
        else:
            raws = np.concatenate([b.context.raw[first:], b.raw])
            codes = np.concatenate([b.context.int16[first:], b.int16])
        self.context = _Batch(b.centers[first:].copy(), b.probs[first:].copy(), b.peak[first:].copy(),
                              raws, codes)
