"""What the reader is given: files, globs and folders sorted into waveform and metadata files."""

from __future__ import annotations

import glob
from pathlib import Path

from .record import short_reason

# Files in a folder that are not waveforms: skipped quietly (a file named on the command
# line is always read). Text-like ones are still read when they hold binary data (a SAC
# file named .txt); ObsPy's ASCII formats (TSPAIR, SLIST, K-NET) are read under any other name.
WAVEFORM_SUFFIXES_IGNORED = {".md", ".txt", ".csv", ".json", ".png", ".jpg", ".jpeg", ".gif",
                             ".svg", ".pdf", ".py", ".ipynb", ".sh", ".yaml", ".yml", ".html",
                             ".log", ".jsonl", ".onnx", ".pt", ".ps", ".eps", ".doc", ".docx",
                             ".xls", ".xlsx", ".odt", ".ods", ".db", ".ini", ".cfg", ".toml",
                             ".rst", ".tex", ".bib", ".npy", ".npz", ".pkl", ".h5", ".hdf5"}
_TEXT_SUFFIXES = {".txt", ".log", ".dat"}


def expand_sources(sources) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """Files, globs and folders to ``(files, metadata_files, skipped)``.

    Folders are searched recursively; README/CSV/JSON/... files in them are ignored
    quietly, StationXML (``.xml``) and QuakeML (``.quakeml``, ``.qml``) are returned as
    metadata. A path that does not exist, a glob without a match and a folder
    without any candidate file are ``(source, reason)`` in ``skipped``.
    """
    files, meta, skipped = [], [], []
    for source in sources:
        source = str(source)
        # A path that exists is a path, even with [ ] in its name ("data [copy]").
        if any(ch in source for ch in "*?[") and not Path(source).exists():
            matches = [Path(p) for p in sorted(glob.glob(source, recursive=True)) if Path(p).is_file()]
            if not matches:
                skipped.append((source, "no file matches this pattern"))
            files += matches
            continue
        path = Path(source)
        if path.is_dir():
            wave, found_meta = _folder_files(path)
            meta += found_meta
            if not wave:
                skipped.append((source, "folder holds no waveform files"))
            files += wave
        elif path.is_file():
            (meta if metadata_kind(path) else files).append(path)
        else:
            skipped.append((source, "no such file or folder"))
    seen, unique = set(), []
    for p in files:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, meta, skipped


def _folder_files(path: Path) -> tuple[list[Path], list[Path]]:
    """``(waveform files, metadata files)`` below a folder, hidden files and folders left out."""
    found = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")
             and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    candidates = [p for p in found if p.suffix.lower() not in WAVEFORM_SUFFIXES_IGNORED
                  or (p.suffix.lower() in _TEXT_SUFFIXES and _is_binary(p))]
    return ([p for p in candidates if metadata_kind(p) is None],
            [p for p in candidates if metadata_kind(p) is not None])


def _is_binary(path: Path) -> bool:
    """Whether a file's first 4 kB hold a NUL byte (binary data, not text)."""
    try:
        with open(path, "rb") as f:
            return b"\0" in f.read(4096)
    except OSError:
        return False


def metadata_kind(path: Path) -> str | None:
    """``"quakeml"``, ``"stationxml"`` or ``"response"`` (dataless SEED, RESP) for a metadata
    file, None for anything else."""
    suffix = path.suffix.lower()
    if suffix in (".quakeml", ".qml"):
        return "quakeml"
    if suffix in (".dataless", ".resp") or path.name.upper().startswith("RESP."):
        return "response"  # dataless SEED or RESP: ObsPy's read_inventory reads both
    if suffix == ".xml":
        try:
            head = path.read_bytes()[:2000].lower()
        except OSError:
            return None
        if b"fdsnstationxml" in head or b"<fdsnstationxml" in head:
            return "stationxml"
        if b"quakeml" in head:
            return "quakeml"
        return "stationxml"
    return None


def load_metadata(paths) -> tuple[object, list, list[tuple[str, str]]]:
    """StationXML (or dataless SEED, RESP) and QuakeML files to ``(inventory, events, skipped)``."""
    from obspy import Inventory, read_events, read_inventory

    inventory, events, skipped = None, [], []
    for path in paths:
        kind = metadata_kind(Path(path))
        try:
            if kind == "quakeml":
                events += list(read_events(glob.escape(str(path))))
            else:
                inv = read_inventory(glob.escape(str(path)))
                inventory = inv if inventory is None else inventory + inv
        except Exception as exc:  # ObsPy raises many types on damaged files
            skipped.append((str(path), f"not a readable {kind or 'metadata'} file "
                                       f"({short_reason(exc)})"))
    if inventory is not None and not isinstance(inventory, Inventory):
        inventory = Inventory(list(inventory), source="")
    return inventory, events, skipped
