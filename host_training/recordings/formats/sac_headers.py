"""SAC header fields as the record reader reads them: units, picks, component angles, origin.

SAC's null value (-12345) becomes None at this boundary, as ObsPy's ``SACTrace`` does. The
strong-motion text readers write what their files give into the same fields
(``cmpaz``/``cmpinc``, ``stla``/``stlo``, ``evla``/``evlo``/``evdp``/``o``), so one set of
rules reads every format.
"""

from __future__ import annotations

import math

from ..record import Pick

# SAC idep enumeration (SAC manual: IDISP nm, IVEL nm/s, IACC nm/s^2).
SAC_IDEP = {5: None, 6: "nm", 7: "nm/s", 8: "nm/s2", 50: "volts"}


def sac_value(tr, key: str) -> float | None:
    """A SAC float header as a float; None when undefined (-12345) or not finite (damaged)."""
    sac = getattr(tr.stats, "sac", None) or {}
    value = sac.get(key)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value == -12345.0 or not math.isfinite(value) else value


def sac_units(tr) -> str | None:
    """The units SAC's ``idep`` names (``nm/s2``, ``nm/s``, ``nm``, ``volts``), None when unset."""
    sac = getattr(tr.stats, "sac", None) or {}
    idep = sac.get("idep")
    if idep is None or idep == -12345:
        return None
    return SAC_IDEP.get(int(idep))


def idep_units(tr) -> tuple[str, str] | None:
    """``("SAC idep", units)`` of a trace whose ``idep`` is set (a format's ``units_of``)."""
    units = sac_units(tr)
    return None if units is None else ("SAC idep", units)


def sac_reference(tr):
    """The SAC reference time (``UTCDateTime``) of a trace, from which its picks count.

    SAC times are seconds after the reference, ``b`` the first sample's; once a trace is
    trimmed or cut (its start moved, ``b`` not), only the reference kept by
    :func:`keep_sac_reference` is right.
    """
    kept = tr.stats.get("sac_reference")
    return kept if kept is not None else tr.stats.starttime - (sac_value(tr, "b") or 0.0)


def keep_sac_reference(tr) -> None:
    """Fix a SAC trace's reference time in its header before its start is moved."""
    if tr.stats.get("sac") is not None and tr.stats.get("sac_reference") is None:
        tr.stats.sac_reference = sac_reference(tr)


def label_phase(label) -> str | None:
    """``"P"``/``"S"`` from a SAC pick label (``P``, ``Pn``, ``iPU0``, ``eS``), else None."""
    text = str(label or "").strip().upper()
    if not text or text.startswith("-12345"):
        return None
    if len(text) >= 2 and text[0] in "IE" and text[1] in "PS":
        text = text[1:]
    return text[0] if text[0] in "PS" else None


def sac_picks(tr) -> dict:
    """P and S picks from one SAC trace's headers (the earliest of each phase)."""
    sac = getattr(tr.stats, "sac", None) or {}
    reference = sac_reference(tr)
    found = {}
    slots = [("a", "ka")] + [(f"t{i}", f"kt{i}") for i in range(10)]
    for value_key, label_key in slots:
        value = sac_value(tr, value_key)
        if value is None:
            continue
        phase = label_phase(sac.get(label_key))
        if phase is None and value_key == "a" and not str(sac.get(label_key) or "").strip():
            phase = "P"  # SAC's 'a' is the first arrival
        if phase is None:
            continue
        time = reference + float(value)
        label = str(sac.get(label_key) or "").strip()
        source = f"sac {value_key}" + (f" ({label_key}={label!r})" if label else "")
        if phase not in found or time < found[phase].time:
            found[phase] = Pick(time, source)
    return found


def unlabelled_picks(tr) -> list[str]:
    """SAC pick headers ``t0``..``t9`` set without a label (a phase cannot be told)."""
    sac = getattr(tr.stats, "sac", None) or {}
    return [f"t{i}" for i in range(10)
            if sac_value(tr, f"t{i}") is not None
            and not str(sac.get(f"kt{i}") or "").strip().strip("-12345")]


def sac_origin(trace):
    """``(origin time, latitude, longitude, depth km)`` from SAC ``o``/``evla``/``evlo``/``evdp``,
    None without them."""
    values = [sac_value(trace, k) for k in ("evla", "evlo", "o")]
    if any(v is None for v in values) or abs(values[0]) > 90.0:
        return None
    depth = sac_value(trace, "evdp") or 0.0
    if depth > 1000.0:  # some writers put m in evdp
        depth /= 1000.0
    return sac_reference(trace) + values[2], values[0], values[1], depth
