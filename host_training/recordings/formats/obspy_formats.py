"""The formats ObsPy reads (miniSEED, SAC, K-NET, GSE2, SEISAN, ...), through its own plug-ins.

miniSEED, SAC and K-NET are entries of their own because their files say different things
about units and picks; every other format ObsPy knows is one catch-all entry that lets
ObsPy detect it (in ObsPy's order). The ``is`` functions are ObsPy's plug-in detectors
(``obspy.io.mseed.core._is_mseed`` ...), tried in ObsPy's order: miniSEED, then SAC; K-NET
(a first line ``Origin Time``, which no other format's files begin with) before the rest.
"""

from __future__ import annotations

import glob
from pathlib import Path

from .base import UNITS_IN_HEADER, UNITS_NONE, UNITS_SCALE_FACTOR, RecordingFormat
from .sac_headers import idep_units


def obspy_read(path: Path, format: str | None = None, **kwargs):
    """``obspy.read`` of one file (``[`` in its name taken literally: ObsPy globs a str);
    ``kwargs`` go to ``obspy.read`` (``starttime``, ``endtime``)."""
    from obspy import read

    return read(glob.escape(str(path)), format=format, **kwargs)


def is_mseed(path: Path) -> bool:
    from obspy.io.mseed.core import _is_mseed

    return bool(_is_mseed(str(path)))


def is_sac(path: Path) -> bool:
    from obspy.io.sac.core import _is_sac

    return bool(_is_sac(str(path)))


def is_knet(path: Path) -> bool:
    from obspy.io.nied.knet import _is_knet_ascii

    return bool(_is_knet_ascii(str(path)))


def read_any(path: Path):
    """Any other format ObsPy detects; None when it finds no format that fits."""
    try:
        return obspy_read(path)
    except TypeError:  # ObsPy's "Unknown format"
        return None


def knet_units(tr) -> tuple[str, str]:
    """ObsPy puts a K-NET header's scale factor (gal per count) into ``calib``, in m/s^2."""
    return "K-NET scale factor", "knet"


MSEED = RecordingFormat(
    name="MSEED", label="miniSEED", is_format=is_mseed,
    read=lambda path: obspy_read(path, "MSEED"), units=UNITS_NONE)
SAC = RecordingFormat(
    name="SAC", label="SAC", is_format=is_sac, read=lambda path: obspy_read(path, "SAC"),
    units=UNITS_IN_HEADER, units_of=idep_units, picks=True)
KNET = RecordingFormat(
    name="KNET", label="K-NET ASCII", is_format=is_knet, read=lambda path: obspy_read(path, "KNET"),
    units=UNITS_SCALE_FACTOR, units_of=knet_units)
# Also the format of a trace that names none of the registry's: SAC alphanumeric (SACXY)
# keeps SAC's idep, which stands for its units as in a binary SAC file.
OTHER_OBSPY = RecordingFormat(
    name="OBSPY", label="another format ObsPy reads", is_format=lambda path: True, read=read_any,
    units=UNITS_NONE, units_of=idep_units)
