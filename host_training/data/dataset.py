"""Labelled windows with their metadata beside them (SeisBench-style layout).

On disk a dataset is a folder with ``waveforms.hdf5`` (one ``(N, 3, n_samples)`` float32
array of raw acceleration in m/s^2 plus its sampling rate) and ``metadata.csv`` (one row
per window: label, split, source record, arrival times, ...). Windows are stored raw;
the model input is made at load time by :mod:`edge_runtime.preprocess`, the code the node
runs, so a change to the chain never leaves stale training inputs behind.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
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


@dataclass
class WindowDataset:
    """Raw 3-component windows and a metadata table.

    Attributes
    ----------
    waveforms : numpy.ndarray
        ``(N, 3, n_samples)`` acceleration in m/s^2.
    sampling_rate_hz : float
        Sampling rate of ``waveforms`` in Hz.
    metadata : list of dict
        One row per window; at least ``label`` and ``split``.
    """

    waveforms: np.ndarray
    sampling_rate_hz: float
    metadata: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.metadata)

    def column(self, name: str) -> np.ndarray:
        return np.array([row.get(name) for row in self.metadata])

    def subset(self, mask) -> "WindowDataset":
        idx = np.flatnonzero(np.asarray(mask))
        return WindowDataset(self.waveforms[idx], self.sampling_rate_hz,
                             [self.metadata[i] for i in idx])

    def split(self, name: str) -> "WindowDataset":
        return self.subset(self.column("split") == name)

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

    def save(self, folder) -> Path:
        import h5py

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / "waveforms.hdf5", "w") as f:
            dset = f.create_dataset("waveforms", data=self.waveforms.astype(np.float32),
                                    compression="gzip", compression_opts=4)
            dset.attrs["sampling_rate_hz"] = self.sampling_rate_hz
            dset.attrs["units"] = "m/s^2"
            dset.attrs["components"] = "E,N,Z"
        columns = sorted({k for row in self.metadata for k in row})
        with open(folder / "metadata.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.metadata)
        return folder

    @classmethod
    def load(cls, folder) -> "WindowDataset":
        import h5py

        folder = Path(folder)
        for name in ("waveforms.hdf5", "metadata.csv"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing; a dataset folder holds "
                                        "waveforms.hdf5 and metadata.csv")
        with h5py.File(folder / "waveforms.hdf5", "r") as f:
            waveforms = f["waveforms"][...].astype(np.float64)
            rate = float(f["waveforms"].attrs["sampling_rate_hz"])
        with open(folder / "metadata.csv", newline="") as fh:
            metadata = [dict(row) for row in csv.DictReader(fh)]
        if len(metadata) != len(waveforms):
            raise ValueError(f"{folder}: {len(metadata)} metadata rows for {len(waveforms)} waveforms")
        return cls(waveforms, rate, metadata)


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
