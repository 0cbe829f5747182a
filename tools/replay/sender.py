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
import termios
import time
import tty
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.protocol import encode_frame

from .faults import FaultInjector

log = logging.getLogger(__name__)

UNSET_SPEED = termios.B50


@dataclass
class Pty:
    """A pseudo-terminal pair: write to ``master_fd``, the node opens ``port``."""

    master_fd: int
    slave_fd: int
    port: str

    def configured(self) -> bool:
        """Whether a reader has set its line settings (pyserial does, then flushes)."""
        try:
            return termios.tcgetattr(self.slave_fd)[4] != UNSET_SPEED
        except termios.error:
            return False

    def pending(self) -> int:
        """Bytes written but not yet read by the other end (the slave's input queue)."""
        import fcntl
        import struct

        try:
            return struct.unpack("i", fcntl.ioctl(self.slave_fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    def drain(self, timeout_s: float = 10.0, settle_s: float = 0.1) -> bool:
        """Wait until the reader has taken every byte written; False on timeout.

        Bytes written to the master reach the slave's queue asynchronously, so the queue
        must stay empty for ``settle_s`` before the reader is known to have them all.
        """
        deadline = time.monotonic() + timeout_s
        empty_since = None
        while time.monotonic() < deadline:
            if self.pending():
                empty_since = None
            elif empty_since is None:
                empty_since = time.monotonic()
            elif time.monotonic() - empty_since >= settle_s:
                return True
            time.sleep(0.01)
        return False

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
    # A line speed no reader asks for: when it changes, a reader has configured the port.
    attrs = termios.tcgetattr(slave_fd)
    attrs[4] = attrs[5] = UNSET_SPEED
    termios.tcsetattr(slave_fd, termios.TCSANOW, attrs)
    return Pty(master_fd, slave_fd, os.ttyname(slave_fd))


class PtyLink:
    """A pty the node reaches through a private symlink, so a board can be unplugged.

    The node is given ``link`` (a path in the run folder), never ``/dev/pts/N``: once a
    pty is closed Linux hands its number to the next process that asks, and a node
    reopening that number would read another program's bytes. Here the pty stays open
    until :meth:`close` (after the node exited), and an unplug removes the link first,
    so a reopening node finds nothing until :meth:`replug` points it at a new pty.
    """

    def __init__(self, link):
        self.link = Path(link)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.pty: Pty | None = None
        self.replug()

    @property
    def port(self) -> str:
        return str(self.link)

    def unplug(self) -> None:
        """The cable is pulled: the link vanishes, then the pty (the node sees EIO)."""
        self.link.unlink(missing_ok=True)
        if self.pty is not None:
            self.pty.close()
            self.pty = None

    def replug(self) -> Pty:
        """A board appears again: a new pty behind the same link."""
        self.pty = open_pty()
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(self.pty.port, tmp)
        os.replace(tmp, self.link)  # atomic: the node sees the old link or the new one
        return self.pty

    def wait_opened(self, proc, timeout_s: float = 30.0) -> None:
        """Block until process ``proc`` has reopened the port and configured it.

        Raises RuntimeError when it exits or does not within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while not (self.opened_by(proc.pid) and self.pty.configured()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the node did not reopen the port after an unplug")
            time.sleep(0.02)
        time.sleep(0.1)  # pyserial flushes the input right after configuring it

    def opened_by(self, pid: int) -> bool:
        """Whether process ``pid`` holds the current pty open (Linux ``/proc``)."""
        if self.pty is None:
            return False
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == self.pty.port:
                    return True
            except OSError:
                continue
        return False

    def close(self) -> None:
        self.unplug()


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
                   faults: FaultInjector | None = None, progress: bool = False, sensor=None) -> dict:
    """Send records one after the other; each is ``(data_mps2, rate_hz, start_us)``.

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
        for seq, t_us, frame in count_frames(counts, rate, start_us, samples_per_frame,
                                             first_sequence=next_seq):
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
        next_seq += (np.asarray(data).shape[1] + samples_per_frame - 1) // samples_per_frame
    bar.close()
    if clipped:
        log.warning("%d samples beyond the %s's range were clipped", clipped, sensor.name)
    return {"frames": frames, "bytes": writer.bytes_sent, "frames_nan": nan_frames, "clipped": clipped,
            "faults": dict(faults.counts) if faults else {}}


def read_waveform_records(paths, units: str | None = None, time_mode: str = "keep"):
    """Records ``(data_mps2, rate_hz, start_us)`` from waveform files, in time order.

    A thin wrapper of :func:`host_training.data.records.read_records` (see there for
    grouping, components, units and picks); files or records it refuses are logged with
    their one-line reason and left out. Missing components are zeros. ``time_mode`` moves
    each record as :func:`tools.replay_test.time_shift_s` does (``auto``: records outside
    the node's 2000-2100 window by whole 50-year steps, as ``tools score`` expects).
    Rates above the node's 1000 Hz are decimated (:func:`tools.replay_test.fit_rate`); a
    record below its 10 Hz is left out with its reason (the node would drop every frame).
    """
    from host_training.data.records import read_records

    from .replay_test import check_rate, fit_rate, time_shift_s

    records, skipped = read_records([str(p) for p in paths], units=units, nan_gaps=True)
    for where, why in skipped:
        log.error("%s: %s; skipped", where, why)
    out = []
    for r in records:
        shift = time_shift_s(r, time_mode)
        if shift:
            log.warning("%s: moved by %+.0f s into the node's 2000-2100 window", r.id, shift)
        r = fit_rate(r, {})
        try:
            check_rate(r, {"highpass_hz": 0.0})
        except ValueError as exc:
            log.error("%s: %s; skipped", ", ".join(Path(f).name for f in r.files) or r.id, exc)
            continue
        out.append((r.data, r.sampling_rate_hz, int(round((r.starttime.timestamp + shift) * 1e6))))
    return out
