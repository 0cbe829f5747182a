"""Resumable, atomic runs of the ``python -m host_training prepare ...`` readers.

A reader splits its input into numbered parts (a chunk of CSV rows, a station folder).
Each part is written as a complete small dataset under ``<out>.partial/parts/`` together
with ``part_report.json`` (windows, counts, skipped items with their reasons); a part
folder appears only when complete (written under a temporary name, then renamed), so an
interrupted run resumes with the first missing part. When every part exists they are
copied bucket by bucket into ``<out>.tmp-<pid>``, which is renamed to ``<out>``: a
dataset folder is always complete. ``<out>/prepare_report.json`` holds the run's
configuration, counts, windows/s and every skipped item; ``prepare merge`` collects these
into the data card.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from itertools import islice
from pathlib import Path

import h5py

from ..datasets.window_dataset import TraceReader, WindowWriter, read_data_format

log = logging.getLogger(__name__)
REPORT = "prepare_report.json"
PART_REPORT = "part_report.json"
# Arguments that do not change the result: left out of the resume check.
CONFIG_IGNORED = ("overwrite", "verbose", "progress")
NAMED_REASONS = 3  # skipped items named in the error of a run without windows


class PrepareError(Exception):
    """Bad command-line input: one line for the user, exit status 2."""


class Part:
    """What a reader hands out for one part: a writer and a skip list."""

    def __init__(self, writer: WindowWriter):
        self.writer = writer
        self.skipped = []  # [{"item": ..., "reason": ...}]
        self.counts = {}

    def add(self, window, row) -> None:
        self.writer.add(window, row)

    def skip(self, item, reason: str) -> None:
        log.warning("%s: %s; skipped", item, reason)
        self.skipped.append({"item": str(item), "reason": reason})
        self.count("skipped")

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


class PrepareRun:
    """Lifecycle of one ``prepare`` output folder.

    Parameters
    ----------
    out : str or Path
        Final dataset folder.
    command : str
        ``stead``, ``seisbench``, ``sac`` or ``merge``.
    config : dict
        The run's arguments, written next to the outputs and compared on resume.
    sampling_rate_hz : float
        Sampling rate of the stored windows in Hz.
    n_samples : int
        Samples per window.
    overwrite : bool
        Replace a finished ``out`` instead of reporting it done.
    """

    def __init__(self, out, command: str, config: dict, sampling_rate_hz: float, n_samples: int,
                 overwrite: bool = False, data_format: dict | None = None):
        self.out = Path(out)
        self.command = command
        self.config = {k: (str(v) if isinstance(v, Path) else v) for k, v in config.items()}
        self.sampling_rate_hz = sampling_rate_hz
        self.n_samples = n_samples
        self.data_format = data_format or {}
        self.work = self.out.parent / f"{self.out.name}.partial"
        self.parts_dir = self.work / "parts"
        self.t0 = time.perf_counter()
        self.new_windows = 0
        if overwrite and self.out.exists():
            shutil.rmtree(self.out)
        if self.out.exists() and not self.finished():
            raise PrepareError(f"{self.out}: exists and is not a finished '{command}' output; "
                               "remove it or choose another --out")
        if not self.finished():
            self._check_resume()

    def finished(self) -> bool:
        return (self.out / REPORT).is_file()

    def _check_resume(self) -> None:
        cfg_path = self.work / "config.json"
        wanted = json.loads(json.dumps({"command": self.command, **self.config}))
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text())
            if old != wanted:
                changed = sorted(k for k in set(old) | set(wanted) if old.get(k) != wanted.get(k))
                raise PrepareError(f"{self.work}: an unfinished run with other settings "
                                   f"({', '.join(changed)}); remove it or rerun with the same "
                                   "settings to resume")
            # Scratch of a run that was killed (not interrupted): never complete, drop it.
            for stale in [*self.parts_dir.glob("*.tmp-*"), *self.out.parent.glob(f"{self.out.name}.tmp-*")]:
                shutil.rmtree(stale, ignore_errors=True)
            log.info("resuming %s (%d parts done)", self.work, len(self.done_parts()))
        else:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            cfg_path.write_text(json.dumps(wanted, indent=2))

    def done_parts(self) -> list:
        if not self.parts_dir.is_dir():
            return []
        return sorted(p.name for p in self.parts_dir.iterdir()
                      if p.is_dir() and (p / PART_REPORT).is_file() and ".tmp-" not in p.name)

    def part_done(self, key: str) -> bool:
        return (self.parts_dir / key / PART_REPORT).is_file()

    def run_part(self, key: str, fn) -> None:
        """Run ``fn(part)`` for part ``key`` unless it is already done; atomic."""
        if self.part_done(key):
            return
        writer = WindowWriter(self.parts_dir / key, self.sampling_rate_hz, self.n_samples,
                              data_format=self.data_format, overwrite=True)
        part = Part(writer)
        try:
            fn(part)
            with open(writer.tmp / PART_REPORT, "w") as fh:
                json.dump({"windows": writer.n_windows, "counts": part.counts,
                           "skipped": part.skipped}, fh)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        self.new_windows += writer.n_windows

    def finish(self, extra: dict | None = None, files: dict | None = None, inputs: str = "") -> dict:
        """Assemble every part into ``out`` and write ``prepare_report.json``; returns it.

        ``files`` (name -> text, or a function of the report returning that) are written
        into the output before it is renamed. ``inputs`` names what was read (``3 files``)
        in the error of a run that found no window.

        Raises
        ------
        PrepareError
            When no part holds a window: nothing is written and the unfinished run is
            removed, so the corrected command starts afresh.
        """
        keys = self.done_parts()
        self._check_windows(keys, inputs)
        counts, skipped, n_in = {}, [], 0
        writer = WindowWriter(self.out, self.sampling_rate_hz, self.n_samples,
                              data_format=self.data_format)
        try:
            for key in keys:
                folder = self.parts_dir / key
                rep = json.loads((folder / PART_REPORT).read_text())
                for k, v in rep["counts"].items():
                    counts[k] = counts.get(k, 0) + v
                skipped.extend(rep["skipped"])
                n_in += copy_windows(folder, writer)
            elapsed = time.perf_counter() - self.t0
            report = {
                "command": self.command, "config": self.config, "windows": writer.n_windows,
                "counts": counts, "skipped": skipped, "parts": len(keys),
                "sampling_rate_hz": self.sampling_rate_hz, "n_samples": self.n_samples,
                "seconds_this_run": round(elapsed, 3),
                "windows_per_s_this_run": round(self.new_windows / elapsed, 1) if elapsed > 0 else None,
                **(extra or {}),
            }
            (writer.tmp / REPORT).write_text(json.dumps(report, indent=2))
            if callable(files):  # files that need the report (its windows/s)
                files = files(report)
            for name, text in (files or {}).items():
                (writer.tmp / name).write_text(text)
            (writer.tmp / "config.json").write_text(json.dumps({"command": self.command, **self.config},
                                                               indent=2))
            writer.close()
        except BaseException:
            writer.abort()
            raise
        shutil.rmtree(self.work, ignore_errors=True)
        return report

    def report(self) -> dict:
        return json.loads((self.out / REPORT).read_text())

    def _check_windows(self, keys: list, inputs: str) -> None:
        """A one-line :class:`PrepareError` naming the first reasons when no part has a window."""
        reports = [json.loads((self.parts_dir / key / PART_REPORT).read_text()) for key in keys]
        if any(rep["windows"] for rep in reports):
            return
        shutil.rmtree(self.work, ignore_errors=True)
        skipped = [s for rep in reports for s in rep["skipped"]]
        first = "; ".join(f"{Path(s['item']).name}: {' '.join(str(s['reason']).split())}"
                          for s in skipped[:NAMED_REASONS])
        more = f"; {len(skipped) - NAMED_REASONS} more" if len(skipped) > NAMED_REASONS else ""
        raise PrepareError(f"no windows from {inputs or f'{len(keys)} parts'}: "
                           f"{first or 'nothing was skipped, nothing was read'}{more}")


def copy_windows(folder, writer: WindowWriter, rows_filter=None) -> int:
    """Append every window of a dataset folder to ``writer`` (bucket-cached reads)."""
    folder = Path(folder)
    n = 0
    with h5py.File(folder / "waveforms.hdf5", "r") as f, \
            open(folder / "metadata.csv", newline="") as fh:
        fmt = read_data_format(f)
        if fmt.get("component_order", "ENZ") != "ENZ" or fmt.get("dimension_order", "CW") != "CW":
            raise ValueError(f"{folder}: copy needs CW/ENZ data, found {fmt}")
        reader = TraceReader(f)
        for row in csv.DictReader(fh):
            if rows_filter is not None and not rows_filter(row):
                continue
            window = reader.read(row["trace_name"])
            row = {k: v for k, v in row.items() if v != ""}
            row.pop("trace_name", None)
            writer.add(window, row)
            n += 1
    return n


def start_run(args, command: str, **kwargs) -> PrepareRun | None:
    """The ``PrepareRun`` of a reader's ``args``; ``None`` (summary printed) when already finished."""
    config = {k: v for k, v in vars(args).items() if k not in CONFIG_IGNORED}
    run = PrepareRun(args.out, command, config, args.sampling_rate,
                     int(round(args.window_s * args.sampling_rate)), overwrite=args.overwrite, **kwargs)
    if run.finished():
        print(f"{args.out}: already prepared (use --overwrite to redo)")
        print_summary(run.report(), args.out)
        return None
    return run


def open_hdf5(path) -> h5py.File:
    """``path`` opened read-only; an unreadable file stops the run with one line naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise PrepareError(f"{path}: not a readable HDF5 file ({exc})") from exc


def csv_fields(reader, path, what: str = "") -> list:
    """Header of a ``csv.DictReader``; a binary file stops the run (``what`` ends the message)."""
    try:
        return reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PrepareError(f"{path}: not a text CSV ({exc}){what}") from None


def read_rows(reader, n: int, path) -> list:
    """Next ``n`` rows of a CSV; a damaged file stops the run with one line naming it."""
    try:
        return list(islice(reader, n))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PrepareError(f"{path}: unreadable near line {reader.line_num} ({exc})") from None


def run_csv_parts(run: PrepareRun, reader, path, chunk_size: int, key_prefix: str, process_row,
                  desc: str, progress: bool) -> None:
    """Every row of ``reader`` (the CSV at ``path``) through ``process_row(row, part)``, in
    resumable parts of ``chunk_size`` rows keyed ``<key_prefix><k:06d>``."""
    from tqdm import tqdm

    with open(path, "rb") as count_fh:
        total = max(0, sum(1 for _ in count_fh) - 1)
    bar = tqdm(total=total, unit="trace", desc=desc, disable=not progress)
    k = 0
    while True:
        rows = read_rows(reader, chunk_size, path)
        if not rows:
            break

        def work(part, rows=rows):
            for row in rows:
                process_row(row, part)

        run.run_part(f"{key_prefix}{k:06d}", work)
        bar.update(len(rows))
        k += 1
    bar.close()


def shift_time(iso: str, seconds: float) -> str:
    """ISO time ``iso`` plus ``seconds`` (``""`` when absent or unreadable)."""
    if not iso:
        return ""
    from obspy import UTCDateTime

    try:
        return str(UTCDateTime(iso) + seconds)
    except Exception:
        return ""


def add_windows(part: Part, windows, common: dict, picks: dict, pick_source: str, trace_start: str,
                fs: float, keep_unshifted: bool = False) -> None:
    """Each ``(label, window, start)`` of ``windows`` into ``part``: ``common`` metadata, its
    start time and its pick samples relative to the window; counts ``windows_<label>``.
    ``keep_unshifted``: a window starting at sample 0 keeps ``trace_start`` as written."""
    for label, window, start in windows:
        if keep_unshifted and start / fs == 0:
            start_time = trace_start or ""
        else:
            start_time = shift_time(trace_start, start / fs)
        out = dict(common, label=label, pick_source=pick_source, trace_start_time=start_time)
        for phase, sample in picks.items():
            out[f"trace_{phase.lower()}_arrival_sample"] = int(round(sample - start))
        part.add(window, out)
        part.count(f"windows_{label}")


def print_summary(report: dict, out) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["counts"].items()))
    print(f"{report['windows']} windows -> {out}  ({counts}); "
          f"{report.get('windows_per_s_this_run')} windows/s this run; "
          f"{len(report['skipped'])} skipped items listed in {Path(out) / REPORT}")


def validate_window_args(args) -> None:
    for name in ("sampling_rate", "window_s"):
        if getattr(args, name) <= 0:
            raise PrepareError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.max_shift_s < 0 or args.noise_windows < 0:
        raise PrepareError("--max-shift-s and --noise-windows must be >= 0")
    check_fractions(args.fractions)


def check_fractions(fractions) -> None:
    """Train, val and test fractions: each >= 0, summing to 1 (within 1e-6); PrepareError otherwise."""
    given = " ".join(f"{f:g}" for f in fractions)
    if min(fractions) < 0:
        raise PrepareError(f"--fractions {given}: each must be >= 0")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise PrepareError(f"--fractions {given} sum to {sum(fractions):g}; train, val and test must "
                           "sum to 1 (e.g. 0.7 0.15 0.15)")
