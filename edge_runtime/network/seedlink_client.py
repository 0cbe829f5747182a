"""The node as a SeedLink client of any server (``[node] source = "seedlink"``).

Every Raspberry Shake serves SeedLink on port 18000; observatories and schools stream
into SeisComP or ringserver, which serve it too. The node asks one station's streams
(``[seedlink_client] streams = ["NET_STA:SELECTORS"]``, slinktool's notation) in
SeedLink 3.1's multi-station mode (``HELLO``, ``STATION``, ``SELECT``, ``DATA``,
``END``) and reads 512-byte miniSEED records, decoded by libmseed (``pymseed``, the
network extra), never by hand.

:class:`SeedLinkReader` owns the connection on a thread of its own, so a slow or dead
server never holds the node's loop: it hands the decoded records over a bounded queue.
It resumes after every reconnect from the packet after the last one received
(``DATA seq time``: the sequence number, and the time for a server that no longer holds
it, e.g. one that restarted); with ``[seedlink_client] state`` the last record the node
took is kept on disk, so a restarted node resumes too. What is sent twice is dropped by
time, by the :class:`~edge_runtime.alignment.ChannelAligner` that makes the node's
frames of the records: no sample twice, and a gap only where the server had no data.

Bad input, one line each (rate-limited) and the node goes on: a server that cannot be
reached or refuses a command (retried, waits doubling to ``reconnect_max_s``); one that
sends garbage (bytes that are not a SeedLink packet: the connection is made again; a
record libmseed cannot read: dropped); one that stalls (nothing for ``timeout_s``: the
connection is made again); a record of another channel for a component already taken,
or of a channel that is not an accelerometer (dropped, counted).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import re
import socket
import threading
import time
from pathlib import Path

from ..alignment import ChannelAligner, component_of_channel, is_accelerometer
from ..batch import Batch
from ..logs import LimitedLog
from .slproto import parse_selector

log = logging.getLogger(__name__)

#: A SeedLink 3 data packet: ``SL``, six hex digits of sequence number, a 512-byte record.
HEADER_BYTES = 8
RECORD_BYTES = 512
#: Records waiting for the node's loop at most; beyond, the reader waits (TCP holds the rest).
QUEUE_RECORDS = 4096
_HEX = re.compile(rb"SL[0-9A-Fa-f]{6}")


def parse_streams(streams) -> tuple[str, str, list[str]]:
    """``(network, station, selectors)`` of ``[seedlink_client] streams``.

    Each entry is ``NET_STA`` or ``NET_STA:SEL [SEL ...]`` (selectors ``[LL]CCC[.T]``, as
    SeedLink's ``SELECT``); every entry names the same station (the node is one station).

    Raises
    ------
    ValueError
        A malformed entry, several stations, or a selector of non-accelerometer channels.
    """
    stations, selectors = set(), []
    for entry in streams:
        name, _, sels = str(entry).partition(":")
        net, sep, sta = name.partition("_")
        codes_ok = re.fullmatch(r"[A-Za-z0-9]{1,2}", net) and re.fullmatch(r"[A-Za-z0-9]{1,5}", sta)
        if not sep or not codes_ok:
            raise ValueError(f"{entry!r}: expected NET_STA[:SELECTORS], like \"AM_R1234:EN?\"")
        stations.add((net.upper(), sta.upper()))
        for sel in sels.replace(",", " ").split():
            selector = parse_selector(sel)
            if selector.channel and selector.channel[1] not in "N?" and not selector.negate:
                raise ValueError(f"{sel}: not accelerometer channels (instrument code "
                                 f"{selector.channel[1]}); the model takes acceleration (?N?: HN?, EN?)")
            selectors.append(sel.upper())
    if len(stations) != 1:
        raise ValueError(f"{list(streams)}: one station (NET_STA) for the node, not {len(stations)}")
    (net, sta), = stations
    return net, sta, selectors


def _seedlink_time(time_ns: int) -> str:
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=time_ns // 1000)
    return moment.strftime("%Y,%m,%d,%H,%M,%S")


class SeedLinkReader(threading.Thread):
    """One station's records from a SeedLink server, on a thread, over a queue.

    Parameters
    ----------
    server : str
        ``host:port``.
    network, station : str
        The station asked for.
    selectors : list of str
        ``SELECT`` patterns (none: every stream of the station).
    timeout_s : float
        Connect and handshake timeout, and the longest silence of a running stream, s.
    reconnect_max_s : float
        Longest wait between attempts, s.
    resume : tuple of int, optional
        ``(sequence, end_ns)`` of the last record taken before: the stream resumes after it.
    """

    def __init__(self, server: str, network: str, station: str, selectors: list, timeout_s: float = 30.0,
                 reconnect_max_s: float = 30.0, resume: tuple | None = None):
        super().__init__(name="seedlink-client", daemon=True)
        host, _, port = server.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.server, self.network, self.station, self.selectors = server, network, station, selectors
        self.timeout_s, self.reconnect_max_s = timeout_s, reconnect_max_s
        self.records: queue.Queue = queue.Queue(QUEUE_RECORDS)
        self.last = resume  # (sequence, end_ns) of the last record received
        self.counts = {"connections": 0, "reconnects": 0, "packets_received": 0, "records_bad": 0,
                       "garbage": 0, "stalls": 0, "refused": 0}
        self.connected = False
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._log = LimitedLog(log)

    def close(self) -> None:
        self._stopping.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.join(2.0)  # a connect under way may take timeout_s: the thread is a daemon, not awaited

    def run(self) -> None:
        wait_s = 1.0
        while not self._stopping.is_set():
            try:
                self._session()
                wait_s = 1.0  # a stream ran: the next attempt comes soon
            except (OSError, ValueError) as exc:
                if self._stopping.is_set():
                    break
                self._log(logging.WARNING, "seedlink-client", "seedlink %s: %s; again in %.0f s", self.server,
                          exc, wait_s)
            finally:
                self.connected = False
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
            if self._stopping.wait(wait_s):
                break
            self.counts["reconnects"] += 1
            wait_s = min(2 * wait_s, self.reconnect_max_s)

    # ------------------------------------------------------------- one connection
    def _session(self) -> None:
        sock = socket.create_connection(self.address, timeout=self.timeout_s)
        self._sock = sock
        self.counts["connections"] += 1
        buffer = bytearray()
        hello = self._ask(sock, buffer, "HELLO", lines=2)
        self._ask(sock, buffer, f"STATION {self.station} {self.network}")
        for selector in self.selectors:
            self._ask(sock, buffer, f"SELECT {selector}")
        self._ask(sock, buffer, self._data_command())
        sock.sendall(b"END\r\n")
        self.connected = True
        log.info("seedlink: reading %s_%s %s from %s (%s)", self.network, self.station,
                 " ".join(self.selectors) or "(all streams)", self.server, hello[0][:60])
        self._stream(sock, buffer)

    def _data_command(self) -> str:
        if self.last is None:
            return "DATA"
        sequence, end_ns = self.last
        return f"DATA {(sequence + 1) % (1 << 24):06X} {_seedlink_time(end_ns)}"

    def _ask(self, sock, buffer: bytearray, command: str, lines: int = 1) -> list[str]:
        sock.sendall(command.encode("ascii") + b"\r\n")
        replies = []
        while len(replies) < lines:
            end = buffer.find(b"\r\n")
            if end < 0:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("the server closed the connection during the handshake")
                buffer += chunk
                if len(buffer) > 4096:
                    raise ValueError("the server's reply is not SeedLink")
                continue
            replies.append(buffer[:end].decode("ascii", "replace"))
            del buffer[:end + 2]
        if lines == 1 and replies[0].startswith("ERROR"):
            self.counts["refused"] += 1
            raise ValueError(f"the server refused {command!r} ({replies[0].strip()})")
        return replies

    def _stream(self, sock, buffer: bytearray) -> None:
        while not self._stopping.is_set():
            while len(buffer) >= HEADER_BYTES + RECORD_BYTES:
                packet = bytes(buffer[:HEADER_BYTES + RECORD_BYTES])
                self._packet(packet[:HEADER_BYTES], packet[HEADER_BYTES:])
                del buffer[:HEADER_BYTES + RECORD_BYTES]
            if buffer[:3] == b"END" or buffer.startswith(b"ERROR"):
                raise OSError(f"the server ended the stream ({bytes(buffer[:5]).decode('ascii')})")
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                self.counts["stalls"] += 1
                raise OSError(f"no data for {self.timeout_s:g} s: connecting again") from None
            if not chunk:
                raise OSError("the server closed the connection")
            buffer += chunk

    def _packet(self, header: bytes, record: bytes) -> None:
        if header.startswith(b"SLINFO"):
            return  # an INFO reply (none asked); its text is not data
        if not _HEX.fullmatch(header):
            self.counts["garbage"] += 1
            raise ValueError(f"not a SeedLink packet ({header[:8]!r}): connecting again")
        self.counts["packets_received"] += 1
        sequence = int(header[2:], 16)
        try:
            info = decode_record(record)
        except ValueError as exc:
            self.counts["records_bad"] += 1
            self._log(logging.WARNING, "seedlink-record", "seedlink %s: packet %06X: %s; dropped",
                      self.server, sequence, exc)
            return
        self.last = (sequence, info[3] + round(len(info[5]) * 1e9 / info[4]))
        while not self._stopping.is_set():
            try:
                self.records.put((sequence, *info), timeout=0.5)
                return
            except queue.Full:
                continue


def decode_record(record: bytes) -> tuple:
    """``(location, channel, network_station, start_ns, rate_hz, counts)`` of one miniSEED record
    (``counts`` int32); ``ValueError`` for a record libmseed cannot read or that holds no counts."""
    from .miniseed import _pymseed

    pymseed = _pymseed()
    try:
        msr = pymseed.MS3Record.parse(record, unpack_data=True)
        net, sta, loc, cha = pymseed.sourceid2nslc(msr.sourceid)
    except (pymseed.MiniSEEDError, ValueError) as exc:
        raise ValueError(f"not a miniSEED record ({exc})") from None
    samples = msr.np_datasamples
    if msr.samprate <= 0 or samples.dtype.kind != "i":
        raise ValueError(f"{net}.{sta}.{loc}.{cha}: no integer counts at a sampling rate (a log or text "
                         "record)")
    return loc, cha, f"{net}_{sta}", int(msr.starttime), float(msr.samprate), samples.astype("int32")


def read_state(path, server: str, stream: str) -> tuple | None:
    """``(sequence, end_ns)`` kept in ``path`` for ``server`` and ``stream`` (``NET_STA``), or None."""
    if not path:
        return None
    try:
        state = json.loads(Path(path).read_text())
        if state.get("server") == server and state.get("stream") == stream:
            return int(state["sequence"]), int(state["end_ns"])
        log.info("seedlink: %s is of %s %s; starting with the live stream", path, state.get("server"),
                 state.get("stream"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("seedlink: %s unreadable (%s); starting with the live stream", path, exc)
    return None


class SeedLinkFrames:
    """The node's source of one station's SeedLink streams (see the module notes).

    Parameters
    ----------
    config : NodeConfig
        ``seedlink_server``, ``seedlink_streams``, ``seedlink_timeout_s``,
        ``seedlink_reconnect_max_s``, ``seedlink_state``; ``channels`` (the node's
        channel codes, in the model's component order) gives the order of the components.
    n_channels : int
        Components the model expects.
    read_timeout_s : float
        Longest a read blocks, s.
    faults : LimitedLog
        The node's rate limiter.
    """

    #: Period of writing the resume state, s.
    STATE_EVERY_S = 5.0

    def __init__(self, config, n_channels: int, read_timeout_s: float, faults: LimitedLog):
        from .miniseed import _pymseed

        _pymseed()  # the network extra, or one line naming it
        network, station, selectors = parse_streams(config.seedlink_streams)
        components = [component_of_channel(c) for c in config.channels]
        if len(components) != n_channels or None in components or len(set(components)) != n_channels:
            raise ValueError(f"[node] channels = {config.channels}: one code per model component "
                             f"({n_channels}), E/N/Z or 1/2/Z, to order the station's streams")
        self.components, self.stream = components, f"{network}_{station}"
        self.state_path, self.server = config.seedlink_state, config.seedlink_server
        self.read_timeout_s = read_timeout_s
        # Records of one channel come in order; another channel's may lag by a record
        # (seconds): wait that long for them before a part is given up.
        self.aligner = ChannelAligner(components, reorder_s=10.0, version="seedlink")
        self.channel_of: dict[str, tuple] = {}
        self.counts = {"records": 0, "records_other_channel": 0, "records_not_acceleration": 0}
        self.taken = read_state(config.seedlink_state, config.seedlink_server, self.stream)
        self._saved = self.taken
        self._next_save_s = 0.0
        self._log = LimitedLog(log)
        self.reader = SeedLinkReader(config.seedlink_server, network, station, selectors,
                                     config.seedlink_timeout_s, config.seedlink_reconnect_max_s, self.taken)
        self.where = f"seedlink://{config.seedlink_server}/{self.stream}"
        self.reader.start()

    def read(self):
        """Records that came within the read timeout, as frames (see :class:`~edge_runtime.sources.Batch`)."""

        try:
            items = [self.reader.records.get(timeout=self.read_timeout_s)]
        except queue.Empty:
            return Batch(self.aligner.poll(time.monotonic()), False)
        while len(items) < 256:
            try:
                items.append(self.reader.records.get_nowait())
            except queue.Empty:
                break
        now_s = time.monotonic()
        frames = []
        for item in items:
            frames += self._record(*item, now_s)
        if now_s >= self._next_save_s:
            self._save_state()
            self._next_save_s = now_s + self.STATE_EVERY_S
        return Batch(frames + self.aligner.poll(now_s), True)

    def _record(self, sequence, location, channel, stream, start_ns, rate_hz, counts, now_s) -> list:
        self.counts["records"] += 1
        self.taken = (sequence, start_ns + round(len(counts) * 1e9 / rate_hz))
        component = component_of_channel(channel)
        if stream != self.stream or not is_accelerometer(channel):
            self.counts["records_not_acceleration"] += 1
            self._log(logging.WARNING, f"not-acc-{stream}.{channel}", "seedlink: %s.%s.%s is not an "
                      "accelerometer channel of %s; the model takes acceleration: dropped", stream, location,
                      channel, self.stream)
            return []
        taken = self.channel_of.setdefault(component, (location, channel)) if component in self.components \
            else None
        if taken != (location, channel):
            self.counts["records_other_channel"] += 1
            self._log(logging.WARNING, f"channel-{location}.{channel}", "seedlink: %s.%s.%s: %s; its records "
                      "are dropped", stream, location, channel,
                      f"component {component} is read from {'.'.join(taken)}" if taken else
                      f"no component of the model ({', '.join(self.components)})")
            return []
        return self.aligner.push(component, start_ns // 1000, rate_hz, counts, now_s)

    def _save_state(self) -> None:
        if not self.state_path or self.taken is None or self.taken == self._saved:
            return
        path = Path(self.state_path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps({"server": self.server, "stream": self.stream,
                                       "sequence": self.taken[0], "end_ns": self.taken[1]}))
            tmp.replace(path)
            self._saved = self.taken
        except OSError as exc:
            self._log(logging.ERROR, "seedlink-state", "seedlink: cannot write %s (%s)", path,
                      exc.strerror or exc)

    def counters(self) -> dict:
        last = self.taken[0] if self.taken else None
        return {"seedlink_client": {"server": self.server, "stream": self.stream,
                                    "connected": self.reader.connected, "last_sequence": last,
                                    **self.reader.counts, **self.counts, **self.aligner.counts,
                                    "rate_hz": self.aligner.rate_hz}}

    def close(self) -> None:
        self.reader.close()
        self._save_state()
