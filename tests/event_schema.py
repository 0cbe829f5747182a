"""Every event record a node test sees must match the schema shipped with the node.

``edge_runtime/schemas/event.schema.json`` (docs/events.md) is the contract between the
node and whatever reads its events; the node tests call :func:`check_events` on what the
node wrote, so a field added, renamed or retyped without the schema fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from edge_runtime.event_record import load_schema

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def check_events(records) -> list[dict]:
    """Validate ``records`` (dicts, or a path to an event file); return them as dicts.

    Raises
    ------
    AssertionError
        Naming the record and every way it breaks the schema.
    """
    if isinstance(records, (str, Path)):
        records = [json.loads(line) for line in Path(records).read_text().splitlines()]
    records = list(records)
    for record in records:
        problems = sorted(f"{'/'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}"
                          for e in VALIDATOR.iter_errors(record))
        assert not problems, f"event record breaks the event schema: {problems}\n{record}"
    return records
