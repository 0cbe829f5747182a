"""The recording formats in the order they are tried, and the lookups the reader makes.

A file is read by the first format whose ``is_format`` recognises it (and whose ``read``
takes it): ObsPy's formats first, in ObsPy's own order, then the strong-motion text
formats ObsPy lacks. A trace's format is found again by the name it carries
(``stats._format``). To add a format: write its module (an ``is`` / ``read`` pair and a
:class:`~.base.RecordingFormat` saying what its files hold) and add it to :data:`FORMATS`.
"""

from __future__ import annotations

from pathlib import Path

from . import cosmos, csmip_v2, esm, peer_at2
from .base import RecordingFormat
from .obspy_formats import KNET, MSEED, OTHER_OBSPY, SAC, obspy_read

FORMATS: tuple[RecordingFormat, ...] = (
    MSEED, SAC, KNET, OTHER_OBSPY,
    peer_at2.FORMAT, csmip_v2.FORMAT, esm.FORMAT, cosmos.FORMAT,
)
_BY_NAME = {f.name: f for f in FORMATS}


def read_file(path: Path, window: tuple[float, float] | None = None):
    """The file as an ObsPy Stream read by the first format that takes it, None when none does.

    ``window``: ``(start, end)`` UTC seconds, only the samples between them (nearest
    sample, as ``Stream.trim``); a miniSEED file is then read a record at a time there
    (:func:`_read_mseed_window`).

    Raises
    ------
    FormatError
        For a file of a known format that is damaged (the one-line reason).
    """
    from obspy import UTCDateTime

    for recording_format in FORMATS:
        if recording_format.is_format(path):
            if window is not None and recording_format.name == "MSEED":
                return _read_mseed_window(path, window)
            stream = recording_format.read(path)
            if stream is not None:
                if window is not None:
                    stream.trim(UTCDateTime(window[0]), UTCDateTime(window[1]))
                return stream
    return None


def _read_mseed_window(path: Path, window: tuple[float, float]):
    """The samples of a miniSEED file within ``window`` (UTC s), decoding only the records there.

    ObsPy finds them by bisection over the file's records (fixed length, in time order, as
    archives write them; a file that is not so is read through whole by ObsPy), inside the
    file's own span (its first and last records), so no other record of the file is read or
    held: a long file read piece by piece costs one piece of memory at a time.
    """
    from obspy import Stream, UTCDateTime
    from obspy.io.mseed.util import get_start_and_end_time

    first, last = get_start_and_end_time(str(path))
    start, end = max(UTCDateTime(window[0]), first), min(UTCDateTime(window[1]), last)
    if end < start:
        return Stream()
    return obspy_read(path, "MSEED", starttime=start, endtime=end, use_bisection=True)


def format_of(trace) -> RecordingFormat:
    """The format a trace was read from (by ``stats._format``); a format of ObsPy's that has no
    entry of its own (GSE2, SEISAN, ...) is :data:`~.obspy_formats.OTHER_OBSPY`."""
    return _BY_NAME.get(trace.stats.get("_format"), OTHER_OBSPY)
