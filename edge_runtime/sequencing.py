"""Frame ordering and plausibility: what the board sent, in order, within the sensor's range.

One state machine (:class:`StreamSequencer`) decides, from sequence numbers AND
timestamps together, whether a decoded frame is the next one, a reordered one, a
duplicate, a stale copy of an old one, a sequence skip with no sample missing, the far
side of lost frames, or the first frame of a restarted board. ``docs/serial-protocol.md``
("Frame ordering") has the same rules as a table; the tests walk through every row.

Notation: ``head`` is the frame with the highest sequence number seen in the current
stream, ``d`` the signed distance (modulo 2**32) of a new frame's sequence from
``head + 1``, ``frame_us`` the duration of the head frame. The new frame is
*time-consistent* when its timestamp is where ``d`` puts it
(``|t - (head_end + d * frame_us)| <= tol + drift * |d| * frame_us``) and *time-contiguous*
when it starts where the head ended (``|t - head_end| <= tol``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .logs import LimitedLog
from .sensors import SensorModel

log = logging.getLogger(__name__)

SEQ_MOD = 2**32
# A forward jump longer than this (about 1.8 h of 10-sample frames at 100 Hz) whose
# timestamps do not account for it is taken as a board restart, not as lost frames.
MAX_UNTIMED_LOSS = 65536


def seq_distance(a: int, b: int) -> int:
    """Signed distance ``a - b`` of two uint32 sequence numbers, in [-2**31, 2**31)."""
    return (a - b + 2**31) % SEQ_MOD - 2**31


@dataclass
class Delivery:
    """A frame released in order, and how it joins the stream before it.

    Attributes
    ----------
    frame : Frame
        The decoded frame.
    lost_frames : int
        Frames missing between the previous delivery and this one (0: the samples are
        contiguous).
    restart : bool
        First frame of a new stream (start, or a board restart): nothing joins it.
    """

    frame: object
    lost_frames: int = 0
    restart: bool = False


class StreamSequencer:
    """Put frames back in order; drop duplicates and stale copies; tell restarts apart.

    Parameters
    ----------
    reorder_frames : int
        Frames held while waiting for a missing one before it is given up as lost; a
        frame that arrives up to this many frames late is put back in its place.
    gap_tolerance : float
        Timestamp jitter tolerated, in sample periods.
    drift_tolerance : float
        Relative error of the board clock tolerated over a jump (1 % by default), so a
        long outage is still time-consistent.
    history : int
        Delivered frames remembered for duplicate detection.
    board_id : int, optional
        Board to accept (v2 frames). ``None``: lock onto the first board seen.
    """

    def __init__(self, reorder_frames: int = 4, gap_tolerance: float = 2.0,
                 drift_tolerance: float = 0.01, history: int = 256, board_id: int | None = None):
        self.reorder_frames = reorder_frames
        self.gap_tolerance = gap_tolerance
        self.drift_tolerance = drift_tolerance
        self.history_size = history
        self.board_id = board_id
        self.counts = {"frames_in": 0, "frames_delivered": 0, "frames_reordered": 0,
                       "frames_duplicate": 0, "frames_stale": 0, "frames_lost": 0,
                       "sequence_skips": 0, "sequence_resets": 0, "frames_other_board": 0,
                       "board_clipping": 0, "board_selftest_fail": 0, "board_overrun": 0}
        self.time_fix = "unknown"
        self._head = None
        self._next: int | None = None
        self._held: dict[int, object] = {}
        self._history: OrderedDict[int, int] = OrderedDict()  # seq -> timestamp_us delivered
        self._log = LimitedLog(log)

    @property
    def held(self) -> int:
        """Frames waiting for a missing predecessor."""
        return len(self._held)

    # ---------------------------------------------------------------- helpers
    def _tol_us(self, frame) -> float:
        return self.gap_tolerance * 1e6 / frame.sampling_rate_hz

    def _timing(self, frame, d: int) -> tuple[bool, bool]:
        head = self._head
        frame_us = head.n_samples * 1e6 / head.sampling_rate_hz
        head_end = head.timestamp_us + frame_us
        tol = self._tol_us(head)
        consistent = abs(frame.timestamp_us - (head_end + d * frame_us)) <= \
            tol + self.drift_tolerance * abs(d) * frame_us
        contiguous = abs(frame.timestamp_us - head_end) <= tol
        return consistent, contiguous

    def _deliver(self, frame, lost: int = 0, restart: bool = False) -> Delivery:
        self.counts["frames_delivered"] += 1
        self.counts["frames_lost"] += lost
        self._history[frame.sequence] = frame.timestamp_us
        while len(self._history) > self.history_size:
            self._history.popitem(last=False)
        self._next = (frame.sequence + 1) % SEQ_MOD
        self.time_fix = getattr(frame, "time_fix", "unknown")
        return Delivery(frame, lost, restart)

    def _release(self, give_up_all: bool = False) -> list[Delivery]:
        """Deliver held frames that are now in order; give up gaps the window cannot wait for."""
        out = []
        while self._held:
            if self._next in self._held:
                out.append(self._deliver(self._held.pop(self._next)))
                continue
            span = seq_distance(self._head.sequence, self._next)
            if not give_up_all and span <= self.reorder_frames:
                break
            first = min(self._held, key=lambda s: seq_distance(s, self._next))
            lost = seq_distance(first, self._next)
            self._log(logging.INFO, "lost", "%d frames (seq %d-%d) did not arrive; gap given up",
                      lost, self._next, (first - 1) % SEQ_MOD)
            out.append(self._deliver(self._held.pop(first), lost=lost))
        return out

    def _restart(self, frame, why: str) -> list[Delivery]:
        out = self._release(give_up_all=True)
        if self._head is not None:
            self.counts["sequence_resets"] += 1
            self._log(logging.WARNING, "restart", "frame seq=%d: %s; new stream", frame.sequence, why)
        self._history.clear()
        self._head = frame
        out.append(self._deliver(frame, restart=True))
        return out

    # ------------------------------------------------------------------ input
    def admit(self, frame) -> bool:
        """Board check of one frame (v2): count its status flags; False for another board.

        Called first, before any other check of the frame: a foreign board's frames are
        counted as such, not as whatever else is wrong with them.
        """
        board = getattr(frame, "board_id", None)
        flags = getattr(frame, "flags", 0) or 0
        for bit, name in ((1, "board_clipping"), (2, "board_selftest_fail"), (4, "board_overrun")):
            if flags & bit:
                self.counts[name] += 1
                self._log(logging.WARNING, name, "frame seq=%d: board reports %s", frame.sequence,
                          name.removeprefix("board_").replace("_", " "))
        if self.board_id is None:
            if board is not None:
                self.board_id = board
                log.info("locked onto board id 0x%08x", board)
            return True
        if board == self.board_id:
            return True
        self.counts["frames_other_board"] += 1
        self._log(logging.WARNING, "board", "frame seq=%d from board %s, locked onto 0x%08x; dropped",
                  frame.sequence, "(v1, no id)" if board is None else f"0x{board:08x}", self.board_id)
        return False

    def push(self, frame, admitted: bool = False) -> list[Delivery]:
        """Take one decoded frame; return the frames now deliverable, in order.

        ``admitted``: :meth:`admit` was already called for this frame.
        """
        self.counts["frames_in"] += 1
        if not admitted and not self.admit(frame):
            return []
        head = self._head
        if head is None:
            return self._restart(frame, "first frame")
        seq, t = frame.sequence, frame.timestamp_us
        d = seq_distance(seq, (head.sequence + 1) % SEQ_MOD)
        consistent, contiguous = self._timing(frame, d)
        if d >= 0:
            if d > 0 and contiguous and not consistent:
                # The counter skipped but no time is missing: nothing to fill.
                self.counts["sequence_skips"] += 1
                self._log(logging.WARNING, "skip", "frame seq=%d: sequence skipped %d with no time "
                          "missing; samples taken as contiguous", seq, d)
                out = self._release(give_up_all=True)
                self._head = frame
                out.append(self._deliver(frame))
                return out
            if d > MAX_UNTIMED_LOSS and not consistent:
                return self._restart(frame, f"sequence jumped {d} frames and the time does not "
                                            "account for it")
            # The next frame, or beyond a gap: frames lost or late (the window decides).
            self._held[seq] = frame
            self._head = frame
            return self._release()
        # d < 0: at or before the head.
        old_t = self._history.get(seq)
        if old_t is None and seq in self._held:
            old_t = self._held[seq].timestamp_us
        if old_t is not None and abs(t - old_t) <= self._tol_us(frame):
            self.counts["frames_duplicate"] += 1
            self._log(logging.INFO, "duplicate", "frame seq=%d received twice; dropped", seq)
            return []
        if consistent:
            if self._next is not None and 0 <= seq_distance(seq, self._next) and seq not in self._held:
                self.counts["frames_reordered"] += 1
                self._held[seq] = frame
                return self._release()
            self.counts["frames_stale"] += 1
            self._log(logging.INFO, "stale", "frame seq=%d arrived after its place was given up; "
                      "dropped", seq)
            return []
        return self._restart(frame, "sequence went back while time went on (board restart)")

    def drain(self) -> list[Delivery]:
        """Give up every gap and deliver all held frames (end of stream, long silence)."""
        if not self._held:
            return []
        return self._release(give_up_all=True)


def check_counts(counts: np.ndarray, sensor: SensorModel) -> tuple[np.ndarray | None, int, str]:
    """Plausibility of a frame's ADC counts for ``sensor``.

    Returns
    -------
    counts : numpy.ndarray or None
        The counts clipped to +/- ``sensor.max_count``; ``None`` when the frame holds
        counts the part cannot output at all (beyond its word, e.g. INT32_MIN sent for a
        NaN by a broken replay): such a frame is not a measurement and is dropped.
    n : int
        Samples at or beyond the part's range (clipped: a saturated part outputs its
        rail value, the true acceleration may be larger), or, when ``counts`` is None,
        samples beyond its word.
    why : str
        Empty, or what made the frame impossible.
    """
    counts = np.asarray(counts)
    limit = sensor.max_count
    if not counts.size:
        return counts, 0, ""
    peak = max(int(counts.max()), -int(counts.min()))
    if peak < limit:
        return counts, 0, ""
    over = np.abs(counts.astype(np.int64))
    word = 2 ** (sensor.bits - 1)
    if peak > word:
        n = int(np.count_nonzero(over > word))
        return None, n, f"{n} counts beyond the {sensor.bits}-bit word of {sensor.name} (peak {peak})"
    return np.clip(counts, -limit, limit), int(np.count_nonzero(over >= limit)), ""


def with_samples(frame, samples: np.ndarray):
    """A copy of ``frame`` carrying ``samples`` (e.g. clipped to the sensor's range)."""
    from dataclasses import replace

    return replace(frame, samples=samples)
