"""Record-level datasets (earthquake / active source): ``python -m host_training records``.

Two sources of whole labelled records, written as a
:class:`~host_training.datasets.record_dataset.RecordDataset`: the generator
(:func:`host_training.synthetic.active.source_dataset`, parametric or from Green's function
banks) and labelled folders of real files (:func:`records_from_files`, through
:func:`host_training.recordings.reader.read_records`). Each record is cut with its onset
``pre_s`` after the first sample.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge_runtime.spectrogram import SpectrogramConfig, resample

from ..datasets.record_dataset import RECORD_LABELS, RecordDataset, cut_record
from ..datasets.window_dataset import assign_splits
from ..datasets.windowing import composite, sta_lta
from ..recordings.reader import read_records
from ..synthetic.active import greens_generators, mixed_generators, source_dataset

log = logging.getLogger(__name__)


def records_from_files(labelled_sources: dict, config: SpectrogramConfig | None = None,
                       fs: float | None = None, seed: int = 0, units: str | None = None,
                       fractions=(0.7, 0.15, 0.15)):
    """A record dataset from labelled folders of real files (SAC, miniSEED, ...).

    Parameters
    ----------
    labelled_sources : dict
        ``{"earthquake": [paths...], "active_source": [paths...]}``: files, globs or
        folders that :func:`host_training.recordings.reader.read_records` reads.
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
    config = SpectrogramConfig(sampling_rate_hz=args.sampling_rate, record_s=args.record_s, pre_s=args.pre_s)
    files = {label: paths for label, paths in (("earthquake", args.earthquake),
                                               ("active_source", args.active_source)) if paths}
    n_synth = args.synthetic if args.synthetic is not None else (0 if files else 400)
    if n_synth < 0 or (n_synth == 1) or (n_synth == 0 and not files):
        raise ValueError(f"--synthetic {n_synth}: give at least 2 records or some files")
    parts, skipped = [], []
    if n_synth:
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
