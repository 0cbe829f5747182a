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
from collections import OrderedDict, deque
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

    Every frame pushed is counted exactly once, and so is every frame that never came:
    ``frames sent = frames_delivered + frames_lost + frames_duplicate + frames_stale +
    frames rejected (``frames_other_board`` and those passed to :meth:`reject`)``. A frame
    that arrives after its gap was given up is counted stale (and ``frames_late``), and
    taken back out of ``frames_lost``, which therefore counts the frames that never came.

    Parameters
    ----------
    reorder_frames : int
        Frames held while waiting for a missing one before it is given up as lost; a
        frame that arrives up to this many frames late is put back in its place. The
        first frame of a stream is held as long, so a predecessor that comes late (the
        first two frames swapped) still takes its place.
    gap_tolerance : float
        Timestamp jitter tolerated, in sample periods.
    drift_tolerance : float
        Relative error of the board clock tolerated over a jump (1 % by default), so a
        long outage is still time-consistent.
    history : int
        Delivered frames remembered for duplicate detection; also the number of gaps
        given up, and of rejected frames, remembered for exact accounting.
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
                       "frames_duplicate": 0, "frames_stale": 0, "frames_late": 0, "frames_lost": 0,
                       "sequence_skips": 0, "sequence_resets": 0, "frames_other_board": 0,
                       "board_clipping": 0, "board_selftest_fail": 0, "board_overrun": 0}
        self.time_fix = "unknown"
        self._head = None
        self._next: int | None = None
        self._opening = False  # the stream's first frame is not delivered yet
        self._pending_lost = 0  # frames given up since the last delivery
        self._held: dict[int, object] = {}
        self._history: OrderedDict[int, int] = OrderedDict()  # seq -> timestamp_us delivered
        self._given_up: deque[tuple[int, int]] = deque(maxlen=history)  # (first seq, frames)
        self._rejected: OrderedDict[int, int] = OrderedDict()  # seq -> timestamp_us, refused
        self._log = LimitedLog(log)

    @property
    def held(self) -> int:
        """Frames waiting for a missing predecessor (or, at a stream's start, for a late one)."""
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

    def _deliver(self, frame) -> Delivery:
        lost, restart = self._pending_lost, self._opening
        self._pending_lost, self._opening = 0, False
        self.counts["frames_delivered"] += 1
        self._history[frame.sequence] = frame.timestamp_us
        while len(self._history) > self.history_size:
            self._history.popitem(last=False)
        self._next = (frame.sequence + 1) % SEQ_MOD
        return Delivery(frame, lost, restart)

    def _give_up(self, n: int) -> None:
        """Give up the ``n`` frames from ``_next`` on as lost (those the node rejected excepted)."""
        start = self._next
        self._log(logging.INFO, "lost", "%d frames (seq %d-%d) did not arrive; gap given up",
                  n, start, (start + n - 1) % SEQ_MOD)
        inside = sorted(d for s in self._rejected if 0 <= (d := seq_distance(s, start)) < n)
        lo = 0
        for d in inside + [n]:
            if d > lo:
                self._given_up.append(((start + lo) % SEQ_MOD, d - lo))
            lo = d + 1
        for d in inside:
            del self._rejected[(start + d) % SEQ_MOD]
        self.counts["frames_lost"] += n - len(inside)
        self._pending_lost += n
        self._next = (start + n) % SEQ_MOD

    def _came_late(self, seq: int) -> bool:
        """``seq`` was given up as lost and has come after all: take it out of ``frames_lost``."""
        for i, (first, n) in enumerate(self._given_up):
            d = seq_distance(seq, first)
            if 0 <= d < n:
                del self._given_up[i]
                if d:
                    self._given_up.append((first, d))
                if n - d - 1:
                    self._given_up.append(((seq + 1) % SEQ_MOD, n - d - 1))
                self.counts["frames_lost"] -= 1
                self.counts["frames_late"] += 1
                return True
        return False

    def _release(self, give_up_all: bool = False) -> list[Delivery]:
        """Deliver held frames that are now in order; give up the frames the window cannot wait for.

        A missing frame is awaited while the head is at most ``reorder_frames`` ahead of it.
        """
        out = []
        while self._held:
            nxt = self._next
            if nxt in self._held:
                if self._opening and not give_up_all and \
                        seq_distance(self._head.sequence, nxt) < self.reorder_frames:
                    break  # a predecessor of the stream's first frame may still come
                out.append(self._deliver(self._held.pop(nxt)))
                continue
            first = min(self._held, key=lambda s: seq_distance(s, nxt))
            gap = seq_distance(first, nxt)
            if not give_up_all:
                gap = min(gap, seq_distance(self._head.sequence, nxt) - self.reorder_frames)
                if gap <= 0:
                    break
            self._give_up(gap)
        return out

    def _restart(self, frame, why: str) -> list[Delivery]:
        out = self._release(give_up_all=True)
        if self._head is not None:
            self.counts["sequence_resets"] += 1
            self._log(logging.WARNING, "restart", "frame seq=%d: %s; new stream", frame.sequence, why)
        self._history.clear()
        self._given_up.clear()
        # Rejected frames of the new stream may have come just before this one; older
        # ones belong to the stream that ended.
        since = frame.timestamp_us - (self.reorder_frames + 1) * frame.n_samples * 1e6 / \
            frame.sampling_rate_hz - self._tol_us(frame)
        for s in [s for s, t in self._rejected.items() if t < since]:
            del self._rejected[s]
        self._head = frame
        self._held[frame.sequence] = frame
        self._next = frame.sequence
        self._opening = True
        self._pending_lost = 0
        return out + self._release()

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
        if board != self.board_id:
            if self.board_id is not None:
                self.counts["frames_other_board"] += 1
                self._log(logging.WARNING, "board", "frame seq=%d from board %s, locked onto 0x%08x; "
                          "dropped", frame.sequence, "(v1, no id)" if board is None else f"0x{board:08x}",
                          self.board_id)
                return False
            self.board_id = board
            log.info("locked onto board id 0x%08x", board)
        self.time_fix = getattr(frame, "time_fix", "unknown")  # of the latest frame of this board
        return True

    def reject(self, frame) -> None:
        """The node refused this (admitted) frame; its caller counts it as rejected.

        Its place in the stream is not counted lost as well: a gap given up over it leaves
        it out of ``frames_lost``, and if its gap was already given up it is taken out.
        """
        seq = frame.sequence
        if self._head is not None and self._came_late(seq):
            return
        self._rejected[seq] = frame.timestamp_us
        while len(self._rejected) > self.history_size:
            self._rejected.popitem(last=False)

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
            awaited = 0 <= seq_distance(seq, self._next) and seq not in self._held
            if awaited or (self._opening and seq_distance(head.sequence, seq) <= self.reorder_frames):
                # Put back in its place; at a stream's start, a predecessor of its first frame.
                self.counts["frames_reordered"] += 1
                self._held[seq] = frame
                if not awaited:
                    self._next = seq
                return self._release()
            late = self._came_late(seq)
            self.counts["frames_stale"] += 1
            self._log(logging.INFO, "stale", "frame seq=%d arrived after its place was given up%s; "
                      "dropped", seq, " (counted lost until now)" if late else "")
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
