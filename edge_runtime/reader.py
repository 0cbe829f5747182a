"""Serial transport: open the port, read bytes, survive the port going away."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class SerialSource:
    """Chunks of bytes from a serial port, reopening it when it vanishes.

    Parameters
    ----------
    port : str
        Device path (``/dev/ttyUSB0``, ``/dev/ttyAMA0``, a pty slave, ...).
    baudrate : int
        Line rate in bit/s (ignored by ptys and USB CDC devices).
    read_timeout_s : float
        Longest a read blocks, so the caller's loop keeps turning when the line is quiet.
    retry_s : float
        Initial wait before reopening a lost port; doubles up to ``max_retry_s``.
    """

    def __init__(self, port: str, baudrate: int = 921600, read_timeout_s: float = 0.2,
                 retry_s: float = 0.5, max_retry_s: float = 10.0):
        self.port = port
        self.baudrate = baudrate
        self.read_timeout_s = read_timeout_s
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.reconnects = 0
        self._serial = None
        self._wait_s = retry_s
        self._next_try = 0.0

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def _open(self) -> bool:
        import serial

        if time.monotonic() < self._next_try:
            time.sleep(min(self.read_timeout_s, self._next_try - time.monotonic()))
            return False
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=self.read_timeout_s)
        except (serial.SerialException, OSError) as exc:
            log.error("serial port %s: cannot open (%s); retrying in %.1f s", self.port, exc, self._wait_s)
            self._next_try = time.monotonic() + self._wait_s
            self._wait_s = min(2 * self._wait_s, self.max_retry_s)
            return False
        log.info("serial port %s open", self.port)
        self._wait_s = self.retry_s
        return True

    def read(self) -> bytes:
        """Whatever arrived within the read timeout; ``b""`` when nothing did or the port is down."""
        import serial

        if self._serial is None and not self._open():
            return b""
        try:
            waiting = self._serial.in_waiting
            return self._serial.read(max(1, min(waiting, 65536)))
        except (serial.SerialException, OSError) as exc:
            log.error("serial port %s: lost (%s); reopening", self.port, exc)
            self.close()
            self.reconnects += 1
            self._next_try = time.monotonic() + self._wait_s
            return b""

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # closing a dead port may raise anything; it is gone either way
                pass
            self._serial = None
