"""Which of the model's components (E, N, Z) a trace is, and horizontals turned to E and N.

One rule for channel codes (:func:`component_of_code`), used by the record reader and by the
off-device check of a node bundle: the last letter Z/N/E; X/Y as E/N; 1/2 as N/E (SEED: 1 and
2 are orthogonal horizontals whose azimuths the metadata give, and 1 is the one nearer north);
3 vertical; the two-letter K-NET/CWB codes EW/NS/UD read whole. An azimuth and incidence,
where the file or a StationXML gives them, decide before the code (:func:`orientation`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .formats.sac_headers import sac_value
from .record import RecordError

_WHOLE_CODES = {"EW": "E", "NS": "N", "UD": "Z", "E": "E", "N": "N", "Z": "Z", "V": "Z", "U": "Z"}
# Last letter of a SEED channel code -> component; 1 is the horizontal nearer north (SEED).
_LAST_LETTER = {"Z": "Z", "N": "N", "E": "E", "X": "E", "Y": "N", "1": "N", "2": "E", "3": "Z"}


def component_of_code(channel: str) -> str | None:
    """``"E"``, ``"N"``, ``"Z"`` for a channel code, None when the code does not say.

    Parameters
    ----------
    channel : str
        A SEED channel code (``HNZ``, ``HN1``, ``BHE``), a one-letter component (``Z``,
        ``U``, ``V``) or a K-NET/KiK-net/CWB code (``EW``, ``NS2``, ``UD1``).
    """
    channel = channel.strip().upper()
    if channel in _WHOLE_CODES:
        return _WHOLE_CODES[channel]
    if channel[-2:] in ("EW", "NS", "UD"):
        return _WHOLE_CODES[channel[-2:]]
    if kiknet_site(channel):  # KiK-net EW1/NS2/UD1: direction, then 1 borehole / 2 surface
        return _WHOLE_CODES[channel[:2]]
    return _LAST_LETTER.get(channel[-1:])


def component_of_angles(azimuth_deg: float | None, incidence_deg: float | None) -> str | None:
    """``"Z"`` for a vertical (incidence within 10 deg of 0 or 180, SAC ``cmpinc``), ``"N"`` or
    ``"E"`` for a horizontal (incidence 80-100 deg) by the axis nearer its azimuth (deg from
    north), None when the angles do not say."""
    if incidence_deg is not None and (incidence_deg <= 10.0 or incidence_deg >= 170.0):
        return "Z"
    if incidence_deg is not None and 80.0 <= incidence_deg <= 100.0 and azimuth_deg is not None:
        az = azimuth_deg % 360.0
        return "N" if min(az, 360.0 - az, abs(az - 180.0)) <= 45.0 else "E"
    return None


def orientation(tr) -> str | None:
    """``"E"``, ``"N"``, ``"Z"`` or None (unknown) for a trace.

    SAC ``cmpinc`` (0/180: vertical, 90: horizontal) and ``cmpaz`` decide where given
    (:func:`component_of_angles`); otherwise the channel code (:func:`component_of_code`).
    """
    by_angles = component_of_angles(*component_angles(tr))
    return by_angles if by_angles is not None else component_of_code(tr.stats.channel)


def component_angles(tr) -> tuple[float | None, float | None]:
    """``(azimuth, incidence)`` in degrees of a component, None where unknown.

    SAC ``cmpaz``/``cmpinc`` first; otherwise the StationXML channel's azimuth and dip
    (incidence = dip + 90: SEED dip -90 is up, SAC cmpinc 0 is up) that
    :func:`attach_inventory_angles` attaches as ``stats.inventory_angles``.
    """
    az, inc = sac_value(tr, "cmpaz"), sac_value(tr, "cmpinc")
    az = None if az is None else az % 360.0
    inv_az, inv_inc = tr.stats.get("inventory_angles", (None, None))
    return (az if az is not None else inv_az), (inc if inc is not None else inv_inc)


def attach_inventory_angles(tr, inventory) -> None:
    """Keep the StationXML azimuth and incidence of a trace's channel as ``stats.inventory_angles``."""
    if inventory is None:
        return
    try:
        o = inventory.get_orientation(tr.id, tr.stats.starttime)
    except Exception:  # ObsPy raises a bare Exception when the channel is not in it
        return
    az, dip = o.get("azimuth"), o.get("dip")
    tr.stats.inventory_angles = (None if az is None else float(az) % 360.0,
                                 None if dip is None else float(dip) + 90.0)


def kiknet_site(channel: str) -> str | None:
    """``"1"`` (borehole) or ``"2"`` (surface) for a KiK-net code (EW1, NS2, UD1), else None."""
    ch = channel.strip().upper()
    return ch[2] if len(ch) == 3 and ch[:2] in ("EW", "NS", "UD") and ch[2] in "12" else None


def instrument_code(tr) -> str:
    """Band and instrument code of a trace's channel (``HN`` of ``HNZ``); a KiK-net site number."""
    ch = tr.stats.channel.strip().upper()
    if kiknet_site(ch):  # a KiK-net borehole and its surface sensor are two records
        return ch[2]
    return ch[:2] if len(ch) == 3 and ch[-2:] not in ("EW", "NS", "UD") else ""


def assign_components(traces, inventory, actions: list) -> dict:
    """``{"E"|"N"|"Z": trace}`` of one station's traces (one per channel); a trace of unknown
    orientation takes the first free slot of Z, E, N (reported in ``actions``).

    Raises
    ------
    RecordError
        For two traces of one component or more than three components.
    """
    for tr in traces:
        attach_inventory_angles(tr, inventory)
    slots: dict[str, object] = {}
    unknown = []
    for tr in traces:
        comp = orientation(tr)
        if comp is None:
            unknown.append(tr)
        elif comp in slots:
            raise RecordError(f"two traces for component {comp} ({slots[comp].stats.channel}, "
                              f"{tr.stats.channel})")
        else:
            slots[comp] = tr
    for tr in unknown:
        free = [c for c in ("Z", "E", "N") if c not in slots]
        if not free:
            raise RecordError(f"more than three components ({tr.stats.channel})")
        slots[free[0]] = tr
        name = tr.stats.channel.strip() or Path(tr.stats.path).name
        actions.append(f"{name}: orientation unknown, replayed as {free[0]}")
    return slots


def rotate_horizontals(slots: dict, actions: list) -> None:
    """Rotate two orthogonal horizontals with known ``cmpaz`` to E and N, in place."""
    if "E" not in slots or "N" not in slots:
        return
    az = []
    for c in ("E", "N"):
        value = component_angles(slots[c])[0]
        if value is None:
            return
        az.append(value)
    if az[0] == 90.0 and az[1] == 0.0:
        return
    diff = (az[0] - az[1]) % 180.0
    e, n = slots["E"].stats, slots["N"].stats
    same_grid = e.npts == n.npts and e.sampling_rate == n.sampling_rate and \
        abs(e.starttime - n.starttime) <= 0.5 / e.sampling_rate
    if abs(diff - 90.0) > 5.0 or not same_grid:
        actions.append(f"horizontals at azimuths {az[0]:g}/{az[1]:g} not rotated (not orthogonal "
                       "or not on one grid)")
        return
    h = [slots[c].data.astype(np.float64) for c in ("E", "N")]
    rad = np.radians(az)
    east = h[0] * np.sin(rad[0]) + h[1] * np.sin(rad[1])
    north = h[0] * np.cos(rad[0]) + h[1] * np.cos(rad[1])
    names = (slots["E"].stats.channel, slots["N"].stats.channel)
    slots["E"].data, slots["N"].data = east, north
    actions.append(f"rotated {names[1]}/{names[0]} (azimuths {az[1]:g}/{az[0]:g} deg) to N/E")
