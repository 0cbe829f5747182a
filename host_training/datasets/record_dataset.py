"""Labelled whole records (earthquake / active source) in the project's SeisBench layout.

A record dataset is a :class:`~host_training.datasets.window_dataset.WindowDataset` whose "windows"
are records of ``record_s`` (60 s by default) with the onset ``pre_s`` after the first
sample: the same ``waveforms.hdf5`` + ``metadata.csv`` folder, readable by SeisBench,
with two more keys in the ``data_format`` group: ``dataset_kind = "records"`` and
``spectrogram_config`` (the JSON of :class:`edge_runtime.spectrogram.SpectrogramConfig`).
Labels are ``earthquake`` and ``active_source``; ``source`` says which kind (explosion,
hammer, vibroseis, ...); ``trace_p_arrival_sample`` is the onset.

Records are stored raw (m/s^2, E, N, Z); the model input, a ``(3, 100, 150)`` spectrogram
image, is made at load time by :mod:`edge_runtime.spectrogram`, the code the node runs.

Records come from the generator (:func:`host_training.synthetic.active.source_dataset`) or
from labelled folders of real files (:func:`host_training.prepare.record_sets.records_from_files`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge_runtime.preprocess import amplitude_ok
from edge_runtime.spectrogram import SpectrogramConfig, spectrogram_images, to_model_input

from .window_dataset import WindowDataset, read_data_format

log = logging.getLogger(__name__)

RECORD_LABELS = ("earthquake", "active_source")


class RecordDataset(WindowDataset):
    """Whole records with a spectrogram config; see the module docstring.

    Parameters
    ----------
    waveforms : numpy.ndarray or None
        ``(N, 3, n)`` acceleration in m/s^2 (E, N, Z), ``n = record_s * rate``.
    sampling_rate_hz : float
        Sampling rate in Hz.
    metadata : list of dict
        One row per record; at least ``label`` (``earthquake``/``active_source``) and
        ``split``.
    spectrogram : SpectrogramConfig, optional
        How records become images; the default config when omitted.
    source : Path, optional
        Dataset folder for lazy reading.
    """

    def __init__(self, waveforms, sampling_rate_hz: float, metadata=None, source=None,
                 spectrogram: SpectrogramConfig | None = None):
        super().__init__(waveforms, sampling_rate_hz, metadata, source=source)
        self.spectrogram = spectrogram or SpectrogramConfig()

    def subset(self, mask) -> RecordDataset:
        part = super().subset(mask)
        return RecordDataset(part._waveforms, part.sampling_rate_hz, part.metadata,
                             source=part.source, spectrogram=self.spectrogram)

    def model_inputs(self, config: SpectrogramConfig | None = None, batch_size: int = 256, **_ignored):
        """Spectrogram images made by the node's code.

        Parameters
        ----------
        config : SpectrogramConfig, optional
            The dataset's own config when omitted (or when given something else, e.g. the
            window chain's ``PreprocessConfig`` by a caller written for windows).
        batch_size : int
            Records per batch (bounds the memory of the intermediate spectra).

        Returns
        -------
        x : numpy.ndarray
            ``(N, 3, 100, 150)`` float32 in [0, 1], stacked (Z, E, N).
        keep : numpy.ndarray
            Boolean mask of records with a finite, non-flat signal below 2 g.
        """
        config = config if isinstance(config, SpectrogramConfig) else self.spectrogram
        waveforms = self.waveforms
        x = np.empty((len(waveforms), 3, config.height, config.width), dtype=np.float32)
        keep = np.ones(len(waveforms), dtype=bool)
        for start in range(0, len(waveforms), batch_size):
            part = waveforms[start:start + batch_size]
            finite = np.isfinite(part).all(axis=(1, 2))
            safe = np.where(finite[:, None, None], part, 0.0)
            centred = safe - safe.mean(axis=-1, keepdims=True)
            peak = np.abs(centred).max(axis=(1, 2))
            keep[start:start + len(part)] = finite & amplitude_ok(peak)
            x[start:start + len(part)] = to_model_input(
                spectrogram_images(safe, self.sampling_rate_hz, config))
        return x, keep

    def save(self, folder, overwrite: bool = True, data_format: dict | None = None) -> Path:
        fmt = {"dataset_kind": "records", "spectrogram_config": json.dumps(self.spectrogram.to_dict())}
        fmt.update(data_format or {})
        folder = super().save(folder, overwrite=overwrite, data_format=fmt)
        import h5py

        with h5py.File(Path(folder) / "waveforms.hdf5", "a") as f:
            f.attrs["dataset_kind"] = "records"  # also where train.open_dataset looks first
        return folder

    def concatenate(self, other: RecordDataset) -> RecordDataset:
        """Both datasets' records in one (same rate, length and spectrogram config)."""
        if other.sampling_rate_hz != self.sampling_rate_hz or other.spectrogram != self.spectrogram \
                or other.waveforms.shape[1:] != self.waveforms.shape[1:]:
            raise ValueError("record datasets differ in sampling rate, record length or spectrogram config")
        return RecordDataset(np.concatenate([self.waveforms, other.waveforms]), self.sampling_rate_hz,
                             self.metadata + other.metadata, spectrogram=self.spectrogram)

    @classmethod
    def load(cls, folder, split: str | None = None) -> RecordDataset:
        """Open a record dataset folder; refuses a folder of 2 s windows."""
        import h5py

        ds = WindowDataset.load(folder)
        with h5py.File(Path(folder) / "waveforms.hdf5", "r") as f:
            fmt = read_data_format(f)
        if fmt.get("dataset_kind") != "records":
            raise ValueError(f"{folder}: not a record dataset (no data_format/dataset_kind='records'); "
                             "make one with `python -m host_training records`")
        try:
            config = SpectrogramConfig.from_dict(json.loads(fmt["spectrogram_config"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{folder}: bad spectrogram_config in data_format ({exc})") from None
        labels = set(ds.column("label"))
        if not labels <= set(RECORD_LABELS):
            raise ValueError(f"{folder}: labels {sorted(labels - set(RECORD_LABELS))} are not "
                             f"record labels {RECORD_LABELS}")
        out = cls(ds._waveforms, ds.sampling_rate_hz, ds.metadata, source=ds.source, spectrogram=config)
        return out.split(split) if split else out


def cut_record(data: np.ndarray, fs: float, onset_sample: int, config: SpectrogramConfig):
    """``(3, record_s * fs)`` cut with the onset ``pre_s`` after its first sample, or None."""
    n = int(round(config.record_s * fs))
    start = int(onset_sample) - int(round(config.pre_s * fs))
    if start < 0 or start + n > data.shape[-1]:
        return None
    return data[:, start:start + n]
