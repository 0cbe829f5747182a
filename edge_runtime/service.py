"""The node's loop: serial bytes -> frames -> windows -> model -> events."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import numpy as np

from .backend import Backend, load_backend
from .config import NodeConfig  # noqa: F401  (re-exported: tests and tools import it from here)
from .detector import EventDetector, Scored
from .events import JsonlWriter, target_problem, with_iso_times
from .heap import release_free_heap
from .logs import LimitedLog
from .preprocess import WindowPreparer
from .protocol import FrameDecoder, TextDecoder
from .reader import SerialSource
from .ring import SlidingWindows
from .sdnotify import Notifier
from .sensors import DEFAULT_SENSOR, get_sensor
from .sequencing import StreamSequencer, check_counts, with_samples
from .snippets import SnippetRecorder, write_sac

log = logging.getLogger(__name__)

# Longest a stopping node waits for pending alerts (systemd's stop timeout is 90 s).
ACTIONS_GRACE_S = 3.0

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
    """

    def __init__(self, backend: Backend, config: NodeConfig):
        self.backend = backend
        self.config = config
        self.prep = backend.metadata.preprocess_config()
        if "noise" not in backend.classes:
            hint = ("; a SpectrogramCNN is the second stage: pass it as --source-model"
                    if backend.metadata.model == "SpectrogramCNN" else "")
            raise ValueError(f"{config.model}: classes {backend.classes} have no 'noise'; "
                             f"the detector needs it{hint}")
        self.noise_index = backend.classes.index("noise")
        self.classes = backend.classes
        self.prepare = WindowPreparer(self.prep)
        self.windows = SlidingWindows(self.prep.window_s, config.step_s)
        self.detector = EventDetector(config.detector, station=config.station)
        self.n_components = len(backend.metadata.components)
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
        self.second_stage = None  # edge_runtime.second_stage.SecondStage when [node] source_model is set
        self.recorder = None
        if config.snippets:
            keep_s = (config.snippet_pre_s + self.prep.window_s + config.detector.max_event_s
                      + config.detector.off_s + config.detector.lookback_s + config.snippet_post_s)
            self.recorder = SnippetRecorder(keep_s)

    def _reject(self, frame, kind: str, why: str) -> list:
        self.counts["frames_rejected"] += 1
        self.rejected[kind] = self.rejected.get(kind, 0) + 1  # by reason, for replay-test
        self._log(logging.WARNING, kind, "frame seq=%d: %s; dropped", frame.sequence, why)
        self.sequencer.reject(frame)  # its place is not counted lost as well
        self._sync_sequencer()
        return []

    def on_frame(self, frame) -> list[dict]:
        """Process one decoded frame; return the events it declared or closed."""
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
            if k not in ("frames_in", "frames_delivered"):
                self.counts[k] = v

    def _accept(self, delivery) -> list[dict]:
        """One frame, in order, into the window buffer and the detector; events out."""
        frame = delivery.frame
        self.counts["frames"] += 1
        gaps_before = self.windows.gaps
        samples = frame.samples / self.config.counts_per_mps2
        self.time_fix = getattr(frame, "time_fix", None)
        if self.recorder is not None:
            self.recorder.add(frame.timestamp_us, frame.sampling_rate_hz, samples)
        if self.second_stage is not None:  # a deque append; the record is classified on its own thread
            self.second_stage.add(frame.timestamp_us, frame.sampling_rate_hz, samples)
        windows = self.windows.push(samples, frame.timestamp_us, frame.sampling_rate_hz,
                                    lost_frames=delivery.lost_frames, restart=delivery.restart)
        restarted = delivery.restart
        out = []
        if self.windows.gaps != gaps_before:
            # Holes up to max_fill_s never get here (they are interpolated), nor do clock
            # steps. A longer hole must still not split an earthquake in two: the event
            # stays open and closes by the usual off_s rule. A gap longer than off_s,
            # time going backwards, a rate change or a board restart ends it.
            gap_s = self.windows.last_gap_s
            if restarted or gap_s < 0 or gap_s > self.config.detector.off_s:
                out += self.detector.reset()
            else:
                self.detector.pending = []
        if not windows:
            return self._count(out)
        raw = windows[0].data[None] if len(windows) == 1 else np.stack([w.data for w in windows])
        probs, peak, live = self.classify(raw, self.windows.rate_hz)
        implausible = peak > self.full_scale_mps2
        if implausible.any():  # beyond what the sensor can measure: scored as noise
            self.counts["windows_implausible"] += int(implausible.sum())
            probs = probs.copy()
            probs[implausible] = 0.0
            probs[implausible, self.noise_index] = 1.0
            peak = np.minimum(peak, self.full_scale_mps2)  # no PGA beyond what was measurable
        for k in np.argmax(probs[live], axis=1):  # per-window class counts (replay-test)
            self.window_classes[self.classes[k]] += 1
        self.counts["windows"] += int(live.sum())
        self.counts["windows_dead"] += int((~live).sum())
        for w, p, pk in zip(windows, probs.tolist(), peak.tolist(), strict=True):
            scored = Scored(w.center_us, dict(zip(self.classes, p, strict=True)), pk, w.data,
                            w.sampling_rate_hz)
            out += self.detector.update(scored)
        return self._count(out)

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
        if len(peak) == 1 and peak[0] > 1e-8:  # the usual case: no mask to build and test
            return self.backend.predict(int16), peak, _ONE_LIVE
        live = peak > 1e-8
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

    def snippet(self, event: dict):
        """Raw samples around a closed event (see :class:`~edge_runtime.snippets.SnippetRecorder`)."""
        if self.recorder is None or event.get("type") != "event":
            return None
        first = min(t for t in (event.get("start_us"), event.get("p_time_us")) if t is not None)
        start = first - int((self.config.snippet_pre_s + self.prep.window_s / 2) * 1e6)
        end = event["end_us"] + int((self.config.snippet_post_s + self.prep.window_s / 2) * 1e6)
        return self.recorder.cut(start, end)

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


def run(config: NodeConfig, notifier: Notifier | None = None) -> dict:
    """Run the node until SIGTERM/SIGINT (or ``idle_exit_s`` of silence); return counters.

    Readiness (``READY=1``) is sent to systemd once the model is loaded and checked and
    the output folders exist; the watchdog is fed once per turn of the loop, which turns
    at least every ``read_timeout_s``, so a hung loop is restarted by systemd. A stop
    (SIGTERM/SIGINT) that comes during start-up is never announced ready: the step under
    way is finished and ``run()`` returns without reading the port.
    """
    from .actions import build_actions, wait_delivered

    stopping = []

    def _stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        stopping.append(signum)

    # Early, so a SIGTERM during start-up (systemd stopping a slow start) is a clean exit.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = time.monotonic()
    notifier = notifier or Notifier()
    faults = LimitedLog(log)  # the one rate limiter of port, disk, status, processing faults
    backend = load_backend(config.model, threads=config.threads)
    log.info("model %s: %s %s, classes %s, input %s", config.model, backend.metadata.model,
             getattr(backend.metadata, "model_version", "") or backend.metadata.version,
             backend.classes, backend.metadata.input_scheme)
    pipeline = Pipeline(backend, config)
    second = None  # earthquake / active source of each event, off the hot path (issue 13)
    if getattr(config, "source_model", None):
        from .second_stage import SecondStage, SourceClassifier

        second = pipeline.second_stage = SecondStage(SourceClassifier(config.source_model),
                                                     wait_s=config.source_wait_s)
    _make_folders(config)
    if config.protocol == "text":
        decoder = TextDecoder(n_channels=len(backend.metadata.components),
                              sampling_rate_hz=config.text_rate_hz, checksum=config.text_checksum)
    else:
        decoder = FrameDecoder()
    # The loop turns at least once per read timeout, and it feeds the watchdog.
    read_timeout_s = min(config.read_timeout_s, notifier.ping_every_s())
    source = SerialSource(config.port, config.baudrate, read_timeout_s=read_timeout_s,
                          max_retry_s=config.reconnect_max_s, faults=faults,
                          trust_name=config.trust_port_name)
    writer = JsonlWriter(config.events)
    writer.start()  # read the file back: torn last line kept aside, crash-open events closed
    actions = build_actions(config, faults)
    last_bytes = None
    last_frame = started
    next_status = started
    next_trim = started + TRIM_EVERY_S
    builds_trimmed = 0  # chain matrices built so far whose temporaries were given back

    def handle(events) -> None:
        if second is not None:
            events = second.process(events)  # holds a closing line until its class is known
        for event in events:
            if event.get("type") == "event":
                _write_snippet(config, pipeline, event, faults)
            try:
                writer.write(event)
            except Exception:  # an event that cannot be serialized must not stop the node
                pipeline.counts["errors"] += 1
                faults(logging.ERROR, "event", "event could not be written: %r", event, exc_info=True)
                continue
            if event.get("type") == "event":
                for queue in actions:
                    queue.submit(json.loads(json.dumps(with_iso_times(event), default=str)))

    def status() -> dict:
        return {"uptime_s": round(time.monotonic() - started, 1), "model": config.model,
                "model_version": pipeline.model_info["model_version"], "station": config.station,
                "sensor": config.sensor, "time_fix": pipeline.time_fix,
                "decoder": decoder.stats.to_dict(), "pipeline": dict(pipeline.counts),
                "window_classes": dict(pipeline.window_classes),
                "frames_rejected_by": dict(pipeline.rejected),
                "gaps": pipeline.windows.gaps, "gaps_filled": pipeline.windows.filled_gaps,
                "samples_filled": pipeline.windows.filled_samples,
                "clock_steps": pipeline.windows.clock_steps, "port_open": source.is_open,
                "reconnects": source.reconnects, "port_refused": source.refused,
                "events_written": writer.written, "events_held": writer.held,
                "events_held_in": writer.where_held(), "events_spooled": writer.spooled,
                "events_torn_kept": writer.torn_kept, "events_closed_on_start": writer.closed_on_start,
                "actions": [q.to_dict() for q in actions], "faults": faults.to_dict(),
                "second_stage": second.to_dict() if second is not None else None}

    ready_s = time.monotonic() - started
    if stopping:
        # Stopped during start-up (systemd giving up on a slow start): never announced
        # ready, the loop never turns; what was begun is finished below and run() returns.
        log.info("stopped during start-up after %.3f s: not ready", ready_s)
    else:
        notifier.ready(f"reading {config.port}")
        log.info("ready in %.3f s: station %s, port %s, sensor %s (%.1f counts per m/s^2)", ready_s,
                 config.station, config.port, config.sensor, config.counts_per_mps2)
    try:
        while not stopping:
            data = source.read()
            now = time.monotonic()
            notifier.watchdog()
            if data or decoder.pending:  # a quiet line releases a frame the decoder held back
                last_bytes = now if data else last_bytes
                for frame in decoder.feed(data) if data else decoder.flush():
                    accepted = pipeline.counts["frames"]
                    try:
                        events = pipeline.on_frame(frame)
                    except Exception:  # one bad frame must not take the node down
                        pipeline.counts["errors"] += 1
                        faults(logging.ERROR, "processing", "frame seq=%d: processing failed; skipped",
                               frame.sequence, exc_info=True)
                        continue
                    if pipeline.counts["frames"] != accepted:  # rejected frames do not count as signal
                        last_frame = now
                    handle(events)
            if not data and pipeline.sequencer.held and last_bytes is not None \
                    and now - last_bytes > REORDER_IDLE_S:
                handle(pipeline.drain())  # quiet line: frames held for a missing one go on
            writer.tick(now)  # held events retried on a timer, also while data flows
            if second is not None:
                handle(second.poll())
            if pipeline.detector.open is not None and now - last_frame > config.detector.off_s:
                # The stream stopped mid-event (cable pulled, board hung): close it on wall time.
                log.warning("no frames for %.1f s during an event; closing it", now - last_frame)
                handle(pipeline.flush())
            if config.status and now >= next_status:
                _write_status(config.status, status(), faults)
                next_status = now + config.status_every_s
            if now >= next_trim or pipeline.prepare.builds != builds_trimmed:
                # Once the first window's chain matrix is built (its temporaries are free
                # but still resident), then every minute: free memory goes back to the kernel.
                release_free_heap()
                builds_trimmed = pipeline.prepare.builds
                next_trim = now + TRIM_EVERY_S
            if config.idle_exit_s is not None and last_bytes is not None \
                    and now - last_bytes > config.idle_exit_s:
                log.info("no bytes for %.1f s: exiting", config.idle_exit_s)
                break
    finally:
        notifier.stopping()
        handle(pipeline.flush())
        if second is not None:
            handle(second.close())
        writer.flush()
        writer.report_held()  # says loudly where events that are not in the file are kept
        source.close()
        # A last chance for alerts of events closed just now; what is left stays queued on
        # disk and goes out at the next start.
        wait_delivered(actions, ACTIONS_GRACE_S)
        for queue in actions:
            queue.close()
    final = status()
    if config.status:
        _write_status(config.status, final, faults)
    log.info("stopped: %s", json.dumps(final))
    return final


def _make_folders(config: NodeConfig) -> None:
    """Create the folders of every output; a folder that cannot be made is refused at start."""
    for what, path in (("events", config.events), ("status", config.status)):
        if path:
            folder = Path(path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = target_problem(Path(path)) or exc.strerror or exc  # "X is a regular file, not a folder"
                raise ValueError(f"{what} folder {folder}: cannot create ({why})") from None
    if config.snippets:
        try:
            Path(config.snippets).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"snippets folder {config.snippets}: cannot create ({exc.strerror or exc})") \
                from None


def _write_snippet(config: NodeConfig, pipeline: Pipeline, event: dict, faults: LimitedLog) -> None:
    """Write the event's waveform as SAC, one file per component; name them in the event."""
    try:
        cut = pipeline.snippet(event)
    except Exception:  # a snippet must never cost the event itself
        faults(logging.ERROR, "processing", "event snippet could not be cut", exc_info=True)
        return
    if cut is None:
        return
    t0_us, rate, data, n_filled = cut
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t0_us / 1e6))
    picks = {"P": event.get("p_time_us"), "S": event.get("s_time_us")}
    paths = []
    try:
        folder = Path(config.snippets)
        folder.mkdir(parents=True, exist_ok=True)
        # Milliseconds, then a counter: two events starting in the same second (a foreshock and
        # its main shock) must never overwrite each other's records.
        name = f"{config.station}.{stamp}.{(t0_us // 1000) % 1000:03d}"
        n = 1
        while any(folder.glob(f"{name}.HN?.SAC")):
            n += 1
            name = f"{config.station}.{stamp}.{(t0_us // 1000) % 1000:03d}-{n}"
        for comp, trace in zip(pipeline.backend.metadata.components, data, strict=False):
            path = folder / f"{name}.HN{comp}.SAC"
            write_sac(path, trace, rate, t0_us, station=config.station, channel=f"HN{comp}",
                      event=stamp, picks_us=picks)
            paths.append(str(path))
    except OSError as exc:
        faults(logging.ERROR, "disk", "%s: cannot write event snippet (%s)", config.snippets,
               exc.strerror or exc)
        return
    if faults.failing("disk"):
        faults.recovered("disk", "%s: snippets written again", config.snippets)
    event["snippet"] = {"files": paths, "start_us": t0_us, "sampling_rate_hz": rate,
                        "samples_filled": n_filled}


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
