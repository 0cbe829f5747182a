"""Bench-top test with real recordings: ``python -m tools replay-test RECORDS... --model M``.

For each record read by :mod:`host_training.recordings.reader`: move it to a time the node
accepts, add what a MEMS part would give for missing components, digitize it as the
sensor would (:mod:`edge_runtime.sensors`: quantization, clipping), send it as serial
frames through a real pty into a fresh ``python -m edge_runtime run`` process, wait for
the node to exit, and score its events and counters. The pty is owned here until the
node has exited, and the node opens it through a private symlink (:class:`PtyLink`).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.sensors import DEFAULT_SENSOR

from .faults import FaultConfig, FaultInjector
from .ledger import Ledger, check_ledger
from .node import node_on_pty, wait_for_port
from .records import check_rate, digitize, fit_rate, model_info, node_rate_limits, time_shift_s
from .score import columns, fmt, load_events, score_footer, score_record, summarize, truth_of
from .sender import Writer, count_frames

log = logging.getLogger(__name__)


@dataclass
class ReplayTestConfig:
    """Everything a replay-test run chooses; written to ``<out>/config.json``."""

    model: str
    out: str = "runs/replay_test"
    sensor: str = DEFAULT_SENSOR
    missing: str = "zeros"
    time: str = "auto"
    speed: float = 0.0
    samples_per_frame: int = 10
    tolerance_s: float = 2.0
    idle_exit_s: float = 2.0
    node_timeout_s: float = 600.0
    seed: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    node_args: list = field(default_factory=list)

    def __post_init__(self):
        if self.missing not in ("zeros", "self-noise"):
            raise ValueError(f"--missing {self.missing!r}: use zeros or self-noise")
        if self.speed < 0:
            raise ValueError(f"--speed {self.speed}: must be >= 0 (0: as fast as the node reads)")
        if self.samples_per_frame < 1:
            raise ValueError(f"--samples-per-frame {self.samples_per_frame}: must be >= 1")
        if self.tolerance_s <= 0 or self.idle_exit_s <= 0:
            raise ValueError("tolerance and idle exit must be > 0 s")
        if self.time not in ("keep", "now", "auto"):
            from obspy import UTCDateTime

            try:
                UTCDateTime(self.time)
            except Exception:
                raise ValueError(f"--time {self.time!r}: use keep, now, auto or an ISO UTC time") from None


def _send(link, proc, config: ReplayTestConfig, faults: FaultInjector, ledger: Ledger,
          rate_hz: float, counts, start_us: int):
    """Write one record's frames; handle unplug/replug; returns bytes sent."""
    writer = Writer(link.pty, speed=config.speed, alive=lambda: proc.poll() is None)
    n = counts.shape[1]
    spf = config.samples_per_frame
    i, seq, t_us = 0, 0, start_us
    while i < n:
        if faults.unplug_now() and i > 0:
            writer.send(faults.flush(), t_us)  # frames held back go before the cable
            lost = max(1, int(round(config.faults.unplug_s * rate_hz / spf)))
            # Frames already sent reach the node before the cable goes (a deterministic ledger);
            # the samples of the unplugged time are the ones lost.
            link.pty.drain()
            link.unplug()
            time.sleep(0.3)  # the board is away; the node gets EIO and starts reopening
            writer.attach(link.replug())
            link.wait_opened(proc)
            ledger.unplugged(lost)
            i += lost * spf
            seq = 0  # the board restarted
            writer.restart_clock()
            continue
        chunk = counts[:, i:i + spf]
        t_us = start_us + int(round(i * 1e6 / rate_hz * (1.0 + config.faults.drift_ppm * 1e-6)))
        (_, _, frame), = count_frames(chunk, rate_hz, t_us, spf, seq)
        out = faults.apply(seq, frame)
        ledger.sent(seq, faults.last_intact)
        writer.send(out, t_us)
        i += spf
        seq = (seq + 1) % 2**32
    writer.send(faults.flush(), t_us)
    return writer.bytes_sent


def replay_record(record, config: ReplayTestConfig, workdir: Path, sensor, info: dict,
                  rng) -> dict:
    """Replay one record into a fresh node; return its row of results (not yet scored)."""
    workdir.mkdir(parents=True, exist_ok=True)
    events_path, status_path = workdir / "events.jsonl", workdir / "node_status.json"
    for p in (events_path, status_path):
        p.unlink(missing_ok=True)
    counts, notes = digitize(record, sensor, config.missing, rng)
    start_us = int(round(record.starttime.timestamp * 1e6))
    station = record.station.split(".")[1] or "NODE"
    flags = ["--station", station, "--counts-per-mps2", repr(sensor.counts_per_mps2),
             "--idle-exit-s", str(config.idle_exit_s + (4.0 if config.faults.unplug else 0.0)),
             # The private link names the simulated board, as a by-id link names a real one:
             # after an unplug the node may accept the new pty behind it.
             *(["--trust-port-name"] if config.faults.unplug else []), *config.node_args]
    # Each record draws its own faults, reproducibly (the seed and the record's id).
    seed = config.faults.seed + zlib.crc32(record.id.encode())
    faults = FaultInjector(FaultConfig(**{**asdict(config.faults), "seed": seed}))
    ledger = Ledger()
    t0 = time.monotonic()
    error = None
    log_path = workdir / "node.log"
    with open(log_path, "w") as node_log, \
            node_on_pty(config.model, events_path, status_path, *flags, link=workdir / "tty",
                        output=node_log) as (proc, link):
        try:
            wait_for_port(status_path, proc, log_path=log_path, name=f"node for record {record.id}")
            _send(link, proc, config, faults, ledger, record.sampling_rate_hz, counts, start_us)
            # Once the node has read every byte and its line has been quiet for a few reads
            # (which releases a frame its decoder holds back), SIGTERM ends it cleanly: it
            # finishes the frames it has and closes any open event, as on idle exit, which
            # stays the fallback.
            if link.pty.drain(timeout_s=config.node_timeout_s, settle_s=0.3) and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=config.node_timeout_s)
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
    wall_s = time.monotonic() - t0
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        status = {}
    expected = ledger.expected(faults.outcomes)
    return {"record": record, "status": status, "exit_code": proc.returncode, "error": error,
            "wall_s": wall_s, "clipped": notes["clipped"], "missing": notes["missing"],
            "ledger": expected, "faults": dict(faults.counts),
            "ledger_checks": check_ledger(expected, status) if status else [],
            "events_path": events_path}


def run_replay_test(sources, config: ReplayTestConfig, *, catalog=None, inventory=None,
                    events=None, units=None, progress: bool = True, printer=print) -> dict:
    """Read, replay, score; write ``summary.json`` and ``summary.png`` under ``config.out``.

    Returns
    -------
    dict
        ``rows`` (one per record), ``summary`` (totals), ``skipped`` ((where, why) list),
        ``throughput`` (simulated s per wall s).
    """
    from tqdm import tqdm

    from edge_runtime.sensors import get_sensor
    from host_training.recordings.reader import read_records
    from host_training.recordings.record import RecordError

    started = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(
        {**asdict(config), "sources": [str(s) for s in sources], "catalog": str(catalog or ""),
         "inventory": str(inventory or ""), "events": str(events or ""), "units": units},
        indent=2, default=str))
    sensor = get_sensor(config.sensor)
    info = model_info(config.model)
    try:
        records, skipped = read_records(sources, units=units, inventory=inventory, events=events,
                                        catalog=catalog, min_duration_s=info["window_s"], nan_gaps=True)
    except RecordError as exc:
        raise ValueError(str(exc)) from None
    rng = np.random.default_rng(config.seed)
    rows, truths = [], []
    simulated = 0.0
    for k, record in enumerate(tqdm(records, desc="replay-test", unit="record", disable=not progress)):
        min_rate, max_rate = node_rate_limits(config.node_args)
        try:
            record = fit_rate(record, info, max_rate)
            check_rate(record, info, min_rate, max_rate)
        except ValueError as exc:
            skipped.append((", ".join(Path(f).name for f in record.files) or record.id,
                            f"{record.id}: {exc}"))
            continue
        shift = time_shift_s(record, config.time)
        shown = record.shifted(shift) if shift else record
        workdir = out / "records" / f"{k:03d}_{record.id.replace('/', '_')}"
        res = replay_record(shown, config, workdir, sensor, info, rng)
        truth = truth_of(shown)
        rows.append(_scored_row(record, truth, shift, res, info, config, workdir))
        truths.append(truth)
        simulated += record.duration_s
        if res["error"] or res["exit_code"] != 0:
            printer(f"{record.id}: node run failed ({res['error'] or 'exit ' + str(res['exit_code'])}); "
                    f"see {workdir / 'node.log'}")
    result = {"rows": rows, "summary": _summary(rows, truths, skipped, config.tolerance_s, simulated,
                                                time.monotonic() - started),
              "skipped": [list(s) for s in skipped],
              "config": json.loads((out / "config.json").read_text())}
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    plot_summary(result, out / "summary.png")
    return result


def _scored_row(record, truth, shift: float, res: dict, info: dict, config: ReplayTestConfig,
                workdir: Path) -> dict:
    """One record's row: its score against ``truth``, what was sent and what the node counted.

    ``record`` is the record as read (before the time ``shift``, s), ``res`` what
    :func:`replay_record` returned; the node's error goes into ``res`` when its events
    file cannot be read.
    """
    try:
        events = load_events(res["events_path"])
        triggers = load_events(res["events_path"], "trigger")
    except ValueError as exc:
        events, triggers, res["error"] = [], [], str(exc)
    row, _ = score_record(events, truth, config.tolerance_s, triggers, info["window_s"])
    status = res["status"]
    dec, pipe = status.get("decoder", {}), status.get("pipeline", {})
    row.update(
        record=record.id, rate_hz=record.sampling_rate_hz, duration_s=round(record.duration_s, 2),
        below_model_rate=bool(info["target_rate_hz"] and
                              record.sampling_rate_hz < info["target_rate_hz"]),
        components="".join(c if p else "-" for c, p in zip("ENZ", record.present, strict=True)),
        missing_as=(config.missing if res["missing"] else None), clipped=res["clipped"],
        time_shift_s=shift, picks={k: p.source for k, p in record.picks.items()},
        units=record.units, actions=record.actions, node_exit=res["exit_code"], error=res["error"],
        frames_sent=res["ledger"]["frames_sent"], frames_decoded=dec.get("frames"),
        frames_accepted=pipe.get("frames"),
        dropped={"crc": dec.get("crc_errors"), "header": dec.get("header_errors"),
                 "rejected": status.get("frames_rejected_by", pipe.get("frames_rejected")),
                 "duplicate": pipe.get("frames_duplicate"), "lost": pipe.get("frames_lost")},
        window_classes=status.get("window_classes"), windows=pipe.get("windows"),
        faults={k: v for k, v in res["faults"].items() if v and k != "frames"},
        ledger=res["ledger_checks"], wall_s=round(res["wall_s"], 2), workdir=str(workdir))
    return row


def _summary(rows: list, truths: list, skipped: list, tolerance_s: float, simulated_s: float,
             wall_s: float) -> dict:
    """Totals of a run: the detection summary, skipped records, node failures, ledger
    mismatches, clipped records and the simulated seconds per wall second."""
    summary = summarize(rows, 0, truths, tolerance_s)
    failures = sum(1 for r in rows if r["node_exit"] != 0 or r["error"])
    summary.update(skipped=len(skipped), node_failures=failures,
                   clipped_records=sum(1 for r in rows if r["clipped"]),
                   ledger_failures=sum(1 for r in rows for c in r["ledger"] if not c["ok"]),
                   simulated_s=round(simulated_s, 1), wall_s=round(wall_s, 1),
                   throughput=round(simulated_s / wall_s, 2) if wall_s > 0 else None)
    return summary


def format_report(result: dict) -> str:
    """The table printed by replay-test."""
    header = ("record", "Hz", "s", "comp", "kind", "detected", "P err", "S err", "delay", "PGA",
              "false", "frames sent/acc", "line err", "P/S/noise win", "clip", "exit")
    lines = []
    for r in result["rows"]:
        d = r["dropped"]
        rejected = d["rejected"] if isinstance(d["rejected"], int) else sum((d["rejected"] or {}).values())
        dropped = sum(v for v in (d["crc"], d["header"], rejected, d["duplicate"]) if v)
        wc = r["window_classes"] or {}
        comp = r["components"] + ("*" if r["missing_as"] else "")
        rate = f"{r['rate_hz']:g}" + ("!" if r.get("below_model_rate") else "")
        lines.append((r["record"], rate, f"{r['duration_s']:.0f}", comp, r["kind"],
                      {None: "-", True: "yes", False: "MISSED"}[r["detected"]],
                      fmt(r["p_error_s"], "+.2f"), fmt(r["s_error_s"], "+.2f"), fmt(r["delay_s"], ".2f"),
                      fmt(r["pga_mps2"], ".2f"),
                      str(r["false_events"]) + (f"+{r['repeat_events']}r" if r.get("repeat_events") else ""),
                      f"{r['frames_sent']}/{fmt(r['frames_accepted'], 'd')}", str(dropped),
                      "/".join(str(wc.get(c, 0)) for c in ("P", "S", "noise")), str(r["clipped"]),
                      str(r["node_exit"])))
    out = columns(header, lines)
    s = result["summary"]
    missing_as = {r["missing_as"] for r in result["rows"] if r["missing_as"]}
    if missing_as:
        out.append(f"* missing components replayed as {', '.join(sorted(missing_as))}")
    if any(r.get("below_model_rate") for r in result["rows"]):
        out.append("! below the model's input rate: no signal above the record's Nyquist frequency "
                   "reaches the model (replayed, but outside its training)")
    out += score_footer(result["rows"], s)
    out.append(f"records {s['records']}  skipped {s['skipped']}  node failures {s['node_failures']}"
               f"  ledger mismatches {s['ledger_failures']}  clipped records {s['clipped_records']}"
               f"  {s['simulated_s']:.0f} s simulated in {s['wall_s']:.0f} s"
               f" ({fmt(s['throughput'], '.1f')} x real time)")
    for where, why in result["skipped"]:
        out.append(f"skipped {where}: {why}")
    return "\n".join(out)


def plot_summary(result: dict, path: Path) -> None:
    """Per record: P error, detection delay, false events, P/S/noise windows (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 1.5 + 0.25 * max(1, len(rows))), sharey=True)
    y = np.arange(len(rows))
    names = [r["record"] for r in rows]
    nan = float("nan")
    axes[0].barh(y - 0.2, [r["p_error_s"] if r["p_error_s"] is not None else nan for r in rows], 0.4,
                 label="P error")
    axes[0].barh(y + 0.2, [r["delay_s"] if r["delay_s"] is not None else nan for r in rows], 0.4,
                 label="delay after P")
    axes[0].set_xlabel("s")
    axes[0].legend(fontsize=7)
    axes[1].barh(y, [r["false_events"] for r in rows], color="tab:red")
    axes[1].set_xlabel("false events")
    left = np.zeros(len(rows))
    for cls, color in (("P", "tab:blue"), ("S", "tab:orange"), ("noise", "tab:gray")):
        v = np.array([(r["window_classes"] or {}).get(cls, 0) for r in rows], dtype=float)
        axes[2].barh(y, v, left=left, color=color, label=cls)
        left += v
    axes[2].set_xlabel("windows by class")
    axes[2].legend(fontsize=7)
    axes[0].set_yticks(y, names, fontsize=6)
    for ax, r in zip([axes[0]] * len(rows), rows, strict=True):
        if r["detected"] is False:
            ax.text(0, names.index(r["record"]), " MISSED", va="center", fontsize=6, color="red")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
