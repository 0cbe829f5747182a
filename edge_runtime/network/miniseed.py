"""miniSEED records of the board's raw counts: 512 bytes, Steim-2, packed by libmseed.

The encoder is EarthScope's libmseed through its Python binding ``pymseed`` (the
``network`` extra), not one written here. It is imported when a packer is made, so the
node without the extra never loads it.

One :class:`RecordPacker` per station takes the accepted frames in time order and
returns the records that are complete; the samples of a record not yet full stay in
libmseed's rolling buffer until more arrive or :meth:`RecordPacker.flush` is called.
The SeedLink ring and an SDS archive use it alike. Records are miniSEED 2 (what
SeedLink 3 carries and every reader knows), data quality ``D``; a record's start time is
its first sample's time to the microsecond (blockette 1001), as the board sent it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: Bytes per record: the SeedLink 3 packet size and the usual archive record.
RECORD_LENGTH = 512

_CODE_RULES = {"network": (1, 2), "station": (1, 5), "location": (0, 2), "channel": (3, 3)}


def check_code(kind: str, code: str) -> str:
    """``code`` if it is a valid SEED code of ``kind``, else ``ValueError`` naming the rule.

    Parameters
    ----------
    kind : str
        ``"network"`` (1-2 characters), ``"station"`` (1-5), ``"location"`` (0: blank, or
        2) or ``"channel"`` (3); upper-case letters and digits only (SEED 2.4: a lower-case
        code would name another stream to SeedLink clients and archives).
    """
    low, high = _CODE_RULES[kind]
    size_ok = isinstance(code, str) and low <= len(code) <= high \
        and not (kind == "location" and len(code) == 1)
    if not size_ok or not re.fullmatch(r"[A-Z0-9]*", code):
        size = {"location": "0 or 2"}.get(kind, f"{low}-{high}" if low != high else f"{low}")
        raise ValueError(f"{kind} code {code!r}: must be {size} upper-case letters or digits (SEED)")
    return code


def _pymseed():
    try:
        import pymseed
    except ImportError:
        raise ValueError("miniSEED outputs need the network extra: pip install 'seismictorch[network]' "
                         "(pymseed)") from None
    return pymseed


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """What a record holds, read from its header.

    Attributes
    ----------
    network, station, location, channel : str
        SEED codes (location ``""`` when blank).
    start_ns, end_ns : int
        Times of its first and last sample, UTC ns since 1970.
    n_samples : int
    """

    network: str
    station: str
    location: str
    channel: str
    start_ns: int
    end_ns: int
    n_samples: int


def record_info(record: bytes) -> RecordInfo:
    """The codes and times of one miniSEED record (its header only; data not decoded)."""
    pymseed = _pymseed()
    msr = pymseed.MS3Record.parse(record, unpack_data=False)
    net, sta, loc, cha = pymseed.sourceid2nslc(msr.sourceid)
    return RecordInfo(net, sta, loc, cha, int(msr.starttime), int(msr.endtime), int(msr.samplecnt))


class RecordPacker:
    """Accepted frames of one station in, complete 512-byte Steim-2 records out.

    Parameters
    ----------
    network, station, location : str
        SEED codes of the station (checked with :func:`check_code`).
    channels : sequence of str
        Channel code of each column of the counts, in the board's order
        (``["HNE", "HNN", "HNZ"]``).
    idle_flush_s : int
        A stretch of samples left behind by a gap or a rate change is packed, partly
        filled, once it has had no new samples this long (wall clock), s.

    Notes
    -----
    Samples continue a channel's stretch when their start time is within half a sample
    of where it ends and the rate is the same; otherwise a new stretch (and record)
    begins, so a gap or a board restart shows as a gap in the records.
    """

    def __init__(self, network: str, station: str, location: str, channels, idle_flush_s: int = 10):
        pymseed = _pymseed()
        self.codes = (check_code("network", network), check_code("station", station),
                      check_code("location", location))
        self.channels = tuple(check_code("channel", c) for c in channels)
        if not self.channels:
            raise ValueError("a record packer needs at least one channel")
        self._source_ids = [pymseed.nslc2sourceid(network, station, location, c) for c in self.channels]
        self._traces = pymseed.MS3TraceList()
        self._encoding = pymseed.DataEncoding.STEIM2
        self.idle_flush_s = int(idle_flush_s)
        self.records = 0
        self.samples_in = 0

    def push(self, t0_us: int, rate_hz: float, counts: np.ndarray) -> list[bytes]:
        """Add one frame; return the records it completed (possibly none).

        Parameters
        ----------
        t0_us : int
            Time of the frame's first sample, UTC us since 1970.
        rate_hz : float
            Sampling rate, Hz.
        counts : numpy.ndarray
            ``(n_samples, n_channels)`` integer ADC counts (int32 range), one column per
            channel.
        """
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[1] != len(self.channels):
            raise ValueError(f"counts of shape {counts.shape}: expected (n_samples, {len(self.channels)})")
        if counts.dtype.kind not in "iu":
            raise ValueError(f"counts must be integers, not {counts.dtype}")
        start_ns = int(t0_us) * 1000
        for column, source_id in enumerate(self._source_ids):
            self._traces.add_data(source_id, np.ascontiguousarray(counts[:, column], dtype=np.int32), "i",
                                  float(rate_hz), starttime=start_ns)
        self.samples_in += counts.shape[0]
        return self._pack(flush=False)

    def flush(self) -> list[bytes]:
        """Every sample held, packed now (the last records partly filled)."""
        return self._pack(flush=True)

    def _pack(self, flush: bool) -> list[bytes]:
        records = list(self._traces.generate(max_record_length=RECORD_LENGTH, encoding=self._encoding,
                                             format_version=2, flush_data=flush,
                                             flush_idle_seconds=0 if flush else self.idle_flush_s,
                                             remove_packed=True))
        self.records += len(records)
        return records


def text_records(text: str, network: str, station: str, location: str, channel: str,
                 start_ns: int) -> list[bytes]:
    """``text`` as 512-byte miniSEED 2 text records (as SeedLink carries its INFO replies).

    Parameters
    ----------
    text : str
        ASCII text (XML); split over as many records as it needs.
    start_ns : int
        Time written in the records' headers, UTC ns since 1970.
    """
    pymseed = _pymseed()
    msr = pymseed.MS3Record(reclen=RECORD_LENGTH, encoding=pymseed.DataEncoding.TEXT)
    msr.sourceid = pymseed.nslc2sourceid(network, station, location, channel)
    msr.formatversion = 2
    msr.samprate = 0.0
    msr.starttime = int(start_ns)
    return list(msr.generate(data_samples=text.encode("ascii", "replace"), sample_type="t"))
