"""Ring buffer of recent samples and the sliding-window scheduler built on it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .logs import LimitedLog

log = logging.getLogger(__name__)


class RingBuffer:
    """Fixed-capacity buffer of the most recent multichannel samples.

    Parameters
    ----------
    capacity : int
        Samples kept per channel.
    n_channels : int
        Channels per sample.
    """

    def __init__(self, capacity: int, n_channels: int):
        self._data = np.zeros((capacity, n_channels), dtype=np.float64)
        self.capacity = capacity
        self.n_channels = n_channels
        self.total = 0  # samples written since the last clear

    def clear(self) -> None:
        self.total = 0

    def extend(self, samples: np.ndarray) -> None:
        """Append ``(n, n_channels)`` samples, overwriting the oldest."""
        samples = np.asarray(samples, dtype=np.float64)
        n = samples.shape[0]
        if n >= self.capacity:
            samples = samples[-self.capacity:]
            self.total += n - self.capacity
            n = self.capacity
        start = self.total % self.capacity
        first = min(n, self.capacity - start)
        self._data[start:start + first] = samples[:first]
        self._data[: n - first] = samples[first:]
        self.total += n

    def get(self, end: int, n: int) -> np.ndarray:
        """Copy of samples ``[end - n, end)`` (absolute indices since the last clear)."""
        if end > self.total or end - n < max(0, self.total - self.capacity):
            raise IndexError(f"samples [{end - n}, {end}) are not in the ring")
        idx = np.arange(end - n, end) % self.capacity
        return self._data[idx]


@dataclass
class Window:
    """A raw window ready for preprocessing.

    Attributes
    ----------
    data : numpy.ndarray
        ``(n_channels, n_samples)`` acceleration in m/s^2.
    start_us : int
        UTC time of the first sample, microseconds since the epoch.
    sampling_rate_hz : float
        Sampling rate in Hz.
    """

    data: np.ndarray
    start_us: int
    sampling_rate_hz: float

    @property
    def center_us(self) -> int:
        return int(self.start_us + 0.5 * self.data.shape[1] * 1e6 / self.sampling_rate_hz)


class SlidingWindows:
    """Cut overlapping windows out of a continuous, timestamped sample stream.

    A new window is emitted every ``step_s`` once ``window_s`` of contiguous samples are
    in. Frames come in order from :class:`edge_runtime.sequencing.StreamSequencer`, which
    says how many frames were lost before each one (or that the board restarted); without
    it, each frame must start where the previous one ended (within ``gap_tolerance``
    sample periods). The time base is re-anchored on every frame, so an ADC clock a
    little off its nominal rate never adds up to a false gap.

    A short hole (up to ``max_fill_s``: a frame or a few lost to line noise) is filled
    by linear interpolation between the samples on either side, so one bad frame does
    not blind the node for a whole window length, which could be the P wave. When no
    frame is missing but the timestamps jump, the samples are continuous and only the
    board's clock moved: a forward step is followed, a backward one (or a stuck clock)
    is ignored so window times stay monotonic; nothing is interpolated. Anything else (a
    longer hole, a board restart, a change of channel count, a rate change beyond
    ``rate_tolerance``) clears the buffer: no window spans it.

    Parameters
    ----------
    window_s : float
        Window length in s.
    step_s : float
        Time between successive window starts in s.
    gap_tolerance : float
        Allowed timestamp mismatch between consecutive frames, in sample periods. Board
        timestamps jitter by a few ms; a lost frame is a whole frame late.
    rate_tolerance : float
        Relative change of the reported sampling rate still taken as the same stream
        (boards that report a measured rate jitter by a few mHz).
    max_fill_s : float
        Longest hole filled by interpolation, in s; 0 restarts on every hole.
    """

    def __init__(self, window_s: float, step_s: float, gap_tolerance: float = 2.0,
                 rate_tolerance: float = 0.005, max_fill_s: float = 0.5):
        self.window_s = window_s
        self.step_s = step_s
        self.gap_tolerance = gap_tolerance
        self.rate_tolerance = rate_tolerance
        self.max_fill_s = max_fill_s
        self.filled_gaps = 0
        self.filled_samples = 0
        self.clock_steps = 0
        self.last_frame_len = 0
        self._log = LimitedLog(log)
        self.ring: RingBuffer | None = None
        self.rate_hz: float | None = None
        self.anchor_us = 0
        self.anchor_index = 0
        self.next_end = 0
        self.gaps = 0
        # Signed length of the last discontinuity in s: negative when time went
        # backwards, infinite for a change of rate or channel count.
        self.last_gap_s = 0.0

    def _reset(self, rate_hz: float, n_channels: int) -> None:
        self.rate_hz = rate_hz
        n_window, n_step = window_samples(self.window_s, self.step_s, rate_hz)
        if self.ring is None or self.ring.n_channels != n_channels or self.ring.capacity < 4 * n_window:
            self.ring = RingBuffer(max(4 * n_window, 1024), n_channels)
        self.ring.clear()
        self.n_window = n_window
        self.n_step = n_step
        self.next_end = n_window

    def counters(self) -> dict:
        """Discontinuities of the sample stream, for the status file.

        ``gaps``: buffer restarts (holes too long to fill, restarts, rate changes);
        ``gaps_filled`` / ``samples_filled``: short holes interpolated over;
        ``clock_steps``: time-stamp jumps with no sample missing.
        """
        return {"gaps": self.gaps, "gaps_filled": self.filled_gaps, "samples_filled": self.filled_samples,
                "clock_steps": self.clock_steps}

    def expected_us(self) -> float:
        """Time at which the next sample is expected, in microseconds."""
        return self.anchor_us + (self.ring.total - self.anchor_index) * 1e6 / self.rate_hz

    def _continuity(self, n_channels: int, t0_us: int, rate_hz: float, lost_frames, restart):
        """How a frame continues the stream: ``(action, value)``.

        ``("continue", None)``; ``("fill", n_samples)`` for a short hole;
        ``("step", gap_s)`` when no sample is missing but the clock jumped (the samples
        are continuous, only the time stamps moved); ``("restart", gap_s)``.
        """
        if restart or self.ring is None or n_channels != self.ring.n_channels or \
                abs(rate_hz - self.rate_hz) > self.rate_tolerance * self.rate_hz:
            return "restart", float("inf")
        gap_us = t0_us - self.expected_us()
        gap_s = gap_us / 1e6
        tolerance_us = self.gap_tolerance * 1e6 / self.rate_hz
        fillable = self.ring.total > 0 and self.max_fill_s > 0
        if lost_frames is None:
            # Timestamps alone: a hole shows as time missing.
            if abs(gap_us) <= tolerance_us:
                return "continue", None
            n_missing = int(round(gap_s * self.rate_hz))
            if fillable and 0 < gap_s <= self.max_fill_s and n_missing:
                return "fill", n_missing
            return "restart", gap_s
        if lost_frames == 0:
            return ("continue", None) if abs(gap_us) <= tolerance_us else ("step", gap_s)
        # Frames were lost: the sequence says how many, the previous frame how long each
        # was (timestamps jitter, the count does not).
        n_missing = lost_frames * self.last_frame_len
        if fillable and n_missing <= self.max_fill_s * self.rate_hz and gap_us >= -tolerance_us:
            return "fill", n_missing
        return "restart", gap_s

    def _fill(self, samples: np.ndarray, n_missing: int) -> np.ndarray:
        """Prepend ``n_missing`` samples interpolated across a short hole to ``samples``."""
        last = self.ring.get(self.ring.total, 1)[0]
        first = np.asarray(samples[0], dtype=np.float64)
        frac = np.arange(1, n_missing + 1)[:, None] / (n_missing + 1)
        self.filled_gaps += 1
        self.filled_samples += n_missing
        self._log(logging.INFO, "hole", "hole of %d samples in the sample stream filled by "
                  "interpolation", n_missing)
        return np.concatenate([last + frac * (first - last), samples])

    def push(self, samples_mps2: np.ndarray, t0_us: int, rate_hz: float,
             lost_frames: int | None = None, restart: bool = False) -> list[Window]:
        """Add ``(n, n_channels)`` samples starting at ``t0_us``; return completed windows.

        Parameters
        ----------
        samples_mps2 : numpy.ndarray
            ``(n, n_channels)`` acceleration in m/s^2.
        t0_us : int
            UTC time of the first sample in microseconds.
        rate_hz : float
            Sampling rate reported with the samples, in Hz.
        lost_frames : int, optional
            Frames missing before these samples, as the sequence numbers tell
            (:class:`edge_runtime.sequencing.StreamSequencer`); 0 when the samples are
            contiguous (a timestamp mismatch is then a clock step). ``None``: no sequence
            numbers, holes are found from the timestamps alone.
        restart : bool
            A new stream (board restart): no window spans the join.
        """
        if not np.all(np.isfinite(samples_mps2)):
            raise ValueError("samples hold NaN or inf; they must never reach a window")
        n_channels = samples_mps2.shape[1]
        action, value = self._continuity(n_channels, t0_us, rate_hz, lost_frames, restart)
        if action == "fill":
            samples_mps2 = self._fill(samples_mps2, value)
            t0_us = int(round(self.expected_us()))
        elif action == "step":
            # Samples are continuous; only the board's clock moved. Forward: follow it
            # (a time correction). Backward (a stuck or stepped-back clock): keep the
            # internal time base, so window times stay monotonic and events close.
            self.clock_steps += 1
            self._log(logging.WARNING, "clock", "board clock stepped %+.3f s with no frame lost; "
                      "%s", value, "following it" if value > 0 else "keeping the node's time base")
            if value < 0:
                t0_us = int(round(self.expected_us()))
        elif action == "restart":
            if self.ring is not None:
                self.gaps += 1
                self._log(logging.INFO, "restart", "discontinuity (%s) in the sample stream; "
                          "window buffer restarted",
                          "rate or channels changed" if value == float("inf") else f"{value:+.3f} s")
            self.last_gap_s = value
            self._reset(rate_hz, n_channels)
        self.last_frame_len = samples_mps2.shape[0] - (value if action == "fill" else 0)
        self.anchor_us, self.anchor_index = t0_us, self.ring.total
        rate = self.rate_hz
        windows = []
        chunk = self.ring.capacity - self.n_window  # so no window is overwritten before it is cut
        for i in range(0, samples_mps2.shape[0], chunk):
            self.ring.extend(samples_mps2[i:i + chunk])
            while self.ring.total >= self.next_end:
                end = self.next_end
                data = self.ring.get(end, self.n_window).T.copy()
                start = end - self.n_window
                start_us = int(round(self.anchor_us + (start - self.anchor_index) * 1e6 / rate))
                windows.append(Window(data, start_us, rate))
                self.next_end += self.n_step
        return windows


def window_samples(window_s: float, step_s: float, rate_hz: float) -> tuple[int, int]:
    """Samples in a window and between window starts at ``rate_hz`` Hz, as the node rounds them."""
    return int(round(window_s * rate_hz)), max(1, int(round(step_s * rate_hz)))


def cut_windows(data: np.ndarray, rate_hz: float, window_s: float, step_s: float):
    """The windows :class:`SlidingWindows` cuts from one continuous record, all at once.

    Parameters
    ----------
    data : numpy.ndarray
        ``(n_channels, n_samples)`` record.
    rate_hz : float
        Sampling rate, Hz.
    window_s, step_s : float
        Window length and time between window starts, s.

    Returns
    -------
    windows : numpy.ndarray
        ``(N, n_channels, n_window)``, ``data``'s dtype: the first starts at sample 0, the
        last is the last that fits whole (none when the record is shorter than a window).
    starts : numpy.ndarray
        ``(N,)`` int, first sample of each window.
    """
    n_window, n_step = window_samples(window_s, step_s, rate_hz)
    starts = np.arange(0, data.shape[-1] - n_window + 1, n_step)
    return np.transpose(data[:, starts[:, None] + np.arange(n_window)[None]], (1, 0, 2)), starts
