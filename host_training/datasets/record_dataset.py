"""Labelled whole records (earthquake / active source) in the project's SeisBench layout.

A record dataset is a :class:`~host_training.data.dataset.WindowDataset` whose "windows"
are records of ``record_s`` (60 s by default) with the onset ``pre_s`` after the first
sample: the same ``waveforms.hdf5`` + ``metadata.csv`` folder, readable by SeisBench,
with two more keys in the ``data_format`` group: ``dataset_kind = "records"`` and
``spectrogram_config`` (the JSON of :class:`edge_runtime.spectrogram.SpectrogramConfig`).
Labels are ``earthquake`` and ``active_source``; ``source`` says which kind (explosion,
hammer, vibroseis, ...); ``trace_p_arrival_sample`` is the onset.

Records are stored raw (m/s^2, E, N, Z); the model input, a ``(3, 100, 150)`` spectrogram
image, is made at load time by :mod:`edge_runtime.spectrogram`, the code the node runs.

Records come from the generator (:func:`host_training.data.active.source_dataset`) or
from labelled folders of real files (:func:`records_from_files`, through
:func:`host_training.data.records.read_records`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge_runtime.spectrogram import SpectrogramConfig, spectrogram_images, to_model_input

from .dataset import WindowDataset, read_data_format

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
            keep[start:start + len(part)] = finite & (peak > 1e-8) & (peak < 2 * 9.80665)
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


def records_from_files(labelled_sources: dict, config: SpectrogramConfig | None = None,
                       fs: float | None = None, seed: int = 0, units: str | None = None,
                       fractions=(0.7, 0.15, 0.15)):
    """A record dataset from labelled folders of real files (SAC, miniSEED, ...).

    Parameters
    ----------
    labelled_sources : dict
        ``{"earthquake": [paths...], "active_source": [paths...]}``: files, globs or
        folders that :func:`host_training.data.records.read_records` reads.
    config : SpectrogramConfig, optional
        ``record_s`` and ``pre_s`` of the cut.
    fs : float, optional
        Common sampling rate; ``config.sampling_rate_hz`` when omitted. Records at
        another rate are resampled (Fourier).
    seed : int
        Seed of the split (by station record).
    units : str, optional
        Units of the files when their headers do not say (``gal``, ``m/s2``, ...).

    Returns
    -------
    dataset : RecordDataset
    skipped : list of (str, str)
        Files or records that gave no example, with a one-line reason.

    Notes
    -----
    The onset is the P pick (SAC header, catalog or TauP, as ``read_records`` finds it);
    a record without one is cut at the maximum of an STA/LTA (1 s / 5 s) of its
    composite acceleration.
    """
    from edge_runtime.spectrogram import resample

    from .dataset import assign_splits
    from .records import read_records
    from .windowing import composite, sta_lta

    config = config or SpectrogramConfig()
    fs = float(fs or config.sampling_rate_hz)
    unknown = set(labelled_sources) - set(RECORD_LABELS)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not record labels {RECORD_LABELS}")
    cuts, rows, skipped = [], [], []
    for label, sources in labelled_sources.items():
        records, bad = read_records(list(sources), units=units)
        skipped += [(str(p), why) for p, why in bad]
        for rec in records:
            data = rec.data
            if rec.sampling_rate_hz != fs:
                data = resample(data, int(round(data.shape[-1] * fs / rec.sampling_rate_hz)))
            pick = rec.picks.get("P")
            if pick is not None:
                onset = int(round((pick.time - rec.starttime) * fs))
                pick_source = pick.source
            else:
                ratio = sta_lta(composite(data), fs)
                onset = int(np.argmax(ratio))
                pick_source = "sta/lta maximum"
            window = cut_record(data, fs, onset, config)
            if window is None:
                skipped.append((rec.id, f"{rec.duration_s:.0f} s record cannot hold {config.record_s} s "
                                         f"with the onset {config.pre_s} s in"))
                continue
            cuts.append(window.astype(np.float32))
            rows.append(dict(label=label, source="file", source_id=rec.id, station_code=rec.station,
                             trace_start_time=str(rec.starttime + (onset / fs - config.pre_s)),
                             trace_p_arrival_sample=int(round(config.pre_s * fs)),
                             pick_source=pick_source, files=";".join(map(str, rec.files))))
    for path, why in skipped:
        log.warning("%s: skipped (%s)", path, why)
    if not cuts:
        raise ValueError("no record could be cut from the given files")
    rng = np.random.default_rng(seed)
    for row, split in zip(rows, assign_splits(rng, len(rows), fractions), strict=True):
        row["split"] = split
    return RecordDataset(np.stack(cuts).astype(np.float64), fs, rows, spectrogram=config), skipped


def add_arguments(p) -> None:
    """Arguments of ``python -m host_training records``."""
    defaults = SpectrogramConfig()
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--synthetic", type=int, default=None, metavar="N",
                   help="generated records (earthquakes and active sources, half each); "
                        "default 400 when no files are given, else 0")
    p.add_argument("--earthquake", nargs="+", default=[], metavar="PATH",
                   help="files, globs or folders of earthquake records (SAC, miniSEED, ...)")
    p.add_argument("--active-source", nargs="+", default=[], metavar="PATH",
                   help="files, globs or folders of active-source records (blasts, hammer, vibroseis)")
    p.add_argument("--units", default=None, help="units of the files when their headers do not say "
                                                 "(gal, m/s2, counts with StationXML, ...)")
    p.add_argument("--record-s", type=float, default=defaults.record_s, help="record length, s")
    p.add_argument("--pre-s", type=float, default=defaults.pre_s, help="record before the onset, s")
    p.add_argument("--sampling-rate", type=float, default=defaults.sampling_rate_hz, help="Hz")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator and of the splits")
    p.add_argument("--generator", choices=("synth", "greens", "mixed"), default="synth",
                   help="synth: parametric sources; greens: earthquakes and explosions from Green's "
                        "function banks (PyGRT, computed once and cached), hammer and vibroseis parametric; "
                        "mixed: half of the earthquakes and explosions from each")
    p.add_argument("--jobs", type=int, default=1,
                   help="PyGRT processes at a time when a Green's function bank must be computed")
    p.add_argument("--test-only", action="store_true",
                   help="put every record in the test split (a held-out set for a trained model)")


def main_records(args) -> int:
    """``python -m host_training records``: write a record-level dataset; returns the exit code."""
    from .active import source_dataset

    config = SpectrogramConfig(sampling_rate_hz=args.sampling_rate, record_s=args.record_s, pre_s=args.pre_s)
    files = {label: paths for label, paths in (("earthquake", args.earthquake),
                                               ("active_source", args.active_source)) if paths}
    n_synth = args.synthetic if args.synthetic is not None else (0 if files else 400)
    if n_synth < 0 or (n_synth == 1) or (n_synth == 0 and not files):
        raise ValueError(f"--synthetic {n_synth}: give at least 2 records or some files")
    parts, skipped = [], []
    if n_synth:
        from .active import greens_generators, mixed_generators

        generators = None
        if args.generator in ("greens", "mixed"):
            if args.jobs < 1:
                raise ValueError(f"--jobs {args.jobs}: must be at least 1")
            generators = greens_generators(progress=True, jobs=args.jobs)
            if args.generator == "mixed":
                generators = mixed_generators(generators)
        parts.append(source_dataset(n_synth, seed=args.seed, fs=args.sampling_rate, config=config,
                                    generators=generators, progress=True))
    if files:
        ds, skipped = records_from_files(files, config, seed=args.seed, units=args.units)
        parts.append(ds)
    dataset = parts[0] if len(parts) == 1 else parts[0].concatenate(parts[1])
    if args.test_only:
        for row in dataset.metadata:
            row["split"] = "test"
    folder = dataset.save(args.out)
    (Path(folder) / "config.json").write_text(json.dumps(
        {**vars(args), "spectrogram": config.to_dict()}, indent=2, default=str))
    counts = {label: int((dataset.column("label") == label).sum()) for label in RECORD_LABELS}
    print(f"{len(dataset)} records ({counts}), {len(skipped)} skipped -> {folder}")
    return 0
