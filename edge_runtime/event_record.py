"""The event record: what the node writes for each declared and closed event.

One JSON object per line of the event file (``[output] events``), and the payload of
every alert action: ``type`` ``"trigger"`` when an event is declared, ``"event"`` when it
closes. The fields, their units and when each is present are fixed by the JSON Schema
shipped beside this module (:data:`SCHEMA_PATH`, ``schemas/event.schema.json``) and
described in ``docs/events.md``; the tests validate every record the node writes against
it. Times are kept as integer microseconds since 1970-01-01 UTC (``*_us``) and written
beside them as ISO-8601 strings (:func:`with_iso_times`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("schemas") / "event.schema.json"


def iso_utc(time_us: int) -> str | None:
    """Microseconds since the epoch to an ISO-8601 UTC string (None if not representable)."""
    try:
        return datetime.fromtimestamp(time_us / 1e6, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def with_iso_times(event: dict) -> dict:
    """A copy of ``event`` with an ISO-8601 string beside every top-level ``*_us`` time.

    ``p_time_us`` gains ``p_time``; a time that is ``None`` or not representable gives
    ``None``.
    """
    out = dict(event)
    for key in [k for k in event if k.endswith("_us")]:
        out[key[:-3]] = None if event[key] is None else iso_utc(event[key])
    return out


def event_id(station: str, start_us: int) -> str:
    """Identity of an event, unique across restarts of the node.

    Parameters
    ----------
    station : str
        Station code of the node.
    start_us : int
        Centre of the event's first triggering window, microseconds since 1970-01-01 UTC.

    Returns
    -------
    str
        ``STATION-YYYYMMDDTHHMMSS.mmm`` (UTC, milliseconds truncated).
    """
    start = datetime.fromtimestamp(start_us / 1e6, tz=timezone.utc)
    return f"{station}-{start.strftime('%Y%m%dT%H%M%S.%f')[:-3]}"


def load_schema() -> dict:
    """The event record's JSON Schema (draft 2020-12) as a dict."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
