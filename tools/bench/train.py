"""Training throughput of EarthquakeCNN in windows/s (CPU, or CUDA when present).

Candidate: one epoch of :func:`host_training.train.train` (seeded index batches, class
weights, the validation pass and per-epoch bookkeeping included). Baseline: the textbook
loop over a ``torch.utils.data.DataLoader`` of a ``TensorDataset`` with the same model,
optimizer, batch size and windows. Both on the same random windows in the same process.
Run alone with ``python -m tools.bench.train``.
"""

from __future__ import annotations

import time

import numpy as np


def bench_train(rng, n_windows: int = 1024, batch_size: int = 256, repeat: int = 2) -> dict:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from edge_runtime.kinds import EARTHQUAKE_CNN
    from host_training.models import build_model
    from host_training.train import TrainConfig, resolve_device, train

    device = resolve_device("auto")
    x = rng.uniform(-1, 1, (n_windows, 1, 80, 3)).astype(np.float32)
    y = rng.integers(0, 3, n_windows)
    xv, yv = x[: n_windows // 8], y[: n_windows // 8]

    def baseline():
        model = build_model(EARTHQUAKE_CNN.name, 0).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        loader = DataLoader(TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), batch_size=batch_size,
                            shuffle=True, generator=torch.Generator().manual_seed(0))
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb.to(device)), yb.to(device))
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def candidate():
        model = build_model(EARTHQUAKE_CNN.name, 0)
        return train(model, x, y, xv, yv, TrainConfig(epochs=1, batch_size=batch_size, patience=0),
                     progress=False)

    def best_of(fn):
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    # One thread, as the training runs in docs/figures.md: torch's default of one thread per
    # core oversubscribes a shared machine and measures the neighbours, not the loop.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = best_of(baseline)
        cand = best_of(candidate)
        loop_only = candidate()["throughput_windows_per_s"]
    finally:
        torch.set_num_threads(threads)
    name = f"train EarthquakeCNN, one epoch of {n_windows} windows, batch {batch_size} ({device.type})"
    return {"name": name,
            "baseline": "DataLoader(TensorDataset) loop, no validation", "baseline_s": base,
            "candidate": "host_training.train, incl. validation pass", "candidate_s": cand,
            "speedup": base / cand, "baseline_windows_per_s": n_windows / base,
            "candidate_windows_per_s": n_windows / cand, "training_loop_windows_per_s": loop_only,
            "torch_threads": 1}


if __name__ == "__main__":
    import json

    print(json.dumps(bench_train(np.random.default_rng(0)), indent=2))
