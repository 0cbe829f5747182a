"""Pseudo-terminals a node reads as if a board were plugged in.

:func:`open_pty` opens a raw pair whose line speed tells when a reader (pyserial) has
configured it; :class:`PtyLink` puts the pty behind a private symlink so a board can be
unplugged and replugged without the node ever reopening a ``/dev/pts/N`` number that
Linux has given to another program.
"""

from __future__ import annotations

import os
import termios
import time
import tty
from dataclasses import dataclass
from pathlib import Path

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
