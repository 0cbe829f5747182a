"""The node's loop: serial bytes -> frames -> windows -> model -> events."""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import OnnxBackend
from .detector import DetectorConfig, EventDetector, Scored
from .events import JsonlWriter
from .logs import LimitedLog
from .preprocess import prepare_windows
from .protocol import FrameDecoder
from .reader import SerialSource
from .ring import SlidingWindows

log = logging.getLogger(__name__)

# ADXL355 at +/-2 g: 3.9 ug per LSB, i.e. 1 / (3.9e-6 * 9.80665) counts per m/s^2.
ADXL355_COUNTS_PER_MPS2 = 26146.0


@dataclass
class NodeConfig:
    """Configuration of a node.

    Attributes
    ----------
    port : str
        Serial device of the acquisition board.
    model : str
        ONNX model exported by ``host_training``/``quantization``.
    events : str
        JSON-lines file of declared events.
    status : str or None
        JSON file rewritten every ``status_every_s`` with counters.
    station : str
        Station code written into events.
    counts_per_mps2 : float
        Sensor sensitivity, ADC counts per m/s^2.
    step_s : float
        Time between successive windows in s.
    idle_exit_s : float or None
        Exit after this long without bytes, once some have arrived (replays, tests);
        ``None`` on a node, which waits for its board forever.
    min_rate_hz, max_rate_hz : float
        Sampling rates the node accepts; frames outside are dropped and counted. The
        window chain builds an (n, n) matrix per rate, so the upper bound also bounds
        memory (1000 Hz: a 2000 x 2000 matrix, 32 MB).
    """

    port: str
    model: str
    events: str = "events.jsonl"
    status: str | None = None
    station: str = "NODE"
    baudrate: int = 921600
    counts_per_mps2: float = ADXL355_COUNTS_PER_MPS2
    step_s: float = 0.25
    threads: int = 1
    status_every_s: float = 5.0
    idle_exit_s: float | None = None
    min_rate_hz: float = 10.0
    max_rate_hz: float = 1000.0
    detector: DetectorConfig = field(default_factory=DetectorConfig)


# Frames stamped outside these years are a firmware or clock fault (a board without a
# time fix, microseconds sent as nanoseconds); they are dropped and counted.
EARLIEST_US = 946_684_800_000_000  # 2000-01-01
LATEST_US = 4_102_444_800_000_000  # 2100-01-01


class Pipeline:
    """Frames in, events out; no I/O, so it can be driven by tests and by the service.

    Every frame is checked before it can touch the window buffer: channel count against
    the model, timestamp and sampling rate against sane ranges, sequence number against
    duplicates. A rejected frame is counted (``counts``) and logged a limited number of
    times; nothing a frame carries can raise out of :meth:`on_frame`'s checks.
    """

    def __init__(self, backend: OnnxBackend, config: NodeConfig):
        self.backend = backend
        self.config = config
        self.prep = backend.metadata.preprocess_config()
        if "noise" not in backend.classes:
            raise ValueError(f"{config.model}: classes {backend.classes} have no 'noise'; "
                             "the detector needs it")
        self.noise_index = backend.classes.index("noise")
        self.windows = SlidingWindows(self.prep.window_s, config.step_s)
        self.detector = EventDetector(config.detector, station=config.station)
        self.n_components = len(backend.metadata.components)
        self.counts = {"frames": 0, "frames_rejected": 0, "frames_duplicate": 0, "frames_lost": 0,
                       "sequence_resets": 0, "windows": 0, "windows_dead": 0, "triggers": 0,
                       "events": 0, "errors": 0}
        self.last_sequence: int | None = None
        self.last_timestamp_us: int | None = None
        self.window_classes = {c: 0 for c in backend.classes}  # argmax of live windows
        self.rejected: dict[str, int] = {}  # rejected frames by reason
        self._log = LimitedLog(log)

    def _reject(self, frame, kind: str, why: str) -> list:
        self.counts["frames_rejected"] += 1
        self.rejected[kind] = self.rejected.get(kind, 0) + 1  # by reason, for replay-test
        self._log(logging.WARNING, kind, "frame seq=%d: %s; dropped", frame.sequence, why)
        return []

    def on_frame(self, frame) -> list[dict]:
        """Process one decoded frame; return the events it declared or closed."""
        if frame.n_channels != self.n_components:
            return self._reject(frame, "channels", f"{frame.n_channels} channels, model expects "
                                                   f"{self.n_components}")
        if not EARLIEST_US <= frame.timestamp_us <= LATEST_US:
            return self._reject(frame, "timestamp", f"timestamp {frame.timestamp_us} us is not "
                                                    "between 2000 and 2100")
        if not self.config.min_rate_hz <= frame.sampling_rate_hz <= self.config.max_rate_hz:
            return self._reject(frame, "rate", f"sampling rate {frame.sampling_rate_hz} Hz outside "
                                               f"{self.config.min_rate_hz}-{self.config.max_rate_hz} Hz")
        if frame.sequence == self.last_sequence and frame.timestamp_us == self.last_timestamp_us:
            self.counts["frames_duplicate"] += 1  # sent twice (a retransmitting link)
            return []
        self.counts["frames"] += 1
        self.last_sequence, self.last_timestamp_us = frame.sequence, frame.timestamp_us
        gaps_before, resets_before = self.windows.gaps, self.windows.sequence_resets
        samples = frame.samples / self.config.counts_per_mps2
        windows = self.windows.push(samples, frame.timestamp_us, frame.sampling_rate_hz,
                                    sequence=frame.sequence)
        self.counts["frames_lost"] = self.windows.lost_frames
        self.counts["sequence_resets"] = self.windows.sequence_resets
        restarted = self.windows.sequence_resets != resets_before
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
        raw = np.stack([w.data for w in windows])
        int16, peak = prepare_windows(raw, self.windows.rate_hz, self.prep)
        # A dead or disconnected sensor gives nothing to classify; its windows still
        # reach the detector, as noise, so an open event closes on time.
        live = peak > 1e-8
        probs = np.zeros((len(windows), len(self.backend.classes)))
        probs[:, self.noise_index] = 1.0
        if live.any():
            probs[live] = self.backend.predict(int16[live])
            for k in np.argmax(probs[live], axis=1):  # per-window class counts (replay-test)
                self.window_classes[self.backend.classes[k]] += 1
        self.counts["windows"] += int(live.sum())
        self.counts["windows_dead"] += int((~live).sum())
        for w, p, pk in zip(windows, probs, peak, strict=True):
            scored = Scored(w.center_us, dict(zip(self.backend.classes, map(float, p), strict=True)),
                            float(pk), w.data, w.sampling_rate_hz)
            out += self.detector.update(scored)
        return self._count(out)

    def flush(self) -> list[dict]:
        """Close any open event (end of stream, shutdown)."""
        return self._count(self.detector.reset())

    def _count(self, events: list[dict]) -> list[dict]:
        for e in events:
            self.counts["triggers" if e["type"] == "trigger" else "events"] += 1
        return events


def run(config: NodeConfig) -> dict:
    """Run the node until SIGTERM/SIGINT (or ``idle_exit_s`` of silence); return counters."""
    backend = OnnxBackend(config.model, threads=config.threads)
    log.info("model %s: %s, classes %s, input %s", config.model, backend.metadata.model,
             backend.classes, backend.metadata.input_scheme)
    pipeline = Pipeline(backend, config)
    decoder = FrameDecoder()
    source = SerialSource(config.port, config.baudrate)
    writer = JsonlWriter(config.events)
    stopping = []

    def _stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        stopping.append(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = time.monotonic()
    last_bytes = None
    last_frame = started
    next_status = started
    errors = LimitedLog(log)

    def handle(events) -> None:
        for event in events:
            try:
                writer.write(event)
            except Exception:  # an event that cannot be serialized must not stop the node
                pipeline.counts["errors"] += 1
                errors(logging.ERROR, "event", "event could not be written: %r", event, exc_info=True)

    def status() -> dict:
        return {"uptime_s": round(time.monotonic() - started, 1), "model": config.model,
                "decoder": decoder.stats.to_dict(), "pipeline": dict(pipeline.counts),
                "window_classes": dict(pipeline.window_classes),
                "frames_rejected_by": dict(pipeline.rejected),
                "gaps": pipeline.windows.gaps, "gaps_filled": pipeline.windows.filled_gaps,
                "samples_filled": pipeline.windows.filled_samples,
                "clock_steps": pipeline.windows.clock_steps, "port_open": source.is_open,
                "reconnects": source.reconnects,
                "events_written": writer.written, "events_held": len(writer.backlog)}

    while not stopping:
        data = source.read()
        now = time.monotonic()
        if data:
            last_bytes = now
            for frame in decoder.feed(data):
                accepted = pipeline.counts["frames"]
                try:
                    events = pipeline.on_frame(frame)
                except Exception:  # one bad frame must not take the node down
                    pipeline.counts["errors"] += 1
                    errors(logging.ERROR, "frame", "frame seq=%d: processing failed; skipped",
                           frame.sequence, exc_info=True)
                    continue
                if pipeline.counts["frames"] != accepted:  # rejected frames do not count as signal
                    last_frame = now
                handle(events)
        elif writer.backlog:
            writer.flush()
        if pipeline.detector.open is not None and now - last_frame > config.detector.off_s:
            # The stream stopped mid-event (cable pulled, board hung): close it on wall time.
            log.warning("no frames for %.1f s during an event; closing it", now - last_frame)
            handle(pipeline.flush())
        if config.status and now >= next_status:
            _write_status(config.status, status())
            next_status = now + config.status_every_s
        if config.idle_exit_s is not None and last_bytes is not None \
                and now - last_bytes > config.idle_exit_s:
            log.info("no bytes for %.1f s: exiting", config.idle_exit_s)
            break
    handle(pipeline.flush())
    writer.flush()
    source.close()
    final = status()
    if config.status:
        _write_status(config.status, final)
    log.info("stopped: %s", json.dumps(final))
    return final


def _write_status(path: str, status: dict) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(status, indent=2))
        tmp.replace(path)  # atomic: a reader never sees half a status file
    except OSError as exc:
        log.error("%s: cannot write status (%s)", path, exc)

