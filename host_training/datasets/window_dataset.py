"""Labelled windows in SeisBench's on-disk format.

A dataset is a folder with ``metadata.csv`` and ``waveforms.hdf5`` laid out exactly as
SeisBench's ``WaveformDataset`` reads them, so ``seisbench.data.WaveformDataset(folder,
component_order="ENZ")`` opens any dataset this project writes:

* ``waveforms.hdf5``: group ``data_format`` (``dimension_order = "CW"``,
  ``component_order = "ENZ"``, ``sampling_rate`` in Hz, ``measurement = "acceleration"``,
  ``unit = "m/s2"``, ``instrument_response``) and group ``data`` holding float32 buckets
  ``bucket<k>`` of shape ``(n_windows, 3, n_samples)``; one bucket holds windows of one
  split only, so a split is read without touching the others.
* ``metadata.csv``: one row per window. ``trace_name`` is SeisBench's bucket address
  ``bucket<k>$<i>,:3,:<n>``; further columns: ``trace_sampling_rate_hz``, ``trace_npts``,
  ``trace_start_time`` (ISO time of the first sample, empty when unknown),
  ``trace_component_order``, ``split`` (``train``/``dev``/``test``, SeisBench's names),
  ``label`` (``P``, ``S``, ``noise``), ``source_id`` (event or record id), ``station_code``,
  ``trace_p_arrival_sample`` / ``trace_s_arrival_sample`` (samples after the first sample
  of the window; may lie outside it, empty when unknown), ``pick_source`` and whatever the
  writer adds (``source``, ``center_s``, ...).

In memory the project calls the validation split ``val`` (``train.py`` and friends);
SeisBench calls it ``dev``. :class:`WindowDataset` maps one to the other on load and save.

Windows are stored raw, as acceleration in m/s^2; the model input is made at load time by
:mod:`edge_runtime.preprocess`, the code the node runs, so a change to the chain never
leaves stale training inputs behind.

Loading is lazy: :meth:`WindowDataset.load` reads the metadata; waveforms are read from
the HDF5 file the first time ``waveforms`` is used, and only for the rows of that object
(``WindowDataset.load(folder).split("test").waveforms`` reads the test buckets only).
Writing streams: :class:`WindowWriter` keeps at most one bucket per split in memory, writes
under a temporary name and renames when complete, so a half-written dataset never exists.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge_runtime.preprocess import (
    PreprocessConfig,
    amplitude_ok,
    filter_windows,
    max_abs,
    normalize,
    prepare_windows,
    to_model_input,
)

SPLITS = ("train", "val", "test")
COMPONENT_ORDER = "ENZ"
# In-memory split name -> SeisBench's on-disk name, and back.
TO_SEISBENCH_SPLIT = {"val": "dev"}
FROM_SEISBENCH_SPLIT = {"dev": "val"}
# Columns every dataset written here has, in this order; the writer appends the rest.
CORE_COLUMNS = (
    "trace_name", "split", "label", "source_id", "station_code", "trace_start_time",
    "trace_sampling_rate_hz", "trace_npts", "trace_component_order",
    "trace_p_arrival_sample", "trace_s_arrival_sample", "pick_source",
)
BUCKET_SIZE = 1024


class WindowWriter:
    """Stream windows into a SeisBench-format dataset folder.

    Windows are grouped into one bucket per split and written when the bucket is full;
    metadata rows go to a scratch file as they come and become ``metadata.csv`` on
    :meth:`close`. Everything is written under ``<folder>.tmp-<pid>`` and renamed to
    ``folder`` only when complete; a writer left by an exception removes its scratch.

    Parameters
    ----------
    folder : str or Path
        Final dataset folder; must not exist unless ``overwrite``.
    sampling_rate_hz : float
        Sampling rate of every window in Hz.
    n_samples : int, optional
        Samples per window; taken from the first window when not given.
    bucket_size : int
        Windows per HDF5 bucket.
    data_format : dict, optional
        Extra keys of the ``data_format`` group (e.g. ``instrument_response``).
    overwrite : bool
        Replace an existing ``folder``.
    """

    def __init__(self, folder, sampling_rate_hz: float, n_samples: int | None = None,
                 bucket_size: int = BUCKET_SIZE, data_format: dict | None = None,
                 overwrite: bool = False):
        import h5py

        self.folder = Path(folder)
        if self.folder.exists() and not overwrite:
            raise FileExistsError(f"{self.folder}: exists; choose another --out or remove it")
        self.overwrite = overwrite
        self.sampling_rate_hz = float(sampling_rate_hz)
        self.n_samples = n_samples
        self.bucket_size = int(bucket_size)
        self.tmp = self.folder.parent / f"{self.folder.name}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._h5 = h5py.File(self.tmp / "waveforms.hdf5", "w")
        fmt = {"dimension_order": "CW", "component_order": COMPONENT_ORDER,
               "sampling_rate": self.sampling_rate_hz, "measurement": "acceleration",
               "unit": "m/s2", "instrument_response": "restituted"}
        fmt.update(data_format or {})
        group = self._h5.create_group("data_format")
        for key, value in fmt.items():
            group.create_dataset(key, data=value)
        self._data = self._h5.create_group("data")
        self._rows = open(self.tmp / "rows.jsonl", "w")  # noqa: SIM115 - closed in close()
        self._columns = dict.fromkeys(CORE_COLUMNS)
        self._cache = defaultdict(list)  # split -> windows of its open bucket
        self._bucket_names = {}  # split -> name of its open bucket
        self._n_buckets = 0
        self.n_windows = 0
        self.closed = False

    def add(self, window: np.ndarray, row: dict) -> None:
        """Add one ``(3, n_samples)`` window (m/s^2, E, N, Z) with its metadata row.

        ``row`` needs ``label`` and ``split`` (``train``, ``val``/``dev`` or ``test``);
        the writer fills ``trace_name``, ``trace_npts``, ``trace_sampling_rate_hz`` and
        ``trace_component_order``.
        """
        # A copy: a view would keep the caller's whole array (a read bucket) alive.
        window = np.array(window, dtype=np.float32, copy=True)
        if self.n_samples is None:
            self.n_samples = window.shape[-1]
        if window.shape != (3, self.n_samples):
            raise ValueError(f"window of shape {window.shape}, expected (3, {self.n_samples})")
        row = dict(row)
        split = str(row.get("split", "train"))
        row["split"] = TO_SEISBENCH_SPLIT.get(split, split)
        for key in ("label", "split"):
            if not row.get(key):
                raise ValueError(f"metadata row without '{key}': {row}")
        split = row["split"]
        if split not in self._bucket_names:
            self._bucket_names[split] = f"bucket{self._n_buckets}"
            self._n_buckets += 1
        # The address is fixed now, so metadata.csv keeps the order windows came in.
        row.update(trace_name=f"{self._bucket_names[split]}${len(self._cache[split])},:3,:{self.n_samples}",
                   trace_npts=self.n_samples, trace_sampling_rate_hz=self.sampling_rate_hz,
                   trace_component_order=COMPONENT_ORDER)
        for key in row:
            if key not in self._columns:
                self._columns[key] = None
        self._rows.write(json.dumps(row, default=_json_default) + "\n")
        self.n_windows += 1
        self._cache[split].append(window)
        if len(self._cache[split]) >= self.bucket_size:
            self._flush(split)

    def _flush(self, split: str) -> None:
        windows = self._cache.pop(split, [])
        name = self._bucket_names.pop(split, None)
        if windows:
            self._data.create_dataset(name, data=np.stack(windows))

    def close(self) -> Path:
        """Flush, write ``metadata.csv``, rename to the final folder; returns it."""
        for split in list(self._cache):
            self._flush(split)
        self._h5.close()
        self._rows.close()
        with open(self.tmp / "rows.jsonl") as src, \
                open(self.tmp / "metadata.csv", "w", newline="") as dst:
            writer = csv.DictWriter(dst, fieldnames=list(self._columns), restval="")
            writer.writeheader()
            for line in src:
                writer.writerow({k: _csv_value(v) for k, v in json.loads(line).items()})
        (self.tmp / "rows.jsonl").unlink()
        if self.folder.exists() and self.overwrite:
            shutil.rmtree(self.folder)
        os.replace(self.tmp, self.folder)
        self.closed = True
        return self.folder

    def abort(self) -> None:
        """Drop everything written so far."""
        if not self.closed:
            try:
                self._h5.close()
                self._rows.close()
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float) and not np.isfinite(value):
        return ""
    return value


def parse_trace_name(trace_name: str):
    """SeisBench trace address -> (block name, tuple of slices/ints)."""
    if "$" not in trace_name:
        return trace_name, (slice(None),)
    block, location = trace_name.split("$")
    parts = []
    for item in location.replace(" ", "").split(","):
        bounds = item.split(":")
        ints = [int(b) if b else None for b in bounds]
        parts.append(ints[0] if len(ints) == 1 else slice(*ints))
    return block, tuple(parts)


class TraceReader:
    """Read SeisBench traces from an open ``waveforms.hdf5`` with a one-block cache.

    Rows of a dataset are usually stored bucket after bucket, so caching the last block
    read turns N small HDF5 reads into one read per bucket while memory stays at one
    bucket.

    Parameters
    ----------
    h5 : h5py.File
        Open waveforms file.
    max_block_bytes : int
        Blocks larger than this are sliced per trace instead of cached whole.
    """

    def __init__(self, h5, max_block_bytes: int = 64 * 2**20):
        self.data = h5["data"]
        self.max_block_bytes = max_block_bytes
        self._name = None
        self._block = None

    def read(self, trace_name: str) -> np.ndarray:
        block_name, location = parse_trace_name(str(trace_name))
        if block_name != self._name:
            dset = self.data[block_name]
            if dset.size * dset.dtype.itemsize > self.max_block_bytes:
                return dset[location]
            self._name, self._block = block_name, dset[()]
        return self._block[location].copy()  # no view into the cached block


def read_data_format(h5) -> dict:
    """The ``data_format`` group as plain Python values (empty dict if absent)."""
    if "data_format" not in h5:
        return {}
    out = {}
    for key, dset in h5["data_format"].items():
        value = dset[()]
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def component_permutation(order: str, target: str = COMPONENT_ORDER) -> list:
    """Indices that take components stored in ``order`` to ``target`` order.

    Horizontal aliases are accepted: 1/2 and X/Y stand for E/N.
    """
    alias = {"1": "E", "2": "N", "X": "E", "Y": "N"}
    order = "".join(alias.get(c, c) for c in str(order).upper())
    if sorted(order) != sorted(target):
        raise ValueError(f"component order '{order}' cannot be mapped to '{target}'")
    return [order.index(c) for c in target]


class WindowDataset:
    """Raw 3-component windows and a metadata table.

    Parameters
    ----------
    waveforms : numpy.ndarray or None
        ``(N, 3, n_samples)`` acceleration in m/s^2, components (E, N, Z). None for a
        dataset loaded lazily (``source`` given): read on first use.
    sampling_rate_hz : float
        Sampling rate of ``waveforms`` in Hz.
    metadata : list of dict
        One row per window; at least ``label`` and ``split``.
    source : Path, optional
        Dataset folder the waveforms are read from when ``waveforms`` is None.
    """

    def __init__(self, waveforms, sampling_rate_hz: float, metadata=None, source=None):
        self._waveforms = waveforms
        self.sampling_rate_hz = float(sampling_rate_hz)
        self.metadata = list(metadata) if metadata is not None else []
        self.source = Path(source) if source is not None else None
        if waveforms is None and source is None:
            raise ValueError("WindowDataset needs waveforms or a source folder")

    @property
    def waveforms(self) -> np.ndarray:
        """``(N, 3, n_samples)`` float64 acceleration in m/s^2 (read on first use)."""
        if self._waveforms is None:
            self._waveforms = read_windows(self.source, [row["trace_name"] for row in self.metadata])
        return self._waveforms

    @waveforms.setter
    def waveforms(self, value) -> None:
        self._waveforms = value

    def __len__(self) -> int:
        return len(self.metadata)

    def column(self, name: str) -> np.ndarray:
        return np.array([row.get(name) for row in self.metadata])

    def subset(self, mask) -> WindowDataset:
        mask = np.asarray(mask)
        idx = np.flatnonzero(mask) if mask.dtype == bool else mask.astype(int)
        rows = [self.metadata[i] for i in idx]
        if self._waveforms is None:
            return WindowDataset(None, self.sampling_rate_hz, rows, source=self.source)
        return WindowDataset(self._waveforms[idx], self.sampling_rate_hz, rows, source=self.source)

    def split(self, name: str) -> WindowDataset:
        """Windows of one split (``train``, ``val`` (alias ``dev``), ``test``)."""
        return self.subset(self.column("split") == FROM_SEISBENCH_SPLIT.get(name, name))

    def labels(self, classes) -> np.ndarray:
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[row["label"]] for row in self.metadata], dtype=np.int64)

    def model_inputs(self, config: PreprocessConfig = PreprocessConfig(), quantized: bool = True):
        """Model inputs made by the node's chain.

        Parameters
        ----------
        config : PreprocessConfig
            Window chain parameters.
        quantized : bool
            True: the seed's representation, normalize(quantize(normalize(x))), what the
            models are trained on. False: normalize(x) only, to measure what the int16
            step changes.

        Returns
        -------
        x : numpy.ndarray
            ``(N, 1, n_out, 3)`` float32 inputs.
        keep : numpy.ndarray
            Boolean mask of windows that pass the seed's amplitude drops
            (1e-8 < peak < 19.62 m/s^2); the caller decides what to do with the rest.
        """
        if quantized:
            int16, peak = prepare_windows(self.waveforms, self.sampling_rate_hz, config)
            x = to_model_input(int16)
        else:
            filtered = filter_windows(self.waveforms, self.sampling_rate_hz, config)
            peak = max_abs(filtered)[..., 0, 0]
            x = np.ascontiguousarray(np.swapaxes(normalize(filtered), -1, -2)[:, None].astype(np.float32))
        return x, amplitude_ok(peak)

    def save(self, folder, overwrite: bool = True, data_format: dict | None = None) -> Path:
        """Write the dataset in SeisBench's format (see the module docstring).

        Rows that carry the synthetic generators' picks (``p_sample``/``s_sample`` in the
        window, or ``p_s``/``s_s``/``center_s`` in s after the record start) get
        ``trace_p_arrival_sample``/``trace_s_arrival_sample``; ``source_id`` defaults to
        ``record``.
        """
        waveforms = self.waveforms
        n = waveforms.shape[-1]
        with WindowWriter(folder, self.sampling_rate_hz, n, overwrite=overwrite,
                          data_format=data_format) as writer:
            for window, row in zip(waveforms, self.metadata, strict=True):
                writer.add(window, _complete_row(row, self.sampling_rate_hz, n))
        return Path(folder)

    @classmethod
    def load(cls, folder, split: str | None = None) -> WindowDataset:
        """Open a dataset folder (metadata now, waveforms on first use).

        Parameters
        ----------
        folder : str or Path
            Folder with ``metadata.csv`` and ``waveforms.hdf5``.
        split : str, optional
            Keep only this split (``train``, ``val``/``dev``, ``test``).
        """
        import h5py

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such dataset folder")
        for name in ("waveforms.hdf5", "metadata.csv"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing; a dataset folder holds "
                                        "waveforms.hdf5 and metadata.csv")
        try:
            with h5py.File(folder / "waveforms.hdf5", "r") as f:
                if "data" not in f and "waveforms" in f:
                    return cls._load_legacy(folder, f, split)
                fmt = read_data_format(f)
        except OSError as exc:
            raise ValueError(f"{folder / 'waveforms.hdf5'}: not a readable HDF5 file ({exc})") from exc
        with open(folder / "metadata.csv", newline="") as fh:
            metadata = [dict(row) for row in csv.DictReader(fh)]
        if metadata and "trace_name" not in metadata[0]:
            raise ValueError(f"{folder / 'metadata.csv'}: no 'trace_name' column")
        rates = {row.get("trace_sampling_rate_hz") or fmt.get("sampling_rate") for row in metadata}
        rates = {float(r) for r in rates if r not in (None, "")}
        if len(rates) > 1:
            raise ValueError(f"{folder}: windows at several sampling rates {sorted(rates)}; "
                             "use 'prepare seisbench' to resample them")
        rate = rates.pop() if rates else float(fmt.get("sampling_rate", "nan"))
        for row in metadata:
            row["split"] = FROM_SEISBENCH_SPLIT.get(row.get("split", ""), row.get("split", ""))
        ds = cls(None, rate, metadata, source=folder)
        return ds.split(split) if split else ds

    @classmethod
    def _load_legacy(cls, folder, f, split):
        """The first layout of this project (one ``waveforms`` array); read eagerly."""
        waveforms = f["waveforms"][...].astype(np.float64)
        rate = float(f["waveforms"].attrs["sampling_rate_hz"])
        with open(folder / "metadata.csv", newline="") as fh:
            metadata = [dict(row) for row in csv.DictReader(fh)]
        if len(metadata) != len(waveforms):
            raise ValueError(f"{folder}: {len(metadata)} metadata rows for {len(waveforms)} waveforms")
        ds = cls(waveforms, rate, metadata, source=folder)
        return ds.split(split) if split else ds

    def iter_batches(self, batch_size: int = BUCKET_SIZE):
        """Yield ``(waveforms, rows)`` batches without holding the whole dataset."""
        for start in range(0, len(self), batch_size):
            part = self.subset(np.arange(start, min(start + batch_size, len(self))))
            yield part.waveforms, part.metadata


def _complete_row(row: dict, fs: float, n: int) -> dict:
    row = dict(row)
    if not row.get("source_id") and row.get("record"):
        row["source_id"] = row["record"]
    for phase in ("p", "s"):  # the physics generator's picks: samples in the window, -1 outside
        sample = _float(row.get(f"{phase}_sample"))
        if sample is not None and sample >= 0 and not row.get(f"trace_{phase}_arrival_sample"):
            row[f"trace_{phase}_arrival_sample"] = int(sample)
            row.setdefault("pick_source", "synthetic")
    center = _float(row.get("center_s"))
    if center is not None:
        start = center - n / (2 * fs)
        for phase in ("p", "s"):
            t = _float(row.get(f"{phase}_s"))
            if t is not None and not row.get(f"trace_{phase}_arrival_sample"):
                row[f"trace_{phase}_arrival_sample"] = int(round((t - start) * fs))
                row.setdefault("pick_source", "synthetic")
    return row


def _float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def read_windows(folder, trace_names) -> np.ndarray:
    """``(N, 3, n)`` float64 windows of the given trace names, in (E, N, Z) order.

    Reads bucket by bucket: a bucket is read whole when many of its windows are wanted,
    else window by window, so reading one split of a large dataset reads that split.
    """
    import h5py

    trace_names = list(trace_names)
    if not trace_names:
        return np.zeros((0, 3, 0))
    with h5py.File(Path(folder) / "waveforms.hdf5", "r") as f:
        fmt = read_data_format(f)
        perm = component_permutation(fmt.get("component_order", COMPONENT_ORDER))
        channel_first = fmt.get("dimension_order", "CW") == "CW"
        by_block = defaultdict(list)
        for i, name in enumerate(trace_names):
            block, location = parse_trace_name(name)
            by_block[block].append((i, location))
        out = None
        for block, items in by_block.items():
            dset = f["data"][block]
            whole = dset[()] if len(items) * 4 >= (dset.shape[0] if dset.ndim == 3 else 1) else None
            for i, location in items:
                w = whole[location] if whole is not None else dset[location]
                w = np.asarray(w, dtype=np.float64)
                if not channel_first:
                    w = w.T
                w = w[perm]
                if out is None:
                    out = np.empty((len(trace_names),) + w.shape)
                if w.shape != out.shape[1:]:
                    raise ValueError(f"{folder}: trace {trace_names[i]} has shape {w.shape}, "
                                     f"others {out.shape[1:]}")
                out[i] = w
    return out


def cut(data: np.ndarray, fs: float, center_s: float, window_s: float = 2.0):
    """Window of ``window_s`` centred at ``center_s`` (s after the first sample), or None."""
    n = int(round(window_s * fs))
    start = int(round(center_s * fs)) - n // 2
    if start < 0 or start + n > data.shape[-1]:
        return None
    return data[..., start:start + n]


def assign_splits(rng, n_records: int, fractions=(0.7, 0.15, 0.15)) -> list:
    """Seeded split of record indices; all windows of a record share its split."""
    order = rng.permutation(n_records)
    bounds = np.cumsum(np.array(fractions) * n_records).round().astype(int)
    split = np.empty(n_records, dtype=object)
    split[order[: bounds[0]]] = "train"
    split[order[bounds[0]: bounds[1]]] = "val"
    split[order[bounds[1]:]] = "test"
    return list(split)
