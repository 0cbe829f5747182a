"""Spectrogram image: the numpy path of the node against the seed's matplotlib + OpenCV path.

:func:`seed_spectrogram_image` is the seed's ``stream_to_spectrogram_ndarray`` kept as a
reference (tests and this benchmark only; it needs matplotlib and opencv-python-headless
from the ``dev`` extra). One change: the seed drew every component into the same pyplot
figure without clearing it, so each ``savefig`` redrew all earlier meshes and a long
process leaked memory; here each component gets a fresh figure of the same (default)
size, which is the seed's picture and the seed's speed on its first record.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np


def seed_spectrogram_image(record: np.ndarray, fs: float) -> np.ndarray:
    """The seed's image of a ``(3, n)`` (E, N, Z) record: ``(100, 150, 3)`` uint8, (Z, X, Y).

    scipy.signal.spectrogram (nperseg 256, noverlap 128) -> pcolormesh of 10 log10 Sxx in
    grey, autoscaled -> PNG in memory -> cv2.imdecode -> cv2.resize to 150 x 100 ->
    grey. Channels last, as the seed returns it.
    """
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.signal

    channels = []
    for trace in record:
        frequencies, times, sxx = scipy.signal.spectrogram(trace, fs=fs, nperseg=256, noverlap=128)
        fig = plt.figure()
        plt.pcolormesh(times, frequencies, 10 * np.log10(sxx), shading="auto", cmap="gray")
        plt.axis("off")
        stream = BytesIO()
        plt.savefig(stream, format="png", bbox_inches="tight", pad_inches=0)
        plt.close(fig)
        img = cv2.imdecode(np.frombuffer(stream.getvalue(), dtype=np.uint8), 1)
        img = cv2.resize(img, (150, 100))
        channels.append(np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)))
    return np.stack([channels[2], channels[0], channels[1]], axis=-1)


def example_record(rng, duration_s: float = 480.0, fs: float = 100.0) -> np.ndarray:
    """A seed-length (480 s) earthquake record, ``(3, n)`` m/s^2 (E, N, Z)."""
    from host_training.data.synth import earthquake

    return earthquake(rng, duration_s=duration_s, fs=fs, p_s=rng.uniform(100.0, 200.0)).data


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def bench_spectrogram(rng) -> dict:
    """One 480 s, 3-component, 100 Hz record to a (3, 100, 150) image, both ways."""
    from edge_runtime.spectrogram import spectrogram_image

    from . import _time_per_call

    record = example_record(rng)
    seed_img = seed_spectrogram_image(record, 100.0)
    ours = spectrogram_image(record, 100.0)
    seed_img = np.moveaxis(seed_img, -1, 0)
    # Per component: the seed autoscaled each component's picture on its own, which a
    # fixed dB range undoes on purpose; the whole stack is reported too.
    per_component = [pearson(seed_img[c], ours[c]) for c in range(3)]
    base = _time_per_call(lambda: seed_spectrogram_image(record, 100.0), min_time_s=1.0, repeat=3)
    cand = _time_per_call(lambda: spectrogram_image(record, 100.0))
    return {"name": "spectrogram image, 480 s 3-component record at 100 Hz",
            "baseline": "seed: scipy + matplotlib pcolormesh -> PNG -> OpenCV decode/resize",
            "baseline_s": base,
            "candidate": "edge_runtime.spectrogram (numpy, fixed dB range)", "candidate_s": cand,
            "speedup": base / cand, "pearson_vs_seed_per_component_ZEN": per_component,
            "pearson_vs_seed_whole_image": pearson(seed_img, ours)}
