"""One station-day through the node's own code: pipeline, detector, picker, event sink.

For each record of the day (:func:`host_training.recordings.reader.read_records`, trimmed
to the day), the same steps as replay-test (:mod:`tools.replay.replay_test`): the node's
2000-2100 time window, its rate limits, the sensor's digitizing, then the frames the node
would decode (:mod:`tools.scan.frames`) into a fresh :class:`edge_runtime.service.Pipeline`
built from the node's own config defaults, its records handed to the node's own
:class:`~edge_runtime.sink.EventSink` writing the node's event file. No pty, no node process;
a record is one stream, as replay-test gives each record a fresh node (the reader splits a
station's data at gaps longer than 10 s, where the node too would restart its windows and
close its event).
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge_runtime.sensors import DEFAULT_SENSOR

from .archive import StationDay
from .frames import node_frames

log = logging.getLogger(__name__)

DAY_S = 86_400.0
TRACE_STEP_S = 10.0  # resolution of the day's trace kept for its plot, s


@dataclass(frozen=True)
class ScanSettings:
    """What every station-day of a scan shares (sent to each worker)."""

    model: str
    units: str | None = None
    inventory: str | None = None
    catalog: str | None = None
    quakeml: str | None = None
    sensor: str = DEFAULT_SENSOR
    missing: str = "zeros"
    time: str = "auto"
    tolerance_s: float = 2.0
    seed: int = 0
    batch_s: float = 60.0
    all_windows: bool = False

    def __post_init__(self):
        if self.missing not in ("zeros", "self-noise"):
            raise ValueError(f"--missing {self.missing!r}: use zeros or self-noise")
        if self.batch_s < 0:
            raise ValueError(f"--batch-s {self.batch_s}: must be >= 0")

    def fingerprint(self) -> str:
        """What makes two runs' station-days interchangeable (the model's bytes included)."""
        model_crc = zlib.crc32(Path(self.model).read_bytes())
        return f"{zlib.crc32(json.dumps(asdict(self), sort_keys=True).encode()):08x}-{model_crc:08x}"


@lru_cache(maxsize=4)
def _backend(model: str):
    """The node's backend for ``model``, one per process (a worker keeps it across station-days)."""
    from edge_runtime.backends import load_backend

    return load_backend(model, threads=1)


@lru_cache(maxsize=4)
def _model_info(model: str) -> dict:
    """The model's window length, filter and classes, read once per process (not per station-day)."""
    from tools.replay.records import model_info

    return model_info(model)


def _node_config(settings: ScanSettings, station: str, events: Path, sensor):
    """The node's config as replay-test starts it (its defaults; station and scale as flags)."""
    from edge_runtime.config import build_config

    return build_config({}, {"port": "scan", "model": settings.model, "station": station,
                             "counts_per_mps2": sensor.counts_per_mps2, "events": str(events)})


def _trim_to_day(record, day: StationDay):
    """The part of ``record`` inside the station-day, or None."""
    rate = record.sampling_rate_hz
    start = record.starttime.timestamp
    first = max(0, int(np.ceil((day.start_s - start) * rate - 1e-6)))
    stop = min(record.data.shape[1], int(np.ceil((day.start_s + DAY_S - start) * rate - 1e-6)))
    if stop - first <= 0:
        return None
    if first == 0 and stop == record.data.shape[1]:
        return record
    return replace(record, data=record.data[:, first:stop], starttime=record.starttime + first / rate,
                   actions=record.actions + [f"trimmed to {day.day}"])


def _records(day: StationDay, settings: ScanSettings, window_s: float):
    """The day's records of its station, trimmed to the day; ``(records, skipped)``."""
    from host_training.recordings.reader import read_records
    from host_training.recordings.record import RecordError

    try:
        records, skipped = read_records([*day.files, *day.metadata], units=settings.units,
                                        inventory=settings.inventory, events=settings.quakeml,
                                        catalog=settings.catalog, min_duration_s=window_s, nan_gaps=True,
                                        float32_where_exact=True)  # a 200 Hz day: 207 MB, not 415
    except RecordError as exc:
        return [], [(day.key, str(exc))]
    out = []
    for record in records:
        if ".".join(record.station.split(".")[:2]) != day.station:
            continue
        record = _trim_to_day(record, day)
        if record is not None and record.duration_s >= window_s:
            out.append(record)
    return out, skipped


class _DayTrace:
    """Peak |acceleration| about its mean in every ``TRACE_STEP_S`` of the day, over the
    components, fed a record's samples in order (whole, or piece after piece: a block
    spanning two pieces is the same block), m/s^2. About the block's mean: an
    accelerometer's vertical reads 1 g, which would otherwise be all the trace shows."""

    def __init__(self, day: StationDay):
        self.day = day
        self.peak = np.full(int(DAY_S / TRACE_STEP_S), np.nan)
        self.step, self.block, self.carry = 1, 0, None

    def begin(self, start_s: float, rate_hz: float) -> None:
        """A new record starting at ``start_s`` (UTC s): its blocks start at its first sample."""
        self.step = max(1, int(round(TRACE_STEP_S * rate_hz)))
        self.block = int((start_s - self.day.start_s) // TRACE_STEP_S)
        self.carry = None

    def feed(self, data: np.ndarray) -> None:
        """The record's next ``(C, m)`` samples, m/s^2."""
        if self.carry is not None:
            need = self.step - self.carry.shape[1]
            if data.shape[1] < need:
                self.carry = np.concatenate([self.carry, data], axis=1)
                return
            self._blocks(np.concatenate([self.carry, data[:, :need]], axis=1))
            data = data[:, need:]
        m = self._blocks(data)
        self.carry = data[:, m * self.step:].copy() if data.shape[1] > m * self.step else None

    def _blocks(self, data: np.ndarray) -> int:
        step = self.step
        m = data.shape[1] // step
        blocks = np.empty(m)
        per = max(1, int(PIECE_S / TRACE_STEP_S))  # blocks at a time: no copy of the whole day
        for b in range(0, m, per):
            part = data[:, b * step:min(m, b + per) * step].reshape(data.shape[0], -1, step)
            blocks[b:b + per] = np.abs(part - part.mean(axis=2, keepdims=True)).max(axis=(0, 2))
        first, n = self.block, len(self.peak)
        lo, hi = max(0, first), min(n, first + m)
        if hi > lo:
            self.peak[lo:hi] = np.fmax(self.peak[lo:hi], blocks[lo - first:hi - first])
        self.block += m
        return m

    def values(self) -> list:
        """The peaks, None where the day has no data."""
        return [None if not np.isfinite(v) else round(float(v), 6) for v in self.peak]


class _Sink:
    """The node's event sink with its event file as the only output, for one station-day."""

    def __init__(self, path: Path):
        from edge_runtime.events import EventFile, JsonlWriter
        from edge_runtime.logs import LimitedLog
        from edge_runtime.sink import EventSink

        self.errors = 0
        writer = JsonlWriter(path, spools=[path.with_name(path.name + ".spool")])
        writer.start()
        self.sink = EventSink([EventFile(writer)], faults=LimitedLog(log), count_error=self._error)

    def _error(self) -> None:
        self.errors += 1

    def emit(self, records: list) -> None:
        self.sink.emit(records)

    def close(self) -> None:
        self.sink.close()


PIECE_S = 3600.0  # samples digitized and run at a time, s: bounds the scan's own arrays


def _digitized_pieces(record, sensor, missing: str, rng, piece_s: float | None = None):
    """The record's counts as the sensor digitizes them (:func:`tools.replay.records.digitize`),
    ``piece_s`` at a time: ``(counts (C, m) int32, n_clipped)`` per piece. Rounding and
    clipping are per sample, so the pieces are the whole record's counts; a missing
    component drawn as self-noise is drawn for the whole record at once, in digitize's order."""
    from tools.replay.records import digitize

    absent = [i for i, present in enumerate(record.present) if not present]
    if absent and missing == "self-noise":
        counts, notes = digitize(record, sensor, missing, rng)
        yield counts, notes["clipped"]
        return
    step = max(1, int((piece_s or PIECE_S) * record.sampling_rate_hz))
    n_comp, n = record.data.shape
    for first in range(0, n, step):
        stop = min(n, first + step)
        counts = np.empty((n_comp, stop - first), dtype=np.int32)
        clipped = 0
        for i in range(n_comp):
            counts[i], k = sensor.digitize(record.data[i, first:stop])
            clipped += k
        yield counts, clipped


def _run_continuous(pieces, start_us: int, pipeline, sensor, settings: ScanSettings, sink,
                    rng) -> tuple[list, int, int]:
    """A record the node takes as one unbroken stream (:class:`.stream.ChunkedStream`), given
    as the records of its consecutive ``pieces`` (itself alone, or the pieces it was read in);
    ``(declared, clipped, samples)``."""
    from edge_runtime.protocol import Frame
    from edge_runtime.sequencing import check_counts

    from .frames import REPLAY_SAMPLES_PER_FRAME
    from .stream import ChunkedStream

    declared, clipped, n, stream = [], 0, 0, None
    scale = pipeline.config.counts_per_mps2
    for piece in pieces:
        if stream is None:
            stream = ChunkedStream(pipeline, piece.sampling_rate_hz, start_us, settings.all_windows)
            # The time fix the frames would carry into the events (replay-test's frames say none).
            pipeline.time_fix = Frame(0, start_us, piece.sampling_rate_hz,
                                      np.zeros((1, pipeline.n_components), dtype=np.int32)).time_fix
        for counts, k in _digitized_pieces(piece, sensor, settings.missing, rng):
            clipped += k
            pipeline.counts["samples_clipped"] += check_counts(counts, pipeline.sensor)[1]
            out = stream.push(counts / scale)  # the node's samples: counts / counts_per_mps2, float64
            declared += out
            sink.emit(out)
        n += piece.data.shape[1]
    # The frames replay-test's sender would have sent, all delivered in order.
    frames = -(-n // REPLAY_SAMPLES_PER_FRAME)
    for key in ("frames_in", "frames", "frames_delivered"):
        pipeline.counts[key] = frames
    return declared, clipped, n


def run_record(record, settings: ScanSettings, sink: _Sink, events_path: Path, sensor, rng,
               pieces=None) -> dict:
    """One record through a fresh node pipeline, as replay-test's node would take it.

    A record the node takes as one unbroken stream (:func:`.stream.continuous`) runs as
    batches of windows cut from its samples; any other (a sample period that is not a whole
    number of microseconds, time stamps outside 2000-2100, a rate the node refuses) as the
    frames replay-test sends (:mod:`.frames`) through :meth:`Pipeline.on_frame`.
    ``pieces``: the record's samples as consecutive records (:mod:`.pieces`), at most a day
    of them, instead of its own ``data``; such a record must be an unbroken stream.

    Returns
    -------
    dict
        The pipeline's counters and the events and triggers it declared (node records).

    Raises
    ------
    ReadWhole
        For ``pieces`` of a record that is not one unbroken stream.
    """
    from edge_runtime.service import Pipeline
    from tools.replay.records import digitize

    from .pieces import ReadWhole
    from .stream import continuous

    station = record.station.split(".")[1] or "NODE"
    pipeline = Pipeline(_backend(settings.model), _node_config(settings, station, events_path, sensor))
    start_us = int(round(record.starttime.timestamp * 1e6))
    missing = "".join("ENZ"[i] for i, present in enumerate(record.present) if not present)
    # pieces: at most the day, whose end decides whether the node takes the time stamps
    day_n = int(DAY_S * record.sampling_rate_hz)
    shape = record.data.shape if pieces is None else (len(record.present), day_n)
    if settings.batch_s > 0 and continuous(shape, start_us, record.sampling_rate_hz, pipeline):
        declared, clipped, _ = _run_continuous([record] if pieces is None else pieces, start_us, pipeline,
                                               sensor, settings, sink, rng)
    elif pieces is not None:
        raise ReadWhole(f"{record.id} is not one unbroken stream for the node")
    else:
        counts, notes = digitize(record, sensor, settings.missing, rng)
        declared, clipped = _run_frames(counts, record, pipeline, settings, sink), notes["clipped"]
    out = pipeline.flush()
    declared += out
    sink.emit(out)
    return {"counters": pipeline.counters(), "declared": declared, "clipped": clipped, "missing": missing}


def _run_frames(counts, record, pipeline, settings: ScanSettings, sink) -> list:
    """The record as replay-test's frames through :meth:`Pipeline.on_frame`; events declared."""
    declared = []
    start_us = int(round(record.starttime.timestamp * 1e6))
    for frame in node_frames(counts, record.sampling_rate_hz, start_us, settings.batch_s):
        try:
            out = pipeline.on_frame(frame)
        except Exception:  # as the node's loop: one bad frame must not end the stream
            pipeline.count_error()
            log.exception("%s: frame seq=%d: processing failed; skipped", record.id, frame.sequence)
            continue
        declared += out
        sink.emit(out)
    return declared


def _row(record, shown, run: dict, events: list, triggers: list, settings: ScanSettings, info: dict,
         shift_s: float, wall_s: float, workdir: str) -> tuple[dict, dict]:
    """One record's row, with replay-test's keys, and its truth (as a dict)."""
    from tools.replay.score import score_record, truth_of

    truth = truth_of(shown)
    row, _ = score_record(events, truth, settings.tolerance_s, triggers, info["window_s"])
    status = run["counters"]
    pipe = status["pipeline"]
    row.update(
        record=record.id, rate_hz=record.sampling_rate_hz, duration_s=round(record.duration_s, 2),
        below_model_rate=bool(info["target_rate_hz"] and record.sampling_rate_hz < info["target_rate_hz"]),
        components="".join(c if p else "-" for c, p in zip("ENZ", record.present, strict=True)),
        missing_as=(settings.missing if run["missing"] else None), clipped=run["clipped"],
        time_shift_s=shift_s, picks={k: p.source for k, p in record.picks.items()}, units=record.units,
        actions=record.actions, node_exit=0, error=None, frames_sent=pipe["frames_in"],
        frames_decoded=pipe["frames_in"], frames_accepted=pipe["frames"],
        dropped={"crc": 0, "header": 0, "rejected": status["frames_rejected_by"],
                 "duplicate": pipe["frames_duplicate"], "lost": pipe["frames_lost"]},
        window_classes=status["window_classes"], windows=pipe["windows"], faults={}, ledger=[],
        windows_unclassified=pipe["windows"] - sum(status["window_classes"].values()),
        wall_s=round(wall_s, 3), workdir=workdir, triggers=len(triggers), gaps=status["gaps"],
        gaps_filled=status["gaps_filled"], windows_dead=pipe["windows_dead"])
    return row, asdict(truth)


def _station_day_stats(day: StationDay, rows: list, truths: list, trace: list, notes: list,
                       wall_s: float) -> dict:
    """Per station-day figures: windows per class, triggers, events, gaps, clipped samples,
    and the triggers and events on data marked as noise (false alarms)."""
    classes: dict[str, int] = {}
    for r in rows:
        for k, v in (r["window_classes"] or {}).items():
            classes[k] = classes.get(k, 0) + v
    noise = [(r, t) for r, t in zip(rows, truths, strict=True) if t["kind"] == "noise"]
    covered = sum(r["duration_s"] for r in rows)
    merged = sum(1 for r in rows for a in r["actions"] if "gap" in a.lower())
    return {"station": day.station, "day": day.day, "records": len(rows), "covered_s": round(covered, 2),
            "rates_hz": sorted({r["rate_hz"] for r in rows}), "windows": sum(r["windows"] for r in rows),
            "window_classes": classes, "windows_dead": sum(r["windows_dead"] for r in rows),
            "windows_unclassified": sum(r["windows_unclassified"] for r in rows),
            "triggers": sum(r["triggers"] for r in rows), "events": sum(r["events"] for r in rows),
            # records of the day after the first start after a gap the reader would not bridge
            "gaps": max(0, len(rows) - 1) + merged + sum(r["gaps"] for r in rows),
            "clipped_samples": sum(r["clipped"] for r in rows),
            "noise_s": round(sum(r["duration_s"] for r, _ in noise), 2),
            "noise_triggers": sum(r["triggers"] for r, _ in noise),
            "noise_events": sum(r["events"] for r, _ in noise),
            "notes": notes, "wall_s": round(wall_s, 3), "trace_step_s": TRACE_STEP_S, "trace": trace}


def _whole_day_runs(day: StationDay, settings: ScanSettings, info: dict, sensor, sink, events_path,
                    trace: _DayTrace, skipped: list, notes: list):
    """Yield ``(record, shown, shift_s, run, wall_s)`` for each record of the day read whole."""
    from tools.replay.records import check_rate, fit_rate, time_shift_s

    records, bad = _records(day, settings, info["window_s"])
    skipped += bad
    rates = sorted({r.sampling_rate_hz for r in records})
    if len(rates) > 1:
        notes.append(f"{day.key}: sampling rate changes during the day ({', '.join(f'{r:g}' for r in rates)} "
                     "Hz); each record runs at its own rate")
    for r in records:
        trace.begin(r.starttime.timestamp, r.sampling_rate_hz)
        trace.feed(r.data)
    while records:
        record = records.pop(0)  # its samples are let go once it has run
        try:
            record = fit_rate(record, info)
            check_rate(record, info)
        except ValueError as exc:
            where = ", ".join(Path(f).name for f in record.files) or record.id
            skipped.append((where, f"{record.id}: {exc}"))
            continue
        shift = time_shift_s(record, settings.time)
        shown = record.shifted(shift) if shift else record
        rng = np.random.default_rng(settings.seed + zlib.crc32(record.id.encode()))
        t0 = time.monotonic()
        run = run_record(shown, settings, sink, events_path, sensor, rng)
        yield record, shown, shift, run, time.monotonic() - t0


def _day_in_pieces_runs(day: StationDay, settings: ScanSettings, info: dict, sensor, sink, events_path,
                        trace: _DayTrace, skipped: list, notes: list, piece_s: float):
    """Yield the one ``(record, shown, shift_s, run, wall_s)`` of a day read in pieces
    (:mod:`.pieces`); raises :class:`.pieces.ReadWhole` where that would not be the same."""
    from tools.replay.records import check_rate, fit_rate, time_shift_s

    from .pieces import ReadWhole, day_pieces, day_record

    pieces = day_pieces(day, settings, info["window_s"], DAY_S, piece_s)
    first = next(pieces, None)
    if first is None:
        raise ReadWhole(f"{day.key}: no record in the day")
    whole, start = first[0], first[1].starttime
    try:
        check_rate(whole, info)
    except ValueError as exc:
        raise ReadWhole(str(exc)) from None
    if not all(whole.present) and settings.missing == "self-noise":
        raise ReadWhole("a missing component drawn as self-noise for the whole record")
    seen = {"n": 0, "beyond": False}

    def samples():
        for _, piece, beyond in itertools.chain([first], pieces):
            if time_shift_s(piece, settings.time):
                raise ReadWhole(f"{day.key}: its records are moved in time")
            trace.feed(piece.data)
            seen.update(n=seen["n"] + piece.data.shape[1], beyond=beyond)
            yield piece

    trace.begin(start.timestamp, whole.sampling_rate_hz)
    rng = np.random.default_rng(settings.seed + zlib.crc32(whole.id.encode()))
    t0 = time.monotonic()
    run = run_record(replace(whole, starttime=start), settings, sink, events_path, sensor, rng, samples())
    record = fit_rate(day_record(whole, start, seen["n"], seen["beyond"], day.day), info)
    yield record, record, 0.0, run, time.monotonic() - t0


def _scan_day(day: StationDay, settings: ScanSettings, runs, started: float, **kw) -> dict:
    """The station-day's result from ``runs`` (:func:`_whole_day_runs` or :func:`_day_in_pieces_runs`)."""
    from edge_runtime.sensors import get_sensor

    info = _model_info(settings.model)
    sensor = get_sensor(settings.sensor)
    rows, truths, notes, skipped = [], [], [], []
    trace = _DayTrace(day)
    with tempfile.TemporaryDirectory(prefix="scan.") as tmp:
        events_path = Path(tmp) / "events.jsonl"
        sink = _Sink(events_path)
        try:
            for record, shown, shift, run, wall in runs(day, settings, info, sensor, sink, events_path, trace,
                                                        skipped, notes, **kw):
                events = [e for e in run["declared"] if e["type"] == "event"]
                triggers = [e for e in run["declared"] if e["type"] == "trigger"]
                row, truth = _row(record, shown, run, events, triggers, settings, info, shift, wall, day.key)
                rows.append(row)
                truths.append(truth)
        finally:
            sink.close()
        lines = events_path.read_text().splitlines() if events_path.exists() else []
    wall_s = time.monotonic() - started
    stats = _station_day_stats(day, rows, truths, trace.values(), notes, wall_s)
    return {"key": day.key, "station": day.station, "day": day.day, "lines": lines, "rows": rows,
            "truths": truths, "stats": stats, "skipped": [list(s) for s in skipped], "notes": notes}


def scan_station_day(day: StationDay, settings: ScanSettings, piece_s: float | None = None) -> dict:
    """Run one station-day through the node's code; everything it produced, as plain data.

    An SDS day of miniSEED that reads as one record is read ``piece_s`` at a time
    (:mod:`.pieces`, default :data:`.pieces.READ_PIECE_S`; 0: whole), the same samples and
    decisions as reading it whole, with a few hours of samples in memory instead of the day.
    The result travels back to the caller (a Dask worker may be another machine), so it
    holds the node's event lines themselves, not a path to them.

    Returns
    -------
    dict
        ``key``, ``station``, ``day``, ``lines`` (the node's event file, one JSON record per
        line), ``rows`` (replay-test's row per record), ``truths``, ``stats``, ``skipped``
        ((where, why) list) and ``notes``.
    """
    from .pieces import READ_PIECE_S, ReadWhole, why_read_whole

    started = time.monotonic()
    piece_s = READ_PIECE_S if piece_s is None else piece_s
    why = why_read_whole(day, settings, DAY_S) if piece_s > 0 else "piece_s 0"
    if why is None:
        try:
            return _scan_day(day, settings, _day_in_pieces_runs, started, piece_s=piece_s)
        except ReadWhole as exc:
            why = str(exc)
    log.debug("%s read whole: %s", day.key, why)
    return _scan_day(day, settings, _whole_day_runs, started)
