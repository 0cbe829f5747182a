"""Where the node's samples come from: a registry of sources, chosen by ``[node] source``.

Every source delivers the same thing to the pipeline: decoded frames
(:class:`~edge_runtime.protocol.Frame`), i.e. blocks of samples in ADC counts, each with
the UTC time of its first sample, its sampling rate, a frame counter and, where the
input carries them, the board's identity and time-fix state. The pipeline's sequencer
(:class:`~edge_runtime.sequencing.StreamSequencer`) marks gaps and restarts from the
counters and the times, so a source whose input has no frame counter numbers its frames
from their times (one frame length apart), and a restart of its input is a jump of
that number. The station code of the node (``[node] station``) names what is recorded.

Beyond a board on a serial port, the node reads a Raspberry Shake's UDP datacast
(``shake-udp``, :mod:`edge_runtime.shake_udp`) and any SeedLink server (``seedlink``,
:mod:`edge_runtime.network.seedlink_client`); both deliver each channel apart, and
:class:`~edge_runtime.alignment.ChannelAligner` makes them frames like a board's
(docs/sources.md).

A source is a small class with ``read()`` (block up to the read timeout, return a
:class:`Batch`), ``where`` (what it reads, for log lines), ``counters()`` (its entries in
the status file) and ``close()``, plus one entry in :data:`SOURCES`. The config refuses a
name not in the registry in one line.
"""

from __future__ import annotations

from typing import Protocol

from .batch import Batch
from .logs import LimitedLog
from .protocol import FrameDecoder
from .protocol_text import TextDecoder
from .reader import SerialSource


class Source(Protocol):
    """What the node asks of a source."""

    where: str  # what it reads (a port, an address), for log lines and systemd's status

    def read(self) -> Batch: ...

    def counters(self) -> dict: ...

    def close(self) -> None: ...


class SerialFrames:
    """A board on a serial port: bytes (:class:`~edge_runtime.reader.SerialSource`) decoded
    into frames (:class:`~edge_runtime.protocol.FrameDecoder` for the framed binary
    protocol, :class:`~edge_runtime.protocol_text.TextDecoder` for one CSV line per sample).

    Parameters
    ----------
    config : NodeConfig
        ``port``, ``baudrate``, ``protocol``, ``text_rate_hz``, ``text_checksum``, ``reconnect_max_s``,
        ``trust_port_name``.
    n_channels : int
        Channels the model expects (a text line carries no count of its own).
    read_timeout_s : float
        Longest a read blocks, s.
    faults : LimitedLog
        The node's rate limiter.
    """

    def __init__(self, config, n_channels: int, read_timeout_s: float, faults: LimitedLog):
        if config.protocol == "text":
            self.decoder = TextDecoder(n_channels=n_channels, sampling_rate_hz=config.text_rate_hz,
                                       checksum=getattr(config, "text_checksum", "auto"))
        else:
            self.decoder = FrameDecoder()
        self.port = SerialSource(config.port, config.baudrate, read_timeout_s=read_timeout_s,
                                 max_retry_s=config.reconnect_max_s, faults=faults,
                                 trust_name=config.trust_port_name)
        self.where = config.port

    def read(self) -> Batch:
        data = self.port.read()
        if data:
            return Batch(self.decoder.feed(data), True)
        if self.decoder.pending:  # a quiet line releases a frame the decoder held back
            return Batch(self.decoder.flush(), False)
        return Batch()

    def counters(self) -> dict:
        return {"decoder": self.decoder.stats.to_dict(), "port_open": self.port.is_open,
                "reconnects": self.port.reconnects, "port_refused": self.port.refused,
                "port_waits": self.port.waits}

    def close(self) -> None:
        self.port.close()


def _shake_udp(config, n_channels: int, read_timeout_s: float, faults: LimitedLog) -> Source:
    from .shake_udp import ShakeUDP

    return ShakeUDP(config, n_channels=n_channels, read_timeout_s=read_timeout_s, faults=faults)


def _seedlink(config, n_channels: int, read_timeout_s: float, faults: LimitedLog) -> Source:
    from .network.seedlink_client import SeedLinkFrames

    return SeedLinkFrames(config, n_channels=n_channels, read_timeout_s=read_timeout_s, faults=faults)


# Source name ([node] source) -> class or factory taking (config, n_channels, read_timeout_s,
# faults); the inputs beyond the serial port are imported only when chosen.
SOURCES = {"serial": SerialFrames, "shake-udp": _shake_udp, "seedlink": _seedlink}


def open_source(config, n_channels: int, read_timeout_s: float, faults: LimitedLog) -> Source:
    """The source ``config.source`` names, ready to read.

    Raises
    ------
    ValueError
        The name is not in :data:`SOURCES`.
    """
    factory = SOURCES.get(config.source)
    if factory is None:
        raise ValueError(f"source {config.source!r}: unknown; known: {', '.join(SOURCES)}")
    return factory(config, n_channels=n_channels, read_timeout_s=read_timeout_s, faults=faults)
