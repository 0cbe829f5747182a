"""Samples made physical: the units of a trace, found in order of precedence, to m/s^2.

Units, in order of precedence: ``units`` given by the caller (``--units``), the ``units``
column of a catalog row, what the file's format states (SAC ``idep``, which SAC defines as
nm/s^2 and nm/s; a K-NET scale factor; a strong-motion text header), and a StationXML
response for data in counts (``remove_response`` to acceleration). Anything else is refused:
the reader never guesses units.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.sensors import G_MPS2
from host_training.units import ACCELERATION_UNITS, UNIT_CHOICES, VELOCITY_UNITS, canonical_unit

from .record import RecordError, short_reason

# No accelerograph records more than this; beyond it the units are wrong, not the shaking.
MAX_PLAUSIBLE_MPS2 = 10 * G_MPS2
# A record whose SAC idep (IACC nm/s^2, IVEL nm/s) gives a peak below this holds other units:
# 1e-6 m/s^2 is far below any accelerograph's self-noise and any earthquake record.
MIN_PLAUSIBLE_SAC_MPS2 = 1e-6
_ACCELERATION_INPUT = {"M/S**2", "M/S^2", "M/S/S", "M/S2", "M/SEC**2", "M/S**2/COUNT"}


def normalize_units(units: str, what: str = "units") -> str:
    """A unit name as one of :data:`UNIT_CHOICES` (``m/s^2`` -> ``m/s2``, ``GAL`` -> ``gal``)."""
    key = canonical_unit(units)
    if key is None:
        raise RecordError(f"{what} {units!r} unknown; use one of {', '.join(UNIT_CHOICES)}")
    return key


def file_header_units(tr, label: str) -> tuple[str, str]:
    """``(source, units)`` from a text header's units (``stats.file_units``) of a ``label`` file."""
    unit = tr.stats.file_units
    source = f"{label} header"
    return source, "g" if unit.lower() == "g" else normalize_units(unit, f"{source} units")


def units_for(tr, units, row, inventory, recording_format) -> tuple[str, str | None]:
    """``(where the units came from, units)`` of one trace; ``("nothing", None)`` when unknown.

    ``recording_format`` is the trace's :class:`~.formats.base.RecordingFormat` (what its
    header says about units), ``row`` its :class:`~.catalog.CatalogRow` or None.
    """
    if units is not None:
        return "--units", units
    if row is not None and row.units is not None:
        return f"catalog line {row.line}", row.units
    declared = recording_format.units_of(tr) if recording_format.units_of is not None else None
    if declared is not None:
        return declared
    if _inventory_has_response(inventory, tr):
        return "StationXML response", "counts"  # the inventory turns counts into m/s^2
    return "nothing", None


def to_acceleration(tr, units: str | None, inventory, unit_source: str,
                    keep_float32: bool = False) -> tuple[str, list[str]]:
    """Convert one trace in place to m/s^2; return ``(units label, actions)``.

    The samples become float64, except float32 samples already in m/s^2 when
    ``keep_float32``: float64 would hold exactly the same values in twice the memory.

    Raises
    ------
    RecordError
        When the units are unknown, not acceleration or velocity, or counts without a
        response.
    """
    actions = []
    if units is None:
        where = ("the StationXML has no response for this channel at "
                 f"{tr.stats.starttime.strftime('%Y-%m-%dT%H:%M:%S')}" if inventory is not None
                 else "no response in --inventory")
        channel = tr.stats.channel.strip().upper()
        hint = "m/s|nm/s|counts" if len(channel) == 3 and channel[1] in "HL" and \
            channel[:2] not in ("EW", "NS", "UD") else "counts|gal|m/s2|g"
        raise RecordError(f"{tr.id}: units unknown (no SAC idep, no catalog units, {where}); "
                          f"give --units {hint}")
    if units in ("nm", "volts"):
        raise RecordError(f"{tr.id}: data are {'displacement' if units == 'nm' else 'volts'} "
                          f"({unit_source}); only acceleration, velocity or counts with a "
                          "response can be replayed")
    exact = keep_float32 and tr.data.dtype == np.float32 and ACCELERATION_UNITS.get(units) == 1.0
    tr.data = tr.data if exact else tr.data.astype(np.float64)
    if units == "knet":  # ObsPy puts the header's scale factor (gal per count) into calib, in m/s^2
        tr.data *= float(tr.stats.calib)
        tr.stats.calib = 1.0
        actions.append(f"{tr.stats.channel}: counts x scale factor (K-NET header) to m/s^2")
        return f"counts -> m/s2 ({unit_source})", actions
    if units == "counts":
        if inventory is None:
            raise RecordError(f"{tr.id}: data in counts but no StationXML response "
                              "(give --inventory, or --units if the data are physical)")
        try:
            how = remove_response(tr, inventory)
        except Exception as exc:  # ObsPy raises ValueError/Exception for a missing response
            raise RecordError(f"{tr.id}: data in counts and the inventory has no usable "
                              f"response for it ({short_reason(exc)})") from None
        actions.append(f"{tr.stats.channel}: {how} (StationXML) to m/s^2")
        return f"counts -> m/s2 ({unit_source})", actions
    if units in VELOCITY_UNITS:
        tr.data *= VELOCITY_UNITS[units]
        tr.differentiate()
        actions.append(f"{tr.stats.channel}: velocity ({units}) differentiated to acceleration")
        return f"{units} -> m/s2 ({unit_source})", actions
    tr.data *= ACCELERATION_UNITS[units]
    return f"{units} ({unit_source})", actions


def convert_components(slots: dict, units, row, inventory, format_of, actions: list,
                       keep_float32: bool = False) -> set:
    """Every component of ``slots`` to m/s^2 in place (:func:`units_for`, :func:`to_acceleration`);
    returns the set of unit labels, the conversions are appended to ``actions``."""
    labels = set()
    for tr in slots.values():
        source, trace_units = units_for(tr, units, row, inventory, format_of(tr))
        label, acts = to_acceleration(tr, trace_units, inventory, source, keep_float32)
        labels.add(label)
        actions += acts
    return labels


def remove_response(tr, inventory) -> str:
    """Counts to m/s^2 in place with a StationXML response; returns what was done.

    An accelerometer's response (input in m/s^2) is flat across the band the model uses,
    so the counts are divided by its overall sensitivity, as strong-motion practice does:
    no taper, so a record that begins just before P keeps its onset. Any other response
    (a seismometer, input m/s) is deconvolved to acceleration with ObsPy, on a copy
    padded with zeros (20 % each side) so that ObsPy's taper falls on the padding only.
    """
    response = inventory.get_response(tr.id, tr.stats.starttime)
    sensitivity = response.instrument_sensitivity
    if sensitivity is None or not sensitivity.value:  # some StationXML give the stages only
        try:
            response.recalculate_overall_sensitivity()
            sensitivity = response.instrument_sensitivity
        except Exception:  # ObsPy raises several types on incomplete stages
            sensitivity = None
    units = str(getattr(sensitivity, "input_units", "") or "").strip().upper().replace(" ", "")
    if not units and response.response_stages:
        units = str(response.response_stages[0].input_units or "").strip().upper().replace(" ", "")
    if units in _ACCELERATION_INPUT and sensitivity is not None and sensitivity.value:
        tr.data = tr.data / float(sensitivity.value)
        return f"divided by the sensitivity {float(sensitivity.value):.6g} counts/(m/s^2)"
    data = tr.data - np.median(tr.data)
    pad = max(16, int(0.2 * len(data)))
    padded = tr.copy()
    padded.data = np.concatenate([np.zeros(pad), data, np.zeros(pad)])
    padded.stats.response = response  # looked up at the record's time, not the padding's
    padded.stats.starttime = tr.stats.starttime - pad / tr.stats.sampling_rate
    # No water level (with output ACC it clips every frequency 1000x above the lowest one);
    # a cosine pre-filter from 0.05-0.1 Hz (below the model's high-pass) to 0.8-0.9 Nyquist.
    nyquist = 0.5 * tr.stats.sampling_rate
    padded.remove_response(output="ACC", water_level=None,
                           pre_filt=(0.05, 0.1, 0.8 * nyquist, 0.9 * nyquist))
    tr.data = padded.data[pad:pad + len(data)]
    return f"response ({units or 'input units unknown'}) removed"


def _inventory_has_response(inventory, tr) -> bool:
    if inventory is None:
        return False
    try:
        inventory.get_response(tr.id, tr.stats.starttime)
        return True
    except Exception:  # ObsPy raises a bare Exception when the channel is not in it
        return False


def _median(row: np.ndarray):
    """``np.median(row)`` of finite samples, bit for bit, from a partition around one point:
    np.median partitions around three (the two middle ones and the last, for NaNs), five
    times slower on an hour of float32 samples (a station-day's scan spent 1 us a window in it)."""
    half = len(row) // 2
    part = np.partition(row, half)
    if len(row) % 2:
        return np.mean(part[half:half + 1])
    return np.mean(np.array([part[:half].max(), part[half]]))  # np.median's mean of the two


def check_plausible(data: np.ndarray, labels) -> None:
    """Refuse a record whose acceleration says its units are wrong (``data`` (3, n) m/s^2).

    Raises
    ------
    RecordError
        For NaN/inf samples, a peak beyond any accelerograph, all zeros, or a peak below any
        accelerograph's noise with units from SAC ``idep``.
    """
    if not np.all(np.isfinite(data)):
        raise RecordError("conversion to acceleration gave NaN/inf samples")
    # Row by row and from the extremes: a day-long record holds 10^7 samples per
    # component, and |row - median| would make two float64 temporaries of each row.
    # Rounding is monotonic, so max|x - m| is exactly max(x.max() - m, m - x.min()).
    peak = 0.0
    for row in data:
        m = _median(row)
        peak = max(peak, float(row.max() - m), float(m - row.min()))
    if peak > MAX_PLAUSIBLE_MPS2:
        raise RecordError(f"peak acceleration {peak:.3g} m/s^2 (units {', '.join(sorted(labels))}) "
                          f"is beyond any accelerograph ({MAX_PLAUSIBLE_MPS2:.0f} m/s^2): "
                          "the units are wrong; check --units / --inventory")
    if not np.any(data):
        raise RecordError("every sample is zero (dead channel)")
    if 0.0 < peak < MIN_PLAUSIBLE_SAC_MPS2 and any("(SAC idep)" in label for label in labels):
        # SAC defines IACC as nm/s^2 and IVEL as nm/s, but many writers put m/s^2 or gal there.
        raise RecordError(f"peak acceleration {peak:.3g} m/s^2 taking SAC idep as nm (as SAC "
                          "defines it) is below any accelerograph's noise: the file likely holds "
                          "m/s^2, gal or m/s; give --units")
