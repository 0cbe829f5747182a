"""Replay-test's ledger with frames swapped, late and sent twice (issue 23).

The fault injector's bytes go through the node's decoder and sequencer; the ledger's
expectations must equal the node's counters exactly, for every check.
"""

import logging

import numpy as np

from edge_runtime.protocol import FrameDecoder, encode_frame
from edge_runtime.sequencing import StreamSequencer
from tools.replay.faults import FaultConfig, FaultInjector
from tools.replay.ledger import Ledger, check_ledger

T0_US = 1_767_225_600_000_000


def run(config: FaultConfig, n_frames: int = 3000, sessions: int = 3) -> list[dict]:
    faults, ledger = FaultInjector(config), Ledger()
    decoder, seq = FrameDecoder(), StreamSequencer()
    samples = np.zeros((10, 3), np.int32)
    k = 0
    for session in range(sessions):
        if session:
            decoder.feed(faults.flush())
            ledger.unplugged(20)
            k += 20
        for s in range(n_frames // sessions):
            out = faults.apply(s, encode_frame(s, T0_US + k * 100_000, 100.0, samples))
            ledger.sent(s, faults.last_intact)
            k += 1
            for f in decoder.feed(out):
                seq.push(f)
    for f in decoder.feed(faults.flush()) + decoder.flush():
        seq.push(f)
    seq.drain()
    pipeline = {("frames" if key == "frames_delivered" else key): v for key, v in seq.counts.items()}
    status = {"decoder": decoder.stats.to_dict(), "pipeline": pipeline, "reconnects": sessions - 1}
    return check_ledger(ledger.expected(faults.outcomes), status)


def test_ledger_exact_with_swaps_late_frames_and_duplicates(caplog):
    caplog.set_level(logging.ERROR)
    checks = run(FaultConfig(swap=0.02, late=0.02, duplicate=0.02, corrupt=0.01, drop=0.01, seed=5))
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    got = {c["check"]: c["got"] for c in checks}
    assert got["frames held past the window = late"] > 10 and got["frames sent twice = duplicates"] > 10
    assert got["frames held back and put back = reordered"] > 10


def test_ledger_unchanged_without_the_new_faults(caplog):
    caplog.set_level(logging.ERROR)
    checks = run(FaultConfig(corrupt=0.02, drop=0.02, truncate=0.01, garbage=0.02, seed=6))
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
