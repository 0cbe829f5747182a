"""A small detector for the network test when none is given: trained in minutes, kept in OUT
and in a cache that later runs into another OUT copy it from (:func:`tiny_model`).

A network's nodes must pick the weak first P of an M3 15-30 km away, a few times the
MEMS noise, that no node would declare an event on. Two training sets
(:data:`RECIPES`):

* ``parametric``: the parametric generator's windows
  (:func:`host_training.synthetic.parametric.synthetic_dataset`, 800 earthquakes), the
  tests' ``tiny_model`` recipe and this module's first;
* ``physics``: the physics-based generator's windows
  (:func:`host_training.synthetic.physics.physics_dataset`) from a Green's function bank of
  its own (:data:`TRAINING_BANK`: its own seed, velocity models and depths, never a test
  network's), P and S windows down to ``snr_min_db`` over the noise, all three components
  live in most records (a network node has them), and ``node_noise`` more noise windows of
  a MEMS node's own noise, drift and gravity
  (:func:`host_training.synthetic.parametric.background`), half of them with a transient:
  the noise a network node's picks must stand out of at the pick thresholds' low peak
  acceleration.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "runs" / "cache" / "network_detector"  # trained detectors, by recipe_key()
# The code a trained detector depends on beyond its recipe and seed: a change to any of it
# trains a new one instead of reusing the cached one.
TRAINING_CODE = ("tools/network_test/model.py", "host_training/models.py", "host_training/train.py",
                 "host_training/export.py", "host_training/synthetic", "quantization/int16.py",
                 "quantization/simplify.py", "edge_runtime/preprocess.py")

# Green's function bank of the physics recipe: 4 velocity models x 2 depths, distances to
# 80 km (the network's stations see an M3 no farther), 25 s traces; its own seed.
TRAINING_BANK = dict(n_models=4, depths_per_model=2, distances_km=(1.0, 2.6, 4.2, 6.9, 11.1, 18.0, 29.2,
                                                                    47.3, 76.6), nt=1000, dwm_length=4.0,
                     seed=101)
RECIPES = {
    "parametric": dict(n_events=800, epochs=8),
    "physics": dict(n_windows=3000, snr_min_db=6.0, dead_fraction=0.1, node_noise=1000, epochs=10),
}


def training_windows(recipe: str, seed: int, cache_dir=None):
    """The labelled windows of ``recipe`` (:data:`RECIPES`), a ``WindowDataset``."""
    r = RECIPES[recipe]
    if recipe == "parametric":
        from host_training.synthetic.parametric import synthetic_dataset

        return synthetic_dataset(r["n_events"], seed=seed)
    from host_training.synthetic.greens import BankConfig, build_bank
    from host_training.synthetic.physics import physics_dataset

    bank = build_bank(BankConfig(**TRAINING_BANK), cache_dir=cache_dir)
    dataset = physics_dataset(r["n_windows"], seed=seed, bank=bank, snr_min_db=r["snr_min_db"],
                              dead_fraction=r["dead_fraction"], max_distance_km=80.0)
    return with_node_noise(dataset, r["node_noise"], seed)


def with_node_noise(dataset, n_windows: int, seed: int, transient_fraction: float = 0.5):
    """``dataset`` and ``n_windows`` noise windows of a MEMS node, each cut from 10 s of
    :func:`~host_training.synthetic.parametric.background` (self-noise 0.3-3 mm/s^2 rms),
    ``transient_fraction`` of them with a knock, door slam, footsteps, vehicle... in or near
    the window (:func:`host_training.synthetic.noise.transient`)."""
    import numpy as np

    from host_training.datasets.window_dataset import WindowDataset, assign_splits
    from host_training.synthetic.noise import TRANSIENT_KINDS, transient
    from host_training.synthetic.parametric import background

    if n_windows <= 0:
        return dataset
    rng = np.random.default_rng(seed + 104_729)
    fs = dataset.sampling_rate_hz
    n = dataset.waveforms.shape[-1]
    splits = assign_splits(rng, n_windows)
    noise = np.empty((n_windows,) + dataset.waveforms.shape[1:])
    rows = []
    for i in range(n_windows):
        record = background(rng, int(10 * fs), fs)[0]
        first = int(rng.integers(0, record.shape[1] - n))
        kind = str(rng.choice(TRANSIENT_KINDS)) if rng.uniform() < transient_fraction else ""
        if kind:
            record += transient(rng, kind, record.shape[1], fs, (first + rng.uniform(-0.2, 1.2) * n) / fs)
        noise[i] = record[:, first:first + n]
        rows.append(dict(label="noise", window="noise", split=splits[i], source=kind or "node noise",
                         transient=kind, record=f"node{i:06d}", channels="ENZ", p_sample=-1, s_sample=-1))
    return WindowDataset(np.concatenate([dataset.waveforms, noise]), fs, dataset.metadata + rows)


def train_detector(folder: Path, recipe: str = "physics", seed: int = 1, cache_dir=None) -> Path:
    """EarthquakeCNN trained on ``recipe``'s windows, exported int16 + simplified ONNX.

    Returns the path of ``folder/model_int16_sim.onnx``.
    """
    import torch

    from edge_runtime.kinds import EARTHQUAKE_CNN
    from edge_runtime.metadata import ModelMetadata
    from edge_runtime.preprocess import PreprocessConfig
    from host_training.export import export_onnx
    from host_training.models import PHASE_CLASSES, build_model
    from host_training.train import TrainConfig, train
    from quantization.int16 import quantize_int16
    from quantization.simplify import simplify

    torch.set_num_threads(1)  # small tensors: a second thread cost 5x the CPU on a shared 2-core box
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = training_windows(recipe, seed, cache_dir)
    parts = {s: dataset.split(s) for s in ("train", "val", "test")}
    x = {s: p.model_inputs()[0] for s, p in parts.items()}
    y = {s: p.labels(PHASE_CLASSES) for s, p in parts.items()}
    model = build_model(EARTHQUAKE_CNN.name, seed=seed)
    train(model, x["train"], y["train"], x["val"], y["val"],
          TrainConfig(epochs=RECIPES[recipe]["epochs"], batch_size=32, seed=seed), progress=False)
    meta = ModelMetadata(
        model=EARTHQUAKE_CNN.name,
        classes=list(PHASE_CLASSES),
        components=["E", "N", "Z"],
        preprocess=PreprocessConfig().to_dict(),
    )
    export_onnx(model, folder / "model.onnx", meta, check_inputs=x["test"])
    quantize_int16(folder / "model.onnx", folder / "model_int16.onnx")
    path = folder / "model_int16_sim.onnx"
    simplify(folder / "model_int16.onnx", path)
    return path


def recipe_key(recipe: str, seed: int) -> str:
    """The cache's name for the detector of ``recipe`` and ``seed`` with this checkout's
    training code (:data:`TRAINING_CODE`, its bytes)."""
    crc = 0
    for name in TRAINING_CODE:
        path = REPO / name
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            crc = zlib.crc32(f.read_bytes(), crc)
    return f"{recipe}-seed{seed}-{crc:08x}"


def tiny_model(folder: Path, seed: int = 1, recipe: str = "physics", cache: Path | None = CACHE) -> Path:
    """The network test's detector in ``folder``, see :func:`train_detector`.

    Reused when already there; else copied from ``cache`` (trained there first when it has
    none for this recipe, seed and training code: :func:`recipe_key`), so only the first
    run without ``--model`` trains. ``cache=None``: train into ``folder``.

    ``physics`` by default: on 40 earthquakes M3.0-3.5 inside a 12-station network
    (:mod:`.detectability`, seed 0, the node's pick thresholds) 28 had P picks on at least
    four stations with it, 3 with ``parametric``; neither made a P pick on 6 station-hours
    of noise.
    """
    path = Path(folder) / "model_int16_sim.onnx"
    if path.is_file():
        return path
    if cache is None:
        return train_detector(folder, recipe, seed)
    cached = Path(cache) / recipe_key(recipe, seed)
    if not (cached / path.name).is_file():
        shutil.rmtree(cached, ignore_errors=True)  # emptied by hand or by a full disk
        scratch = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")  # a half-trained one never counts
        train_detector(scratch, recipe, seed)
        try:
            os.replace(scratch, cached)
        except OSError:  # another run cached it meanwhile
            shutil.rmtree(scratch, ignore_errors=True)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for f in cached.iterdir():
        if f.is_file():
            shutil.copy2(f, Path(folder) / f.name)
    return path
