"""The node's SeedLink server: its raw counts, live, to SeisComP, ObsPy or slinktool.

:class:`SeedLinkServer` serves the records of a :class:`~edge_runtime.network.ring.PacketRing`
over SeedLink 3.1 (:mod:`~edge_runtime.network.slproto`) on one thread of its own,
standard library only (``selectors``). Every socket is non-blocking and every client
has a bounded output buffer, so a slow or dead client never delays anything else: one
that reads nothing for ``client_timeout_s`` while data waits for it (or sends no
command that long during its handshake) is dropped with one log line, and one that
falls behind the ring loses the overwritten packets (counted, logged once) and goes on
from the oldest held.

:class:`SeedLinkOutput` is the node's output consumer (``[seedlink] listen``): it packs
each accepted frame's counts into miniSEED records on the output's worker thread
(:class:`~edge_runtime.sink.Queued`) and appends them to the ring.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time

from ..logs import LimitedLog
from ..sink import Consumer
from .miniseed import RecordInfo, RecordPacker, record_info, text_records
from .ring import PacketRing
from .slproto import Session, StationInfo, StationRequest, info_xml

log = logging.getLogger(__name__)

SOFTWARE = "SeedLink v3.1 (SeismicTorch node)"
#: Bytes waiting for one client at most before the server stops filling its buffer.
CLIENT_BUFFER_BYTES = 64 * 1024
#: Kernel send buffer asked for each client socket, bytes.
SOCKET_SEND_BUFFER_BYTES = 64 * 1024


def parse_listen(listen: str) -> tuple[str, int]:
    """``("127.0.0.1", 18000)`` from ``"127.0.0.1:18000"`` (``"[::1]:18000"`` for IPv6)."""
    host, sep, port = str(listen).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen = {listen!r}: expected host:port, like 127.0.0.1:18000")
    return host, int(port)


class _Client:
    """One connection: its protocol session, output buffer and place in the ring."""

    def __init__(self, sock: socket.socket, peer: str, session: Session, now_s: float):
        self.sock = sock
        self.peer = peer
        self.session = session
        self.out = bytearray()
        self.streams: list[_Stream] = []
        self.cursor = 0
        self.last_progress_s = now_s
        self.finishing = False  # END sent: close once the buffer is out
        self.warned_behind = False
        self.writing = False


class _Stream:
    """A station request of a streaming client, with where it starts and what it finished."""

    def __init__(self, request: StationRequest, first: int, channels: set):
        self.request = request
        self.first = first
        self.channels = channels  # (net, sta, loc, cha) this request selects
        self.done: set = set()
        self.finished = False

    def take(self, packet) -> bool:
        """Whether ``packet`` goes to the client; marks window ends."""
        info, request = packet.info, self.request
        if packet.number < self.first or self.finished or not request.wants(info):
            return False
        if request.end_ns is not None and info.start_ns > request.end_ns:
            self.done.add((info.network, info.station, info.location, info.channel))
            self.finished = bool(self.channels) and self.channels <= self.done
            return False
        return request.begin_ns is None or info.end_ns >= request.begin_ns


class SeedLinkServer:
    """A SeedLink 3.1 server of one ring, on a thread of its own.

    Parameters
    ----------
    ring : PacketRing
        The records served; its ``on_append`` is set to wake this server.
    stations : list of StationInfo
        Stations served (``INFO STATIONS``, ``STATION`` checks).
    listen : str
        ``host:port``; port 0 picks a free one (:attr:`address` tells which).
    max_clients : int
        Connections at once; one more is closed at once (logged, counted).
    client_timeout_s : float
        A client that reads nothing this long while data waits for it, or sends no
        command this long before its stream starts, is dropped, s.
    organization : str
        Second line of the ``HELLO`` reply.
    """

    def __init__(self, ring: PacketRing, stations: list, listen: str = "127.0.0.1:18000",
                 max_clients: int = 64, client_timeout_s: float = 30.0, organization: str = "SeismicTorch"):
        self.ring = ring
        self.stations = list(stations)
        self.max_clients = max_clients
        self.client_timeout_s = client_timeout_s
        self.hello = (f"{SOFTWARE} :: SLPROTO:3.1 CAP EXTREPLY NSWILDCARD BATCH", organization)
        self.organization = organization
        self.started_ns = time.time_ns()
        self.counts = {"clients_total": 0, "clients_refused": 0, "clients_dropped": 0,
                       "packets_sent": 0, "packets_overwritten": 0, "bad_commands": 0}
        self._clients: dict[int, _Client] = {}
        self.faults = LimitedLog(log)  # a flood of refusals or drops must not fill the SD card
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._listener = self._bind(listen)
        self.address = self._listener.getsockname()[:2]
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        ring.on_append = self.wake
        self._thread = threading.Thread(target=self._serve, name="seedlink", daemon=True)
        self._thread.start()
        log.info("seedlink: serving %s on %s:%d", ", ".join(f"{s.network}.{s.station}" for s in stations),
                 *self.address)

    @staticmethod
    def _bind(listen: str) -> socket.socket:
        host, port = parse_listen(listen)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
        except OSError as exc:
            raise ValueError(f"seedlink: cannot listen on {listen}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        return sock

    @property
    def n_clients(self) -> int:
        """Connections open now."""
        return len(self._clients)

    @property
    def n_streaming(self) -> int:
        """Connections whose handshake is over (packets flow to them)."""
        return sum(c.session.streaming for c in list(self._clients.values()))

    def wake(self) -> None:
        """New records in the ring (called from any thread)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the pipe is full (a wake-up is pending anyway) or closed
            pass

    def close(self) -> None:
        """Stop serving: every connection closed, the port released."""
        self._running = False
        self.wake()
        self._thread.join(5.0)
        for client in list(self._clients.values()):
            self._drop(client, None)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        self._selector.close()

    # ------------------------------------------------------------------ the loop
    def _serve(self) -> None:
        while self._running:
            try:
                self._turn()
            except Exception:  # a bug here must not end the server silently
                self.faults(logging.ERROR, "seedlink-loop", "seedlink: server loop failed; going on",
                            exc_info=True)
                time.sleep(0.1)

    def _turn(self) -> None:
        # New records and connections wake the selector; the timeout only paces the checks
        # of silent clients (client_timeout_s, tens of seconds).
        for key, mask in self._selector.select(timeout=2.0):
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                self._drain_wake()
            elif key.data.sock.fileno() >= 0:  # not dropped earlier in this turn
                client = key.data
                if mask & selectors.EVENT_READ:
                    self._read(client)
                if mask & selectors.EVENT_WRITE and client.sock.fileno() >= 0:
                    self._send(client)
        now_s = time.monotonic()
        for client in list(self._clients.values()):
            if client.session.streaming and not client.finishing:
                self._fill(client)
            if client.out or client.session.closing:
                self._send(client)
            self._check_timeout(client, now_s)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, addr = self._listener.accept()
            except OSError:  # nothing more waiting (BlockingIOError) or a connection reset meanwhile
                return
            peer = f"{addr[0]}:{addr[1]}"
            if len(self._clients) >= self.max_clients:
                self.counts["clients_refused"] += 1
                self.faults(logging.WARNING, "seedlink-refused", "seedlink: refused %s: %d clients already",
                            peer, len(self._clients))
                sock.close()
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER_BYTES)
            except OSError:
                pass
            session = Session(self.hello, self.stations, self._info_packets)
            client = _Client(sock, peer, session, time.monotonic())
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, client)
            self.counts["clients_total"] += 1

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client, None)
            return
        was_streaming, errors = client.session.streaming, client.session.errors
        client.out += client.session.feed(data)
        self.counts["bad_commands"] += client.session.errors - errors
        if not client.session.streaming:
            client.last_progress_s = time.monotonic()
        elif not was_streaming:
            self._start_streams(client)
        if len(client.out) > 4 * CLIENT_BUFFER_BYTES:
            self._drop(client, f"sent commands without reading the replies ({len(client.out)} bytes waiting)")

    def _send(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.out) if client.out else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(client, None)
            return
        if sent:
            del client.out[:sent]
            client.last_progress_s = time.monotonic()
        if not client.out and (client.finishing or client.session.closing):
            self._drop(client, None)
            return
        self._want_write(client, bool(client.out))

    def _want_write(self, client: _Client, want: bool) -> None:
        if want != client.writing:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self._selector.modify(client.sock, events, client)
            client.writing = want

    def _check_timeout(self, client: _Client, now_s: float) -> None:
        if client.sock.fileno() < 0 or now_s - client.last_progress_s <= self.client_timeout_s:
            return
        if client.out:
            self._drop(client, f"read nothing for {self.client_timeout_s:g} s with {len(client.out)} bytes "
                               "waiting")
        elif not client.session.streaming:
            self._drop(client, f"sent no command for {self.client_timeout_s:g} s")
        else:
            client.last_progress_s = now_s  # streaming, all read: quiet because no data came

    def _drop(self, client: _Client, why: str | None) -> None:
        if why is not None:
            self.counts["clients_dropped"] += 1
            self.faults(logging.WARNING, "seedlink-dropped", "seedlink: dropped client %s: %s", client.peer,
                        why)
        self._clients.pop(client.sock.fileno(), None)
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    # ------------------------------------------------------------------ streams
    def _start_streams(self, client: _Client) -> None:
        """The handshake is over: where each request starts in the ring."""
        for request in client.session.requests:
            channels = {(s.network, s.station, loc, cha) for s in self.stations
                        if request.names(s.network, s.station) for loc, cha in s.streams
                        if request.wants(_stream_info(s, loc, cha))}
            client.streams.append(_Stream(request, self._first(request), channels))
        client.cursor = min(s.first for s in client.streams)

    def _first(self, request: StationRequest) -> int:
        if request.sequence is not None:
            number = self.ring.number_of(request.sequence)
            if number is not None:
                return number
        if request.begin_ns is not None:
            return self.ring.first_ending_at_or_after(request.begin_ns)
        return self.ring.next_number

    def _fill(self, client: _Client) -> None:
        """Packets for ``client`` into its buffer, up to :data:`CLIENT_BUFFER_BYTES`."""
        while len(client.out) < CLIENT_BUFFER_BYTES:
            packets = self.ring.since(client.cursor, 64)
            if not packets:
                break
            if packets[0].number > client.cursor:
                self._overwritten(client, packets[0].number - client.cursor)
            for packet in packets:
                client.cursor = packet.number + 1
                if any(stream.take(packet) for stream in client.streams):
                    client.out += packet.wire
                    self.counts["packets_sent"] += 1
                    if len(client.out) >= CLIENT_BUFFER_BYTES:
                        break
        for stream in client.streams:
            if stream.request.mode == "FETCH" and client.cursor >= self.ring.next_number:
                stream.finished = True
        if all(stream.finished for stream in client.streams):
            client.out += b"END"
            client.finishing = True

    def _overwritten(self, client: _Client, n: int) -> None:
        self.counts["packets_overwritten"] += n
        if not client.warned_behind:
            client.warned_behind = True
            self.faults(logging.WARNING, "seedlink-behind", "seedlink: client %s fell behind the ring: %d "
                        "packets overwritten before it read them (once per client)", client.peer, n)

    def _info_packets(self, level: str) -> bytes:
        packets = [] if level in ("ID", "CAPABILITIES") else self.ring.snapshot()  # keep-alives: ID
        xml = info_xml(level, SOFTWARE, self.organization, self.started_ns, self.stations, packets)
        records = text_records(xml, "SL", "INFO", "", "INF", time.time_ns())
        return b"".join((b"SLINFO *" if i < len(records) - 1 else b"SLINFO  ") + r
                        for i, r in enumerate(records))


def _stream_info(station: StationInfo, location: str, channel: str) -> RecordInfo:
    return RecordInfo(station.network, station.station, location, channel, 0, 0, 0)


class SeedLinkOutput(Consumer):
    """The node's SeedLink output: frames' counts -> records -> ring -> server.

    Run it behind :class:`~edge_runtime.sink.Queued`: packing happens on that worker.

    Parameters
    ----------
    packer : RecordPacker
    server : SeedLinkServer
    flush_after_s : float
        Records held partly filled are packed and served once no frame has come for
        this long (the board stopped or was unplugged), s.
    """

    name = "seedlink"
    joins_frames = True  # the packer keeps one stretch per gap: where frames were cut is lost

    def __init__(self, packer: RecordPacker, server: SeedLinkServer, flush_after_s: float = 5.0):
        self.packer = packer
        self.server = server
        self.flush_after_s = flush_after_s
        self._last_push_s = None

    def on_counts(self, t0_us: int, rate_hz: float, counts) -> None:
        self._serve(self.packer.push(t0_us, rate_hz, counts))
        self._last_push_s = time.monotonic()

    def tick(self, now_s: float) -> None:
        if self._last_push_s is not None and now_s - self._last_push_s > self.flush_after_s:
            self._serve(self.packer.flush())
            self._last_push_s = None

    def _serve(self, records: list[bytes]) -> None:
        if records:
            self.server.ring.extend([(record_info(record), record) for record in records])

    def counters(self) -> dict:
        host, port = self.server.address
        return {"seedlink": {"listen": f"{host}:{port}", "clients": self.server.n_clients,
                             "clients_streaming": self.server.n_streaming,
                             "records": self.packer.records, **self.server.counts}}

    def close(self) -> None:
        self._serve(self.packer.flush())
        self.server.close()


def build_seedlink_output(config, components: tuple) -> SeedLinkOutput:
    """The SeedLink output of ``config`` (``[seedlink]`` and the station identity of ``[node]``).

    Raises
    ------
    ValueError
        Station codes SEED cannot carry, channels not matching the model's components,
        the extra not installed, or a port that cannot be opened (one line).
    """
    channels = list(config.channels)
    if len(channels) != len(components):
        raise ValueError(f"[node] channels = {channels}: {len(channels)} codes for the model's "
                         f"{len(components)} components {list(components)}")
    packer = RecordPacker(config.network, config.station, config.location, channels)
    station = StationInfo(config.network, config.station, f"SeismicTorch node {config.station}",
                          tuple((config.location, c) for c in channels))
    ring = PacketRing(config.seedlink_ring_records)
    server = SeedLinkServer(ring, [station], config.seedlink_listen, config.seedlink_max_clients,
                            config.seedlink_client_timeout_s)
    return SeedLinkOutput(packer, server)
