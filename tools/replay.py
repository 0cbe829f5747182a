"""Serial-replay simulator: recorded SAC/miniSEED out through a pty or a serial port.

The recorded acceleration (m/s^2) is converted to int32 ADC counts with the sensor's
sensitivity and sent as protocol frames (``edge_runtime.protocol``), paced in real time
or faster, optionally through :mod:`tools.faults`. The node on the other end cannot tell
it from a board.
"""

from __future__ import annotations

import logging
import os
import select
import time
import tty
from dataclasses import dataclass

import numpy as np

from edge_runtime.protocol import encode_frame

from .faults import FaultInjector

log = logging.getLogger(__name__)


@dataclass
class Pty:
    """A pseudo-terminal pair: write to ``master_fd``, the node opens ``port``."""

    master_fd: int
    slave_fd: int
    port: str

    def close(self) -> None:
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def open_pty() -> Pty:
    """Open a pty pair in raw mode (no echo, no CR/LF translation of binary frames).

    The slave stays open here so the pair outlives the node closing and reopening it.
    """
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    tty.setraw(master_fd)
    return Pty(master_fd, slave_fd, os.ttyname(slave_fd))


def to_counts(data_mps2: np.ndarray, counts_per_mps2: float) -> np.ndarray:
    """m/s^2 to int32 ADC counts, rounded and clipped to the int32 range."""
    counts = np.round(np.asarray(data_mps2, dtype=np.float64) * counts_per_mps2)
    info = np.iinfo(np.int32)
    return np.clip(counts, info.min, info.max).astype(np.int32)


def record_frames(data_mps2: np.ndarray, sampling_rate_hz: float, start_us: int,
                  counts_per_mps2: float, samples_per_frame: int = 10, first_sequence: int = 0):
    """Yield ``(sequence, timestamp_us, frame_bytes)`` for a ``(n_channels, n)`` record."""
    counts = to_counts(data_mps2, counts_per_mps2).T  # (n, n_channels)
    seq = first_sequence
    for i in range(0, counts.shape[0], samples_per_frame):
        t_us = start_us + int(round(i * 1e6 / sampling_rate_hz))
        yield seq, t_us, encode_frame(seq, t_us, sampling_rate_hz, counts[i:i + samples_per_frame])
        seq += 1


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

    def restart_clock(self) -> None:
        """Forget the pacing origin (between records separated by a time jump)."""
        self._t0_wall = None

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()


def replay_records(records, writer: Writer, counts_per_mps2: float, samples_per_frame: int = 10,
                   faults: FaultInjector | None = None, progress: bool = False) -> dict:
    """Send records one after the other; each is ``(data_mps2, rate_hz, start_us)``.

    Returns
    -------
    dict
        Frames and bytes sent, and the fault counts.
    """
    from tqdm import tqdm

    next_seq, frames = 0, 0
    bar = tqdm(total=sum(r[0].shape[1] for r in records), desc="replay", unit="sample",
               disable=not progress)
    for data, rate, start_us in records:
        writer.restart_clock()
        for seq, t_us, frame in record_frames(data, rate, start_us, counts_per_mps2,
                                              samples_per_frame, first_sequence=next_seq):
            if faults is not None:
                frame = faults.apply(seq, frame)
            writer.send(frame, t_us)
            frames += 1
            bar.update(samples_per_frame)
            next_seq = seq + 1
    bar.close()
    return {"frames": frames, "bytes": writer.bytes_sent,
            "faults": dict(faults.counts) if faults else {}}


def read_waveform_records(paths):
    """Group SAC/miniSEED files into 3-component records ``(data_mps2, rate_hz, start_us)``.

    Traces are grouped by station and start time and ordered (E, N, Z) / (X, Y, Z); files
    ObsPy cannot read are skipped with a one-line error and counted in the log.
    """
    from obspy import Stream, read

    stream = Stream()
    for path in paths:
        try:
            stream += read(str(path))
        except Exception as exc:  # ObsPy raises many types on damaged files
            log.error("%s: cannot read waveform file (%s); skipped", path, exc)
    from host_training.data.sac import order_components

    groups = {}
    for tr in stream:
        groups.setdefault((tr.stats.network, tr.stats.station, str(tr.stats.starttime)), []).append(tr)
    records = []
    for key, traces in sorted(groups.items(), key=lambda kv: kv[0][2]):
        traces = order_components(traces)
        if traces is None:
            log.error("%s.%s at %s: need one trace each of E, N, Z (or X, Y, Z); skipped", *key)
            continue
        n = min(tr.stats.npts for tr in traces)
        data = np.stack([tr.data[:n].astype(np.float64) for tr in traces])
        start_us = int(round(traces[0].stats.starttime.timestamp * 1e6))
        records.append((data, float(traces[0].stats.sampling_rate), start_us))
    return records
