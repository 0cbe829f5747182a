"""Any data set in SeisBench's format -> labelled windows.

SeisBench's format (STEAD, INSTANCE, ETHZ, ... as SeisBench distributes them, and every
dataset this project writes): ``metadata.csv`` with one row per trace and
``waveforms.hdf5`` with a ``data_format`` group and the traces under ``data/``, each
``trace_name`` either a dataset name or a bucket address ``bucket<k>$<i>,:<c>,:<n>``.
Chunked data sets (a ``chunks`` file listing ``metadata<chunk>.csv`` /
``waveforms<chunk>.hdf5`` pairs) are read chunk by chunk.

What is read from where:

* components: ``data_format/component_order`` or the ``trace_component_order`` column
  (``--component-order`` when neither exists), reordered to E, N, Z (1/2 and X/Y count as
  E/N); ``dimension_order`` ``CW`` or ``WC``;
* sampling rate: ``trace_sampling_rate_hz``, else ``trace_dt_s``, else
  ``data_format/sampling_rate``; resampled to ``--sampling-rate``;
* units: ``data_format/unit`` and ``measurement`` (``--units`` overrides). Counts are turned
  into m/s^2 with the nominal sensitivity of the instrument class from
  ``station_channels``/``trace_channel`` (see :mod:`.stead`), velocity is differentiated;
* picks: the earliest of the ``trace_<P phase>_arrival_sample`` columns (``p``, ``P``,
  ``Pg``, ``Pn``, ``P1`` ...) and likewise for S; a window is cut at each;
* noise: traces with ``trace_category``/``source_type`` ``noise`` give ``--noise-windows``
  random windows; an already cut window (trace as long as a window, with a ``label``
  column, as this project writes) is taken over as it is.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np

from host_training.units import UNIT_CHOICES, UNIT_NAMES, canonical_unit, measurement_of

from ..datasets.window_dataset import TraceReader, component_permutation, read_data_format
from ..datasets.windowing import (
    NOMINAL_SENSITIVITY,
    check_trace,
    hash_split,
    item_rng,
    noise_windows,
    pick_windows,
    resample,
    velocity_to_acceleration,
)
from .runs import (
    Part,
    PrepareError,
    add_windows,
    csv_fields,
    open_hdf5,
    print_summary,
    run_csv_parts,
    start_run,
    validate_window_args,
)

log = logging.getLogger(__name__)
PICK_COLUMN = re.compile(r"^trace_(?P<phase>[PpSs](?:[gnb]|\d)?)_arrival_sample$")


def dataset_chunks(folder: Path) -> list:
    """``[(metadata.csv, waveforms.hdf5, chunk name)]`` of a SeisBench folder."""
    chunks_file = folder / "chunks"
    if chunks_file.is_file():
        names = [c.strip() for c in chunks_file.read_text().split("\n") if c.strip()]
    else:
        names = [""]
    out = []
    for c in names:
        meta, wave = folder / f"metadata{c}.csv", folder / f"waveforms{c}.hdf5"
        if not meta.is_file() or not wave.is_file():
            raise PrepareError(f"{folder}: no {meta.name} + {wave.name}; not a SeisBench-format folder")
        out.append((meta, wave, c))
    return out


def pick_samples(row: dict) -> dict:
    """Earliest P and S arrival samples from SeisBench pick columns (missing ones left out)."""
    picks = {}
    for key, value in row.items():
        m = PICK_COLUMN.match(key)
        if not m or value in ("", None):
            continue
        try:
            sample = float(value)
        except ValueError:
            continue
        if not np.isfinite(sample):
            continue
        phase = m["phase"][0].upper()
        picks[phase] = min(picks.get(phase, np.inf), sample)
    return picks


def _float(row, key):
    try:
        value = float(row.get(key, ""))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


class TraceSource:
    """Reads traces of one SeisBench chunk as ``(3, n)`` E, N, Z arrays in m/s^2."""

    def __init__(self, h5, args, name: str):
        self.fmt = read_data_format(h5)
        self.reader = TraceReader(h5)
        self.args = args
        self.name = name
        unit = (args.units or str(self.fmt.get("unit", ""))).strip().lower()
        if canonical_unit(unit) is None:
            raise PrepareError(f"{name}: unknown unit '{unit or '(none)'}' in data_format; pass --units "
                               f"({', '.join(UNIT_CHOICES)})")
        self.measurement, self.factor = measurement_of(canonical_unit(unit))
        if self.measurement == "counts":
            measurement = str(self.fmt.get("measurement", "velocity")).lower()
            self.counts_of = "acceleration" if measurement.startswith("acc") else "velocity"
        self.channel_first = str(self.fmt.get("dimension_order", "CW")).upper() == "CW"

    def read(self, row: dict):
        """``(acceleration, fs, how)`` or ``(None, None, reason)``."""
        trace_name = row["trace_name"]
        try:
            data = np.asarray(self.reader.read(trace_name), dtype=np.float64)
        except KeyError:
            return None, None, "listed in metadata, missing from the HDF5 file"
        except (OSError, ValueError, RuntimeError, IndexError) as exc:
            return None, None, f"unreadable (truncated or corrupt HDF5?: {exc})"
        if data.ndim != 2:
            return None, None, f"shape {data.shape}, expected 2-D"
        if not self.channel_first:
            data = data.T
        order = (row.get("trace_component_order") or self.fmt.get("component_order")
                 or self.args.component_order)
        if not order:
            return None, None, "no component order (data_format, trace_component_order or --component-order)"
        if len(order) != data.shape[0]:
            return None, None, f"{data.shape[0]} components for component order '{order}'"
        try:
            data = data[component_permutation(order)]
        except ValueError as exc:
            return None, None, str(exc)
        npts = _float(row, "trace_npts")
        if npts is not None and int(npts) != data.shape[1]:
            return None, None, f"trace_npts {int(npts)} but {data.shape[1]} samples stored (wrong npts)"
        fs = _float(row, "trace_sampling_rate_hz")
        if fs is None and _float(row, "trace_dt_s"):
            fs = 1.0 / _float(row, "trace_dt_s")
        if fs is None and self.fmt.get("sampling_rate"):
            fs = float(self.fmt["sampling_rate"])
        if fs is None or fs <= 0:
            return None, None, "no sampling rate (trace_sampling_rate_hz, trace_dt_s, data_format)"
        reason = check_trace(data)
        if reason:
            return None, None, reason
        if self.measurement == "counts":
            code = (row.get("station_channels") or row.get("trace_channel") or row.get("receiver_type")
                    or "").strip().upper()[:2]
            if code not in NOMINAL_SENSITIVITY:
                return None, None, f"counts with unknown instrument code '{code}' (units unknown)"
            kind, per_unit = NOMINAL_SENSITIVITY[code]
            data = data / per_unit
            how = f"nominal:{kind}:{per_unit:g}"
            if kind == "velocity":
                data = velocity_to_acceleration(data, fs)
        else:
            data = data * self.factor
            how = "data_format"
            if self.measurement == "velocity":
                data = velocity_to_acceleration(data, fs)
        return data, fs, how


def process_row(row: dict, source: TraceSource, part: Part, args) -> None:
    trace_name = row.get("trace_name", "")
    # SeisBench's writer keeps the name it was given in trace_name_original.
    original = row.get("trace_name_original") or trace_name
    item = f"{source.name}:{original}"
    data, fs_in, how = source.read(row)
    if data is None:
        part.skip(item, how)
        return
    fs = args.sampling_rate
    n = int(round(args.window_s * fs))
    acc = resample(data, fs_in, fs)
    ratio = fs / fs_in
    picks = {k: v * ratio for k, v in pick_samples(row).items()}
    rng = item_rng(args.seed, item)
    source_id = row.get("source_id") or row.get("event_id") or trace_name
    station = ".".join(x for x in (row.get("station_network_code", ""), row.get("station_code", "")) if x)
    category = str(row.get("trace_category") or row.get("source_type") or "").lower()
    label = row.get("label", "")
    if acc.shape[1] == n and label in ("P", "S", "noise"):
        windows = [(label, acc, 0)]  # already a window (this project's own datasets)
        pick_source = row.get("pick_source", "")
    elif "noise" in category or (not picks and category in ("", "noise")):
        windows = noise_windows(acc, fs, args.window_s, args.noise_windows, rng)
        pick_source = ""
        picks = {}
    else:
        windows = pick_windows(acc, fs, picks, args.window_s, args.max_shift_s, rng)
        pick_source = row.get("pick_source") or "catalog"
    if not windows:
        part.count("no_window_fits")
        return
    common = {"split": hash_split(source_id, args.seed, args.fractions), "source_id": source_id,
              "station_code": station, "source": f"seisbench:{Path(args.dir).name}",
              "source_trace": original, "trace_response": how,
              "original_sampling_rate_hz": fs_in}
    channel = row.get("trace_channel") or row.get("station_channels") or ""
    if channel:
        common["trace_channel"] = channel
    for key in ("source_magnitude", "source_distance_km", "path_ep_distance_km", "trace_category",
                "source_type"):
        if row.get(key):
            common[key] = row[key]
    add_windows(part, windows, common, picks, pick_source, row.get("trace_start_time", ""), fs,
                keep_unshifted=True)
    part.count("traces_used")


def prepare_seisbench(args) -> int:
    """``prepare seisbench``: see the module docstring."""
    validate_window_args(args)
    folder = Path(args.dir)
    if not folder.is_dir():
        raise PrepareError(f"{folder}: no such folder")
    if args.chunk_size <= 0:
        raise PrepareError(f"--chunk-size must be > 0, got {args.chunk_size}")
    chunks = dataset_chunks(folder)
    run = start_run(args, "seisbench")
    if run is None:
        return 0
    for meta_path, wave_path, chunk in chunks:
        with open_hdf5(wave_path) as h5, open(meta_path, newline="") as fh:
            if "data" not in h5:
                raise PrepareError(f"{wave_path}: no 'data' group; not SeisBench's format")
            reader = csv.DictReader(fh)
            fields = csv_fields(reader, meta_path)
            if "trace_name" not in fields:
                raise PrepareError(f"{meta_path}: no 'trace_name' column; not SeisBench's format")
            source = TraceSource(h5, args, f"{folder.name}{chunk}")
            run_csv_parts(run, reader, meta_path, args.chunk_size, f"chunk{chunk}_",
                          lambda row, part, source=source: process_row(row, source, part, args),
                          f"seisbench {folder.name}{chunk}", args.progress)
    report = run.finish()
    print_summary(report, args.out)
    return 0


def add_arguments(p) -> None:
    p.add_argument("dir", help="SeisBench-format folder (metadata.csv + waveforms.hdf5)")
    p.add_argument("--units", default=None, choices=UNIT_NAMES,
                   help="unit of the stored samples (default: data_format/unit)")
    p.add_argument("--component-order", default=None,
                   help="component order when neither data_format nor metadata give it, e.g. ZNE")
    p.add_argument("--chunk-size", type=int, default=1000, help="metadata rows per resumable part")
