"""Serial transport: open the port, read bytes in chunks, survive the port going away.

Two things a node left alone for months needs from its serial port:

* **Few wake-ups.** A board at 100 Hz x 3 sends about ten small frames a second. Each
  :meth:`SerialSource.read` blocks for up to ``read_timeout_s`` and returns everything
  that arrived meanwhile (pyserial's select loop), so the node's loop turns a few times
  a second, not a few times per frame.
* **The same device after a reconnect.** When a port vanishes, Linux may give its
  name to something else: ``/dev/ttyUSB0`` to the next adapter plugged in, ``/dev/pts/3``
  to another program's pseudo-terminal. The node remembers the device it first opened
  (device number, inode, creation time) and refuses a path that now leads to another
  one. A ``/dev/serial/by-id/...`` path names the board itself (vendor, product, serial
  number), so a replugged board is accepted there and nowhere else: use one
  (docs/node.md). The board-id lock of protocol v2 frames is the other half.

A port path that is a regular file or a folder is a mistake in the configuration and is
refused when the source is made (:func:`port_problem`); a path that does not exist (yet)
is a board not plugged in: it is waited for, said once, and opened when it appears.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import time

from .logs import LimitedLog

log = logging.getLogger(__name__)

BY_ID = "/dev/serial/by-id/"


def port_problem(path: str) -> str | None:
    """Why ``path`` can never be a serial port as it stands (None if it may be one).

    A regular file or a folder: a typo or a wrong setting, not a board that will appear
    (a path that does not exist may be one). A dangling link counts as not there.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return f"{path} is a regular file, not a serial device"
    if stat.S_ISDIR(mode):
        return f"{path} is a folder, not a serial device"
    return None


def device_identity(st: os.stat_result) -> tuple:
    """What tells one device node from another behind the same path: (rdev, inode, ctime)."""
    return (st.st_rdev, st.st_ino, st.st_ctime_ns)


class SerialSource:
    """Chunks of bytes from a serial port, reopening it when it vanishes.

    Attributes
    ----------
    BURST_BYTES : int
        Bytes a gathering wait aims to stay under: the line discipline holds 4 KiB (the
        wait halves above half of it, grows below an eighth).
    MAX_READ_BYTES : int
        Most bytes one :meth:`read` takes: what the port has waiting (``in_waiting``, at
        least 1 byte) up to this, so a backlog after a reconnect is decoded in large
        batches while the loop still turns between them (1,770 10 x 3 frames).

    Parameters
    ----------
    port : str
        Device path (``/dev/serial/by-id/...``, ``/dev/ttyUSB0``, a pty slave, ...).
    baudrate : int
        Line rate in bit/s (ignored by ptys and USB CDC devices).
    read_timeout_s : float
        Longest a read blocks; everything that arrives meanwhile is returned at once.
    retry_s : float
        Initial wait before reopening a lost port; doubles up to ``max_retry_s``.
    faults : LimitedLog, optional
        The node's rate limiter (one is made if not given).
    trust_name : bool
        The path names the board itself (a udev ``SYMLINK+=`` rule keyed on its serial
        number): accept a new device behind it after a reconnect. Implied for
        ``/dev/serial/by-id/`` paths.

    Raises
    ------
    ValueError
        ``port`` is a regular file or a folder (:func:`port_problem`).
    """

    BURST_BYTES = 4096
    MAX_READ_BYTES = 256 * 1024

    def __init__(self, port: str, baudrate: int = 921600, read_timeout_s: float = 0.1,
                 retry_s: float = 0.5, max_retry_s: float = 10.0, faults: LimitedLog | None = None,
                 trust_name: bool = False):
        problem = port_problem(port)
        if problem:
            raise ValueError(f"port {problem}")
        self.port = port
        self.baudrate = baudrate
        self.read_timeout_s = read_timeout_s
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.reconnects = 0
        self.refused = 0  # reopen attempts that found another device behind the path
        self.waits = 0  # open attempts that found no device at the path (a board not plugged in)
        self._waiting = False  # the current absence was logged
        self.identity: tuple | None = None
        self.trust_name = trust_name or os.path.abspath(port).startswith(BY_ID)
        self.faults = faults or LimitedLog(log)
        self._serial = None
        self._gather_s = read_timeout_s
        self._wait_s = retry_s
        self._next_try = 0.0

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def _backoff(self) -> None:
        self._next_try = time.monotonic() + self._wait_s
        self._wait_s = min(2 * self._wait_s, self.max_retry_s)

    def _open(self) -> bool:
        import serial

        if time.monotonic() < self._next_try:
            time.sleep(max(0.0, min(self.read_timeout_s, self._next_try - time.monotonic())))
            return False
        if not os.path.exists(self.port):
            self._absent()
            return False
        try:
            port = serial.Serial(self.port, self.baudrate, timeout=self.read_timeout_s, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            self.faults(logging.ERROR, "port", "serial port %s: cannot open (%s); retrying", self.port,
                        port_problem(self.port) or exc)
            self._backoff()
            return False
        try:
            identity = device_identity(os.fstat(port.fileno()))
        except OSError:
            identity = None
        if self.identity is not None and identity != self.identity and not self.trust_name:
            # The path now leads to another device node: not our board's. Never read it.
            port.close()
            self.refused += 1
            self.faults(logging.ERROR, "port-replaced",
                        "serial port %s now leads to another device (device %s, was %s); not reading "
                        "it. Use a /dev/serial/by-id/ path, or restart the node to accept the new device",
                        self.port, _dev(identity), _dev(self.identity))
            self._backoff()
            return False
        self.identity = identity
        self._serial = port
        self._wait_s = self.retry_s
        self._waiting = False
        if self.faults.failing("port") or self.reconnects:
            self.faults.recovered("port", "serial port %s open", self.port)
        else:
            log.info("serial port %s open", self.port)
        return True

    def _absent(self) -> None:
        """No device at the path: a board not plugged in (yet). Said once per absence, counted
        in ``waits``; the retries go on with the back-off."""
        self.waits += 1
        if not self._waiting:
            self._waiting = True
            self.faults(logging.WARNING, "port", "serial port %s: cannot open (not there); retrying until "
                        "it appears", self.port)
        self._backoff()

    def read(self) -> bytes:
        """Bytes of the next burst: up to ``read_timeout_s`` for the first, then ``read_timeout_s`` more.

        ``b""`` if nothing came or the port is down (it is then reopened on a later call).
        """
        import serial

        if self._serial is None and not self._open():
            return b""
        port = self._serial
        try:
            # Wait for the first byte, then let the rest of the burst arrive and take it
            # all in one read: two wake-ups per period however many frames came, where
            # a plain timed read wakes for every frame the board sends.
            ready, _, _ = select.select([port.fileno()], [], [], self.read_timeout_s)
            if not ready:
                return b""
            time.sleep(self._gather_s)
            data = port.read(read_size(port.in_waiting, self.MAX_READ_BYTES))
        except (serial.SerialException, OSError, ValueError) as exc:
            self._lost(exc)
            return b""
        # Keep a burst well inside the kernel's tty buffers (4 KiB line discipline, 64 KiB
        # in all): a fast board shortens the wait, a slow one lengthens it again.
        if len(data) > self.BURST_BYTES // 2:
            self._gather_s = max(0.0, self._gather_s / 2)
        elif len(data) < self.BURST_BYTES // 8:
            self._gather_s = min(self.read_timeout_s, 2 * self._gather_s + 0.001)
        return data

    def _lost(self, exc) -> None:
        self.faults(logging.ERROR, "port", "serial port %s: lost (%s); reopening", self.port, exc)
        self.close()
        self.reconnects += 1
        self._backoff()

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # closing a dead port may raise anything; it is gone either way
                pass
            self._serial = None


def read_size(waiting: int, most: int) -> int:
    """Bytes to read when ``waiting`` are in the port's buffer: all of them, at least 1
    (blocks for the next byte), at most ``most``."""
    return max(1, min(waiting, most))


def _dev(identity) -> str:
    if identity is None:
        return "unknown"
    rdev = identity[0]
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(identity[2] / 1e9))
    ns = identity[2] % 10**9
    return f"{os.major(rdev)}:{os.minor(rdev)} inode {identity[1]} created {created}.{ns:09d}"
