"""The node's second stage: is a declared event an earthquake or an active source?

When the detector declares an event (a ``trigger`` line), the record around it -- its
length and the part before the onset come from the ``SpectrogramCNN`` model's metadata
(``extra["spectrogram"]``, see :class:`~edge_runtime.spectrogram.SpectrogramConfig`) --
is cut from the samples the node has received, turned into a spectrogram image and
classified by ``SpectrogramCNN``. The closed ``event`` line then carries
``source_class`` (``earthquake`` or ``active_source``), ``source_prob`` (the probability of
that class) and ``source_probs``.

Off the hot path: the image and the model run on one worker thread fed by a bounded
queue; the frame loop only appends samples to a buffer (a deque append per frame) and
checks, per frame, whether a waiting record is complete. onnxruntime and numpy's FFT
release the GIL, and the worker runs the model with one intra-op thread, so window
classification keeps its pace on a multi-core node. A closed event whose record is not
yet classified is held (at most ``wait_s`` of wall time after its record is complete,
then written with ``source_class: null`` and ``source_error``), so consumers see one
line per event, class included. A full queue (events faster than the worker) drops the
record and says so in the event; nothing blocks the frame loop.

Memory: SpectrogramCNN is 168 MB as float32; its dynamic int8 form
(``python -m quantization dynamic``) keeps ``fc1`` (41.8 M weights) in int8, about 42 MB.
The stage is off unless ``[node] source_model`` is set, so a small node does not pay for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import check_graph, load_backend, softmax
from .kinds import SOURCE_CLASSES, get_kind, kinds_of_stage, spectrogram_config

log = logging.getLogger(__name__)

__all__ = ["SOURCE_CLASSES", "SecondStage", "SourceClassifier"]


class SourceClassifier:
    """A record model (``SpectrogramCNN``) and the spectrogram config it was trained with.

    Parameters
    ----------
    path : str or Path
        Model file (any runtime of :data:`edge_runtime.backends.RUNTIMES`) with SeismicTorch
        metadata naming a ``"record"`` kind (:mod:`edge_runtime.kinds`).
    threads : int
        Runtime threads (1: one core).

    Raises
    ------
    ValueError
        One line naming the file and what does not fit.
    """

    def __init__(self, path, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such source model file")
        # Checked here, field by field, before the backend's own check of the graph.
        self.backend = load_backend(self.path, threads, check=False)
        self.metadata = self.backend.metadata
        if get_kind(self.metadata.model, str(self.path)).stage != "record":
            names = " or ".join(k.name for k in kinds_of_stage("record"))
            raise ValueError(f"{self.path}: a {self.metadata.model}, not a {names}; "
                             f"the second stage classifies records with {names}")
        if sorted(self.metadata.classes) != sorted(SOURCE_CLASSES):
            raise ValueError(f"{self.path}: classes {self.metadata.classes}, expected {list(SOURCE_CLASSES)}")
        try:
            self.config = spectrogram_config(self.metadata)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.path}: bad spectrogram metadata ({exc})") from None
        shape = list(self.backend.inputs[0].shape)
        if shape[1:] != [3, self.config.height, self.config.width]:
            raise ValueError(f"{self.path}: input shape {shape}, the spectrogram config makes "
                             f"(N, 3, {self.config.height}, {self.config.width})")
        check_graph(self.backend)
        self.model_input = get_kind(self.metadata.model).model_input

    @property
    def classes(self) -> list:
        return list(self.metadata.classes)

    def classify(self, record: np.ndarray, sampling_rate_hz: float) -> dict:
        """Class probabilities of one ``(3, n)`` record in m/s^2 (E, N, Z).

        Returns
        -------
        dict
            ``source_class``, ``source_prob``, ``source_probs`` ({class: p}).
        """
        x = self.model_input(np.asarray(record)[None], sampling_rate_hz, self.metadata, config=self.config)
        probs = softmax(np.asarray(self.backend.run(x), dtype=np.float64))[0]
        best = int(np.argmax(probs))
        return {"source_class": self.classes[best], "source_prob": round(float(probs[best]), 4),
                "source_probs": {c: round(float(p), 4) for c, p in zip(self.classes, probs, strict=True)}}


@dataclass
class _Job:
    key: int  # start_us of the event, shared by its trigger and its closing line
    start_us: int
    end_us: int
    submitted: bool = False
    result: dict | None = None
    complete_at: float | None = None  # monotonic time its record was complete (or given up)
    held_at: float | None = None  # monotonic time its closing line was held
    held: list = field(default_factory=list)  # closed event lines waiting for the result


class SecondStage:
    """Classify the record of each declared event off the hot path (see module doc).

    Feed it every accepted frame's samples with :meth:`add`, pass every batch of events
    through :meth:`process` before writing them, call :meth:`poll` on every turn of the
    loop and :meth:`close` at shutdown; each returns the event lines ready to write.

    Parameters
    ----------
    classifier : SourceClassifier
    queue_size : int
        Records waiting for the worker; a record arriving at a full queue is not
        classified (``source_error: "busy"``).
    wait_s : float
        Wall-clock seconds a closed event waits for its class once its record is complete.
    clock : callable
        Monotonic clock (tests).
    """

    def __init__(self, classifier: SourceClassifier, queue_size: int = 2, wait_s: float = 30.0,
                 clock=time.monotonic):
        from .snippets import SnippetRecorder

        if queue_size < 1 or wait_s <= 0:
            raise ValueError(f"second stage queue_size={queue_size}, wait_s={wait_s}: must be positive")
        self.classifier = classifier
        self.config = classifier.config
        self.wait_s = wait_s
        self.clock = clock
        # Keep the record, plus what arrives while the worker is busy with an earlier one.
        self.recorder = SnippetRecorder(self.config.record_s + 60.0)
        self.jobs: dict[int, _Job] = {}
        self.latest_us: int | None = None
        self.counts = {"records": 0, "classified": 0, "busy": 0, "incomplete": 0, "errors": 0,
                       "timeouts": 0, "earthquake": 0, "active_source": 0}
        self.latency_ms: list[float] = []  # image + model, per record, on the worker
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="second-stage", daemon=True)
        self._worker.start()

    # -------------------------------------------------------------- hot path
    def add(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        """One accepted frame's samples, ``(n, 3)`` m/s^2; submits records that are complete."""
        self.recorder.add(t0_us, rate_hz, samples_mps2)
        self.latest_us = int(t0_us + len(samples_mps2) * 1e6 / rate_hz)
        for job in self.jobs.values():
            if not job.submitted and self.latest_us >= job.end_us:
                self._submit(job)

    def process(self, events: list[dict]) -> list[dict]:
        """Register triggers, hold closing lines whose record is not classified yet."""
        out = []
        for event in events:
            key = event.get("start_us")
            if event.get("type") == "trigger" and key is not None:
                onset = event.get("p_time_us") or key
                start = int(onset - self.config.pre_s * 1e6)
                with self._lock:
                    self.jobs[key] = _Job(key, start, start + int(self.config.record_s * 1e6))
                    while len(self.jobs) > 100:  # a closing line never came (cannot happen; bound it)
                        self.jobs.pop(next(iter(self.jobs)))
                self.counts["records"] += 1
                out.append(event)
            elif event.get("type") == "event" and key in self.jobs:
                with self._lock:
                    job = self.jobs[key]
                    if job.result is not None:
                        out.append(self._finish(job, event))
                    else:
                        job.held.append(event)
                        job.held_at = self.clock()
            else:
                out.append(event)
        return out

    def poll(self) -> list[dict]:
        """Held lines whose class arrived, or whose wait ran out.

        A record the stream stopped short of (cable pulled, board restarted) is given up
        ``record_s + wait_s`` of wall time after its closing line: classified if at least
        half of it arrived, else written without a class.
        """
        out = []
        now = self.clock()
        for job in [j for j in self.jobs.values() if j.held and not j.submitted]:
            if now - job.held_at > self.config.record_s + self.wait_s:
                self._submit(job, partial=True)
        with self._lock:
            for job in [j for j in self.jobs.values() if j.held]:
                if job.result is None and job.complete_at is not None and now - job.complete_at > self.wait_s:
                    job.result = {"source_class": None, "source_error": f"no class within {self.wait_s} s"}
                    self.counts["timeouts"] += 1
                if job.result is not None:
                    for event in list(job.held):
                        out.append(self._finish(job, event))
        return out

    def close(self, timeout_s: float = 10.0) -> list[dict]:
        """Classify what can be (records cut short by the end of the stream), release everything."""
        for job in list(self.jobs.values()):
            if not job.submitted:
                self._submit(job, partial=True)
        deadline = self.clock() + timeout_s
        while self.clock() < deadline:
            with self._lock:
                if all(job.result is not None for job in self.jobs.values() if job.held):
                    break
            time.sleep(0.01)
        out = []
        with self._lock:
            for job in [j for j in self.jobs.values() if j.held]:
                if job.result is None:
                    job.result = {"source_class": None, "source_error": "node stopped first"}
                for event in list(job.held):
                    out.append(self._finish(job, event))
            self.jobs.clear()
        self._queue.put(None)
        return out

    # -------------------------------------------------------------- internals
    def _submit(self, job: _Job, partial: bool = False) -> None:
        job.submitted = True
        job.complete_at = self.clock()
        cut = self.recorder.cut(job.start_us, job.end_us)
        need = self.config.record_s
        have = 0.0 if cut is None else cut[2].shape[1] / cut[1]
        if cut is None or have < (0.5 if partial else 0.9) * need:
            with self._lock:
                job.result = {"source_class": None,
                              "source_error": f"record incomplete ({have:.1f} of {need:.0f} s)"}
            self.counts["incomplete"] += 1
            return
        try:
            self._queue.put_nowait((job, cut))
        except queue.Full:
            with self._lock:
                job.result = {"source_class": None, "source_error": "busy (second stage queue full)"}
            self.counts["busy"] += 1

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, (t0_us, rate, data, n_filled) = item
            started = time.perf_counter()
            try:
                record = self._pad(data, rate)
                result = self.classifier.classify(record, rate)
                result["source_latency_ms"] = round((time.perf_counter() - started) * 1e3, 1)
                if n_filled:
                    result["source_samples_filled"] = int(n_filled)
            except Exception as exc:  # a bad record must not kill the worker
                log.error("second stage: record at %d us failed: %s", job.start_us, exc)
                result = {"source_class": None, "source_error": f"classification failed ({exc})"}
                self.counts["errors"] += 1
            with self._lock:
                if result.get("source_class"):
                    self.counts["classified"] += 1
                    self.counts[result["source_class"]] = self.counts.get(result["source_class"], 0) + 1
                    self.latency_ms.append(result["source_latency_ms"])
                    del self.latency_ms[:-100]
                job.result = result

    def _pad(self, data: np.ndarray, rate: float) -> np.ndarray:
        """A record of exactly ``record_s``: a short one is padded with its own mean."""
        n = int(round(self.config.record_s * rate))
        data = np.asarray(data, dtype=np.float64)[:, :n]
        if data.shape[1] < n:
            fill = np.repeat(data.mean(axis=1, keepdims=True), n - data.shape[1], axis=1)
            data = np.concatenate([data, fill], axis=1)
        return data

    def _finish(self, job: _Job, event: dict) -> dict:
        """The closing line with its class; the job is done (call with the lock held)."""
        event.update(job.result or {})
        self.jobs.pop(job.key, None)
        return event

    def to_dict(self) -> dict:
        """Counters and latency for the node's status file."""
        lat = sorted(self.latency_ms)
        return {**self.counts, "queued": self._queue.qsize(), "model": self.classifier.path.name,
                "latency_ms_median": lat[len(lat) // 2] if lat else None,
                "latency_ms_max": lat[-1] if lat else None}
