"""A bounded in-memory ring of sequenced miniSEED records (what a SeedLink server serves).

Every record appended gets the next packet number; the ring keeps the newest
``capacity`` of them. A client names a packet by its 24-bit SeedLink sequence number
(the packet number modulo 2**24, six hex digits on the wire), which is unique within
the ring as long as the ring holds fewer than 2**24 packets. Thread-safe: the node's
output worker appends while the server's thread reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .miniseed import RecordInfo

#: SeedLink 3 sequence numbers have six hex digits.
SEQUENCE_MODULUS = 1 << 24


@dataclass(frozen=True, slots=True)
class Packet:
    """One record in the ring.

    Attributes
    ----------
    number : int
        Packet number since the server started (its SeedLink sequence number is
        ``number % 2**24``).
    info : RecordInfo
        Codes and times of the record.
    wire : bytes
        What a client receives: ``b"SL"``, six hex digits, the 512-byte record.
    """

    number: int
    info: RecordInfo
    wire: bytes

    @property
    def sequence(self) -> int:
        return self.number % SEQUENCE_MODULUS


class PacketRing:
    """The newest ``capacity`` records, numbered.

    Parameters
    ----------
    capacity : int
        Records kept (512 bytes each: 8192 records are 4.3 MB).
    on_append : callable, optional
        Called (no arguments) after each append, outside the lock: the server's wake-up.
    """

    def __init__(self, capacity: int, on_append=None):
        if not 1 <= capacity < SEQUENCE_MODULUS:
            raise ValueError(f"ring capacity {capacity}: must be 1 to {SEQUENCE_MODULUS - 1} records")
        self.capacity = int(capacity)
        self.on_append = on_append
        self._slots: list[Packet | None] = [None] * self.capacity
        self._next = 0
        self._lock = threading.Lock()

    @property
    def next_number(self) -> int:
        """Number the next record appended will get."""
        return self._next

    @property
    def oldest_number(self) -> int:
        """Number of the oldest record still held (== :attr:`next_number` when empty)."""
        return max(0, self._next - self.capacity)

    def append(self, info: RecordInfo, record: bytes) -> Packet:
        """Add one record; the oldest drops out once the ring is full."""
        with self._lock:
            packet = Packet(self._next, info, b"SL%06X" % (self._next % SEQUENCE_MODULUS) + record)
            self._slots[self._next % self.capacity] = packet
            self._next += 1
        if self.on_append is not None:
            self.on_append()
        return packet

    def extend(self, records: list) -> None:
        """Add ``(info, record)`` pairs in order, with one call of ``on_append`` after them."""
        with self._lock:
            for info, record in records:
                self._slots[self._next % self.capacity] = Packet(
                    self._next, info, b"SL%06X" % (self._next % SEQUENCE_MODULUS) + record)
                self._next += 1
        if self.on_append is not None:
            self.on_append()

    def since(self, number: int, limit: int) -> list[Packet]:
        """Up to ``limit`` packets from packet ``number`` on (from the oldest if it is gone)."""
        with self._lock:
            first = max(number, self.oldest_number)
            last = min(self._next, first + limit)
            return [self._slots[n % self.capacity] for n in range(first, last)]

    def snapshot(self) -> list[Packet]:
        """Every packet held, oldest first."""
        return self.since(0, self.capacity)

    def number_of(self, sequence: int) -> int | None:
        """The packet number of SeedLink sequence number ``sequence`` if the ring holds it,
        or the next number if ``sequence`` is the one the next record will get; else None."""
        with self._lock:
            behind = (self._next - sequence) % SEQUENCE_MODULUS  # 0: the next record's
            number = self._next - behind
            return number if number >= self.oldest_number else None

    def first_ending_at_or_after(self, time_ns: int) -> int:
        """Number of the first packet whose last sample is at or after ``time_ns`` (UTC ns);
        :attr:`next_number` if none is."""
        for packet in self.snapshot():
            if packet.info.end_ns >= time_ns:
                return packet.number
        return self._next
