"""``prepare merge``: several prepared datasets -> one balanced, split dataset with a card.

Steps:

1. read the metadata of every input (waveforms stay on disk); an input that cannot be
   read, or has another sampling rate or window length than the first, is skipped and
   named in the card;
2. class balance (``--balance undersample``: every class cut to the size of the smallest,
   seeded; ``--max-per-class`` caps each class);
3. split by group: the windows of one event (``source_id``) always share a split; with
   ``--split-by station`` every window of a station does too (events and stations that
   share windows are joined, so neither an event nor a station is ever in two splits);
   ``--split-by date`` fills train, then val, then test in order of the groups' earliest
   ``trace_start_time`` (a time split as in Clements' recipe); ``event`` (default) orders
   the groups at random (seeded);
4. copy the chosen windows bucket by bucket into the output (SeisBench format), one
   resumable part per input;
5. write ``data_card.json`` and print it as a table: counts per class, split, station,
   source and pick source, sampling rates, window length, every file or trace a reader
   or the merge skipped with its reason, and ``card_sha256``, a hash of the card
   (throughput numbers excluded) that other tools copy into the ONNX metadata.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from pathlib import Path

import h5py
import numpy as np

from ..datasets.window_dataset import read_data_format
from .runs import (
    CONFIG_IGNORED,
    REPORT,
    PrepareError,
    PrepareRun,
    check_fractions,
    copy_windows,
)

log = logging.getLogger(__name__)
CARD = "data_card.json"
SPLIT_NAMES = ("train", "val", "test")


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _read_input(folder: Path):
    """Rows (compact), sampling rate, window length and reader report of one input."""
    meta, wave = folder / "metadata.csv", folder / "waveforms.hdf5"
    if not meta.is_file() or not wave.is_file():
        raise ValueError("no metadata.csv + waveforms.hdf5 (not a dataset folder)")
    try:
        with h5py.File(wave, "r") as f:
            fmt = read_data_format(f)
    except OSError as exc:
        raise ValueError(f"waveforms.hdf5 not readable ({exc})") from exc
    rows = []
    with open(meta, newline="") as fh:
        reader = csv.DictReader(fh)
        for key in ("trace_name", "label"):
            if key not in (reader.fieldnames or []):
                raise ValueError(f"metadata.csv has no '{key}' column")
        for row in reader:
            rows.append({k: row.get(k, "") for k in ("label", "source_id", "station_code",
                                                       "trace_start_time", "source", "pick_source",
                                                       "original_sampling_rate_hz", "trace_npts",
                                                       "trace_sampling_rate_hz")})
    rates = {r["trace_sampling_rate_hz"] or str(fmt.get("sampling_rate", "")) for r in rows}
    npts = {r["trace_npts"] for r in rows}
    if len(rates) > 1 or len(npts) > 1:
        raise ValueError(f"mixed sampling rates {sorted(rates)} or window lengths {sorted(npts)}")
    fs = float(rates.pop()) if rates else float(fmt.get("sampling_rate", "nan"))
    n = int(npts.pop()) if npts else 0
    report = json.loads((folder / REPORT).read_text()) if (folder / REPORT).is_file() else {}
    return rows, fs, n, report


def _time_key(text: str) -> float:
    if not text:
        return np.inf
    try:
        return float(np.datetime64(text.replace("Z", "").replace(" ", "T"), "ms").astype(np.int64))
    except ValueError:
        return np.inf


def choose(rows_by_input: list, args) -> list:
    """Seeded selection and split: per input, an array of split names ('' = not used)."""
    rng = np.random.default_rng(args.seed)
    labels = np.array([r["label"] for rows in rows_by_input for r in rows])
    owner = np.concatenate([np.full(len(rows), i) for i, rows in enumerate(rows_by_input)]) \
        if rows_by_input else np.zeros(0, int)
    local = np.concatenate([np.arange(len(rows)) for rows in rows_by_input]) \
        if rows_by_input else np.zeros(0, int)
    keep = np.ones(len(labels), bool)
    if args.classes:
        keep &= np.isin(labels, args.classes)
    classes = sorted(set(labels[keep]))
    if args.balance == "undersample" and classes:
        target = min(int(np.sum(keep & (labels == c))) for c in classes)
        if args.max_per_class:
            target = min(target, args.max_per_class)
        for c in classes:
            idx = np.flatnonzero(keep & (labels == c))
            drop = rng.permutation(idx)[target:]
            keep[drop] = False
    elif args.max_per_class:
        for c in classes:
            idx = np.flatnonzero(keep & (labels == c))
            keep[rng.permutation(idx)[args.max_per_class:]] = False
    # Groups: windows of an event (and of a station with --split-by station) stay together.
    uf = _UnionFind()
    group_of = {}
    for j in np.flatnonzero(keep):
        r = rows_by_input[owner[j]][local[j]]
        event = f"event:{r['source_id']}" if r["source_id"] else f"window:{owner[j]}:{local[j]}"
        uf.find(event)
        if args.split_by == "station" and r["station_code"]:
            uf.union(event, f"station:{r['station_code']}")
        group_of[j] = event
    members = defaultdict(list)
    for j, key in group_of.items():
        members[uf.find(key)].append(j)
    roots = sorted(members)
    if args.split_by == "date":
        times = {g: min(_time_key(rows_by_input[owner[j]][local[j]]["trace_start_time"]) for j in js)
                 for g, js in members.items()}
        tie = rng.permutation(len(roots))
        order = sorted(range(len(roots)), key=lambda i: (times[roots[i]], tie[i]))
        roots = [roots[i] for i in order]
    else:
        roots = [roots[i] for i in rng.permutation(len(roots))]
    fractions = np.asarray(args.fractions, float) / np.sum(args.fractions)
    bounds = np.cumsum(fractions) * int(np.sum(keep))
    splits = [np.full(len(rows), "", dtype=object) for rows in rows_by_input]
    done = 0
    for g in roots:
        js = members[g]
        s = SPLIT_NAMES[min(int(np.searchsorted(bounds, done, side="right")), 2)]
        for j in js:
            splits[owner[j]][local[j]] = s
        done += len(js)
    return splits


def build_card(out: Path, inputs: list, rows_by_input: list, splits: list, skipped: list, fs: float,
               n: int, args) -> dict:
    """The data card (a dict; ``card_sha256`` covers everything but ``throughput``)."""
    per_split = {s: Counter() for s in SPLIT_NAMES}
    classes, stations, picks, rates = Counter(), Counter(), Counter(), Counter()
    sources = defaultdict(Counter)
    events = {s: set() for s in SPLIT_NAMES}
    used_inputs = []
    for folder, rows, split in zip(inputs, rows_by_input, splits, strict=True):
        used = 0
        for r, s in zip(rows, split, strict=True):
            if not s:
                continue
            used += 1
            per_split[s][r["label"]] += 1
            classes[r["label"]] += 1
            stations[r["station_code"] or "(none)"] += 1
            sources[r["source"] or folder.name][r["label"]] += 1
            picks[r["pick_source"] or "(none)"] += 1
            rates[r["original_sampling_rate_hz"] or str(fs)] += 1
            if r["source_id"]:
                events[s].add(r["source_id"])
        used_inputs.append({"name": folder.name, "windows_in": len(rows), "windows_used": used})
    pairs = (("train", "val"), ("train", "test"), ("val", "test"))
    overlap = sum(len(events[a] & events[b]) for a, b in pairs)
    card = {
        "name": out.name,
        "format": "SeisBench (metadata.csv + waveforms.hdf5, data_format CW/ENZ, acceleration m/s2)",
        "windows": int(sum(classes.values())),
        "sampling_rate_hz": fs, "window_samples": n, "window_s": n / fs if fs else None,
        "classes": dict(sorted(classes.items())),
        "splits": {s: {"total": int(sum(c.values())), **dict(sorted(c.items())),
                       "events": len(events[s])} for s, c in per_split.items()},
        "events_in_two_splits": int(overlap),
        "stations": dict(stations.most_common()),
        "sources": {k: dict(sorted(v.items())) for k, v in sorted(sources.items())},
        "pick_sources": dict(sorted(picks.items())),
        "original_sampling_rates_hz": dict(sorted(rates.items())),
        "inputs": used_inputs,
        "skipped_count": len(skipped),
        "skipped_by_reason": dict(Counter(_reason_kind(s["reason"]) for s in skipped).most_common()),
        "skipped": skipped,
        "config": {"seed": args.seed, "balance": args.balance, "max_per_class": args.max_per_class,
                   "split_by": args.split_by, "fractions": list(args.fractions),
                   "classes": args.classes},
    }
    card["card_sha256"] = card_hash(card)
    return card


def _reason_kind(reason: str) -> str:
    """A reason without its numbers, to count skips by kind."""
    return re.sub(r"(?<![A-Za-z_])[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", reason)[:80]


def card_hash(card: dict) -> str:
    """SHA-256 of the card's canonical JSON, without ``card_sha256``, ``throughput`` and
    ``name``: the same data under another folder name has the same hash."""
    body = {k: v for k, v in card.items() if k not in ("card_sha256", "throughput", "name")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def format_card(card: dict, max_rows: int = 12) -> str:
    """The card as a plain-text table."""
    classes = sorted(card["classes"])
    lines = [f"data card {card['name']}: {card['windows']} windows, {card['window_s']} s at "
             f"{card['sampling_rate_hz']} Hz, sha256 {card['card_sha256'][:16]}",
             f"{'split':<8}" + "".join(f"{c:>9}" for c in classes) + f"{'total':>9}{'events':>9}"]
    for s, c in card["splits"].items():
        lines.append(f"{s:<8}" + "".join(f"{c.get(k, 0):>9}" for k in classes)
                     + f"{c['total']:>9}{c['events']:>9}")
    lines.append(f"events in two splits: {card['events_in_two_splits']}")
    lines.append("sources: " + "; ".join(f"{k} {sum(v.values())}" for k, v in card["sources"].items()))
    lines.append("pick sources: " + ", ".join(f"{k} {v}" for k, v in card["pick_sources"].items()))
    st = list(card["stations"].items())
    lines.append(f"stations ({len(st)}): " + ", ".join(f"{k} {v}" for k, v in st[:max_rows])
                 + (" ..." if len(st) > max_rows else ""))
    rates = card.get("throughput", {})
    if rates:
        readers = rates.get("readers_windows_per_s", {})
        lines.append("windows/s: " + ", ".join(
            [f"{k} ({v['command']}) {v['windows_per_s']}" for k, v in readers.items()]
            + [f"merge {rates.get('merge_windows_per_s')}"]))
    lines.append("original sampling rates (Hz): "
                 + ", ".join(f"{k} {v}" for k, v in card["original_sampling_rates_hz"].items()))
    lines.append(f"skipped: {card['skipped_count']}")
    for reason, count in list(card["skipped_by_reason"].items())[:max_rows]:
        lines.append(f"  {count:>7}  {reason}")
    return "\n".join(lines)


def prepare_merge(args) -> int:
    """``prepare merge``: see the module docstring."""
    from tqdm import tqdm

    if args.balance not in ("undersample", "none"):
        raise PrepareError(f"--balance must be undersample or none, got {args.balance}")
    check_fractions(args.fractions)
    if args.max_per_class is not None and args.max_per_class <= 0:
        raise PrepareError(f"--max-per-class must be > 0, got {args.max_per_class}")
    inputs, rows_by_input, reports, skipped = [], [], [], []
    fs = n = None
    for path in map(Path, args.inputs):
        try:
            rows, rate, npts, report = _read_input(path)
            if fs is not None and (abs(rate - fs) > 1e-9 or npts != n):
                raise ValueError(f"{rate} Hz x {npts} samples, the first input has {fs} Hz x {n}")
        except (ValueError, OSError, json.JSONDecodeError) as exc:
            log.warning("%s: %s; skipped", path, exc)
            skipped.append({"input": str(path), "item": str(path), "reason": str(exc)})
            continue
        fs, n = (rate, npts) if fs is None else (fs, n)
        inputs.append(path)
        rows_by_input.append(rows)
        reports.append(report)
        for s in report.get("skipped", []):
            skipped.append({"input": str(path), **s})
    if not inputs:
        raise PrepareError("no readable input dataset: " + "; ".join(f"{s['item']}: {s['reason']}"
                                                                     for s in skipped))
    splits = choose(rows_by_input, args)
    config = {k: v for k, v in vars(args).items() if k not in CONFIG_IGNORED}
    run = PrepareRun(args.out, "merge", config, fs, n, overwrite=args.overwrite)
    if run.finished():
        print(f"{args.out}: already merged (use --overwrite to redo)")
        print(format_card(json.loads((Path(args.out) / CARD).read_text())))
        return 0
    for i, (folder, split) in enumerate(tqdm(list(zip(inputs, splits, strict=True)), desc="merge",
                                             unit="input", disable=not args.progress)):
        counter = iter(range(len(split)))

        def wanted(row, split=split, counter=counter, folder=folder):
            s = split[next(counter)]
            if not s:
                return False
            row["split"] = s
            row["dataset"] = folder.name
            return True

        run.run_part(f"input{i:04d}", lambda part, folder=folder, wanted=wanted:
                     copy_windows(folder, part.writer, wanted))
    card = build_card(Path(args.out), inputs, rows_by_input, splits, skipped, fs, n, args)
    card["throughput"] = {"readers_windows_per_s": {
        f.name: {"command": r.get("command"), "windows_per_s": r.get("windows_per_s_this_run")}
        for f, r in zip(inputs, reports, strict=True) if r}}

    def card_file(report):
        card["throughput"]["merge_windows_per_s"] = report["windows_per_s_this_run"]
        return {CARD: json.dumps(card, indent=2)}

    # The card goes into the output before the rename, like everything else.
    report = run.finish(extra={"card_sha256": card["card_sha256"]}, files=card_file)
    print(format_card(card))
    print(f"{report['windows']} windows -> {args.out}; {report['windows_per_s_this_run']} windows/s; "
          f"card {Path(args.out) / CARD} sha256 {card['card_sha256']}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", help="prepared dataset folders (SeisBench format)")
    p.add_argument("--balance", default="undersample", choices=("undersample", "none"),
                   help="undersample every class to the smallest one, or keep all")
    p.add_argument("--max-per-class", type=int, default=None, help="cap on windows per class")
    p.add_argument("--classes", nargs="+", default=None, help="keep only these labels (default: all)")
    p.add_argument("--split-by", default="event", choices=("event", "date", "station"),
                   help="groups kept in one split: events (random order), events in time order, "
                        "or events joined with their stations")
    p.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15),
                   metavar=("TRAIN", "VAL", "TEST"), help="split fractions (by windows)")
