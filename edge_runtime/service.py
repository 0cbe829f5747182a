"""The node's loop: serial bytes -> frames -> windows -> model -> events."""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backend import OnnxBackend
from .detector import DetectorConfig, EventDetector, Scored
from .events import JsonlWriter
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
    detector: DetectorConfig = field(default_factory=DetectorConfig)


class Pipeline:
    """Frames in, events out; no I/O, so it can be driven by tests and by the service."""

    def __init__(self, backend: OnnxBackend, config: NodeConfig):
        self.backend = backend
        self.config = config
        self.prep = backend.metadata.preprocess_config()
        self.windows = SlidingWindows(self.prep.window_s, config.step_s)
        self.detector = EventDetector(config.detector, station=config.station)
        self.n_components = len(backend.metadata.components)
        self.counts = {"frames": 0, "frames_rejected": 0, "frames_lost": 0, "sequence_resets": 0,
                       "windows": 0, "windows_dead": 0, "triggers": 0, "events": 0, "errors": 0}
        self.last_sequence: int | None = None

    def on_frame(self, frame) -> list[dict]:
        if frame.n_channels != self.n_components:
            self.counts["frames_rejected"] += 1
            log.warning("frame seq=%d has %d channels, model expects %d; dropped",
                        frame.sequence, frame.n_channels, self.n_components)
            return []
        self.counts["frames"] += 1
        self._count_lost(frame.sequence)
        gaps_before = self.windows.gaps
        samples = frame.samples / self.config.counts_per_mps2
        windows = self.windows.push(samples, frame.timestamp_us, frame.sampling_rate_hz)
        out = []
        if self.windows.gaps != gaps_before:
            # A lost frame or two must not split an earthquake in two: the event stays
            # open and closes by the usual off_s rule. A long gap, or time going
            # backwards (a board restart), ends it.
            gap_s = self.windows.last_gap_s
            if gap_s < 0 or gap_s > self.config.detector.off_s:
                out += self.detector.reset()
            else:
                self.detector.pending = []
        if not windows:
            return self._count(out)
        raw = np.stack([w.data for w in windows])
        int16, peak = prepare_windows(raw, frame.sampling_rate_hz, self.prep)
        live = peak > 1e-8  # a dead or disconnected sensor gives nothing to classify
        self.counts["windows_dead"] += int((~live).sum())
        if live.any():
            probs = self.backend.predict(int16[live])
            for w, p, pk in zip([w for w, ok in zip(windows, live) if ok], probs, peak[live]):
                self.counts["windows"] += 1
                scored = Scored(w.center_us, dict(zip(self.backend.classes, map(float, p))),
                                float(pk), w.data, w.sampling_rate_hz)
                out += self.detector.update(scored)
        return self._count(out)

    def _count_lost(self, sequence: int) -> None:
        """Frames missing between two received ones, from the uint32 sequence numbers."""
        if self.last_sequence is not None:
            missing = (sequence - self.last_sequence - 1) % 2**32
            if missing > 2**16:  # a jump no line loss explains: the board restarted
                self.counts["sequence_resets"] += 1
            else:
                self.counts["frames_lost"] += missing
        self.last_sequence = sequence

    def flush(self) -> list[dict]:
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
    next_status = started

    def status() -> dict:
        return {"uptime_s": round(time.monotonic() - started, 1), "model": config.model,
                "decoder": decoder.stats.to_dict(), "pipeline": dict(pipeline.counts),
                "gaps": pipeline.windows.gaps, "port_open": source.is_open,
                "reconnects": source.reconnects,
                "events_written": writer.written, "events_held": len(writer.backlog)}

    while not stopping:
        data = source.read()
        now = time.monotonic()
        if data:
            last_bytes = now
            for frame in decoder.feed(data):
                try:
                    events = pipeline.on_frame(frame)
                except Exception:  # one bad frame must not take the node down
                    pipeline.counts["errors"] += 1
                    log.exception("frame seq=%d: processing failed; skipped", frame.sequence)
                    continue
                for event in events:
                    writer.write(event)
        elif writer.backlog:
            writer.flush()
        if config.status and now >= next_status:
            _write_status(config.status, status())
            next_status = now + config.status_every_s
        if config.idle_exit_s is not None and last_bytes is not None \
                and now - last_bytes > config.idle_exit_s:
            log.info("no bytes for %.1f s: exiting", config.idle_exit_s)
            break
    for event in pipeline.flush():
        writer.write(event)
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


def config_dict(config: NodeConfig) -> dict:
    return asdict(config)
