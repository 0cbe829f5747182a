"""Bench-top test with real recordings: ``python -m tools replay-test RECORDS... --model M``.

For each record read by :mod:`host_training.data.records`: move it to a time the node
accepts, add what a MEMS part would give for missing components, digitize it as the
sensor would (:mod:`edge_runtime.sensors`: quantization, clipping), send it as serial
frames through a real pty into a fresh ``python -m edge_runtime run`` process, wait for
the node to exit, and score its events and counters. The pty is owned here until the
node has exited, and the node opens it through a private symlink (:class:`PtyLink`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .faults import FaultConfig, FaultInjector

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
EARLIEST_S = 946_684_800.0  # the node's sanity window: 2000-01-01 ...
LATEST_S = 4_102_444_800.0  # ... to 2100-01-01


@dataclass
class ReplayTestConfig:
    """Everything a replay-test run chooses; written to ``<out>/config.json``."""

    model: str
    out: str = "runs/replay_test"
    sensor: str = "adxl355-2g"
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


def wait_for_port(status_path: Path, proc, timeout_s: float = 30.0, log_path=None,
                  name: str = "edge runtime") -> None:
    """Block until the node reports its serial port open (pyserial flushes on open).

    Parameters
    ----------
    status_path : Path
        The node's ``--status`` file, whose ``port_open`` is waited for.
    proc : subprocess.Popen
        The node process (its ``--port`` is read from its command line for the message).
    timeout_s : float
        Longest wait, s.
    log_path : Path, optional
        File holding the node's output; its last lines go into the error. Without it,
        the output of an exited node is read from ``proc.stdout`` when that is a pipe.
    name : str
        What the error calls the node (``"node for record X"``).

    Raises
    ------
    RuntimeError
        One line: which node and port, whether it exited (and its code) or did not open
        the port within ``timeout_s``, and the end of its output.
    """
    port = _arg_after(proc.args, "--port") or "?"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} (port {port}) exited with code {proc.returncode} before "
                               f"opening its port{_output_tail(proc, log_path)}")
        try:
            if json.loads(Path(status_path).read_text()).get("port_open"):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not open its port {port} within {timeout_s:g} s"
                       f"{_output_tail(proc, log_path)}")


def _arg_after(args, flag: str) -> str | None:
    """The value after ``flag`` in a command line (list), or None."""
    args = [str(a) for a in args] if isinstance(args, (list, tuple)) else []
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def _output_tail(proc, log_path=None, lines: int = 3, max_chars: int = 400) -> str:
    """``"; its output ends: a | b | c"`` from the node's log file (or the pipe of an
    exited node), or ``"; no output"``: one line for the CLI user."""
    text = ""
    try:
        if log_path is not None:
            text = Path(log_path).read_text(errors="replace")
        elif proc.poll() is not None and getattr(proc, "stdout", None) is not None:
            text = proc.stdout.read() or ""
            text = text.decode(errors="replace") if isinstance(text, bytes) else text
    except (OSError, ValueError):
        pass
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    if not tail:
        return "; no output" + (f" in {log_path}" if log_path is not None else "")
    joined = " | ".join(tail)
    if len(joined) > max_chars:
        joined = "..." + joined[-max_chars:]
    return f"; its output ends: {joined}"


AUTO_STEP_S = 18_262 * 86_400.0  # 50 years in whole days


def time_shift_s(record, mode: str, now_s: float | None = None) -> float:
    """Seconds to add to a record's times for ``--time keep|now|auto|ISO``.

    ``auto`` keeps a record the node accepts (2000-2100) and moves any other by the
    fewest 50-year steps (whole days: the time of day and the picks' sub-second offsets
    stay) that bring it inside. The shift depends on the record alone, so ``tools
    replay`` and ``tools score`` move a record alike, and records of one night keep their
    order and spacing. ``now`` moves the record's start to now (whole seconds); an ISO
    time moves it there.
    """
    from obspy import UTCDateTime

    start = record.starttime.timestamp
    now_s = float(int(time.time() if now_s is None else now_s))
    if mode == "keep":
        return 0.0
    if mode == "auto":
        end = record.endtime.timestamp
        if EARLIEST_S <= start and end <= LATEST_S:
            return 0.0
        steps = math.ceil((EARLIEST_S - start) / AUTO_STEP_S) if start < EARLIEST_S else \
            -math.ceil((end - LATEST_S) / AUTO_STEP_S)
        return steps * AUTO_STEP_S
    if mode == "now":
        return float(round(now_s - start))
    try:
        target = UTCDateTime(mode).timestamp
    except Exception:
        raise ValueError(f"--time {mode!r}: use keep, now, auto or an ISO UTC time") from None
    return target - start


def model_info(model_path) -> dict:
    """Window length and filter of a model, from its metadata (no session kept)."""
    from edge_runtime.backend import OnnxBackend

    backend = OnnxBackend(str(model_path))
    prep = backend.metadata.preprocess_config()
    return {"window_s": float(prep.window_s), "highpass_hz": float(prep.highpass_hz),
            "target_rate_hz": float(getattr(prep, "target_rate_hz", 0.0) or 0.0),
            "classes": list(backend.classes), "components": list(backend.metadata.components)}


def check_rate(record, info: dict, min_rate_hz: float = 10.0, max_rate_hz: float = 1000.0) -> None:
    """Raise ValueError when the node or the model's filter cannot take the record's rate.

    A rate above ``max_rate_hz`` is refused here; :func:`fit_rate` decimates it first.
    A rate below ``min_rate_hz`` is refused: upsampling would invent no signal, and the
    P-wave band (1-20 Hz) the model looks at is not in such a record.
    """
    rate = record.sampling_rate_hz
    if rate < min_rate_hz:
        raise ValueError(f"sampling rate {rate:g} Hz below the node's {min_rate_hz:g} Hz minimum "
                         "(too coarse for the P-wave band; not upsampled)")
    if rate > max_rate_hz:
        raise ValueError(f"sampling rate {rate:g} Hz above the node's {max_rate_hz:g} Hz maximum")
    if rate <= 2.0 * info["highpass_hz"] * 1.05:
        raise ValueError(f"sampling rate {rate:g} Hz too low for the model's "
                         f"{info['highpass_hz']:g} Hz high-pass")


def fit_rate(record, info: dict, max_rate_hz: float = 1000.0):
    """The record as the node can take it: decimated below ``max_rate_hz``, rate notes added.

    A rate above the node's maximum is brought down by the smallest integer factor with
    a zero-phase anti-alias FIR (``scipy.signal.resample_poly``, Kaiser window), as a
    seismologist would decimate a 2 kHz record; the first sample and so the picks keep
    their times. A rate below the model's input rate (``target_rate_hz``, 40 Hz) is
    replayed as it is, with a note: the node upsamples each window, and the model then
    sees no signal above the record's Nyquist frequency, a band it was not trained on.
    """
    from dataclasses import replace

    from scipy.signal import resample_poly

    rate = record.sampling_rate_hz
    if rate > max_rate_hz:
        factor = math.ceil(rate / max_rate_hz - 1e-9)
        data = resample_poly(record.data, 1, factor, axis=1, padtype="line")
        data[~np.asarray(record.present)] = 0.0
        record = replace(record, data=data, sampling_rate_hz=rate / factor,
                         actions=record.actions + [f"decimated {rate:g} -> {rate / factor:g} Hz "
                                                   f"(factor {factor}, zero-phase anti-alias FIR): "
                                                   f"the node takes at most {max_rate_hz:g} Hz"])
    target = info.get("target_rate_hz")
    if target and record.sampling_rate_hz < target:
        record = replace(record, actions=record.actions + [
            f"{record.sampling_rate_hz:g} Hz is below the model's {target:g} Hz input rate: no "
            f"signal above {record.sampling_rate_hz / 2:g} Hz reaches the model (outside its training)"])
    return record


def node_rate_limits(node_args) -> tuple[float, float]:
    """``(min, max)`` sampling rate the node will accept, from its ``--min-rate/--max-rate``."""
    limits = {"--min-rate": 10.0, "--max-rate": 1000.0}
    args = list(node_args)
    for i, arg in enumerate(args):
        key, _, value = arg.partition("=")
        if key in limits:
            try:
                limits[key] = float(value or args[i + 1])
            except (IndexError, ValueError):
                pass
    return limits["--min-rate"], limits["--max-rate"]


DIGITIZE_CHUNK = 1 << 18  # samples per step of digitize: 2 MiB of float64 temporaries


def digitize(record, sensor, missing: str, rng, chunk: int = DIGITIZE_CHUNK) -> tuple[np.ndarray, dict]:
    """Counts the sensor would send for the record; missing axes as zeros or self-noise.

    Component by component, ``chunk`` samples at a time, into one int32 array: the
    counts are the same as digitizing the whole record at once (the sensor's rounding
    and clipping are per sample; the self-noise is drawn in the same order), but a day
    at 100 Hz no longer holds a float64 copy of the record and the float temporaries of
    the rounding (~0.8 GB over the record's own 0.2 GB).
    """
    data = record.data
    n_comp, n = data.shape
    absent = [i for i, p in enumerate(record.present) if not p]
    counts = np.empty((n_comp, n), dtype=np.int32)
    clipped = 0
    for i in range(n_comp):
        noise = i in absent and missing == "self-noise"
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            part = sensor.self_noise(rng, (stop - start,), record.sampling_rate_hz) if noise \
                else data[i, start:stop]
            counts[i, start:stop], k = sensor.digitize(part)
            clipped += k
    return counts, {"clipped": clipped, "missing": "".join("ENZ"[i] for i in absent)}


class Ledger:
    """What was sent: frames per board session (between unplugs) and faults injected.

    One byte per frame sent (1: intact, 0: damaged), a bytearray per session: a day of
    100 Hz in 10-sample frames is 864,000 frames, 0.8 MiB here where a list of
    ``(sequence, intact)`` tuples held ~80 MiB.
    """

    def __init__(self):
        self.sessions = [bytearray()]  # per session: intact flag of each frame, in order
        self.unplugs = 0
        self.frames_unsent = 0

    def sent(self, sequence: int, intact: bool) -> None:
        self.sessions[-1].append(1 if intact else 0)

    def unplugged(self, frames_lost: int) -> None:
        self.unplugs += 1
        self.frames_unsent += frames_lost
        self.sessions.append(bytearray())

    def expected(self) -> dict:
        """Counters the node must report if it handled every frame correctly."""
        intact = sum(s.count(1) for s in self.sessions)
        lost = 0
        for s in self.sessions:
            # Damaged frames between the first and last intact one of a session are lost;
            # before the first or after the last the node cannot tell they were sent.
            first, last = s.find(1), s.rfind(1)
            if first >= 0:
                lost += s.count(0, first, last + 1)
        return {"frames_sent": sum(len(s) for s in self.sessions), "frames_intact": intact,
                "frames_lost": lost, "unplugs": self.unplugs, "frames_unsent": self.frames_unsent}


def check_ledger(expected: dict, status: dict) -> list[dict]:
    """Ledger against the node's counters: ``[{check, expected, got, ok}]``."""
    dec, pipe = status.get("decoder", {}), status.get("pipeline", {})
    # Every decoded frame is accepted or dropped for a counted reason.
    handled = sum(pipe.get(k, 0) for k in ("frames", "frames_rejected", "frames_duplicate",
                                           "frames_stale", "frames_other_board"))
    checks = [("frames decoded = frames sent intact", expected["frames_intact"], dec.get("frames")),
              ("frames accepted + dropped by reason = decoded", dec.get("frames"), handled),
              ("frames lost (sequence gaps) = damaged between intact frames", expected["frames_lost"],
               pipe.get("frames_lost")),
              ("board restarts seen = unplugs", expected["unplugs"], pipe.get("sequence_resets")),
              ("port reopened >= unplugs", expected["unplugs"], status.get("reconnects"))]
    out = []
    for name, want, got in checks:
        ok = got is not None and (got >= want if ">=" in name else got == want)
        out.append({"check": name, "expected": want, "got": got, "ok": bool(ok)})
    return out


def _send(link, proc, config: ReplayTestConfig, faults: FaultInjector, ledger: Ledger,
          rate_hz: float, counts, start_us: int):
    """Write one record's frames; handle unplug/replug; returns bytes sent."""
    from .replay import Writer, count_frames

    writer = Writer(link.pty, speed=config.speed, alive=lambda: proc.poll() is None)
    n = counts.shape[1]
    spf = config.samples_per_frame
    i, seq = 0, 0
    while i < n:
        if faults.unplug_now() and i > 0:
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
        ledger.sent(seq, out.endswith(frame))
        writer.send(out, t_us)
        i += spf
        seq = (seq + 1) % 2**32
    return writer.bytes_sent


def replay_record(record, config: ReplayTestConfig, workdir: Path, sensor, info: dict,
                  rng) -> dict:
    """Replay one record into a fresh node; return its row of results (not yet scored)."""
    from .replay import PtyLink

    workdir.mkdir(parents=True, exist_ok=True)
    events_path, status_path = workdir / "events.jsonl", workdir / "node_status.json"
    for p in (events_path, status_path):
        p.unlink(missing_ok=True)
    counts, notes = digitize(record, sensor, config.missing, rng)
    start_us = int(round(record.starttime.timestamp * 1e6))
    link = PtyLink(workdir / "tty")
    station = record.station.split(".")[1] or "NODE"
    cmd = [sys.executable, "-m", "edge_runtime", "run", "--port", link.port,
           "--model", str(config.model), "--events", str(events_path), "--status", str(status_path),
           "--station", station, "--counts-per-mps2", repr(sensor.counts_per_mps2),
           "--idle-exit-s", str(config.idle_exit_s + (4.0 if config.faults.unplug else 0.0)),
           # The private link names the simulated board, as a by-id link names a real one:
           # after an unplug the node may accept the new pty behind it.
           *(["--trust-port-name"] if config.faults.unplug else []), *config.node_args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                   os.environ.get("PYTHONPATH")])))
    # Each record draws its own faults, reproducibly (the seed and the record's id).
    seed = config.faults.seed + zlib.crc32(record.id.encode())
    faults = FaultInjector(FaultConfig(**{**asdict(config.faults), "seed": seed}))
    ledger = Ledger()
    t0 = time.monotonic()
    error = None
    with open(workdir / "node.log", "w") as node_log:
        proc = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_port(status_path, proc, log_path=workdir / "node.log",
                          name=f"node for record {record.id}")
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
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            link.close()  # only now: the node has exited
    wall_s = time.monotonic() - t0
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        status = {}
    expected = ledger.expected()
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
    from host_training.data.records import RecordError, read_records

    from .score import load_events, score_record, summarize, truth_of

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
            time_shift_s=shift, picks={k2: p.source for k2, p in record.picks.items()},
            units=record.units, actions=record.actions, node_exit=res["exit_code"], error=res["error"],
            frames_sent=res["ledger"]["frames_sent"], frames_decoded=dec.get("frames"),
            frames_accepted=pipe.get("frames"),
            dropped={"crc": dec.get("crc_errors"), "header": dec.get("header_errors"),
                     "rejected": status.get("frames_rejected_by", pipe.get("frames_rejected")),
                     "duplicate": pipe.get("frames_duplicate"), "lost": pipe.get("frames_lost")},
            window_classes=status.get("window_classes"), windows=pipe.get("windows"),
            faults={k2: v for k2, v in res["faults"].items() if v and k2 != "frames"},
            ledger=res["ledger_checks"], wall_s=round(res["wall_s"], 2), workdir=str(workdir))
        rows.append(row)
        truths.append(truth)
        simulated += record.duration_s
        if res["error"] or res["exit_code"] != 0:
            printer(f"{record.id}: node run failed ({res['error'] or 'exit ' + str(res['exit_code'])}); "
                    f"see {workdir / 'node.log'}")
    wall = time.monotonic() - started
    summary = summarize(rows, 0, truths, config.tolerance_s)
    failures = sum(1 for r in rows if r["node_exit"] != 0 or r["error"])
    summary.update(skipped=len(skipped), node_failures=failures,
                   clipped_records=sum(1 for r in rows if r["clipped"]),
                   ledger_failures=sum(1 for r in rows for c in r["ledger"] if not c["ok"]),
                   simulated_s=round(simulated, 1), wall_s=round(wall, 1),
                   throughput=round(simulated / wall, 2) if wall > 0 else None)
    result = {"rows": rows, "summary": summary, "skipped": [list(s) for s in skipped],
              "config": json.loads((out / "config.json").read_text())}
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    plot_summary(result, out / "summary.png")
    return result


def format_report(result: dict) -> str:
    """The table printed by replay-test."""
    from .score import columns, fmt, score_footer

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
