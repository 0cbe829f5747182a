"""The node: a source of frames -> pipeline -> event sink, turned by one loop.

:class:`Pipeline` turns frames into events without I/O (checks, sequencer, sliding
windows, preprocessing, model, detector), so tests and tools drive it with arrays.
:class:`Node` wires a source (:mod:`edge_runtime.sources`, chosen by ``[node] source``),
the pipeline and the event sink (:mod:`edge_runtime.sink`, its outputs from
:mod:`edge_runtime.outputs`), and owns the only loop as :meth:`Node.start`,
:meth:`Node.turn` (one read-decode-window-classify-detect-sink step) and
:meth:`Node.stop`. Each component reports its own counters; :meth:`Node.status`
assembles them. :func:`run` drives a node until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import numpy as np

from .backends import Backend, load_backend
from .config import NodeConfig  # noqa: F401  (re-exported: tests and tools import it from here)
from .detector import EventDetector, Scored
from .events import target_problem
from .heap import release_free_heap, settle_python_heap
from .kinds import get_kind
from .logs import LimitedLog
from .outputs import OutputContext, build_sink
from .preprocess import DEAD_PEAK_MPS2, WindowPreparer
from .ring import SlidingWindows
from .sdnotify import Notifier
from .sensors import DEFAULT_SENSOR, get_sensor
from .sequencing import StreamSequencer, check_counts, with_samples
from .sources import open_source

log = logging.getLogger(__name__)

# Silence after which frames held back for a missing predecessor are given their place
# (a reordered frame comes within a few frame times, not after a quiet second).
REORDER_IDLE_S = 1.0

# The default sensor's scale (ADXL355 at +/-2 g: 256,000 LSB per g), counts per m/s^2.
ADXL355_COUNTS_PER_MPS2 = get_sensor(DEFAULT_SENSOR).counts_per_mps2


# Period of handing the C heap's free pages back to the kernel (see heap.release_free_heap), s.
TRIM_EVERY_S = 60.0


# Frames stamped outside these years are a firmware or clock fault (a board without a
# time fix, microseconds sent as nanoseconds); they are dropped and counted.
EARLIEST_US = 946_684_800_000_000  # 2000-01-01
LATEST_US = 4_102_444_800_000_000  # 2100-01-01


# ``live`` of one classified window (Pipeline.classify), shared and read-only.
_ONE_LIVE = np.ones(1, dtype=bool)
_ONE_LIVE.flags.writeable = False


class Pipeline:
    """Frames in, events out; no I/O, so it can be driven by tests and by the service.

    Every frame is checked before it can touch the window buffer: channel count against
    the model, timestamp and sampling rate against sane ranges, sequence number against
    duplicates. A rejected frame is counted (``counts``) and logged a limited number of
    times; nothing a frame carries can raise out of :meth:`on_frame`'s checks.

    Every accepted frame's samples go to ``sample_listeners`` (callables ``(t0_us,
    rate_hz, samples_mps2)``), their raw ADC counts to ``count_listeners`` (``(t0_us,
    rate_hz, counts)``) and every classified window to ``window_listeners`` (callables
    ``(Scored)``): the node hands them to its event sink.
    """

    def __init__(self, backend: Backend, config: NodeConfig):
        self.backend = backend
        self.config = config
        self.prep = backend.metadata.preprocess_config()
        if "noise" not in backend.classes:
            hint = (f"; a {backend.metadata.model} is the second stage: pass it as --source-model"
                    if get_kind(backend.metadata.model).stage == "record" else "")
            raise ValueError(f"{config.model}: classes {backend.classes} have no 'noise'; "
                             f"the detector needs it{hint}")
        self.noise_index = backend.classes.index("noise")
        self.classes = backend.classes
        self.prepare = WindowPreparer(self.prep)
        self.windows = SlidingWindows(self.prep.window_s, config.step_s)
        self.detector = EventDetector(config.detector, station=config.station)
        self.n_components = len(backend.metadata.components)
        # frames_in: every frame handed to on_frame; frames_delivered: released in order by
        # the sequencer (= frames); the other sequencer counts are its own.
        self.counts = {"frames": 0, "frames_rejected": 0, "frames_duplicate": 0, "frames_lost": 0,
                       "sequence_resets": 0, "windows": 0, "windows_dead": 0, "triggers": 0,
                       "events": 0, "errors": 0}
        # Ordering, duplicates, restarts, board id (docs/serial-protocol.md, "Frame ordering").
        self.sequencer = StreamSequencer(board_id=getattr(config, "board_id", None))
        self.sensor = get_sensor(getattr(config, "sensor", None) or DEFAULT_SENSOR)
        # Largest acceleration the part can report at the node's scale: a window peak
        # above it is not a measurement and never triggers.
        self.full_scale_mps2 = self.sensor.max_count / config.counts_per_mps2
        self.counts.update({k: 0 for k in self.sequencer.counts if k not in self.counts})
        self.counts.update(samples_clipped=0, windows_implausible=0)
        self.window_classes = {c: 0 for c in backend.classes}  # argmax of live windows
        self.rejected: dict[str, int] = {}  # rejected frames by reason
        self._log = LimitedLog(log)
        self.time_fix: str | None = None  # of the latest frame (protocol v2), carried into events
        meta = backend.metadata
        self.model_info = {"model": meta.model, "model_version": getattr(meta, "model_version", "") or
                           meta.version, "model_file": Path(config.model).name}
        self.sample_listeners: list = []
        self.count_listeners: list = []  # (t0_us, rate_hz, counts): the frame's raw ADC counts
        self.window_listeners: list = []
        self._second_stage = None

    @property
    def second_stage(self):
        """The second stage fed this pipeline's samples (tests and tools attach one directly;
        the node's event sink holds its own)."""
        return self._second_stage

    @second_stage.setter
    def second_stage(self, stage) -> None:
        if self._second_stage is not None:
            self.sample_listeners.remove(self._second_stage.add)
        self._second_stage = stage
        if stage is not None:
            self.sample_listeners.append(stage.add)

    @property
    def held(self) -> int:
        """Frames the sequencer holds back for a missing predecessor."""
        return self.sequencer.held

    @property
    def event_open(self) -> bool:
        """Whether the detector has declared an event that has not closed yet."""
        return self.detector.open is not None

    def count_error(self) -> None:
        """One frame or record that failed in processing or output (``errors``)."""
        self.counts["errors"] += 1

    def counters(self) -> dict:
        """The pipeline's entries in the status file (its counts, its window buffer's)."""
        return {"time_fix": self.time_fix, "pipeline": dict(self.counts),
                "window_classes": dict(self.window_classes), "frames_rejected_by": dict(self.rejected),
                **self.windows.counters()}

    def _reject(self, frame, kind: str, why: str) -> list:
        self.counts["frames_rejected"] += 1
        self.rejected[kind] = self.rejected.get(kind, 0) + 1  # by reason, for replay-test
        self._log(logging.WARNING, kind, "frame seq=%d: %s; dropped", frame.sequence, why)
        self.sequencer.reject(frame)  # its place is not counted lost as well
        self._sync_sequencer()
        return []

    def on_frame(self, frame) -> list[dict]:
        """Process one decoded frame; return the events it declared or closed."""
        self.counts["frames_in"] += 1
        if not self.sequencer.admit(frame):  # another board's frame: counted as such, nothing else
            self._sync_sequencer()
            return []
        if frame.n_channels != self.n_components:
            return self._reject(frame, "channels", f"{frame.n_channels} channels, model expects "
                                                   f"{self.n_components}")
        if not EARLIEST_US <= frame.timestamp_us <= LATEST_US:
            return self._reject(frame, "timestamp", f"timestamp {frame.timestamp_us} us is not "
                                                    "between 2000 and 2100")
        if not self.config.min_rate_hz <= frame.sampling_rate_hz <= self.config.max_rate_hz:
            return self._reject(frame, "rate", f"sampling rate {frame.sampling_rate_hz} Hz outside "
                                               f"{self.config.min_rate_hz}-{self.config.max_rate_hz} Hz")
        counts, n_clipped, why = check_counts(frame.samples, self.sensor)
        if counts is None:  # not a measurement (e.g. INT32_MIN for a NaN): a hole, filled if short
            return self._reject(frame, "impossible", why)
        if n_clipped:
            self.counts["samples_clipped"] += n_clipped
            frame = with_samples(frame, counts)
        out = []
        for delivery in self.sequencer.push(frame, admitted=True):
            out += self._accept(delivery)
        self._sync_sequencer()
        return out

    def _sync_sequencer(self) -> None:
        for k, v in self.sequencer.counts.items():
            if k != "frames_in":  # the sequencer's counts only the frames past the checks
                self.counts[k] = v

    def _accept(self, delivery) -> list[dict]:
        """One frame, in order, into the window buffer and the detector; events out."""
        frame = delivery.frame
        self.counts["frames"] += 1
        gaps_before = self.windows.gaps
        samples = frame.samples / self.config.counts_per_mps2
        self.time_fix = getattr(frame, "time_fix", None)
        for listener in self.sample_listeners:
            listener(frame.timestamp_us, frame.sampling_rate_hz, samples)
        for listener in self.count_listeners:
            listener(frame.timestamp_us, frame.sampling_rate_hz, frame.samples)
        windows = self.windows.push(samples, frame.timestamp_us, frame.sampling_rate_hz,
                                    lost_frames=delivery.lost_frames, restart=delivery.restart)
        out = []
        if self.windows.gaps != gaps_before:
            # Holes up to max_fill_s never get here (they are interpolated), nor do clock
            # steps; the detector decides whether a longer one ends an open event.
            out += self.detector.gap(self.windows.last_gap_s, restart=delivery.restart)
        if not windows:
            return self._count(out)
        raw = windows[0].data[None] if len(windows) == 1 else np.stack([w.data for w in windows])
        probs, peak, live = self.classify(raw, self.windows.rate_hz)
        probs, peak = self._plausible(probs, peak)
        for k in np.argmax(probs[live], axis=1):  # per-window class counts (replay-test)
            self.window_classes[self.classes[k]] += 1
        self.counts["windows"] += int(live.sum())
        self.counts["windows_dead"] += int((~live).sum())
        for w, p, pk in zip(windows, probs.tolist(), peak.tolist(), strict=True):
            scored = Scored(w.center_us, dict(zip(self.classes, p, strict=True)), pk, w.data,
                            w.sampling_rate_hz)
            for listener in self.window_listeners:
                listener(scored)
            out += self.detector.update(scored)
        return self._count(out)

    def _plausible(self, probs: np.ndarray, peak: np.ndarray):
        """Windows beyond what the sensor can measure are scored as noise, their peak capped."""
        implausible = peak > self.full_scale_mps2
        if not implausible.any():
            return probs, peak
        self.counts["windows_implausible"] += int(implausible.sum())
        probs = probs.copy()
        probs[implausible] = 0.0
        probs[implausible, self.noise_index] = 1.0
        return probs, np.minimum(peak, self.full_scale_mps2)  # no PGA beyond what was measurable

    def classify(self, raw: np.ndarray, sampling_rate_hz: float):
        """The per-window path: raw windows to class probabilities (preprocess + model).

        Parameters
        ----------
        raw : numpy.ndarray
            ``(N, n_components, n_in)`` acceleration in m/s^2.

        Returns
        -------
        probs : numpy.ndarray
            ``(N, n_classes)`` float64.
        peak : numpy.ndarray
            ``(N,)`` peak filtered acceleration, m/s^2.
        live : numpy.ndarray
            ``(N,)`` bool: windows that were classified.
        """
        int16, peak = self.prepare(raw, sampling_rate_hz)
        # A dead or disconnected sensor gives nothing to classify; its windows still
        # reach the detector, as noise, so an open event closes on time.
        if len(peak) == 1 and peak[0] > DEAD_PEAK_MPS2:  # the usual case: no mask to build and test
            return self.backend.predict(int16), peak, _ONE_LIVE
        live = peak > DEAD_PEAK_MPS2
        if live.all():
            return self.backend.predict(int16), peak, live
        probs = np.zeros((len(raw), len(self.classes)))
        probs[:, self.noise_index] = 1.0
        if live.any():
            probs[live] = self.backend.predict(int16[live])
        return probs, peak, live

    def annotate(self, event: dict) -> dict:
        """Add the model's identity and the board's time-fix state to an event."""
        event.update(self.model_info)
        event["time_fix"] = self.time_fix
        return event

    def drain(self) -> list[dict]:
        """Release frames held for reordering (the line went quiet), keeping any event open."""
        out = []
        for delivery in self.sequencer.drain():
            out += self._accept(delivery)
        self._sync_sequencer()
        return out

    def flush(self) -> list[dict]:
        """Release frames held for reordering, then close any open event (end of stream, shutdown)."""
        out = []
        for delivery in self.sequencer.drain():
            out += self._accept(delivery)
        self._sync_sequencer()
        return out + self._count(self.detector.reset())

    def _count(self, events: list[dict]) -> list[dict]:
        for e in events:
            self.counts["triggers" if e["type"] == "trigger" else "events"] += 1
            self.annotate(e)
        return events



class Node:
    """The node's loop as start / one turn / stop, and the status assembled from its parts.

    Parameters
    ----------
    config : NodeConfig
    notifier : Notifier, optional
        systemd's readiness and watchdog (a no-op outside systemd).
    """

    def __init__(self, config: NodeConfig, notifier: Notifier | None = None):
        self.config = config
        self.notifier = notifier or Notifier()
        self.faults = LimitedLog(log)  # the one rate limiter of port, disk, status, processing faults
        self.started = time.monotonic()
        self.pipeline: Pipeline | None = None
        self.source = None
        self.sink = None
        self.last_bytes: float | None = None  # monotonic time input last arrived
        self.first_turn: float | None = None  # monotonic time the loop first read its source
        self.last_frame = self.started  # monotonic time a frame was last accepted
        self.next_status = self.started
        self.next_trim = self.started + TRIM_EVERY_S
        self.builds_trimmed = 0  # chain matrices built so far whose temporaries were given back
        self._closed = False

    def start(self) -> None:
        """Load and check the model; build the pipeline, the event sink and the source.

        Raises
        ------
        ValueError
            A model, a setting or an output folder the node cannot use (one line).
        """
        config = self.config
        backend = load_backend(config.model, threads=config.threads)
        meta = backend.metadata
        log.info("model %s: %s %s, classes %s, input %s", config.model, meta.model,
                 getattr(meta, "model_version", "") or meta.version, backend.classes, meta.input_scheme)
        self.pipeline = pipeline = Pipeline(backend, config)
        hold = None  # earthquake / active source of each event, off the hot path (issue 13)
        if getattr(config, "source_model", None):
            from .second_stage import SecondStage, SourceClassifier

            hold = SecondStage(SourceClassifier(config.source_model), wait_s=config.source_wait_s)
        _make_folders(config)
        # The loop turns at least once per read timeout, and it feeds the watchdog.
        read_timeout_s = min(config.read_timeout_s, self.notifier.ping_every_s())
        self.source = open_source(config, n_channels=len(meta.components), read_timeout_s=read_timeout_s,
                                  faults=self.faults)
        context = OutputContext(tuple(meta.components), pipeline.prep.window_s, self.faults,
                                status=self.status)
        self.sink = build_sink(config, context, hold=hold, count_error=pipeline.count_error)
        if self.sink.wants_samples:
            pipeline.sample_listeners.append(self.sink.on_samples)
        if self.sink.wants_counts:
            pipeline.count_listeners.append(self.sink.on_counts)
        if self.sink.wants_windows:
            pipeline.window_listeners.append(self.sink.on_window)

    def ready(self) -> None:
        """Tell systemd the node works (``READY=1``) and log how long the start took."""
        config = self.config
        self.notifier.ready(f"reading {self.source.where}")
        log.info("ready in %.3f s: station %s, port %s, sensor %s (%.1f counts per m/s^2)",
                 time.monotonic() - self.started, config.station, self.source.where, config.sensor,
                 config.counts_per_mps2)

    def turn(self) -> bool:
        """One turn: read, decode, window, classify, detect, hand events to the sink; timers.

        Returns within about ``read_timeout_s``. False when the node should stop (no input
        for ``idle_exit_s``, counted from the first turn when none ever came: a port that
        never appears ends a replay too).
        """
        batch = self.source.read()
        now = time.monotonic()
        if self.first_turn is None:
            self.first_turn = now
        self.notifier.watchdog()
        if batch.heard:
            self.last_bytes = now
        for frame in batch.frames:
            self._frame(frame, now)
        pipeline = self.pipeline
        if not batch.heard and pipeline.held and self.last_bytes is not None \
                and now - self.last_bytes > REORDER_IDLE_S:
            self.sink.emit(pipeline.drain())  # quiet line: frames held for a missing one go on
        self.sink.tick(now)
        if pipeline.event_open and now - self.last_frame > self.config.detector.off_s:
            # The stream stopped mid-event (cable pulled, board hung): close it on wall time.
            log.warning("no frames for %.1f s during an event; closing it", now - self.last_frame)
            self.sink.emit(pipeline.flush())
        self._timers(now)
        idle_exit_s = self.config.idle_exit_s
        quiet_since = self.first_turn if self.last_bytes is None else self.last_bytes
        if idle_exit_s is not None and now - quiet_since > idle_exit_s:
            log.info("no bytes for %.1f s: exiting", idle_exit_s)
            return False
        return True

    def _frame(self, frame, now: float) -> None:
        pipeline = self.pipeline
        accepted = pipeline.counts["frames"]
        try:
            events = pipeline.on_frame(frame)
        except Exception:  # one bad frame must not take the node down
            pipeline.count_error()
            self.faults(logging.ERROR, "processing", "frame seq=%d: processing failed; skipped",
                        frame.sequence, exc_info=True)
            return
        if pipeline.counts["frames"] != accepted:  # rejected frames do not count as signal
            self.last_frame = now
        self.sink.emit(events)

    def _timers(self, now: float) -> None:
        config = self.config
        if config.status and now >= self.next_status:
            _write_status(config.status, self.status(), self.faults)
            self.next_status = now + config.status_every_s
        builds = self.pipeline.prepare.builds
        if now >= self.next_trim or builds != self.builds_trimmed:
            # Once the first window's chain matrix is built (its temporaries are free
            # but still resident), then every minute: free memory goes back to the kernel.
            release_free_heap()
            self.builds_trimmed = builds
            self.next_trim = now + TRIM_EVERY_S

    def status(self) -> dict:
        """The status file: the node's identity, then each component's own counters."""
        config = self.config
        return {"uptime_s": round(time.monotonic() - self.started, 1), "model": config.model,
                "model_version": self.pipeline.model_info["model_version"], "station": config.station,
                "sensor": config.sensor, **self.pipeline.counters(), **self.source.counters(),
                **self.sink.counters(), "faults": self.faults.to_dict()}

    def close(self) -> None:
        """Close open events, release held ones, close every output and the source (once)."""
        if self._closed:
            return
        self._closed = True
        self.notifier.stopping()
        try:
            self.sink.emit(self.pipeline.flush())
            self.sink.close()  # the hold, the event file, then a last chance for alerts
        finally:
            self.source.close()

    def stop(self) -> dict:
        """Close (see :meth:`close`); write and return the final status."""
        self.close()
        final = self.status()
        if self.config.status:
            _write_status(self.config.status, final, self.faults)
        log.info("stopped: %s", json.dumps(final))
        return final


def run(config: NodeConfig, notifier: Notifier | None = None) -> dict:
    """Run the node until SIGTERM/SIGINT (or ``idle_exit_s`` of silence); return counters.

    Readiness (``READY=1``) is sent to systemd once the model is loaded and checked and
    the output folders exist; the watchdog is fed once per turn of the loop, which turns
    at least every ``read_timeout_s``, so a hung loop is restarted by systemd. A stop
    (SIGTERM/SIGINT) that comes during start-up is never announced ready: the step under
    way is finished and ``run()`` returns without reading the port.
    """
    stopping = []

    def _stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        stopping.append(signum)

    # Early, so a SIGTERM during start-up (systemd stopping a slow start) is a clean exit.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    node = Node(config, notifier)
    node.start()
    if stopping:
        # Stopped during start-up (systemd giving up on a slow start): never announced
        # ready, the loop never turns; what was begun is finished below and run() returns.
        log.info("stopped during start-up after %.3f s: not ready", time.monotonic() - node.started)
    else:
        # Model, pipeline and outputs built: out of the collector's passes (a backlog's
        # frames would otherwise bring full passes over them: edge_runtime.heap)
        log.debug("%d objects frozen out of the garbage collector's passes", settle_python_heap())
        node.ready()
    try:
        while not stopping and node.turn():
            pass
    except BaseException:
        node.close()
        raise
    return node.stop()


def _make_folders(config: NodeConfig) -> None:
    """Create the folders of every output; a folder that cannot be made, or a folder where
    the status file goes, is refused at start (the event file checks its own target)."""
    for what, path in (("events", config.events), ("status", config.status)):
        if path:
            folder = Path(path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = target_problem(Path(path)) or exc.strerror or exc  # "X is a regular file, not a folder"
                raise ValueError(f"{what} folder {folder}: cannot create ({why})") from None
    if config.status and Path(config.status).is_dir():
        raise ValueError(f"status {config.status}: {target_problem(Path(config.status))}")
    if config.snippets:
        try:
            Path(config.snippets).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"snippets folder {config.snippets}: cannot create ({exc.strerror or exc})") \
                from None


def _write_status(path: str, status: dict, faults: LimitedLog | None = None) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(status, indent=2))
        tmp.replace(path)  # atomic: a reader never sees half a status file
    except OSError as exc:
        if faults is None:
            log.error("%s: cannot write status (%s)", path, exc)
        else:
            faults(logging.ERROR, "status", "%s: cannot write status (%s)", path, exc.strerror or exc)
        return
    if faults is not None and faults.failing("status"):
        faults.recovered("status", "%s: status written again", path)
