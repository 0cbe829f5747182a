"""A Raspberry Shake's UDP datacast as the node's source (``[node] source = "shake-udp"``).

A Shake sends each channel in datagrams of ASCII text, the format rsudp reads
(``rsudp/raspberryshake.py``: ``getCHN``, ``getTIME``, ``getSTREAM``)::

    {'ENZ', 1582315130.292, 14168, 14927, ...}

the channel code, the UTC time of the first sample (s since 1970), then the samples in
counts: 25 per datagram at 100 Hz (50 at 50 Hz on the first RS1Ds). The rate is not in
the packet: like rsudp (``getTR``/``getSR``), the node measures it from the spacing of
a channel's packets (samples per packet over their time step, to the whole Hz), and
takes a rate once three successive packets agree, so a lost or reordered packet does
not fool it and a real change of rate is seen.

Channels: the RS4D's accelerometer is ``ENE``, ``ENN``, ``ENZ``; ``EHZ``/``SHZ`` (and
``EHE``/``EHN`` of an RS3D) are geophones, velocity, which an acceleration model cannot
take: they are refused in the config in one line and, if a Shake sends them anyway,
counted and dropped (logged once). Their counts become m/s^2 with the Shake's published
accelerometer sensitivity (sensor ``rs4d-2g``, :mod:`edge_runtime.sensors`).

Packets of the three channels are put together into frames by
:class:`~edge_runtime.alignment.ChannelAligner` (reordering, duplicates, gaps,
restarts). A datagram that is not a Shake packet is counted (``packets_bad``), logged
(rate-limited) and dropped.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import time

from .alignment import ChannelAligner, component_of_channel, is_accelerometer
from .batch import Batch
from .logs import LimitedLog

log = logging.getLogger(__name__)

#: Largest datagram read; a Shake's are about 200 bytes.
MAX_DATAGRAM_BYTES = 4096
#: Datagrams read in one turn at most (the rest wait for the next turn).
MAX_PER_READ = 512
#: Successive packets whose spacing must agree on a rate before it is taken.
RATE_AGREEMENT = 3

_PACKET = re.compile(r"\{\s*'([A-Za-z0-9]{3})'\s*,\s*([0-9]+(?:\.[0-9]*)?)\s*((?:,\s*-?[0-9]+\s*)+)\}\s*")


def parse_packet(data: bytes) -> tuple[str, int, list[int]]:
    """A Shake datagram's channel, first-sample time (UTC us since 1970) and counts.

    Raises
    ------
    ValueError
        ``data`` is not a Shake packet (the message says how).
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        raise ValueError(f"{len(data)} bytes, more than a Shake packet")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII text") from None
    match = _PACKET.fullmatch(text)
    if match is None:
        raise ValueError(f"not {{'CHN', time, counts...}}: {text[:40]!r}")
    channel, seconds, rest = match.groups()
    counts = [int(v) for v in rest.split(",")[1:]]
    if any(abs(v) >= 2**31 for v in counts):
        raise ValueError("counts beyond 32 bits")
    return channel.upper(), int(round(float(seconds) * 1e6)), counts


class RateMeter:
    """A channel's sampling rate from its packets' spacing (rsudp's way), Hz.

    ``update`` returns the channel's rate once :data:`RATE_AGREEMENT` successive
    spacings agree on it (``None`` before); a packet that is not the next in time (late,
    repeated) says nothing.
    """

    def __init__(self):
        self.rate_hz: float | None = None
        self._last: tuple[int, int] | None = None  # (t0_us, n) of the latest packet in time
        self._candidate: float | None = None
        self._agree = 0

    def update(self, t0_us: int, n: int) -> float | None:
        last = self._last
        if last is not None and t0_us <= last[0]:
            return self.rate_hz
        self._last = (t0_us, n)
        if last is None:
            return self.rate_hz
        estimate = last[1] * 1e6 / (t0_us - last[0])
        rate = float(round(estimate))
        if rate < 1 or abs(estimate - rate) > 0.006 * rate:  # stamps carry ms: 1 ms in 250
            self._agree = 0  # a lost packet between: the spacing is two packets long
            return self.rate_hz
        self._agree = self._agree + 1 if rate == self._candidate else 1
        self._candidate = rate
        if self._agree >= RATE_AGREEMENT:
            self.rate_hz = rate
        return self.rate_hz


def check_channels(channels) -> list[str]:
    """The Shake channels of ``[shake_udp] channels`` if the acceleration model can take them.

    Raises
    ------
    ValueError
        A velocity (or other non-accelerometer) channel, or orientations that repeat
        (one line naming them).
    """
    channels = [str(c).upper() for c in channels]
    for channel in channels:
        if not is_accelerometer(channel):
            raise ValueError(f"{channel} is not an accelerometer channel (a Shake's EH?/SH? are geophones: "
                             "velocity); the model takes acceleration: use the RS4D's ENE, ENN, ENZ")
    components = [component_of_channel(c) for c in channels]
    if None in components or len(set(components)) != len(components):
        raise ValueError(f"{channels}: one channel per component (E, N, Z), in the model's order")
    return channels


class ShakeUDP:
    """The node's source of a Raspberry Shake datacast (see the module notes).

    Parameters
    ----------
    config : NodeConfig
        ``shake_listen`` (host:port), ``shake_channels`` (in the model's component order),
        ``shake_reorder_s``.
    n_channels : int
        Components the model expects.
    read_timeout_s : float
        Longest a read blocks, s.
    faults : LimitedLog
        The node's rate limiter.
    """

    def __init__(self, config, n_channels: int, read_timeout_s: float, faults: LimitedLog):
        self.channels = check_channels(config.shake_channels)
        if len(self.channels) != n_channels:
            raise ValueError(f"[shake_udp] channels = {self.channels}: the model takes {n_channels} "
                             "components")
        self.components = {ch: component_of_channel(ch) for ch in self.channels}
        self.read_timeout_s = read_timeout_s
        self.aligner = ChannelAligner(list(self.components.values()), reorder_s=config.shake_reorder_s,
                                      version="shake-udp")
        self.meters = {ch: RateMeter() for ch in self.channels}
        self.waiting: dict[str, list] = {ch: [] for ch in self.channels}  # packets before a rate is known
        self.counts = {"packets_in": 0, "packets_bad": 0, "packets_velocity": 0, "packets_other_channel": 0}
        self._log = LimitedLog(log)
        host, _, port = config.shake_listen.rpartition(":")
        host, port = host.strip("[]"), int(port)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            # A turn of the loop that takes long (the first window builds its filter) must not
            # cost datagrams: 4 MB hold minutes of a Shake (the kernel caps it at rmem_max).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.bind((host, port))
        except OSError as exc:
            raise ValueError(f"shake_udp: cannot listen on {config.shake_listen}: "
                             f"{exc.strerror or exc}") from None
        self.sock.setblocking(False)
        bound = self.sock.getsockname()
        self.where = f"udp://{bound[0]}:{bound[1]}"
        log.info("shake-udp: listening on %s:%d for %s", bound[0], bound[1], ", ".join(self.channels))

    def read(self):
        """Datagrams that came within the read timeout, as frames (a
        :class:`~edge_runtime.sources.Batch`)."""

        ready, _, _ = select.select([self.sock], [], [], self.read_timeout_s)
        now_s = time.monotonic()
        frames, heard = [], False
        for _ in range(MAX_PER_READ if ready else 0):
            try:
                data = self.sock.recv(MAX_DATAGRAM_BYTES + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP errors surfaced on the socket: not a reason to stop
                self._log(logging.WARNING, "socket", "shake-udp: %s", exc)
                break
            heard = True
            frames += self._packet(data, now_s)
        return Batch(frames + self.aligner.poll(now_s), heard)

    def _packet(self, data: bytes, now_s: float) -> list:
        self.counts["packets_in"] += 1
        try:
            channel, t0_us, counts = parse_packet(data)
        except ValueError as exc:
            self.counts["packets_bad"] += 1
            self._log(logging.WARNING, "bad", "shake-udp: a datagram that is not a Shake packet (%s); "
                      "dropped", exc)
            return []
        if channel not in self.components:
            return self._other_channel(channel)
        rate_hz = self.meters[channel].update(t0_us, len(counts))
        waiting = self.waiting[channel]
        if rate_hz is None:
            waiting.append((t0_us, counts))
            del waiting[:-16]
            return []
        out = []
        for t, c in waiting:
            out += self.aligner.push(self.components[channel], t, rate_hz, c, now_s)
        waiting.clear()
        return out + self.aligner.push(self.components[channel], t0_us, rate_hz, counts, now_s)

    def _other_channel(self, channel: str) -> list:
        if channel[1] in "HL":  # EHZ, SHZ, EHE...: a geophone (the Boom's HDF is pressure)
            self.counts["packets_velocity"] += 1
            self._log(logging.WARNING, f"velocity-{channel}", "shake-udp: %s is a geophone (velocity) "
                      "channel; the model takes acceleration: its packets are dropped", channel)
        else:
            self.counts["packets_other_channel"] += 1
            self._log(logging.WARNING, f"channel-{channel}", "shake-udp: channel %s is not in [shake_udp] "
                      "channels %s; its packets are dropped", channel, ", ".join(self.channels))
        return []

    def counters(self) -> dict:
        return {"shake_udp": {"listen": self.where, "rate_hz": self.aligner.rate_hz, **self.counts,
                              **self.aligner.counts}}

    def close(self) -> None:
        self.sock.close()
