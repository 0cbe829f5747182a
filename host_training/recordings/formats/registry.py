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
from .obspy_formats import KNET, MSEED, OTHER_OBSPY, SAC

FORMATS: tuple[RecordingFormat, ...] = (
    MSEED, SAC, KNET, OTHER_OBSPY,
    peer_at2.FORMAT, csmip_v2.FORMAT, esm.FORMAT, cosmos.FORMAT,
)
_BY_NAME = {f.name: f for f in FORMATS}


def read_file(path: Path):
    """The file as an ObsPy Stream read by the first format that takes it, None when none does.

    Raises
    ------
    FormatError
        For a file of a known format that is damaged (the one-line reason).
    """
    for recording_format in FORMATS:
        if recording_format.is_format(path):
            stream = recording_format.read(path)
            if stream is not None:
                return stream
    return None


def format_of(trace) -> RecordingFormat:
    """The format a trace was read from (by ``stats._format``); a format of ObsPy's that has no
    entry of its own (GSE2, SEISAN, ...) is :data:`~.obspy_formats.OTHER_OBSPY`."""
    return _BY_NAME.get(trace.stats.get("_format"), OTHER_OBSPY)
