"""One channel at a time in, the node's multi-component frames out.

A Raspberry Shake's UDP datacast and a SeedLink stream both carry each channel in
packets of its own (a Shake: 25 samples of one channel per datagram; SeedLink: one
miniSEED record per channel), each stamped with the time of its first sample. The
node's pipeline takes frames that hold every component at the same instants
(:class:`~edge_runtime.protocol.Frame`). :class:`ChannelAligner` places each packet's
samples on one sample grid per stream (index = time since the stream's anchor times the
rate) and cuts frames of ``frame_s`` once every component holds them.

What it does with what the network does:

* **Reordered packets** are put in their place; a frame waits for a missing part until
  the channel that lacks it has moved ``reorder_s`` beyond it, or has been silent for
  ``silent_s`` (longer when packets are long: twice the longest seen).
* **Repeated packets** (or parts of them) are dropped and counted (``packets_duplicate``,
  ``samples_duplicate``); samples for frames already made are counted ``samples_late``.
* **Gaps**: a frame some component never filled is not made (``frames_incomplete``; a
  frame nobody filled is simply absent). Frames are numbered by their place on the grid,
  so the node's sequencer sees the missing numbers as lost frames and marks the gap,
  exactly as for a board's lost frames; nothing is invented here.
* **A rate change** restarts the stream once every component reports the new rate
  (``restarts``; one log line); until then the packets at the other rate are held back.
  The restart is a jump of the frame numbers by half their range, which the sequencer
  takes as a new stream (``sequence_resets``), as for a board that restarted.
* **A clock that went back** (packets older than what was already made, for
  ``max_late_s`` of wall time without one on time) restarts the stream the same way.

Time stamps jitter and clocks drift: a packet that starts within ``tolerance_samples``
of where its channel's samples end continues them, and the offset of its stamp from the
grid is kept (``residual``) so the frames' times follow the stamps.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np

from .logs import LimitedLog
from .protocol import Frame

log = logging.getLogger(__name__)

SEQ_MOD = 2**32
# Frame numbers jump by this much at a restart: the sequencer sees the sequence go back
# while time goes on (docs/serial-protocol.md, "Frame ordering"), i.e. a new stream.
RESTART_JUMP = 2**31
# A rate this close to the stream's (relative) is the same rate.
RATE_TOLERANCE = 0.005

_ORIENTATION = {"E": "E", "N": "N", "Z": "Z", "1": "N", "2": "E"}


def component_of_channel(channel: str) -> str | None:
    """The component (``"E"``, ``"N"``, ``"Z"``) of a SEED channel code, from its
    orientation letter (``1`` is north, ``2`` east, as ``host_training`` reads records);
    ``None`` for any other orientation."""
    return _ORIENTATION.get(channel[-1:].upper()) if len(channel) == 3 else None


def is_accelerometer(channel: str) -> bool:
    """Whether a SEED channel code's instrument letter says accelerometer (``?N?``)."""
    return len(channel) == 3 and channel[1].upper() == "N"


class ChannelAligner:
    """Per-component packets in, aligned frames out.

    Parameters
    ----------
    components : sequence of str
        Components in the model's order (``("E", "N", "Z")``); the columns of a frame.
    frame_s : float
        Length of the frames made, s (rounded to whole samples, at least one).
    reorder_s : float
        How far (in the stream's time) a component may run ahead of a part missing in
        another before that part is given up, s.
    silent_s : float
        Wall time after which a component that sends nothing is given up for the frames
        the others filled, s.
    span_s : float
        Samples held per component at most (s of the stream); a packet beyond gives up
        what it passes.
    tolerance_samples : float
        Stamp jitter taken as contiguous, samples.
    max_late_s : float
        Wall time of nothing but late packets after which the stream restarts at their
        time (a clock that went back), s.
    version : str
        ``Frame.version`` of the frames made (names the input in the node's logs).
    """

    def __init__(self, components, frame_s: float = 0.25, reorder_s: float = 1.0, silent_s: float = 2.0,
                 span_s: float = 60.0, tolerance_samples: float = 2.0, max_late_s: float = 10.0,
                 version: str = "aligned"):
        self.components = tuple(components)
        self.frame_s, self.reorder_s, self.silent_s = frame_s, reorder_s, silent_s
        self.span_s, self.tolerance = span_s, tolerance_samples
        self.max_late_s, self.version = max_late_s, version
        self.counts = {"packets": 0, "packets_duplicate": 0, "packets_late": 0, "packets_other_rate": 0,
                       "samples_duplicate": 0, "samples_late": 0, "frames": 0, "frames_incomplete": 0,
                       "restarts": 0}
        self.rate_hz: float | None = None
        self._seq_base = 0
        self._other: dict[int, list] = {}  # component -> packets held at another rate
        self._late_since: float | None = None
        self._silent_logged: set[int] = set()
        self._longest_s = 0.0
        self._placed: deque = deque(maxlen=4096)  # (component, start) of recent packets: repeats
        self._placed_set: set = set()
        self._log = LimitedLog(log)

    @property
    def column(self) -> dict:
        return {c: i for i, c in enumerate(self.components)}

    # ------------------------------------------------------------------ stream
    def _start(self, rate_hz: float, t0_us: int, now_s: float) -> None:
        """A new grid at ``rate_hz`` whose first frames begin ``reorder_s`` before ``t0_us``."""
        n_channels = len(self.components)
        self.rate_hz = rate_hz
        self.frame_n = max(1, int(round(self.frame_s * rate_hz)))
        frames_held = int(math.ceil(self.span_s * rate_hz / self.frame_n))
        self.capacity = max(4, frames_held) * self.frame_n
        lead = math.ceil(self.reorder_s * rate_hz / self.frame_n) * self.frame_n  # whole frames before t0_us
        self.anchor_us = int(t0_us - round(lead * 1e6 / rate_hz))
        self.base = 0
        self.data = np.zeros((self.capacity, n_channels), dtype=np.int32)
        self.have = np.zeros((self.capacity, n_channels), dtype=bool)
        self.horizon = [0] * n_channels
        self.residual = [0.0] * n_channels
        self.heard = [now_s] * n_channels
        self._other = {}
        self._silent_logged.clear()
        self._late_since = None
        self._placed.clear()
        self._placed_set.clear()

    def _restart(self, rate_hz: float, t0_us: int, now_s: float, why: str) -> None:
        if self.rate_hz is not None:
            self.counts["restarts"] += 1
            self._seq_base = (self._seq_base + self.base // self.frame_n + RESTART_JUMP) % SEQ_MOD
            log.warning("%s: %s; stream restarted", self.version, why)
        self._start(rate_hz, t0_us, now_s)

    # ------------------------------------------------------------------- input
    def push(self, component: str, t0_us: int, rate_hz: float, counts, now_s: float) -> list[Frame]:
        """One packet of one component; the frames it completed (in order).

        Parameters
        ----------
        component : str
            One of :attr:`components`.
        t0_us : int
            UTC time of the packet's first sample, us since 1970.
        rate_hz : float
            Its sampling rate, Hz.
        counts : array_like
            ``(n,)`` integer counts.
        now_s : float
            Monotonic wall time of arrival, s.
        """
        c = self.column[component]
        counts = np.asarray(counts, dtype=np.int32).ravel()
        self.counts["packets"] += 1
        if not len(counts):
            return []
        self._longest_s = max(self._longest_s, len(counts) / rate_hz)
        if self.rate_hz is None:
            self._start(rate_hz, t0_us, now_s)
        elif abs(rate_hz - self.rate_hz) > RATE_TOLERANCE * self.rate_hz:
            return self._other_rate(c, t0_us, rate_hz, counts, now_s)
        self._other.pop(c, None)  # back at the stream's rate: what it held at another is void
        return self._place(c, t0_us, counts, now_s) + self._emit(now_s)

    def _other_rate(self, c: int, t0_us: int, rate_hz: float, counts, now_s: float) -> list[Frame]:
        """A packet at a rate not the stream's: held until every component reports that rate."""
        held = self._other.setdefault(c, [])
        if held and abs(held[-1][1] - rate_hz) > RATE_TOLERANCE * rate_hz:
            held.clear()
        held.append((t0_us, rate_hz, counts))
        self.counts["packets_other_rate"] += 1
        if len(self._other) < len(self.components) or \
                any(abs(p[-1][1] - rate_hz) > RATE_TOLERANCE * rate_hz for p in self._other.values()):
            self._log(logging.WARNING, "rate", "%s: component %s at %g Hz, the stream at %g Hz; its "
                      "packets are held until every component changes", self.version, self.components[c],
                      rate_hz, self.rate_hz)
            del held[:-max(1, int(self.span_s * rate_hz / len(counts)))]  # the newest span_s
            return []
        out = self._emit(now_s)
        pending = self._other
        first = min(p[0][0] for p in pending.values())
        self._restart(rate_hz, first, now_s, f"sampling rate changed from {self.rate_hz:g} to {rate_hz:g} Hz")
        for col, packets in pending.items():
            self.counts["packets_other_rate"] -= len(packets)
            for t, _, data in packets:
                out += self._place(col, t, data, now_s)
        return out + self._emit(now_s)

    def _index(self, c: int, t0_us: int) -> int:
        """Where a packet of component ``c`` stamped ``t0_us`` starts on the grid (its residual kept)."""
        exact = (t0_us - self.anchor_us) * self.rate_hz / 1e6
        guess = exact - self.residual[c]
        start = self.horizon[c] if abs(guess - self.horizon[c]) <= self.tolerance else int(round(guess))
        self.residual[c] = exact - start
        return start

    def _place(self, c: int, t0_us: int, counts: np.ndarray, now_s: float) -> list[Frame]:
        start = self._index(c, t0_us)
        end = start + len(counts)
        if (c, start) in self._placed_set and (end <= self.base or self.have[start % self.capacity, c]):
            self.counts["packets_duplicate"] += 1
            self.counts["samples_duplicate"] += len(counts)
            self._log(logging.INFO, "duplicate", "%s: packet of %s at %d us received twice; dropped",
                      self.version, self.components[c], t0_us)
            return []
        if end <= self.base:
            return self._late(c, t0_us, counts, now_s)
        self._late_since = None
        self.heard[c] = now_s
        self._silent_logged.discard(c)
        if start < self.base:
            self.counts["samples_late"] += self.base - start
            counts, start = counts[self.base - start:], self.base
        out = []
        if end > self.base + self.capacity:
            out = self._advance(end - self.capacity, now_s)
        slots = np.arange(start, end) % self.capacity
        old = self.have[slots, c]
        n_old = int(old.sum())
        self.counts["samples_duplicate"] += n_old
        if n_old == len(counts):  # another packet's samples at the same times
            self.counts["packets_duplicate"] += 1
            return out
        self._remember(c, start)
        new = slots[~old]
        self.data[new, c] = counts[~old]
        self.have[new, c] = True
        self.horizon[c] = max(self.horizon[c], end)
        return out

    def _remember(self, c: int, start: int) -> None:
        if len(self._placed) == self._placed.maxlen:
            self._placed_set.discard(self._placed[0])
        self._placed.append((c, start))
        self._placed_set.add((c, start))

    def _late(self, c: int, t0_us: int, counts: np.ndarray, now_s: float) -> list[Frame]:
        """A packet wholly before the frames made: late, or the clock went back."""
        self.counts["packets_late"] += 1
        self.counts["samples_late"] += len(counts)
        if self._late_since is None:
            self._late_since = now_s
        elif now_s - self._late_since > self.max_late_s:
            out = self._emit(now_s)
            self._restart(self.rate_hz, t0_us, now_s, f"packets {self.max_late_s:g} s behind the stream "
                          "for as long (the sender's clock went back)")
            return out + self._place(c, t0_us, counts, now_s)
        self._log(logging.INFO, "late", "%s: packet of %s at %d us is older than the frames made; "
                  "dropped", self.version, self.components[c], t0_us)
        return []

    # ------------------------------------------------------------------ output
    def _advance(self, new_base: int, now_s: float) -> list[Frame]:
        """Make or give up frames until ``base`` reaches ``new_base`` (a packet far ahead)."""
        out = self._emit(now_s)
        target = -(-new_base // self.frame_n) * self.frame_n
        while self.base < target:
            if self.base + self.capacity <= target and not self.have.any():
                self.base = target  # nothing held: jump the hole at once
                break
            out += self._frame_or_skip(force=True)
        return out

    def _frame_or_skip(self, force: bool, now_s: float = 0.0, silence: bool = False) -> list[Frame]:
        """The frame at ``base`` if complete, else give it up when ``force`` or its parts are
        given up (see the class notes); ``[]`` and ``base`` unchanged while it waits."""
        n = self.frame_n
        slots = np.arange(self.base, self.base + n) % self.capacity
        block = self.have[slots]
        if block.all():
            frame = Frame((self._seq_base + self.base // n) % SEQ_MOD,
                          self.anchor_us + int(round((self.base + self.residual[0]) * 1e6 / self.rate_hz)),
                          self.rate_hz, self.data[slots].copy(), version=self.version, time_fix="unknown")
            self.counts["frames"] += 1
            out = [frame]
        elif force or self._given_up(block, now_s, silence):
            if block.any():
                self.counts["frames_incomplete"] += 1
            out = []
        else:
            return None
        self.have[slots] = False
        self.base += n
        return out

    def _given_up(self, block: np.ndarray, now_s: float, silence: bool) -> bool:
        end = self.base + self.frame_n
        if max(self.horizon) < end:
            return False  # nobody has passed this frame yet: it may still fill
        silent_s = max(self.silent_s, 2 * self._longest_s)
        for c in np.flatnonzero(~block.all(axis=0)):
            if self.horizon[c] >= end + self.reorder_s * self.rate_hz:
                continue  # this component moved on: its part of the frame is a gap
            if not silence or now_s - self.heard[c] <= silent_s:
                return False  # silence is judged between reads, when every packet that came is in
            if c not in self._silent_logged:
                self._silent_logged.add(c)
                log.warning("%s: nothing from component %s for %.1f s; frames without it are not made",
                            self.version, self.components[c], now_s - self.heard[c])
        return True

    def _emit(self, now_s: float, silence: bool = False) -> list[Frame]:
        out: list[Frame] = []
        if self.rate_hz is None:
            return out
        while True:
            made = self._frame_or_skip(False, now_s, silence)
            if made is None:
                return out
            out += made

    def poll(self, now_s: float) -> list[Frame]:
        """Frames made, or given up for a component silent ``silent_s``; call it once the
        packets that came are pushed (a read's batch), so a late turn of the loop does not
        take a component whose packets wait in the same batch for silent."""
        return self._emit(now_s, silence=True)
