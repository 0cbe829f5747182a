"""Local records in per-station folders (the original's SAC workflow) -> labelled windows.

The original finetuned on SAC files of MEMS stations, one folder per station for events
(``data_QSIS_Event/<station>``) and one for noise (``data_QSIS_Noise``), one file per
component, 100 Hz, about 480 s, in gal. Here any format ObsPy reads works (SAC,
miniSEED ...), through :func:`host_training.recordings.reader.read_records` (files grouped into
station records, units made physical, picks found), called once per station folder so
memory stays at one folder.

Records whose components differ in rate or length are skipped unless ``--allow-repaired``
(then the reader's resampling and trimming to the common span is accepted).

Units: ``--units`` (``gal`` for the original's data), else SAC ``idep``, else a StationXML
response (``--stationxml``) for counts; a record whose units are unknown is skipped.

Event records (``--events``) give a window at P and one at S. Picks, in order: SAC pick
headers, else TauP (ak135) travel times from the event (``--quakeml`` or SAC
``evla/evlo/evdp/o``) and station coordinates (``--stationxml`` or SAC ``stla/stlo``),
else the maximum of classic STA/LTA (1 s / 5 s) of the composite acceleration as P (no
S). ``pick_source`` says which (``header``, ``taup``, ``catalog``, ``stalta``) and
``pick_detail`` the exact header or origin. Records below ``--min-pga-gal`` (composite,
the original's 2 gal) are skipped as too weak.

Noise records (``--noise``) give one window centred at the STA/LTA maximum (the
transient a trigger would fire on, a hard negative) and ``--noise-windows - 1`` at
random. Windows are centred at the pick (plus a seeded shift); the original centred them
at the composite peak within 12 s after the pick, which for P often lands on S.

The event id (``source_id``, what ``prepare merge`` splits by) is the QuakeML event id
when TauP used one, else the SAC origin time (``o``), else the P time rounded down to
``--event-bin-s``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from host_training.units import GAL_TO_MPS2, UNIT_CHOICES

from ..datasets.windowing import (
    check_trace,
    composite,
    cut_at,
    hash_split,
    item_rng,
    noise_windows,
    pick_windows,
    resample,
    sta_lta,
)
from ..recordings.reader import read_records
from ..recordings.record import RecordError
from .runs import (
    Part,
    PrepareError,
    print_summary,
    start_run,
    validate_window_args,
)

log = logging.getLogger(__name__)


def station_folders(roots) -> list:
    """``[(kind, folder)]``: every subfolder of each root, or the root itself if it has files."""
    out = []
    for kind, root in roots:
        root = Path(root)
        if not root.is_dir():
            raise PrepareError(f"{root}: no such folder (--{'events' if kind == 'earthquake' else 'noise'})")
        subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if any(p.is_file() and not p.name.startswith(".") for p in root.iterdir()):
            out.append((kind, root))
        out += [(kind, p) for p in subs]
    return out


def root_folders(root) -> tuple[list, list]:
    """Event and noise folders inside ``root``: subfolders named like ``*event*`` / ``*noise*``
    (the original's ``data_QSIS_Event`` and ``data_QSIS_Noise``)."""
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"{root}: no such folder")
    subs = sorted(p for p in root.iterdir() if p.is_dir())
    events = [str(p) for p in subs if "event" in p.name.lower()]
    noise = [str(p) for p in subs if "noise" in p.name.lower()]
    if not events and not noise:
        raise PrepareError(f"{root}: no subfolder named like *event* or *noise*; use --events/--noise")
    return events, noise


def pick_category(source: str) -> str:
    s = source.lower()
    if s.startswith("sac"):
        return "header"
    if "taup" in s:
        return "taup"
    if s.startswith("catalog"):
        return "catalog"
    return s.split()[0] if s else ""


def _event_id(record, picks: dict, bin_s: float) -> str:
    for pick in record.picks.values():
        m = re.search(r"QuakeML ([^,)\s]+)", pick.source)
        if m:
            return m.group(1)
    if record.files:
        try:
            from obspy import read

            tr = read(record.files[0], headonly=True)[0]
            sac = getattr(tr.stats, "sac", None) or {}
            o = sac.get("o")
            if o is not None and o != -12345.0:
                origin = tr.stats.starttime - float(sac.get("b", 0.0)) + float(o)
                return f"origin-{origin.strftime('%Y%m%dT%H%M%S')}"
        except Exception:
            pass
    if "P" in picks:
        t = record.starttime + picks["P"] / record.sampling_rate_hz
        t = t - (t.timestamp % bin_s)
        return f"ptime-{t.strftime('%Y%m%dT%H%M%S')}"
    return record.id


def process_folder(kind: str, folder: Path, part: Part, args) -> None:
    """Windows of every record in one station folder into ``part``."""
    try:
        records, skipped = read_records([folder], units=args.units, inventory=args.stationxml,
                                        events=args.quakeml,
                                        min_duration_s=max(args.window_s, args.min_duration_s))
    except RecordError as exc:
        raise PrepareError(str(exc)) from None
    for item, reason in skipped:
        part.skip(item, reason)
    for rec in records:
        item = f"{folder.name}/{rec.id}"
        reason = _unusable(rec, args)
        if reason:
            part.skip(item, reason)
            continue
        _record_windows(kind, rec, item, part, args)


def _present(rec) -> str:
    """The recorded components as ``ENZ`` with ``-`` for a missing one."""
    return "".join(c if p else "-" for c, p in zip("ENZ", rec.present, strict=True))


def _unusable(rec, args) -> str | None:
    """Why a record gives no windows (too few components, repaired, bad samples), else None."""
    if rec.n_components < args.min_components:
        return f"{rec.n_components} component(s) ({_present(rec)}), --min-components {args.min_components}"
    repaired = [a for a in rec.actions if "resampled" in a or "trimmed" in a]
    if repaired and not args.allow_repaired:
        return (f"components of different rate or length ({'; '.join(repaired)}); "
                "--allow-repaired keeps them")
    return check_trace(rec.data[np.asarray(rec.present)], rec.n_components)


def _event_windows(acc, cf, picks: dict, details: dict, args, rng):
    """``(windows, picks, details, pick_source)`` of an event record (P from STA/LTA when it
    has no pick), or a skip reason when it is too weak."""
    fs = args.sampling_rate
    pga_gal = float(cf.max()) / GAL_TO_MPS2
    if pga_gal < args.min_pga_gal:
        return f"composite PGA {pga_gal:.3g} gal < --min-pga-gal {args.min_pga_gal:g}"
    if "P" in picks:
        pick_source = pick_category(details["P"])
    else:
        picks = {"P": float(np.argmax(sta_lta(cf, fs, args.sta_s, args.lta_s)))}
        details = {"P": f"classic STA/LTA {args.sta_s:g} s/{args.lta_s:g} s maximum"}
        pick_source = "stalta"
    return pick_windows(acc, fs, picks, args.window_s, args.max_shift_s, rng), picks, details, pick_source


def _noise_record_windows(acc, cf, args, rng) -> tuple[list, int | None]:
    """``(windows, start of the STA/LTA window)``: one window at the STA/LTA maximum (the
    transient a trigger would fire on), the others at random."""
    fs = args.sampling_rate
    ratio = sta_lta(cf, fs, args.sta_s, args.lta_s)
    windows, stalta_start = [], None
    if args.noise_windows > 0:
        window, start = cut_at(acc, float(np.argmax(ratio)), int(round(args.window_s * fs)))
        if window is not None:
            windows.append(("noise", window, start))
            stalta_start = start
        windows += noise_windows(acc, fs, args.window_s, args.noise_windows - len(windows), rng)
    return windows, stalta_start


def _record_windows(kind: str, rec, item: str, part: Part, args) -> None:
    """The windows of one usable record into ``part`` (or a counted, named skip)."""
    fs = args.sampling_rate
    acc = resample(rec.data, rec.sampling_rate_hz, fs)
    rng = item_rng(args.seed, item)
    picks = {phase: (pick.time - rec.starttime) * fs for phase, pick in rec.picks.items()}
    details = {phase: pick.source for phase, pick in rec.picks.items()}
    cf = composite(acc)
    pick_source, stalta_start = "", None
    if kind == "earthquake":
        found = _event_windows(acc, cf, picks, details, args, rng)
        if isinstance(found, str):
            part.skip(item, found)
            return
        windows, picks, details, pick_source = found
    else:
        picks, details = {}, {}
        windows, stalta_start = _noise_record_windows(acc, cf, args, rng)
    if not windows:
        part.skip(item, "no window fits inside the record around its picks")
        return
    source_id = _event_id(rec, picks, args.event_bin_s) if kind == "earthquake" else rec.id
    common = {"split": hash_split(source_id, args.seed, args.fractions), "source_id": source_id,
              "station_code": rec.station,
              "source": "sac_events" if kind == "earthquake" else "sac_noise",
              "source_trace": rec.id, "trace_category": kind, "trace_response": rec.units,
              "components_present": _present(rec),
              "trace_channel": next((c[:2] for c in rec.channels if c), ""),
              "original_sampling_rate_hz": rec.sampling_rate_hz,
              "source_files": ";".join(Path(f).name for f in rec.files)}
    for label, window, start in windows:
        row = dict(common, label=label, trace_start_time=str(rec.starttime + start / fs),
                   pick_source=pick_source if label != "noise" else
                   ("stalta" if start == stalta_start else "random"),
                   pick_detail=details.get(label, ""))
        for phase, sample in picks.items():
            row[f"trace_{phase.lower()}_arrival_sample"] = int(round(sample - start))
        part.add(window, row)
        part.count(f"windows_{label}")
    part.count(f"records_{kind}")


def _files_in(folders) -> str:
    """``3 files in 2 folders``: what a run read, for the error of a run without windows."""
    n = sum(1 for _, folder in folders for f in folder.iterdir()
            if f.is_file() and not f.name.startswith("."))
    return f"{n} file{'s' * (n != 1)} in {len(folders)} folder{'s' * (len(folders) != 1)}"


def prepare_sac(args) -> int:
    """``prepare sac``: see the module docstring."""
    from tqdm import tqdm

    validate_window_args(args)
    if args.root:
        events, noise = root_folders(args.root)
        args.events = (args.events or []) + events
        args.noise = (args.noise or []) + noise
    if not args.events and not args.noise:
        raise PrepareError("give --events DIR and/or --noise DIR "
                           "(or a DIR holding *event* and *noise* folders)")
    if args.min_components not in (1, 2, 3):
        raise PrepareError(f"--min-components must be 1, 2 or 3, got {args.min_components}")
    if args.sta_s <= 0 or args.lta_s <= args.sta_s:
        raise PrepareError(f"need 0 < --sta-s < --lta-s, got {args.sta_s} and {args.lta_s}")
    folders = station_folders([("earthquake", d) for d in args.events or []]
                              + [("noise", d) for d in args.noise or []])
    run = start_run(args, "sac")
    if run is None:
        return 0
    for i, (kind, folder) in enumerate(tqdm(folders, desc="sac", unit="folder", disable=not args.progress)):
        run.run_part(f"{i:05d}_{kind}_{re.sub(r'[^A-Za-z0-9_.-]', '_', folder.name)}",
                     lambda part, kind=kind, folder=folder: process_folder(kind, folder, part, args))
    report = run.finish(inputs=_files_in(folders))
    print_summary(report, args.out)
    return 0


def add_arguments(p) -> None:
    p.add_argument("root", nargs="?", default=None,
                   help="folder holding event and noise folders (names containing 'event' / 'noise', "
                        "as the original's data_QSIS_Event and data_QSIS_Noise)")
    p.add_argument("--events", nargs="+", metavar="DIR",
                   help="folders of event records (one subfolder per station, or files directly)")
    p.add_argument("--noise", nargs="+", metavar="DIR", help="folders of noise records")
    p.add_argument("--units", default=None, choices=UNIT_CHOICES,
                   help="units of the samples (the original's data: gal); default: SAC idep or "
                        "a StationXML response")
    p.add_argument("--stationxml", default=None, help="StationXML: responses for counts, station coordinates")
    p.add_argument("--quakeml", default=None, help="QuakeML: event origins for TauP picks")
    p.add_argument("--min-components", type=int, default=3,
                   help="skip records with fewer recorded components (missing ones are zeros)")
    p.add_argument("--allow-repaired", action="store_true",
                   help="keep records whose components had different rates or lengths (resampled "
                        "and trimmed to a common span by the reader); default: skip them, as the original")
    p.add_argument("--min-duration-s", type=float, default=0.0,
                   help="skip records shorter than this, s (the original kept >= 400 s)")
    p.add_argument("--min-pga-gal", type=float, default=2.0,
                   help="skip event records whose composite PGA is below this, gal")
    p.add_argument("--sta-s", type=float, default=1.0, help="STA window, s")
    p.add_argument("--lta-s", type=float, default=5.0, help="LTA window, s")
    p.add_argument("--event-bin-s", type=float, default=120.0,
                   help="without an origin, records whose P falls in the same bin of this many s "
                        "are one event")
