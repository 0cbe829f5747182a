"""Fault injection for the serial replay: what a real line does to frames.

Each fault is drawn per frame from a seeded generator and logged, so a test can say
exactly what the decoder should have dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

REORDER_FRAMES = 4  # edge_runtime.sequencing.StreamSequencer's window (its default)


@dataclass
class FaultConfig:
    """Per-frame probabilities of each fault.

    Attributes
    ----------
    corrupt : float
        Flip one random bit of the frame (the CRC must reject it).
    drop : float
        Lose the frame entirely (a gap in the stream).
    truncate : float
        Send only a random prefix of the frame (a cut line).
    garbage : float
        Insert 1-64 random bytes before the frame, sometimes containing sync bytes.
    seed : int
        Seed of the fault draws.
    unplug : float
        Pull the cable before the frame: the port vanishes, ``unplug_s`` of samples are
        lost, and the board comes back restarted (sequence numbers from 0).
    unplug_s : float
        Samples lost per unplug, s of record time.
    drift_ppm : float
        The board's clock runs fast (> 0) or slow by this many parts per million.
    swap : float
        Send the frame after the next one (the node puts it back: ``frames_reordered``).
    late : float
        Send the frame after 6 later ones, past the node's 4-frame reorder window: its gap
        is given up, then it comes (``frames_stale`` and ``frames_late``, not lost).
    duplicate : float
        Send the frame twice (``frames_duplicate``).

    While a frame is held back, the frames after it are not damaged, and a session's frames
    are held only once one has gone out intact, so the node's counts stay exact.
    """

    corrupt: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    garbage: float = 0.0
    seed: int = 0
    unplug: float = 0.0
    unplug_s: float = 2.0
    drift_ppm: float = 0.0
    swap: float = 0.0
    late: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self):
        for name in ("corrupt", "drop", "truncate", "garbage", "unplug", "swap", "late", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name}={value!r} must be a probability in [0, 1]")
        if self.unplug_s <= 0:
            raise ValueError(f"fault unplug_s={self.unplug_s!r} must be > 0")
        if abs(self.drift_ppm) > 10000:
            raise ValueError(f"fault drift_ppm={self.drift_ppm!r} is beyond any crystal (|x| <= 10000)")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def any(self) -> bool:
        return any((self.corrupt, self.drop, self.truncate, self.garbage, self.unplug, self.drift_ppm,
                    self.swap, self.late, self.duplicate))


def parse_faults(text: str | None) -> FaultConfig:
    """``"corrupt=0.001,unplug=0.0005,drift_ppm=50,seed=3"`` to a :class:`FaultConfig`.

    Raises
    ------
    ValueError
        Naming the item that is not ``name=number`` or not a known fault.
    """
    if not text:
        return FaultConfig()
    fields = {f: t for f, t in FaultConfig.__annotations__.items()}
    values = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise ValueError(f"--faults item {item!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(fields)}")
        try:
            values[name] = int(value) if name == "seed" else float(value)
        except ValueError:
            raise ValueError(f"--faults item {item!r}: {value!r} is not a number") from None
    return FaultConfig(**values)


class FaultInjector:
    """Apply :class:`FaultConfig` to a stream of encoded frames."""

    def __init__(self, config: FaultConfig | None = None):
        self.config = config or FaultConfig()
        self.rng = np.random.default_rng(self.config.seed)
        self.counts = {"frames": 0, "corrupted": 0, "dropped": 0, "truncated": 0, "garbage": 0,
                       "unplugged": 0, "swapped": 0, "late": 0, "duplicated": 0}
        # What the node saw of the held frames: put back in place, or after their gap was given up.
        self.outcomes = {"reordered": 0, "late": 0, "duplicates": 0}
        self.damaged_sequences: list[int] = []
        self.last_intact = True  # the last frame given to apply() goes out undamaged
        self._held: list[list] = []  # [frame bytes, later frames to wait, later frames sent]
        self._intact_seen = False  # in this board session (sequences from 0)

    def _release(self, flush: bool = False) -> bytes:
        out = b""
        for held in list(self._held):
            if flush or held[2] >= held[1]:
                self.outcomes["late" if held[2] > REORDER_FRAMES else "reordered"] += 1
                self._held.remove(held)
                out += held[0]
        return out

    def flush(self) -> bytes:
        """Frames still held back, to send before an unplug or at the end."""
        return self._release(flush=True)

    def unplug_now(self) -> bool:
        """Draw whether the cable is pulled before the next frame (counted)."""
        if self.config.unplug and self.rng.uniform() < self.config.unplug:
            self.counts["unplugged"] += 1
            return True
        return False

    def apply(self, sequence: int, frame: bytes) -> bytes:
        """The bytes to send for one frame (possibly empty, possibly with frames held before)."""
        c, rng = self.config, self.rng
        self.counts["frames"] += 1
        if sequence == 0:
            self._intact_seen = False
        out = b""
        if c.garbage and rng.uniform() < c.garbage:
            junk = bytearray(rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes())
            if rng.uniform() < 0.5 and len(junk) >= 2:  # a false sync makes the decoder work
                i = int(rng.integers(0, len(junk) - 1))
                junk[i:i + 2] = b"\xa5\x5a"
            out += bytes(junk)
            self.counts["garbage"] += 1
        self.last_intact = False
        if self._held:  # nothing damaged while a frame is held back
            for held in self._held:
                held[2] += 1
            self.last_intact = True
            return out + frame + self._release()
        if self._intact_seen and (c.swap or c.late):
            u = rng.uniform()
            if u < c.swap + c.late:
                kind = "swapped" if u < c.swap else "late"
                self.counts[kind] += 1
                self._held.append([frame, 1 if kind == "swapped" else REORDER_FRAMES + 2, 0])
                self.last_intact = True
                return out
        if c.drop and rng.uniform() < c.drop:
            self.counts["dropped"] += 1
            self.damaged_sequences.append(sequence)
            return out
        if c.corrupt and rng.uniform() < c.corrupt:
            frame = bytearray(frame)
            i = int(rng.integers(0, len(frame)))
            frame[i] ^= 1 << int(rng.integers(0, 8))
            frame = bytes(frame)
            self.counts["corrupted"] += 1
            self.damaged_sequences.append(sequence)
        elif c.truncate and rng.uniform() < c.truncate:
            frame = frame[: int(rng.integers(1, len(frame)))]
            self.counts["truncated"] += 1
            self.damaged_sequences.append(sequence)
        else:
            self.last_intact = self._intact_seen = True
            if c.duplicate and rng.uniform() < c.duplicate:
                self.counts["duplicated"] += 1
                self.outcomes["duplicates"] += 1
                frame += frame
        return out + frame
