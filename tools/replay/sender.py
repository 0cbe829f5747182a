"""Serial-replay simulator: recorded SAC/miniSEED out through a pty or a serial port.

The recorded acceleration (m/s^2) is converted to int32 ADC counts with the sensor's
sensitivity and sent as protocol frames (``edge_runtime.protocol``), paced in real time
or faster, optionally through :mod:`tools.replay.faults`. The node on the other end cannot tell
it from a board.
"""

from __future__ import annotations

import logging
import os
import select
import time

import numpy as np

from edge_runtime.protocol import encode_frame

from .faults import FaultInjector
from .pty import Pty

log = logging.getLogger(__name__)


def to_counts(data_mps2: np.ndarray, counts_per_mps2: float) -> np.ndarray:
    """m/s^2 to int32 ADC counts, rounded and clipped to the int32 range."""
    counts = np.round(np.asarray(data_mps2, dtype=np.float64) * counts_per_mps2)
    info = np.iinfo(np.int32)
    return np.clip(counts, info.min, info.max).astype(np.int32)


def record_frames(data_mps2: np.ndarray, sampling_rate_hz: float, start_us: int,
                  counts_per_mps2: float, samples_per_frame: int = 10, first_sequence: int = 0):
    """Yield ``(sequence, timestamp_us, frame_bytes)`` for a ``(n_channels, n)`` record."""
    yield from count_frames(to_counts(data_mps2, counts_per_mps2), sampling_rate_hz, start_us,
                            samples_per_frame, first_sequence)


def count_frames(counts: np.ndarray, sampling_rate_hz: float, start_us: int,
                 samples_per_frame: int = 10, first_sequence: int = 0, drift_ppm: float = 0.0):
    """Yield ``(sequence, timestamp_us, frame_bytes)`` for ``(n_channels, n)`` int32 counts.

    ``drift_ppm`` makes the board's clock run fast (> 0) or slow: timestamps stretch by
    that many parts per million from ``start_us``.
    """
    counts = np.asarray(counts, dtype=np.int32).T  # (n, n_channels)
    seq = first_sequence
    scale = 1e6 / sampling_rate_hz * (1.0 + drift_ppm * 1e-6)
    for i in range(0, counts.shape[0], samples_per_frame):
        t_us = start_us + int(round(i * scale))
        yield seq, t_us, encode_frame(seq, t_us, sampling_rate_hz, counts[i:i + samples_per_frame])
        seq = (seq + 1) % 2**32


class Writer:
    """Write bytes to a pty master fd or a pyserial port, pacing by sample time.

    Parameters
    ----------
    target : Pty or str
        A :class:`Pty` or a serial device path (opened with pyserial).
    speed : float
        Replay speed relative to real time; 0 sends as fast as the reader takes it.
    timeout_s : float
        Longest wait for the reader to take bytes before giving up (TimeoutError).
    alive : callable, optional
        Returns False once the reader is known to be gone (e.g. its process exited);
        the writer then stops with RuntimeError instead of waiting on a full pty.
    """

    def __init__(self, target, speed: float = 1.0, baudrate: int = 921600,
                 timeout_s: float = 30.0, alive=None):
        self.speed = speed
        self.timeout_s = timeout_s
        self.alive = alive
        self._serial = None
        if isinstance(target, Pty):
            self._fd = target.master_fd
            os.set_blocking(self._fd, False)
        else:
            import serial

            self._serial = serial.Serial(target, baudrate, write_timeout=timeout_s)
            self._fd = None
        self._t0_wall = None
        self._t0_data = None
        self.bytes_sent = 0

    def send(self, data: bytes, data_time_us: int) -> None:
        if self.speed > 0:
            if self._t0_wall is None:
                self._t0_wall, self._t0_data = time.monotonic(), data_time_us
            due = self._t0_wall + (data_time_us - self._t0_data) / 1e6 / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if self._fd is not None:
            self._write_fd(data)
        else:
            self._serial.write(data)
        self.bytes_sent += len(data)

    def _write_fd(self, data: bytes) -> None:
        # A pty holds a few kB; when nobody reads, a blocking write would hang forever.
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout_s
        while view:
            if self.alive is not None and not self.alive():
                raise RuntimeError("the reader of the pty is gone; replay stopped")
            _, writable, _ = select.select([], [self._fd], [], 0.2)
            if writable:
                try:
                    n = os.write(self._fd, view)
                except BlockingIOError:
                    n = 0
                if n:
                    view = view[n:]
                    deadline = time.monotonic() + self.timeout_s
                    continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody read the pty for {self.timeout_s} s; replay stopped")

    def attach(self, pty: Pty) -> None:
        """Write to another pty from now on (after an unplug/replug)."""
        self._fd = pty.master_fd
        os.set_blocking(self._fd, False)

    def restart_clock(self) -> None:
        """Forget the pacing origin (between records separated by a time jump)."""
        self._t0_wall = None

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()


def replay_records(records, writer: Writer, counts_per_mps2: float, samples_per_frame: int = 10,
                   faults: FaultInjector | None = None, progress: bool = False, sensor=None,
                   drift_ppm: float = 0.0) -> dict:
    """Send records one after the other; each is ``(data_mps2, rate_hz, start_us)``.

    ``drift_ppm`` makes the simulated board's clock run fast (> 0) or slow, parts per
    million (:func:`count_frames`); frames the faults hold back go out at each record's end.

    With ``sensor`` (an :class:`edge_runtime.sensors.SensorModel`) the samples are
    digitized as that part would (its scale; clipped to its range and counted in
    ``clipped``); otherwise with ``counts_per_mps2`` and clipped to int32.

    Returns
    -------
    dict
        Frames and bytes sent, and the fault counts.
    """
    from tqdm import tqdm

    next_seq, frames, nan_frames, clipped = 0, 0, 0, 0
    bar = tqdm(total=sum(r[0].shape[1] for r in records), desc="replay", unit="sample",
               disable=not progress)
    for data, rate, start_us in records:
        writer.restart_clock()
        finite = np.isfinite(np.asarray(data, dtype=np.float64)).all(axis=0)
        data = np.where(finite, data, 0.0)
        if sensor is not None:
            counts, n_clipped = sensor.digitize(data)
            clipped += n_clipped
        else:
            counts = to_counts(data, counts_per_mps2)
        t_us = start_us
        for seq, t_us, frame in count_frames(counts, rate, start_us, samples_per_frame,
                                             first_sequence=next_seq, drift_ppm=drift_ppm):
            first = (seq - next_seq) * samples_per_frame if seq >= next_seq else 0
            if not finite[first:first + samples_per_frame].all():
                # A board that failed to read a sample sends nothing: no NaN goes out as counts.
                nan_frames += 1
                bar.update(samples_per_frame)
                continue
            if faults is not None:
                frame = faults.apply(seq, frame)
            writer.send(frame, t_us)
            frames += 1
            bar.update(samples_per_frame)
        if faults is not None:
            writer.send(faults.flush(), t_us)
        next_seq += (np.asarray(data).shape[1] + samples_per_frame - 1) // samples_per_frame
    bar.close()
    if clipped:
        log.warning("%d samples beyond the %s's range were clipped", clipped, sensor.name)
    return {"frames": frames, "bytes": writer.bytes_sent, "frames_nan": nan_frames, "clipped": clipped,
            "faults": dict(faults.counts) if faults else {}}
