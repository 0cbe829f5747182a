"""The SeedLink 3.1 command language, without sockets: lines in, replies and requests out.

A client opens with ``HELLO`` and then, in multi-station mode, names each station it
wants (``STATION ST01 XX``), narrows it with selectors (``SELECT HN?.D``), says where to
start (``DATA [seq [time]]``, ``FETCH [seq [time]]`` or ``TIME begin [end]``) and ends
the handshake with ``END``; in uni-station mode ``DATA``/``FETCH``/``TIME`` without a
``STATION`` start the stream at once. ``INFO ID|CAPABILITIES|STATIONS|STREAMS|GAPS|ALL``
is answered with XML in miniSEED text records, ``BYE`` closes. Times are
``YYYY,MM,DD,hh,mm,ss``; sequence numbers six hex digits (the next packet wanted).

:class:`Session` holds one client's state. It never raises on what a client sends:
a line over :data:`MAX_LINE_BYTES`, bytes that are not ASCII text, an unknown command
or bad arguments get ``ERROR`` (before the stream starts; nothing is written into a
running stream), and :data:`MAX_ERRORS` of them close the connection.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from .miniseed import RecordInfo

#: Longest command line accepted, bytes (without its CR/LF).
MAX_LINE_BYTES = 255
#: Bad commands after which the server closes the connection.
MAX_ERRORS = 10
#: Selectors per station at most.
MAX_SELECTORS = 32
#: Stations per connection at most.
MAX_STATIONS = 64
#: SeedLink record types: data, event, calibration, opaque, timing, log.
RECORD_TYPES = "DECOTL"
INFO_LEVELS = ("ID", "CAPABILITIES", "STATIONS", "STREAMS", "GAPS", "ALL")
CAPABILITIES = ("dialup", "multistation", "window-extraction", "info:id", "info:capabilities",
                "info:stations", "info:streams", "info:gaps", "info:all")

_CODE_PATTERN = re.compile(r"[A-Za-z0-9?*]{1,10}")
_SELECTOR_CODES = re.compile(r"[A-Za-z0-9?\-]*")


@dataclass(frozen=True)
class Selector:
    """One ``SELECT`` pattern ``[!][LL]CCC[.T]``; ``None`` parts match anything.

    ``?`` matches any one character; a location of ``--`` matches the blank location.
    """

    negate: bool
    location: str | None
    channel: str | None
    type: str | None

    def matches(self, location: str, channel: str, record_type: str = "D") -> bool:
        location = (location or "").ljust(2)
        return (_chars_match(self.location, location) and _chars_match(self.channel, channel)
                and (self.type is None or self.type in ("?", record_type)))


def _chars_match(pattern: str | None, code: str) -> bool:
    if pattern is None:
        return True
    return len(pattern) == len(code) and all(p in ("?", c) for p, c in zip(pattern, code.upper(),
                                                                           strict=True))


def parse_selector(text: str) -> Selector:
    """A :class:`Selector` from ``[!][LL]CCC[.T]``; ``ValueError`` if it is not one."""
    negate = text.startswith("!")
    codes, dot, record_type = text[negate:].partition(".")
    if len(codes) == 4 and codes.startswith("-"):  # "-HNZ": the blank location, written short
        codes = "-" + codes
    if len(codes) not in (0, 3, 5) or not _SELECTOR_CODES.fullmatch(codes):
        raise ValueError(f"bad selector {text[:20]!r}: expected [LL]CCC[.T]")
    if len(record_type) > 1 or (record_type and record_type.upper() not in RECORD_TYPES + "?"):
        raise ValueError(f"bad selector {text[:20]!r}: type must be one of {RECORD_TYPES}")
    codes = codes.upper()
    location = codes[:2].replace("-", " ") if len(codes) == 5 else None
    channel = codes[-3:] if codes else None
    return Selector(negate, location, channel, record_type.upper() or None)


def parse_time(text: str) -> int:
    """UTC ns since 1970 from SeedLink's ``YYYY,MM,DD,hh,mm,ss`` (seconds may have a fraction)."""
    parts = text.split(",")
    if len(parts) != 6 or not all(re.fullmatch(r"\d{1,4}", p) for p in parts[:5]) \
            or not re.fullmatch(r"\d{1,2}(\.\d{1,6})?", parts[5]):
        raise ValueError(f"bad time {text[:30]!r}: expected YYYY,MM,DD,hh,mm,ss")
    seconds = float(parts[5])
    try:
        moment = dt.datetime(*map(int, parts[:5]), tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise ValueError(f"bad time {text[:30]!r}: {exc}") from None
    if seconds >= 61:
        raise ValueError(f"bad time {text[:30]!r}: seconds beyond 60")
    epoch_s = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(seconds=1)
    return epoch_s * 1_000_000_000 + round(seconds * 1e9)


def parse_sequence(text: str) -> int:
    """A SeedLink sequence number (hex, ``0x`` allowed), modulo 2**24."""
    digits = text[2:] if text[:2].lower() == "0x" else text
    if not re.fullmatch(r"[0-9A-Fa-f]{1,8}", digits):
        raise ValueError(f"bad sequence number {text[:20]!r}: expected hex digits")
    return int(digits, 16) % (1 << 24)


def format_time(time_ns: int) -> str:
    """SeedLink INFO's ``YYYY/MM/DD hh:mm:ss.ffff`` of UTC ns since 1970."""
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=time_ns // 1000)
    return moment.strftime("%Y/%m/%d %H:%M:%S.") + f"{moment.microsecond // 100:04d}"


@dataclass(frozen=True)
class StationInfo:
    """A station the server serves: codes, a description and its ``(location, channel)`` streams."""

    network: str
    station: str
    description: str
    streams: tuple


@dataclass
class StationRequest:
    """What a client asked for one station (or, uni-station, for every station).

    ``mode`` is ``DATA`` (real time, open-ended), ``FETCH`` (what is held, then END) or
    ``TIME`` (a time window); ``sequence`` the next packet wanted; times UTC ns.
    """

    network: str = "*"
    station: str = "*"
    selectors: list = field(default_factory=list)
    mode: str = "DATA"
    sequence: int | None = None
    begin_ns: int | None = None
    end_ns: int | None = None

    def names(self, network: str, station: str) -> bool:
        return (fnmatch.fnmatchcase(network.upper(), self.network.upper())
                and fnmatch.fnmatchcase(station.upper(), self.station.upper()))

    def wants(self, info: RecordInfo, record_type: str = "D") -> bool:
        """Whether this request selects the stream of ``info`` (its time not considered)."""
        if not self.names(info.network, info.station):
            return False
        if any(s.matches(info.location, info.channel, record_type) for s in self.selectors if s.negate):
            return False
        positive = [s for s in self.selectors if not s.negate]
        return not positive or any(s.matches(info.location, info.channel, record_type) for s in positive)


class Session:
    """One client's protocol state.

    Parameters
    ----------
    hello : tuple of str
        The two lines answering ``HELLO`` (server id and capabilities; organisation).
    stations : list of StationInfo
        What the server serves.
    info : callable
        ``info(level) -> bytes``: the SLINFO packets answering ``INFO level``.

    Attributes
    ----------
    requests : list of StationRequest
        What the client asked for; read once :attr:`streaming` turns true.
    streaming : bool
        The handshake is over: the server now sends packets.
    closing : bool
        Close once the replies are sent (``BYE``, a fatal error, too many errors).
    """

    def __init__(self, hello: tuple, stations: list, info):
        self.hello = hello
        self.stations = stations
        self.info = info
        self.requests: list[StationRequest] = []
        self.streaming = False
        self.closing = False
        self.errors = 0
        self.multistation = False
        self.batch = False
        self.extreply = False
        self._current: StationRequest | None = None
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        """Bytes from the client in; the bytes to send back. Never raises."""
        out = bytearray()
        self._buffer += data
        while not self.closing:
            end = next((i for i, b in enumerate(self._buffer) if b in (10, 13)), -1)
            if end < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    out += self._error(f"command longer than {MAX_LINE_BYTES} bytes")
                    self.closing = True
                break
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if len(line) > MAX_LINE_BYTES:
                out += self._error(f"command longer than {MAX_LINE_BYTES} bytes")
                self.closing = True
            elif line.strip():
                out += self._command(line)
        if self.closing:
            self._buffer.clear()
        return bytes(out)

    def _command(self, line: bytes) -> bytes:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return self._error("command is not ASCII text")
        if not text.isprintable():
            return self._error("command holds control characters")
        verb, *args = text.split()
        handler = _HANDLERS.get(verb.upper())
        if handler is None:
            return self._error(f"unknown command {verb[:16]!r}")
        if self.streaming and verb.upper() not in ("INFO", "BYE"):
            return self._error(f"{verb.upper()} during the stream")
        try:
            return handler(self, args)
        except ValueError as exc:
            reply = self._error(str(exc))
            return b"" if self.batch and verb.upper() in _BATCHED else reply

    def _error(self, why: str) -> bytes:
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            self.closing = True
        if self.streaming:  # nothing but packets inside a running stream
            return b""
        return b"ERROR\r" + why.encode("ascii", "replace") + b"\r\n" if self.extreply else b"ERROR\r\n"

    def _ok(self) -> bytes:
        return b"" if self.batch else b"OK\r\n"

    def _hello(self, args) -> bytes:
        return f"{self.hello[0]}\r\n{self.hello[1]}\r\n".encode("ascii", "replace")

    def _capabilities(self, args) -> bytes:
        self.extreply = self.extreply or any(a.upper() == "EXTREPLY" for a in args)
        return b"OK\r\n"

    def _batch(self, args) -> bytes:
        self.batch = True
        return b"OK\r\n"

    def _station(self, args) -> bytes:
        if not 1 <= len(args) <= 2 or not all(_CODE_PATTERN.fullmatch(a) for a in args):
            raise ValueError("usage: STATION station [network]")
        if len(self.requests) >= MAX_STATIONS:
            raise ValueError(f"more than {MAX_STATIONS} stations")
        request = StationRequest(network=args[1] if len(args) == 2 else "*", station=args[0])
        self._current = None
        if not any(request.names(s.network, s.station) for s in self.stations):
            raise ValueError(f"station {' '.join(args)} not served")
        self.multistation = True
        self._current = request
        self.requests.append(request)
        return self._ok()

    def _request(self) -> StationRequest:
        if self._current is None:
            if self.multistation:
                raise ValueError("no station accepted for this command")
            self._current = StationRequest()  # uni-station mode
            self.requests.append(self._current)
        return self._current

    def _select(self, args) -> bytes:
        if len(args) > 1:
            raise ValueError("usage: SELECT [pattern]")
        request = self._request()
        if not args:
            request.selectors.clear()
        elif len(request.selectors) >= MAX_SELECTORS:
            raise ValueError(f"more than {MAX_SELECTORS} selectors")
        else:
            request.selectors.append(parse_selector(args[0]))
        return self._ok()

    def _start(self, mode: str, args) -> bytes:
        request = self._request()
        if mode == "TIME":
            if not 1 <= len(args) <= 2:
                raise ValueError("usage: TIME begin [end]")
            begin, end = parse_time(args[0]), parse_time(args[1]) if len(args) == 2 else None
            if end is not None and end <= begin:
                raise ValueError("TIME: end is not after begin")
            request.sequence, request.begin_ns, request.end_ns = None, begin, end
        else:
            if len(args) > 2:
                raise ValueError(f"usage: {mode} [sequence [time]]")
            request.sequence = parse_sequence(args[0]) if args else None
            request.begin_ns = parse_time(args[1]) if len(args) == 2 else None
            request.end_ns = None
        request.mode = mode
        reply = self._ok()
        if not self.multistation:
            self.streaming = True
        return reply

    def _end(self, args) -> bytes:
        if not self.multistation or not self.requests:
            raise ValueError("END without an accepted STATION")
        self.streaming = True
        return b""

    def _info(self, args) -> bytes:
        if len(args) != 1 or args[0].upper() not in INFO_LEVELS:
            raise ValueError(f"usage: INFO {'|'.join(INFO_LEVELS)}")
        return self.info(args[0].upper())

    def _cat(self, args) -> bytes:
        lines = "".join(f"{s.network} {s.station} {s.description}\r\n" for s in self.stations)
        return (lines + "END").encode("ascii", "replace")

    def _bye(self, args) -> bytes:
        self.closing = True
        return b""


# Commands answered by nothing at all once the client sent BATCH.
_BATCHED = {"STATION", "SELECT", "DATA", "FETCH", "TIME"}
_HANDLERS = {
    "HELLO": Session._hello, "CAPABILITIES": Session._capabilities, "BATCH": Session._batch,
    "STATION": Session._station, "SELECT": Session._select, "END": Session._end,
    "DATA": lambda s, a: s._start("DATA", a), "FETCH": lambda s, a: s._start("FETCH", a),
    "TIME": lambda s, a: s._start("TIME", a), "INFO": Session._info, "CAT": Session._cat,
    "BYE": Session._bye,
}


def info_xml(level: str, software: str, organization: str, started_ns: int, stations: list,
             packets: list) -> str:
    """The XML answering ``INFO level`` (SeisComP's schema, which ObsPy's client reads).

    Parameters
    ----------
    level : str
        One of :data:`INFO_LEVELS`.
    stations : list of StationInfo
    packets : list of Packet
        The ring's content, oldest first.
    """
    head = (f'<?xml version="1.0"?>\n<seedlink software={quoteattr(software)} '
            f'organization={quoteattr(organization)} started="{format_time(started_ns)}"')
    if level == "ID":
        return head + "/>\n"
    if level == "CAPABILITIES":
        return head + ">" + "".join(f'<capability name="{c}"/>' for c in CAPABILITIES) + "</seedlink>\n"
    body = "".join(_station_xml(s, packets, with_streams=level != "STATIONS") for s in stations)
    return head + ">" + body + "</seedlink>\n"


def _station_xml(station: StationInfo, packets: list, with_streams: bool) -> str:
    own = [p for p in packets if (p.info.network, p.info.station) == (station.network, station.station)]
    begin_seq, end_seq = (own[0].sequence, own[-1].sequence) if own else (0, 0)
    xml = (f'<station name={quoteattr(station.station)} network={quoteattr(station.network)} '
           f'description={quoteattr(station.description)} begin_seq="{begin_seq:06X}" '
           f'end_seq="{end_seq:06X}" stream_check="enabled"')
    if not with_streams:
        return xml + "/>"
    streams = {}
    for p in own:
        first, _ = streams.get((p.info.location, p.info.channel), (p, p))
        streams[(p.info.location, p.info.channel)] = (first, p)
    xml += ">" + "".join(
        f'<stream location={quoteattr(loc)} seedname={quoteattr(cha)} type="D" '
        f'begin_time="{format_time(first.info.start_ns)}" end_time="{format_time(last.info.end_ns)}" '
        f'begin_recno="{first.number}" end_recno="{last.number}" gap_check="disabled" '
        f'gap_treshold="0"/>' for (loc, cha), (first, last) in sorted(streams.items()))
    return xml + "</station>"
