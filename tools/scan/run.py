"""A whole scan: every station-day, here or on a Dask cluster, resumable; outputs and summary.

Station-days are independent, so they are the unit handed out: to a loop in this process,
to a local Dask cluster (``workers``), or to a running Dask scheduler (``scheduler``:
``tcp://host:8786``) whose workers may sit on other machines (they must see the archive
and the model at the same paths and import this checkout). Results come back as plain
data and are written here, one file per station-day as each completes
(``<out>/days/NET.STA/YYYY-MM-DD.json``): a station-day already written by a run with the
same settings and model is not run again, and one whose worker died is run again by the
scheduler, so an interrupted scan loses at most the station-days in flight.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from edge_runtime.atomic import write_text_atomically

from .archive import StationDay, find_station_days
from .day import ScanSettings, scan_station_day

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # a scheduler that does not answer within this is unreachable


class ScanError(ValueError):
    """A scan that cannot start (bad scheduler, no usable input); the message is one line."""


def day_path(out: Path, day: StationDay) -> Path:
    return out / "days" / day.station / f"{day.day}.json"


def day_fingerprint(day: StationDay, settings_fingerprint: str) -> str:
    """The settings' and model's fingerprint and the day's files (paths, sizes, modification times):
    a station-day is done only for the same settings on the same files."""
    import zlib

    files = []
    for path in (*day.files, *day.metadata):
        try:
            st = os.stat(path)
            files.append((path, st.st_size, st.st_mtime_ns))
        except OSError:
            files.append((path, None, None))
    return f"{settings_fingerprint}-{zlib.crc32(json.dumps(files).encode()):08x}"


def _done(out: Path, day: StationDay, fingerprint: str) -> dict | None:
    """The station-day's result from an earlier run with the same settings, or None."""
    try:
        result = json.loads(day_path(out, day).read_text())
    except (OSError, ValueError):
        return None
    done = result.get("fingerprint") == fingerprint and "failed" not in result
    return result if done else None


def _write_day(out: Path, day: StationDay, result: dict, fingerprint: str) -> None:
    path = day_path(out, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic: a killed run never leaves half a station-day that counts as done
    write_text_atomically(path, json.dumps({**result, "fingerprint": fingerprint}, default=str))


def _failed(day: StationDay, exc: Exception) -> dict:
    """A station-day that raised: its result names why, in one line."""
    text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return {"key": day.key, "station": day.station, "day": day.day,
            "failed": f"{type(exc).__name__}: {text}" if text else type(exc).__name__}


def _local(days, settings: ScanSettings):
    """Station-days one after the other in this process: ``(day, result)`` as each finishes."""
    for day in days:
        try:
            yield day, scan_station_day(day, settings)
        except Exception as exc:  # one station-day's failure must not end the scan
            log.debug("%s failed", day.key, exc_info=True)
            yield day, _failed(day, exc)


# glibc's mallopt parameters, and what a worker's task sets them to (bytes)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
WORKER_MALLOC_THRESHOLD = 32 << 20


def settle_worker_malloc() -> bool:
    """Let a Dask worker reuse the memory of a station-day's arrays instead of faulting it in again.

    Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``: glibc then gives
    every freed block of more than 64 KiB back to the system, and a station-day's pieces
    (megabytes, an hour of samples at a time) come back as fresh pages, zeroed by the
    kernel. On a 100 Hz day that was 340,000 page faults instead of 52,000 and 0.9 s of
    system time instead of 0.2. Keeping up to 32 MiB (and mapping only blocks above it
    separately) gives the single process's speed for at most 32 MiB more resident memory.
    Returns whether glibc took the settings (False elsewhere: macOS, musl).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_TRIM_THRESHOLD, WORKER_MALLOC_THRESHOLD)
                    and libc.mallopt(M_MMAP_THRESHOLD, WORKER_MALLOC_THRESHOLD))
    except (OSError, AttributeError):
        return False


def scan_on_worker(day: StationDay, settings: ScanSettings) -> dict:
    """A station-day as a Dask worker runs it: :func:`settle_worker_malloc`, then the scan."""
    settle_worker_malloc()
    return scan_station_day(day, settings)


# A local cluster's workers share the machine with the client and the scheduler, so what
# runs besides the station-days is kept rare: the workers' statistical profiler (a stack
# sample every 10 ms), the event loops' health checks (every 20 ms), memory polls (every
# 100 ms) and work stealing (station-days are alike; the scheduler hands them out as
# workers free up). With them, a 100 Hz station-day took 15 % longer on a worker.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
}


def _client(scheduler: str | None, workers: int):
    """A Dask client of ``scheduler`` or of a new local cluster of ``workers`` processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ScanError("--scheduler/--workers need Dask distributed: pip install -e '.[scan]'") from None
    # The scheduler and nannies of a local cluster live in this process: their thirty lines
    # of start-up and shut-down at INFO would bury the scan's own. Warnings still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT_S), None
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ScanError(f"--scheduler {scheduler}: cannot connect ({reason[:120]})") from None
    import dask

    # One thread per worker: a worker holds one station-day at a time, and the node's
    # model runs on one core as on the node.
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    return Client(cluster), cluster


def _close(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


def _distributed(days, settings: ScanSettings, scheduler: str | None, workers: int, closing: list):
    """Station-days on a Dask cluster: ``(day, result)`` in the order they finish.

    Once every result is in, the client and a local cluster are closed by a thread appended
    to ``closing`` (a local cluster takes about a second to retire its workers), so the
    outputs are written meanwhile; on an error they are closed before it propagates.
    """
    import threading

    from distributed import as_completed

    client, cluster = _client(scheduler, workers)
    finished = False
    try:
        futures = {client.submit(scan_on_worker, day, settings, pure=False,
                                 key=f"scan-{day.station}-{day.day}-{time.time_ns()}"): day
                   for day in days}
        for future in as_completed(futures):
            day = futures[future]
            try:
                yield day, future.result()
            except Exception as exc:  # KilledWorker after repeated worker deaths, or the task raised
                yield day, _failed(day, exc)
        finished = True
    finally:
        if finished:
            closer = threading.Thread(target=_close, args=(client, cluster), name="scan-close-cluster")
            closer.start()
            closing.append(closer)
        else:
            _close(client, cluster)


def run_scan(sources, settings: ScanSettings, out, *, scheduler: str | None = None, workers: int = 0,
             progress: bool = True, printer=print) -> dict:
    """Scan ``sources``; write the catalogue, statistics and plots under ``out``.

    Parameters
    ----------
    sources : list of str
        SDS roots, folders, files, globs.
    settings : ScanSettings
    out : str or Path
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``).
    workers : int
        Local Dask workers (0: this process runs every station-day).
    progress : bool
        A tqdm bar of station-days.
    printer : callable
        Where the one-line notes (skipped input, failed station-days) go.

    Returns
    -------
    dict
        ``summary``, ``rows``, ``skipped`` (as replay-test's), ``station_days`` (statistics).
    """
    from tqdm import tqdm

    from .outputs import write_outputs

    started = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    days, skipped = find_station_days(sources, settings.units)
    for where, why in skipped:
        printer(f"skipped {where}: {why}")
    if not days:
        raise ScanError("no station-day to scan in " + ", ".join(map(str, sources)) + " (reasons above)"
                        if skipped else "no waveform file in " + ", ".join(map(str, sources)))
    base = settings.fingerprint()
    fingerprints = {d.key: day_fingerprint(d, base) for d in days}
    results = {d.key: r for d in days if (r := _done(out, d, fingerprints[d.key])) is not None}
    todo = [d for d in days if d.key not in results]
    (out / "config.json").write_text(json.dumps({**asdict(settings), "sources": list(map(str, sources)),
                                                 "scheduler": scheduler, "workers": workers}, indent=2))
    closing = []  # the thread closing a Dask cluster while the outputs are written
    runner = _distributed(todo, settings, scheduler, workers, closing) if (scheduler or workers) \
        else _local(todo, settings)
    computed = []
    with tqdm(total=len(days), initial=len(results), desc="scan", unit="station-day",
              disable=not progress) as bar:
        for day, result in runner:
            _write_day(out, day, result, fingerprints[day.key])
            if "failed" in result:
                printer(f"{day.key}: failed ({result['failed']}); it will be run again by the next scan")
            results[day.key] = result
            computed.append(day.key)
            bar.update(1)
    ordered = [results[d.key] for d in days]
    try:
        return write_outputs(ordered, skipped, out, settings, resumed=len(days) - len(computed),
                             computed=set(computed), wall_s=time.monotonic() - started, printer=printer)
    finally:
        for closer in closing:
            closer.join()
