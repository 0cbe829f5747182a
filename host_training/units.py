"""Units of recorded samples: the one table of names and factors to SI units.

The record reader (:mod:`host_training.recordings.reader`) and the ``prepare`` readers of outside
data sets (SeisBench folders, SAC folders) take their unit names from here, so a spelling
one accepts the others accept too. Gravity itself is :data:`edge_runtime.sensors.G_MPS2`.

>>> canonical_unit("cm/sec^2"), measurement_of("mg")
('cm/s2', ('acceleration', 0.00980665))
"""

from __future__ import annotations

from edge_runtime.sensors import G_MPS2

GAL_TO_MPS2 = 0.01  # 1 Gal = 1 cm/s^2
# Acceleration units -> factor to m/s^2; velocity units -> factor to m/s (then differentiated).
ACCELERATION_UNITS = {"m/s2": 1.0, "gal": GAL_TO_MPS2, "cm/s2": GAL_TO_MPS2, "mm/s2": 1e-3, "nm/s2": 1e-9,
                      "g": G_MPS2, "mg": 1e-3 * G_MPS2}
VELOCITY_UNITS = {"m/s": 1.0, "cm/s": 0.01, "mm/s": 1e-3, "nm/s": 1e-9}
UNIT_CHOICES = ("counts", *ACCELERATION_UNITS, *VELOCITY_UNITS)
# Other spellings of the same units, found in strong-motion headers, catalogs and data_format.
UNIT_ALIASES = {"m/s^2": "m/s2", "m/s**2": "m/s2", "mps2": "m/s2", "cm/s^2": "cm/s2",
                "nm/s^2": "nm/s2", "mm/s^2": "mm/s2", "count": "counts", "raw": "counts",
                "cm/s/s": "cm/s2", "m/s/s": "m/s2", "gals": "gal", "cm/s2/s": "cm/s2",
                "ms/s2": "m/s2", "cms/s2": "cm/s2", "mms/s2": "mm/s2", "m//s2": "m/s2", "mps": "m/s"}
# Every name a command line accepts as it is (the spellings canonical_unit also folds aside).
UNIT_NAMES = tuple(sorted({*UNIT_CHOICES, *UNIT_ALIASES}))


def canonical_unit(units: str) -> str | None:
    """``units`` as one of :data:`UNIT_CHOICES` (``m/s^2`` -> ``m/s2``, ``GAL`` -> ``gal``), or
    None when it names no unit known here."""
    key = str(units).strip().lower().replace(" ", "")
    # Spellings found in strong-motion headers and catalogs: m/s², cm/sec^2, m s-2, gals.
    key = key.replace("²", "2").replace("**", "").replace("^", "").replace("/sec", "/s")
    if key.endswith("s-2"):
        key = key[:-3] + "/s2"
    key = UNIT_ALIASES.get(key, key)
    return key if key in UNIT_CHOICES else None


def measurement_of(unit: str) -> tuple[str, float]:
    """What a canonical unit measures and its factor to SI.

    Returns
    -------
    tuple
        ``("acceleration", factor to m/s^2)``, ``("velocity", factor to m/s)`` or
        ``("counts", 1.0)``.
    """
    if unit in ACCELERATION_UNITS:
        return "acceleration", ACCELERATION_UNITS[unit]
    if unit in VELOCITY_UNITS:
        return "velocity", VELOCITY_UNITS[unit]
    if unit == "counts":
        return "counts", 1.0
    raise ValueError(f"unit {unit!r} unknown; use one of {', '.join(UNIT_CHOICES)}")
