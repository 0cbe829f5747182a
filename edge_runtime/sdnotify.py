"""systemd's ``sd_notify`` protocol with the standard library: readiness and watchdog.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (an ``AF_UNIX`` datagram socket,
a path or an abstract name starting with ``@``); the service sends ``READY=1`` once it
works, ``WATCHDOG=1`` more often than ``WATCHDOG_USEC`` (so a hung loop is killed and
restarted), ``STATUS=...`` for ``systemctl status`` and ``STOPPING=1`` on its way out.
Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Messages to the service manager.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``
        from (``os.environ``).
    clock : callable
        Monotonic clock in s.
    """

    def __init__(self, environ=None, clock=time.monotonic):
        env = os.environ if environ is None else environ
        self.clock = clock
        address = env.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address
        self.watchdog_s = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and (not pid or pid == str(os.getpid())):
            try:
                self.watchdog_s = int(usec) / 1e6 if int(usec) > 0 else None
            except ValueError:
                self.watchdog_s = None
        self._next_ping = 0.0
        self._sock = None
        self.sent = 0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False if there is no manager or it failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            self.errors += 1  # the manager went away; the service itself carries on
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        self._next_ping = self.clock() + self.ping_every_s() if self.watchdog_s else 0.0
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def ping_every_s(self) -> float:
        """Watchdog keep-alive period: half of ``WATCHDOG_USEC``, as sd_watchdog_enabled advises."""
        return 0.5 * self.watchdog_s if self.watchdog_s else float("inf")

    def watchdog(self) -> bool:
        """Send ``WATCHDOG=1`` if it is due; call once per turn of the main loop."""
        if not self.watchdog_s:
            return False
        now = self.clock()
        if now < self._next_ping:
            return False
        self._next_ping = now + self.ping_every_s()
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
