"""The node's start-up step for its Python heap (edge_runtime.heap.settle_python_heap): a
backlog decoded after it brings no full collection, and the bench applies and undoes it."""

import gc

import numpy as np
import pytest

from edge_runtime.heap import YOUNG_PASS_OBJECTS, settle_python_heap
from edge_runtime.protocol import FrameDecoder, encode_frame_v2, frame_size
from edge_runtime.reader import SerialSource
from tools.bench.protocol import heap_as

T0_US = 1_767_225_600_000_000


@pytest.fixture
def collector_restored():
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()
    if enabled:
        gc.enable()


def backlog_reads(n_frames: int = 12_000) -> list[bytes]:
    counts = np.random.default_rng(0).integers(-30000, 30000, (n_frames, 10, 3)).astype(np.int32)
    stream = b"".join(encode_frame_v2(i, T0_US + i * 100_000, 100.0, counts[i], board_id=7)
                      for i in range(n_frames))
    step = SerialSource.MAX_READ_BYTES
    return [stream[i:i + step] for i in range(0, len(stream), step)]


def collections_while(fn) -> list[int]:
    """Collections per generation while ``fn`` runs."""
    seen = [0, 0, 0]

    def count(phase, info):
        if phase == "start":
            seen[info["generation"]] += 1

    gc.callbacks.append(count)
    try:
        fn()
    finally:
        gc.callbacks.remove(count)
    return seen


def test_young_passes_hold_a_whole_backlog_read():
    smallest_frame = frame_size(1, 1, 1)  # 32 bytes: the most Frame objects one read can make
    assert SerialSource.MAX_READ_BYTES // smallest_frame < YOUNG_PASS_OBJECTS


def test_settled_heap_decodes_a_backlog_without_full_collections(collector_restored):
    reads = backlog_reads()
    decoder = FrameDecoder()
    frozen = settle_python_heap()
    assert frozen == gc.get_freeze_count() > 1000  # at least the modules imported here
    assert gc.get_threshold()[0] == YOUNG_PASS_OBJECTS
    decoded = []
    seen = collections_while(lambda: decoded.extend(len(decoder.feed(r)) for r in reads))
    assert sum(decoded) == 12_000
    assert seen[2] == 0  # no pass over the whole heap
    assert seen[0] + seen[1] <= 12_000 // YOUNG_PASS_OBJECTS + 2


def test_settling_keeps_a_disabled_collector_off_and_a_wider_threshold(collector_restored):
    gc.set_threshold(0)
    settle_python_heap()
    assert gc.get_threshold()[0] == 0
    gc.unfreeze()
    gc.set_threshold(50_000, 10, 10)
    settle_python_heap()
    assert gc.get_threshold() == (50_000, 10, 10)


def test_bench_applies_the_node_step_and_undoes_it(collector_restored):
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with heap_as("node"):
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == YOUNG_PASS_OBJECTS
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    with heap_as("as-is"):
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    with pytest.raises(ValueError, match="node, as-is"):
        with heap_as("frozen"):
            pass
