"""Fault injection for the serial replay: what a real line does to frames.

Each fault is drawn per frame from a seeded generator and logged, so a test can say
exactly what the decoder should have dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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
    """

    corrupt: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    garbage: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class FaultInjector:
    """Apply :class:`FaultConfig` to a stream of encoded frames."""

    def __init__(self, config: FaultConfig | None = None):
        self.config = config or FaultConfig()
        self.rng = np.random.default_rng(self.config.seed)
        self.counts = {"frames": 0, "corrupted": 0, "dropped": 0, "truncated": 0, "garbage": 0}
        self.damaged_sequences: list[int] = []

    def apply(self, sequence: int, frame: bytes) -> bytes:
        """The bytes to send for one frame (possibly empty)."""
        c, rng = self.config, self.rng
        self.counts["frames"] += 1
        out = b""
        if c.garbage and rng.uniform() < c.garbage:
            junk = bytearray(rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes())
            if rng.uniform() < 0.5 and len(junk) >= 2:  # a false sync makes the decoder work
                i = int(rng.integers(0, len(junk) - 1))
                junk[i:i + 2] = b"\xa5\x5a"
            out += bytes(junk)
            self.counts["garbage"] += 1
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
        return out + frame
