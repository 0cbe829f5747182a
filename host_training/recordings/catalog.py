"""A catalog CSV: which files hold what (earthquake, noise), their units and true arrivals."""

from __future__ import annotations

import csv
import fnmatch
import functools
from dataclasses import dataclass
from pathlib import Path

from .conversion import normalize_units
from .record import RecordError


@dataclass
class CatalogRow:
    """One row of a catalog CSV: which files, what they hold, and the true arrivals."""

    pattern: str
    kind: str | None
    p_time: object = None
    s_time: object = None
    units: str | None = None
    line: int = 0


def read_catalog(path) -> list[CatalogRow]:
    """A catalog CSV: ``files`` (glob relative to the CSV), ``kind``, ``p_time``, ``s_time``.

    ``kind`` is ``earthquake``, ``noise`` or ``other``; times are ISO-8601 UTC; every
    column but ``files`` is optional, and so is a ``units`` column (its first word, e.g.
    ``gal`` in ``"gal (cm/s^2)"``). Other columns are ignored.

    Raises
    ------
    RecordError
        If the file is missing, has no ``files`` column, or a value cannot be parsed
        (the message names the line and column).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read catalog ({exc.__class__.__name__})") from None
    try:  # a spreadsheet's export may use ';' or tabs
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    if "files" not in columns:
        raise RecordError(f"{path}: catalog has no 'files' column (columns: {', '.join(columns)})")
    rows = []
    for i, raw in enumerate(reader, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if row.get("files"):
            rows.append(_catalog_row(row, path, i))
    return rows


def _catalog_row(row: dict, path: Path, i: int) -> CatalogRow:
    """One CSV line (lower-case column names) as a :class:`CatalogRow` of the CSV at ``path``."""
    from obspy import UTCDateTime

    kind = row.get("kind") or None
    if kind is not None:
        kind = kind.lower()
        if kind not in ("earthquake", "noise", "other"):
            raise RecordError(f"{path}:{i}: kind {kind!r} is not earthquake, noise or other")
    times = {}
    for col, aliases in (("p_time", ("p_time", "ptime", "p_arrival", "tp")),
                         ("s_time", ("s_time", "stime", "s_arrival", "ts"))):
        name = next((a for a in aliases if row.get(a)), None)
        if name:
            try:
                value = row[name]
                times[col] = UTCDateTime(float(value) if _is_number(value) else value)
            except Exception:
                raise RecordError(f"{path}:{i}: {name} {row[name]!r} is not an ISO UTC time") from None
    units = None
    if row.get("units"):
        units = normalize_units(row["units"].split()[0], f"{path}:{i}: units")
    # A 'files' cell may carry a remark after the pattern ("a.mseed (+ a.xml)").
    pattern = row["files"].split(" (")[0].strip()
    return CatalogRow(str(path.parent / pattern), kind, times.get("p_time"), times.get("s_time"),
                      units, i)


def _is_number(text: str) -> bool:
    """Whether a catalog cell is a number (epoch seconds), not an ISO time."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def catalog_row_of(files, rows: list[CatalogRow]) -> CatalogRow | None:
    """The catalog row whose ``files`` glob (or folder) holds one of ``files``."""
    paths = [(str(f), Path(f).resolve()) for f in files]
    for row in rows:
        pattern, folder = _resolved_pattern(row.pattern)
        for name, path in paths:
            if fnmatch.fnmatch(str(path), pattern) or fnmatch.fnmatch(name, row.pattern) \
                    or (folder is not None and folder in path.parents):
                return row
    return None


@functools.lru_cache(maxsize=4096)
def _resolved_pattern(pattern: str) -> tuple[str, Path | None]:
    """A catalog pattern resolved once (a catalog of thousands of rows meets thousands of files)."""
    resolved = Path(pattern).resolve()
    return str(resolved), (resolved if resolved.is_dir() else None)
