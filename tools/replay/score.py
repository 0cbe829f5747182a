"""Score a node's events against the true arrivals of the replayed records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .records import time_shift_s

# An event declared up to this long after the true P detects the earthquake even when its
# P pick is off by more than the tolerance (the P error then shows the poor pick), s.
DETECT_AFTER_P_S = 10.0


@dataclass
class Truth:
    """One replayed record and what it holds (times in UTC seconds since the epoch).

    ``kind`` is ``earthquake``, ``noise``, ``other`` or ``""`` (unknown). An earthquake
    without a known P (``p_s`` None) is detected by any event inside the record.
    """

    name: str
    kind: str
    start_s: float
    end_s: float
    p_s: float | None = None
    s_s: float | None = None

    @property
    def is_earthquake(self) -> bool:
        return self.p_s is not None or self.kind == "earthquake"

    def noise_s(self, tolerance_s: float) -> float:
        """Seconds of the record that hold no earthquake signal (false events live here)."""
        if self.kind in ("noise", "other") and self.p_s is None:
            return self.end_s - self.start_s
        if self.p_s is not None:
            return max(0.0, self.p_s - tolerance_s - self.start_s)
        return 0.0


def load_events(path, kind: str = "event") -> list:
    """Records of one ``type`` (``event``, ``trigger``) from a node's JSON-lines output."""
    path = Path(path)
    if not path.exists():
        return []
    events = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i}: not JSON ({exc.msg})") from None
        if isinstance(event, dict) and event.get("type") == kind:
            events.append(event)
    return events


def _time_s(event: dict) -> float:
    """The event's P pick, or its start when no P was picked, in UTC seconds."""
    t = event.get("p_time_us")
    return (t if t is not None else event["start_us"]) / 1e6


def score_record(events: list, truth: Truth, tolerance_s: float = 2.0, triggers=(),
                 window_s: float = 2.0) -> tuple[dict, set]:
    """Score the events that fall in one record; returns ``(row, indices used)``.

    An event with a P pick matches an earthquake when the pick lies within
    ``tolerance_s`` of the true P; an event without one (only S windows were seen)
    matches when the true P lies inside its span widened by ``tolerance_s``; an event
    declared from ``tolerance_s`` before to ``DETECT_AFTER_P_S`` after the true P matches
    too, whatever its pick (a detection with a poor pick: the P error says how poor).
    Picks within tolerance are preferred. With no true P known, or a P before the
    record's first full window (the record starts mid-event; ``started_after_p``, no P
    error), the first event in the record matches. Every other event in the
    record is a false event, except those after the true P of a detected earthquake
    (any, when its P is unknown), which are repeats of it (``repeat_events``); false
    events before the true P or in a noise record count as false events in noise. The
    detection delay is the end of the window that declared the trigger (center of the
    last triggering window + ``window_s / 2``) minus the P.
    """
    # An event's P pick may lie before the record (a picker looking back): its start counts.
    inside = [i for i, e in enumerate(events)
              if truth.start_s <= max(_time_s(e), e["start_us"] / 1e6) <= truth.end_s + tolerance_s]
    row = dict(record=truth.name, kind=truth.kind or "-", true_p=truth.p_s, true_s=truth.s_s,
               detected=None, p_error_s=None, s_error_s=None, delay_s=None, pga_mps2=None,
               p_prob=None, events=len(inside), false_events=0, false_in_noise=0)
    started_after_p = truth.p_s is not None and truth.p_s < truth.start_s + window_s
    row["started_after_p"] = started_after_p
    p_known = truth.p_s is not None and not started_after_p
    match = None
    if truth.is_earthquake:
        row["detected"] = False
        candidates = []
        for i in inside:
            e = events[i]
            if not p_known:
                candidates.append((0, e["start_us"], i))
                continue
            p_err = _time_s(e) - truth.p_s
            span = (e["start_us"] / 1e6 - tolerance_s, e["end_us"] / 1e6 + tolerance_s)
            picked = e.get("p_time_us") is not None
            if abs(p_err) <= tolerance_s if picked else span[0] <= truth.p_s <= span[1]:
                candidates.append((0, abs(p_err), i))
            elif -tolerance_s <= e["start_us"] / 1e6 - truth.p_s <= DETECT_AFTER_P_S:
                candidates.append((1, abs(p_err), i))
        if candidates:
            match = min(candidates)[2]
            e = events[match]
            row.update(detected=True, pga_mps2=e.get("pga_mps2"), p_prob=e.get("p_prob"))
            if e.get("p_time_us") is not None and p_known:
                row["p_error_s"] = round(e["p_time_us"] / 1e6 - truth.p_s, 2)
            if truth.s_s is not None and truth.s_s >= truth.start_s + window_s and \
                    e.get("s_time_us") is not None:
                row["s_error_s"] = round(e["s_time_us"] / 1e6 - truth.s_s, 2)
            trig = [t for t in triggers if t.get("start_us") == e["start_us"]]
            if trig and p_known:
                row["delay_s"] = round(trig[0]["end_us"] / 1e6 + window_s / 2 - truth.p_s, 2)
    false = [i for i in inside if i != match]
    if not truth.is_earthquake and truth.kind not in ("noise", "other"):
        false = []  # what the record holds is unknown: its events are neither true nor false
    # An earthquake declared twice (split by a gap, an unplug, a long coda) is not a false
    # alarm: unmatched events after the true P (any, when no P is known) are repeats.
    repeats = [i for i in false if truth.is_earthquake and row["detected"] and
               (not p_known or max(_time_s(events[i]), events[i]["start_us"] / 1e6) >=
                truth.p_s - tolerance_s)]
    false = [i for i in false if i not in repeats]
    row["repeat_events"] = len(repeats)
    row["false_events"] = len(false)
    noise_end = truth.end_s + tolerance_s if not truth.is_earthquake else \
        (truth.p_s - tolerance_s if p_known else truth.start_s)
    row["false_in_noise"] = sum(1 for i in false if _time_s(events[i]) < noise_end)
    return row, set(inside)


def score(events: list, truths: list, tolerance_s: float = 2.0, triggers=(),
          window_s: float = 2.0) -> dict:
    """Match events to the records' earthquakes; every other event is a false event.

    Returns
    -------
    dict
        ``rows`` (one per record, see :func:`score_record`) and ``summary`` counts:
        earthquakes, detected, recall, precision (matched events / events), false
        events, noise hours and false events per hour of noise.
    """
    rows, used = [], set()
    for truth in truths:
        row, inside = score_record(events, truth, tolerance_s, triggers, window_s)
        used |= inside
        rows.append(row)
    return {"rows": rows, "summary": summarize(rows, len(events) - len(used), truths, tolerance_s)}


def summarize(rows: list, stray_events: int = 0, truths=(), tolerance_s: float = 2.0) -> dict:
    """Totals of score rows; ``stray_events`` are events outside every record."""
    quakes = [r for r in rows if r["detected"] is not None]
    detected = sum(bool(r["detected"]) for r in quakes)
    n_events = sum(r.get("events", 0) for r in rows) + stray_events
    false = sum(r["false_events"] for r in rows) + stray_events
    repeats = sum(r.get("repeat_events", 0) for r in rows)
    noise_h = sum(t.noise_s(tolerance_s) for t in truths) / 3600.0
    in_noise = sum(r.get("false_in_noise", 0) for r in rows)
    p_err = [abs(r["p_error_s"]) for r in rows if r["p_error_s"] is not None]
    delays = [r["delay_s"] for r in rows if r.get("delay_s") is not None]
    summary = dict(
        records=len(rows), earthquakes=len(quakes), detected=detected,
        recall=round(detected / len(quakes), 3) if quakes else None,
        precision=round(detected / n_events, 3) if n_events else None,
        false_events=false, repeat_events=repeats, events=n_events, noise_hours=round(noise_h, 4),
        false_per_noise_hour=round(in_noise / noise_h, 2) if noise_h > 0 else None,
        median_abs_p_error_s=round(float(sorted(p_err)[len(p_err) // 2]), 2) if p_err else None,
        median_delay_s=round(float(sorted(delays)[len(delays) // 2]), 2) if delays else None,
    )
    summary["passed"] = summary["detected"] == summary["earthquakes"] and false == 0 and repeats == 0
    return summary


def fmt(value, spec: str) -> str:
    """``format(value, spec)``, or ``-`` for None."""
    return "-" if value is None else format(value, spec)


def _yes(detected) -> str:
    return {None: "-", True: "yes", False: "MISSED"}[detected]


def columns(header, lines) -> list[str]:
    """Left-aligned text columns."""
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return out


def format_table(result: dict) -> str:
    """Plain-text table of :func:`score` rows."""
    header = ("record", "kind", "detected", "P err s", "S err s", "PGA m/s^2", "p(P)", "false")
    lines = []
    for r in result["rows"]:
        lines.append((r["record"], r["kind"], _yes(r["detected"]), fmt(r["p_error_s"], "+.2f"),
                      fmt(r["s_error_s"], "+.2f"), fmt(r["pga_mps2"], ".3f"),
                      fmt(r["p_prob"], ".2f"), str(r["false_events"])))
    out = columns(header, lines)
    s = result["summary"]
    out.append(f"earthquakes detected: {s['detected']}/{s['earthquakes']}   "
               f"false events: {s['false_events']}   events written: {s['events']}")
    return "\n".join(out)


def truth_of(record) -> Truth:
    """The :class:`Truth` of a :class:`host_training.recordings.record.Record`.

    A record that ends before its P (the part before a long gap of a record that
    ``read_records`` split) holds no earthquake signal: it is noise, its events false.
    A later part of a split record that starts after the P holds the event's coda: the
    event is scored in the part that holds its P, this one's events are neither true
    nor false (kind unknown).
    """
    p_s = record.picks["P"].time.timestamp if "P" in record.picks else None
    if p_s is not None and p_s > record.endtime.timestamp:
        return Truth(name=record.id, kind="noise", start_s=record.starttime.timestamp,
                     end_s=record.endtime.timestamp)
    part = getattr(record, "part", None)
    if p_s is not None and part and part[0] > 1 and p_s < record.starttime.timestamp:
        return Truth(name=record.id, kind="", start_s=record.starttime.timestamp,
                     end_s=record.endtime.timestamp)
    return Truth(name=record.id, kind=record.kind or "", start_s=record.starttime.timestamp,
                 end_s=record.endtime.timestamp, p_s=p_s,
                 s_s=record.picks["S"].time.timestamp if "S" in record.picks else None)


def truths_from_sac(folder, units: str | None = None) -> list:
    """One :class:`Truth` per station record under ``folder`` (picks from SAC headers)."""
    from host_training.recordings.reader import read_records

    records, skipped = read_records([str(folder)], units=units)
    if not records and skipped:
        raise ValueError(f"{folder}: no usable record ({skipped[0][0]}: {skipped[0][1]})")
    return sorted((truth_of(r) for r in records), key=lambda t: t.start_s)


def score_records(events: list, records: list, tolerance_s: float = 2.0, triggers=(),
                  window_s: float = 2.0, time_mode: str = "auto") -> dict:
    """Score a node's events against records read by ``read_records`` (the two-terminal path).

    Each record is moved in time as ``tools replay --time`` moved it
    (:func:`tools.replay.records.time_shift_s`), then scored as replay-test scores it.

    Returns
    -------
    dict
        ``rows`` (one per record: the :func:`score_record` row plus rate, duration,
        components, units, picks' sources and time shift) and ``summary``.
    """
    rows, truths, used = [], [], set()
    for record in records:
        shift = time_shift_s(record, time_mode)
        shown = record.shifted(shift) if shift else record
        truth = truth_of(shown)
        row, inside = score_record(events, truth, tolerance_s, triggers, window_s)
        used |= inside
        row.update(rate_hz=record.sampling_rate_hz, duration_s=round(record.duration_s, 2),
                   components="".join(c if p else "-" for c, p in zip("ENZ", record.present,
                                                                      strict=True)),
                   units=record.units, picks={k: p.source for k, p in record.picks.items()},
                   time_shift_s=shift, actions=record.actions)
        rows.append(row)
        truths.append(truth)
    return {"rows": rows, "summary": summarize(rows, len(events) - len(used), truths, tolerance_s)}


def score_footer(rows, summary: dict) -> list[str]:
    """The lines under a per-record table: notes on its marks, then the detection summary."""
    out = []
    if any(r.get("started_after_p") for r in rows):
        out.append("P before the record's first window: any event in it detects the earthquake; "
                   "no P error")
    if summary.get("repeat_events"):
        out.append("+Nr: N more events during an earthquake already detected (split by a gap or unplug)")
    s = summary
    out.append(f"earthquakes detected {s['detected']}/{s['earthquakes']}  false events {s['false_events']}"
               f" (+{s.get('repeat_events', 0)} repeats)"
               f" (per noise hour: {fmt(s['false_per_noise_hour'], '.1f')} over {s['noise_hours']:.3f} h)"
               f"  median |P err| {fmt(s['median_abs_p_error_s'], '.2f')} s"
               f"  median delay {fmt(s['median_delay_s'], '.2f')} s")
    return out


def format_records_table(result: dict, skipped=()) -> str:
    """The per-record table of :func:`score_records`, in replay-test's columns."""
    header = ("record", "Hz", "s", "comp", "kind", "detected", "P err", "S err", "delay", "PGA",
              "false")
    lines = []
    for r in result["rows"]:
        lines.append((r["record"], f"{r['rate_hz']:g}", f"{r['duration_s']:.0f}", r["components"],
                      r["kind"], _yes(r["detected"]), fmt(r["p_error_s"], "+.2f"),
                      fmt(r["s_error_s"], "+.2f"), fmt(r["delay_s"], ".2f"), fmt(r["pga_mps2"], ".2f"),
                      str(r["false_events"]) + (f"+{r['repeat_events']}r" if r.get("repeat_events") else "")))
    out = columns(header, lines)
    s = result["summary"]
    out += score_footer(result["rows"], s)
    out[-1] += f"  events written {s['events']}"
    for where, why in skipped:
        out.append(f"skipped {where}: {why}")
    return "\n".join(out)


def main_score(args) -> int:
    """``python -m tools score EVENTS RECORDS...``: exit 0 when every earthquake was detected
    with no false event, 1 otherwise or when a record was skipped, 2 on bad input."""
    import sys

    from host_training.recordings.reader import read_records
    from host_training.recordings.record import RecordError

    events_path = Path(args.events)
    if not events_path.is_file():
        print(f"error: {events_path}: no such events file (the node's --events output)", file=sys.stderr)
        return 2
    for flag, value in (("--catalog", args.catalog), ("--inventory", args.inventory),
                        ("--quakeml", args.quakeml)):
        if value is not None and not Path(value).is_file():
            print(f"error: {flag} {value}: no such file", file=sys.stderr)
            return 2
    try:
        events = load_events(events_path)
        triggers = load_events(events_path, "trigger")
        records, skipped = read_records(args.records, units=args.units, inventory=args.inventory,
                                        events=args.quakeml, catalog=args.catalog, nan_gaps=True)
        if not records:
            why = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
            raise ValueError(f"no usable record in {' '.join(map(str, args.records))}{why}")
        result = score_records(events, records, args.tolerance_s, triggers, args.window_s, args.time)
    except (ValueError, RecordError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["skipped"] = [list(x) for x in skipped]
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_records_table(result, skipped))
    return 0 if result["summary"]["passed"] and not skipped else 1
