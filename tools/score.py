"""Score node events against the picks in SAC headers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Truth:
    """One replayed record and its true arrivals (UTC seconds since the epoch)."""

    name: str
    kind: str
    start_s: float
    end_s: float
    p_s: float | None = None
    s_s: float | None = None


def load_events(path) -> list:
    """Closed events (``type: event``) from a node's JSON-lines output."""
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
        if event.get("type") == "event":
            events.append(event)
    return events


def _time_s(event: dict) -> float:
    """The event's P pick, or its start when no P was picked, in UTC seconds."""
    t = event.get("p_time_us")
    return (t if t is not None else event["start_us"]) / 1e6


def score(events: list, truths: list, tolerance_s: float = 2.0) -> dict:
    """Match events to earthquakes; every other event is a false event.

    An event with a P pick matches an earthquake when the pick lies within
    ``tolerance_s`` of the true P; an event without one (only S windows were seen)
    matches when the true P lies inside its span widened by ``tolerance_s``.

    Returns
    -------
    dict
        ``rows`` (one per record) and ``summary`` counts.
    """
    rows, used = [], set()
    for truth in truths:
        inside = [i for i, e in enumerate(events) if truth.start_s <= _time_s(e) <= truth.end_s]
        row = dict(record=truth.name, kind=truth.kind, true_p=truth.p_s, true_s=truth.s_s,
                   detected=None, p_error_s=None, s_error_s=None, pga_mps2=None,
                   p_prob=None, false_events=0)
        match = None
        if truth.p_s is not None:
            row["detected"] = False
            candidates = []
            for i in inside:
                e = events[i]
                p_err = _time_s(e) - truth.p_s
                span = (e["start_us"] / 1e6 - tolerance_s, e["end_us"] / 1e6 + tolerance_s)
                picked = e.get("p_time_us") is not None
                if abs(p_err) <= tolerance_s if picked else span[0] <= truth.p_s <= span[1]:
                    candidates.append((abs(p_err), i))
            if candidates:
                match = min(candidates)[1]
                e = events[match]
                row.update(detected=True, pga_mps2=e["pga_mps2"], p_prob=e["p_prob"])
                if e.get("p_time_us") is not None:
                    row["p_error_s"] = round(e["p_time_us"] / 1e6 - truth.p_s, 2)
                if truth.s_s is not None and e.get("s_time_us") is not None:
                    row["s_error_s"] = round(e["s_time_us"] / 1e6 - truth.s_s, 2)
        row["false_events"] = sum(1 for i in inside if i != match)
        used.update(inside)
        rows.append(row)
    quakes = [r for r in rows if r["detected"] is not None]
    summary = dict(
        earthquakes=len(quakes), detected=sum(bool(r["detected"]) for r in quakes),
        false_events=sum(r["false_events"] for r in rows) + len(set(range(len(events))) - used),
        events=len(events),
    )
    summary["passed"] = summary["detected"] == summary["earthquakes"] and summary["false_events"] == 0
    return {"rows": rows, "summary": summary}


def format_table(result: dict) -> str:
    """Plain-text table of :func:`score` rows."""
    header = ("record", "kind", "detected", "P err s", "S err s", "PGA m/s^2", "p(P)", "false")
    lines = []
    for r in result["rows"]:
        detected = {None: "-", True: "yes", False: "MISSED"}[r["detected"]]
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append((r["record"], r["kind"], detected, fmt(r["p_error_s"], "+.2f"),
                      fmt(r["s_error_s"], "+.2f"), fmt(r["pga_mps2"], ".3f"),
                      fmt(r["p_prob"], ".2f"), str(r["false_events"])))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    s = result["summary"]
    out.append(f"earthquakes detected: {s['detected']}/{s['earthquakes']}   "
               f"false events: {s['false_events']}   events written: {s['events']}")
    return "\n".join(out)


def truths_from_sac(folder) -> list:
    """One :class:`Truth` per 3-component record under ``folder`` (picks from SAC headers)."""
    from host_training.data.sac import read_records

    truths = []
    records, _ = read_records(folder)
    for rec in records:
        tr = rec.stream[0]
        kind = (getattr(tr.stats, "sac", {}) or {}).get("kevnm", "") or rec.name
        truths.append(Truth(
            name=rec.name, kind=kind.strip(), start_s=tr.stats.starttime.timestamp,
            end_s=tr.stats.endtime.timestamp,
            p_s=rec.picks["P"].timestamp if "P" in rec.picks else None,
            s_s=rec.picks["S"].timestamp if "S" in rec.picks else None))
    return sorted(truths, key=lambda t: t.start_s)
