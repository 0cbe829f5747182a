"""Per-window latency of model variants, measured the same way for every backend.

The machine that measures is usually shared (other processes, frequency scaling), so
variants are timed interleaved: round after round, each variant runs a short block of
single-window calls, and every call is timed on its own. Load that comes and goes hits
all variants alike, and ratios taken from one run are meaningful even when the absolute
numbers drift. Nothing here asserts on time.
"""

from __future__ import annotations

import time

import numpy as np


def interleaved_latency(calls: dict, rounds: int = 30, block: int = 20, warmup: int = 50) -> dict:
    """Time zero-argument callables, interleaved.

    Parameters
    ----------
    calls : dict of str -> callable
        One call = one inference of one window.
    rounds, block : int
        ``rounds`` rounds of ``block`` timed calls per variant.
    warmup : int
        Untimed calls per variant first (allocations, caches, lazy initialization).

    Returns
    -------
    dict of str -> numpy.ndarray
        Seconds per call, ``rounds * block`` values per variant.
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times = {name: np.empty(rounds * block) for name in calls}
    clock = time.perf_counter
    for r in range(rounds):
        for name, fn in calls.items():
            out = times[name]
            for k in range(r * block, (r + 1) * block):
                t = clock()
                fn()
                out[k] = clock() - t
    return times


def summarize(seconds: np.ndarray) -> dict:
    """p50 / p99 / mean of per-call times, in microseconds."""
    us = np.asarray(seconds) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "n_calls": int(us.size)}
