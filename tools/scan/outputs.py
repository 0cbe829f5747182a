"""What a scan leaves behind: the catalogue, per-station-day statistics, plots, the summary.

* ``catalog.jsonl``: the node's own event records (its event file, every station-day);
* ``catalog.csv`` and ``catalog.xml`` (QuakeML, written by ObsPy): one row / one event per
  closed event, with its P and S picks;
* ``station_days.csv`` / ``.json``: windows per class, triggers, events, gaps, clipped
  samples, and triggers and events on data marked as noise, per station-day;
* ``events_per_day.png`` (+ ``.json``): events and triggers per station and day;
  ``trace_*.png`` (+ ``.json``): the day's peak acceleration (about each 10 s mean) with its
  triggers and events, for the station-days with the most triggers;
* ``summary.json``: ``summary``, ``rows``, ``skipped`` with replay-test's keys, plus the
  station-days and the false alarms per day of noise.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

CSV_FIELDS = ("event_id", "station_id", "station", "day", "start", "end", "p_time", "p_prob", "s_time",
              "s_prob", "pga_mps2", "n_windows", "model", "model_version")
STAT_FIELDS = ("station", "day", "records", "covered_s", "windows", "windows_P", "windows_S",
               "windows_noise", "windows_dead", "windows_unclassified", "triggers", "events", "gaps",
               "clipped_samples", "noise_s", "noise_triggers", "noise_events", "wall_s")
TRACE_PLOTS = 3  # station-days whose trace is drawn (those with the most triggers)


def _records(results: list, kind: str) -> list[dict]:
    out = []
    for res in results:
        for line in res.get("lines", []):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("type") == kind:
                out.append({**rec, "day": res["day"], "station_id": res["station"]})
    return out


def write_catalog_csv(events: list, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for e in events:
            writer.writerow(e)


def write_quakeml(events: list, path: Path) -> None:
    """One QuakeML event per closed node event: its P and S picks, PGA as a comment."""
    from obspy import UTCDateTime
    from obspy.core.event import Catalog, Comment, Event, EventDescription, Pick, WaveformStreamID

    catalog = Catalog(description="tools scan: events declared by the node's detector")
    for e in events:
        net = e["station_id"].split(".")[0] if "station_id" in e else ""
        event = Event(event_type="earthquake" if e.get("p_time_us") else "not reported",
                      event_descriptions=[EventDescription(text=e["event_id"], type="earthquake name")],
                      comments=[Comment(text=f"pga_mps2={e['pga_mps2']} n_windows={e['n_windows']} "
                                             f"model={e.get('model')} {e.get('model_version')}")])
        for phase in ("p", "s"):
            t = e.get(f"{phase}_time_us")
            if t is not None:
                event.picks.append(Pick(time=UTCDateTime(t / 1e6), phase_hint=phase.upper(),
                                        waveform_id=WaveformStreamID(network_code=net or "XX",
                                                                     station_code=e["station"]),
                                        evaluation_mode="automatic",
                                        comments=[Comment(text=f"p({phase.upper()})={e[f'{phase}_prob']}")]))
        catalog.append(event)
    catalog.write(str(path), format="QUAKEML")


def write_station_days(stats: list, out: Path) -> None:
    with open(out / "station_days.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, STAT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for s in stats:
            classes = s["window_classes"]
            writer.writerow({**s, **{f"windows_{k}": classes.get(k, 0) for k in ("P", "S", "noise")}})
    (out / "station_days.json").write_text(json.dumps(
        [{k: v for k, v in s.items() if k != "trace"} for s in stats], indent=1))


def plot_events_per_day(stats: list, path: Path) -> None:
    """Events and triggers per station and day, as two station x day grids (grey: no data).

    One image per count, not one panel per station: it stays readable (and quick to draw)
    for fifty stations over a season; each cell holds its count while the grid is small.
    """
    from host_training.plots import _figure, _save

    plt = _figure()
    from matplotlib.ticker import MaxNLocator

    stations = sorted({s["station"] for s in stats})
    days = sorted({s["day"] for s in stats})
    row, col = {st: i for i, st in enumerate(stations)}, {d: j for j, d in enumerate(days)}
    grids = {key: np.full((len(stations), len(days)), np.nan) for key in ("events", "triggers")}
    for s in stats:
        for key, grid in grids.items():
            grid[row[s["station"]], col[s["day"]]] = s[key]
    fig, axes = plt.subplots(1, 2, sharey=True, squeeze=False,
                             figsize=(min(18.0, 7.0 + 0.5 * len(days)),
                                      min(14.0, 1.8 + 0.25 * len(stations))))
    for ax, (key, grid), cmap in zip(axes[0], grids.items(), ("Reds", "Oranges"), strict=True):
        ax.set_facecolor("0.85")  # station-days without data
        top = max(1.0, float(np.nanmax(grid)))
        image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, interpolation="nearest",
                          vmin=0, vmax=top)
        fig.colorbar(image, ax=ax, shrink=0.8).ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if grid.size <= 600:
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 * top else "black")
        every = max(1, len(days) // 30)  # at most about 30 day labels
        ax.set_xticks(range(0, len(days), every), days[::every], rotation=60, fontsize=6)
        ax.set_title(key, fontsize=9)
    fig.suptitle("per station-day (tools scan; grey: no data)", fontsize=9)
    axes[0, 0].set_yticks(range(len(stations)), stations, fontsize=7)
    numbers = {"days": days, "stations": {
        st: {key: [None if not np.isfinite(v) else int(v) for v in grid[i]] for key, grid in grids.items()}
        for i, st in enumerate(stations)}}
    _save(plt, fig, path, numbers)


def plot_day_trace(stats: dict, records: list, path: Path) -> None:
    """A station-day's peak acceleration per ``trace_step_s`` with its triggers and events."""
    from host_training.plots import _figure, _save

    plt = _figure()
    step = stats["trace_step_s"]
    peak = np.array([np.nan if v is None else v for v in stats["trace"]], dtype=float)
    hours = np.arange(len(peak)) * step / 3600.0
    day0 = np.datetime64(stats["day"]).astype("datetime64[s]").astype(np.int64)
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.semilogy(hours, peak, lw=0.6, color="0.3")
    marks = {"trigger": [], "event": []}
    for rec in records:
        t_h = (rec["start_us"] / 1e6 - day0) / 3600.0
        marks[rec["type"]].append(round(t_h, 5))
        ax.axvline(t_h, color="tab:orange" if rec["type"] == "trigger" else "tab:red", lw=0.8)
    ax.set_xlim(0, 24)
    ax.set_xlabel(f"hours of {stats['day']} (UTC); orange: triggers, red: events")
    ax.set_ylabel(f"peak |a - mean| per {step:g} s (m/s^2)", fontsize=8)
    ax.set_title(f"{stats['station']} {stats['day']}", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9)  # fixed: a third of the drawing time
    _save(plt, fig, path, {"station": stats["station"], "day": stats["day"], "step_s": step,
                           "peak_mps2": stats["trace"], "hours": marks}, indent=None, tight=False)


def _false_alarms(stats: list) -> dict:
    """Triggers and events per day on data marked as noise, the network operator's first figure."""
    noise_days = sum(s["noise_s"] for s in stats) / 86_400.0
    triggers = sum(s["noise_triggers"] for s in stats)
    events = sum(s["noise_events"] for s in stats)
    return {"noise_days": round(noise_days, 4), "noise_triggers": triggers, "noise_events": events,
            "false_triggers_per_noise_day": round(triggers / noise_days, 3) if noise_days else None,
            "false_events_per_noise_day": round(events / noise_days, 3) if noise_days else None,
            "noise_station_days": [{"station": s["station"], "day": s["day"], "noise_s": s["noise_s"],
                                    "triggers": s["noise_triggers"], "events": s["noise_events"]}
                                   for s in stats if s["noise_s"] > 0]}


def summarize_scan(results: list, skipped: list, settings, resumed: int, computed: set,
                   wall_s: float) -> dict:
    """replay-test's summary keys (:func:`tools.replay.score.summarize` and its run totals),
    then the scan's own: station-days done, resumed and failed, and the false alarms."""
    from tools.replay.score import Truth, summarize

    done = [r for r in results if "failed" not in r]
    rows = [row for r in done for row in r["rows"]]
    truths = [Truth(**t) for r in done for t in r["truths"]]
    summary = summarize(rows, 0, truths, settings.tolerance_s)
    simulated = sum(row["duration_s"] for row in rows)
    fresh = sum(row["duration_s"] for r in done if r["key"] in computed for row in r["rows"])
    summary.update(skipped=len(skipped), node_failures=0,
                   clipped_records=sum(1 for row in rows if row["clipped"]), ledger_failures=0,
                   simulated_s=round(simulated, 1), wall_s=round(wall_s, 1),
                   throughput=round(fresh / wall_s, 2) if wall_s > 0 and fresh else None)
    stats = [r["stats"] for r in done]
    summary.update(station_days=len(results), station_days_run=len(computed),
                   station_days_resumed=resumed, station_days_failed=len(results) - len(done),
                   stations=len({r["station"] for r in results}),
                   triggers=sum(s["triggers"] for s in stats), **_false_alarms(stats))
    return summary


def write_outputs(results: list, skipped: list, out: Path, settings, *, resumed: int, computed: set,
                  wall_s: float, printer=print) -> dict:
    """Every output file of a scan from its station-day results; returns the summary JSON."""
    skipped = [list(s) for s in skipped]
    for res in results:
        if "failed" in res:
            skipped.append([res["key"], f"station-day failed: {res['failed']}"])
            continue
        skipped += [list(s) for s in res["skipped"]]
        if res["key"] in computed:
            for note in res["notes"]:
                printer(note)
            for where, why in res["skipped"]:
                printer(f"skipped {where}: {why}")
    done = [r for r in results if "failed" not in r]
    events = _records(done, "event")
    with open(out / "catalog.jsonl", "w") as f:
        f.writelines(line + "\n" for r in done for line in r["lines"])
    write_catalog_csv(events, out / "catalog.csv")
    write_quakeml(events, out / "catalog.xml")
    stats = [r["stats"] for r in done]
    write_station_days(stats, out)
    if stats:
        plot_events_per_day(stats, out / "events_per_day.png")
    for s in sorted(stats, key=lambda s: (-s["triggers"], s["station"], s["day"]))[:TRACE_PLOTS]:
        of_day = [r for r in done if r["key"] == f"{s['station']}/{s['day']}"]
        marks = _records(of_day, "trigger") + _records(of_day, "event")
        plot_day_trace(s, marks, out / f"trace_{s['station']}_{s['day']}.png")
    result = {"summary": summarize_scan(results, skipped, settings, resumed, computed, wall_s),
              "rows": [row for r in done for row in r["rows"]], "skipped": skipped,
              "station_days": [{k: v for k, v in s.items() if k != "trace"} for s in stats]}
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    return result
