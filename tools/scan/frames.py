"""A record's ADC counts as the frames the node would decode from replay-test's sender.

replay-test sends a record as protocol frames of ``samples_per_frame`` samples, frame
``k`` stamped ``start_us + round(k * samples_per_frame * 1e6 / rate_hz)`` and carrying
the rate as the wire encodes it (integer mHz). :func:`node_frames` yields the same
:class:`~edge_runtime.protocol.Frame` objects the node's decoder would return, without
encoding them, and joins runs of them into one longer frame where the node's windows
and their times come out identical: the window buffer re-anchors its time base on every
frame, so joining is exact only when a sample period is a whole number of microseconds
(100, 200, 40, 1000 Hz ...). The node then cuts many windows from one frame and classifies
them in one model call. Elsewhere the frames are replay-test's, one by one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge_runtime.protocol import Frame, FrameDecoder, encode_frame

# Samples per frame of replay-test's sender (tools.replay.replay_test.ReplayTestConfig).
REPLAY_SAMPLES_PER_FRAME = 10


@lru_cache(maxsize=64)
def wire_rate_hz(sampling_rate_hz: float) -> float:
    """The sampling rate a node reads from a frame that was sent at ``sampling_rate_hz``, Hz."""
    frame = encode_frame(0, 0, sampling_rate_hz, np.zeros((1, 1), dtype=np.int32))
    return FrameDecoder().feed(frame)[0].sampling_rate_hz


def joinable(sampling_rate_hz: float) -> bool:
    """Whether frames at this rate can be joined without moving any window's time."""
    period_us = 1e6 / sampling_rate_hz
    return wire_rate_hz(sampling_rate_hz) == sampling_rate_hz and float(period_us).is_integer()


def node_frames(counts: np.ndarray, sampling_rate_hz: float, start_us: int, batch_s: float = 60.0,
                samples_per_frame: int = REPLAY_SAMPLES_PER_FRAME):
    """Yield the frames of one record, in order.

    Parameters
    ----------
    counts : numpy.ndarray
        int32, ``(n_components, n_samples)`` ADC counts as the sensor digitizes them for
        replay-test (:func:`tools.replay.records.digitize`): clipped to its range, so the
        node refuses no frame, and a joined frame is refused no more than its parts.
    sampling_rate_hz : float
        The record's rate, Hz.
    start_us : int
        Time of the first sample, UTC microseconds.
    batch_s : float
        Length of a joined frame, s (0: never join), where :func:`joinable`.
    samples_per_frame : int
        Samples per frame of the sender being reproduced.

    Yields
    ------
    Frame
        Sequence numbers 0, 1, ...; samples ``(n, n_components)`` int32 (views of ``counts``).
    """
    n = counts.shape[1]
    per = samples_per_frame
    if batch_s > 0 and joinable(sampling_rate_hz):
        per *= max(1, int(batch_s * sampling_rate_hz) // samples_per_frame)
    rate = wire_rate_hz(sampling_rate_hz)
    samples = counts.T
    for seq, i in enumerate(range(0, n, per)):
        yield Frame(seq, start_us + int(round(i * 1e6 / sampling_rate_hz)), rate, samples[i:i + per])
