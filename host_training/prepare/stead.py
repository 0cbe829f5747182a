"""STEAD (STanford EArthquake Dataset) in its own layout -> labelled windows.

STEAD ships one HDF5 file with a dataset ``data/<trace_name>`` of shape ``(6000, 3)``
(60 s at 100 Hz, components E, N, Z, raw counts) per trace and one CSV of metadata with
``trace_name``, ``trace_category`` (``earthquake_local`` or ``noise``), ``receiver_type``
(``HH``, ``BH``, ``EH``, ``HN``), ``p_arrival_sample``, ``s_arrival_sample``,
``p_weight``, ``s_weight``, ``snr_db`` (``"[E N Z]"`` in dB), ``source_distance_km``,
``source_id``, ``network_code``, ``receiver_code``, ``trace_start_time`` ...

The recipe is Clements' (SEED_NOTES.md):

* clean subset of earthquake traces: P arrival sample >= 200, distance < 100 km, SNR
  > 40 dB (mean over the three components), P and S weights > 0.75;
* a window at P (label ``P``), one at S (label ``S``), and ``--noise-windows`` windows
  from every noise trace (label ``noise``);
* counts -> physical units -> acceleration in m/s^2. With ``--stationxml`` the response is
  removed by ObsPy (``output="ACC"``) for stations found there. Otherwise, and this is
  the documented fallback (the original called an online service, impossible offline),
  counts are divided by the order-of-magnitude sensitivity of the instrument class
  (:data:`~.windowing.NOMINAL_SENSITIVITY`) and velocity sensors (HH, BH, EH) are
  differentiated; ``trace_response`` in the metadata says which was done. The model input
  is max-abs normalized per window, so only the amplitude gates see the difference;
* resampled to the stored rate (``--sampling-rate``, 100 Hz: STEAD's own, so no-op).

The preprocessing chain (detrend, taper, 0.5 Hz high-pass, 40 Hz) is applied at training
time by :mod:`edge_runtime.preprocess`, not here: windows are stored raw.

The CSV is read row by row and the HDF5 trace by trace, in parts of ``--chunk-size``
rows: memory stays at one part whatever the size of the data set.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import h5py
import numpy as np

from ..datasets.windowing import (
    NOMINAL_SENSITIVITY,
    check_trace,
    hash_split,
    item_rng,
    noise_windows,
    pick_windows,
    resample,
    velocity_to_acceleration,
)
from .runs import (
    Part,
    PrepareError,
    add_windows,
    csv_fields,
    open_hdf5,
    print_summary,
    run_csv_parts,
    start_run,
    validate_window_args,
)

log = logging.getLogger(__name__)
STEAD_RATE_HZ = 100.0
CSV_COLUMNS = ("trace_name", "trace_category")


def parse_snr_db(text) -> float:
    """Mean SNR in dB from STEAD's ``"[56.8 55.4 47.4]"`` (NaN when absent)."""
    values = [float(v) for v in str(text).strip("[] ").replace(",", " ").split() if v.lower() != "nan"]
    return float(np.mean(values)) if values else float("nan")


def _num(row: dict, key: str) -> float:
    value = row.get(key, "")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def is_clean(row: dict, min_p_sample=200, max_distance_km=100.0, min_snr_db=40.0,
             min_weight=0.75) -> bool:
    """Clements' clean subset of STEAD earthquake traces (NaN fields fail)."""
    return (_num(row, "p_arrival_sample") >= min_p_sample
            and _num(row, "source_distance_km") < max_distance_km
            and parse_snr_db(row.get("snr_db", "")) > min_snr_db
            and _num(row, "p_weight") > min_weight
            and _num(row, "s_weight") > min_weight)


def to_acceleration(data: np.ndarray, fs: float, receiver_type: str, inventory=None,
                    row: dict | None = None):
    """STEAD counts -> m/s^2. Returns ``(acceleration, how)`` or ``(None, reason)``.

    ``how`` is ``stationxml`` when the response came from ``inventory``, else
    ``nominal:<kind>:<counts per unit>``.
    """
    code = str(receiver_type).strip().upper()[:2]
    if inventory is not None and row is not None:
        acc = _remove_response(data, fs, code, inventory, row)
        if acc is not None:
            return acc, "stationxml"
    if code not in NOMINAL_SENSITIVITY:
        return None, f"unknown receiver_type '{receiver_type}' (units unknown)"
    kind, counts_per_unit = NOMINAL_SENSITIVITY[code]
    x = np.asarray(data, dtype=np.float64) / counts_per_unit
    if kind == "velocity":
        x = velocity_to_acceleration(x, fs)
    return x, f"nominal:{kind}:{counts_per_unit:g}"


def _remove_response(data, fs, code, inventory, row):
    from obspy import Stream, Trace, UTCDateTime

    try:
        start = UTCDateTime(row.get("trace_start_time"))
        st = Stream()
        for comp, x in zip("ENZ", data, strict=True):
            tr = Trace(np.asarray(x, dtype=np.float64))
            tr.stats.update({"network": row.get("network_code", ""), "station": row.get("receiver_code", ""),
                             "location": "", "channel": code + comp, "sampling_rate": fs,
                             "starttime": start})
            st.append(tr)
        st.remove_response(inventory=inventory, output="ACC", pre_filt=[0.1, 0.2, 0.45 * fs, 0.49 * fs],
                           water_level=None)
        return np.stack([tr.data for tr in st])
    except Exception:  # no matching channel/epoch in the inventory: fall back to nominal
        return None


def process_row(row: dict, h5, part: Part, args, inventory=None) -> None:
    """Windows of one STEAD trace into ``part`` (or a counted, named skip)."""
    name = row.get("trace_name", "")
    category = str(row.get("trace_category", "")).strip()
    is_noise = category == "noise"
    if not is_noise and not category.startswith("earthquake"):
        part.skip(name, f"unknown trace_category '{category}'")
        return
    if not is_noise and not is_clean(row, args.min_p_sample, args.max_distance_km, args.min_snr_db,
                                     args.min_weight):
        part.count("not_clean")
        return
    try:
        dset = h5["data"][name]
    except KeyError:
        part.skip(name, "listed in the CSV, missing from the HDF5 file")
        return
    try:
        data = np.asarray(dset[()], dtype=np.float64)
    except (OSError, ValueError, RuntimeError) as exc:
        part.skip(name, f"unreadable in the HDF5 file (truncated or corrupt: {exc})")
        return
    if data.ndim == 2 and data.shape[1] == 3 and data.shape[0] != 3:
        data = data.T  # STEAD stores (samples, components)
    reason = check_trace(data)
    if reason is None and data.shape[1] != args.stead_npts:
        reason = f"{data.shape[1]} samples, STEAD traces have {args.stead_npts} (wrong npts)"
    if reason:
        part.skip(name, reason)
        return
    acc, how = to_acceleration(data, STEAD_RATE_HZ, row.get("receiver_type", ""), inventory, row)
    if acc is None:
        part.skip(name, how)
        return
    fs = args.sampling_rate
    acc = resample(acc, STEAD_RATE_HZ, fs)
    ratio = fs / STEAD_RATE_HZ
    rng = item_rng(args.seed, name)
    source_id = row.get("source_id") or name
    common = {"split": hash_split(source_id, args.seed, args.fractions), "source_id": source_id,
              "station_code": f"{row.get('network_code', '')}.{row.get('receiver_code', '')}",
              "source": "stead", "source_trace": name, "trace_category": category,
              "receiver_type": row.get("receiver_type", ""), "trace_channel": row.get("receiver_type", ""),
              "trace_response": how,
              "source_distance_km": row.get("source_distance_km", ""),
              "source_magnitude": row.get("source_magnitude", ""),
              "snr_db": row.get("snr_db", "")}
    picks = {}
    if is_noise:
        windows = noise_windows(acc, fs, args.window_s, args.noise_windows, rng)
        pick_source = ""
    else:
        picks = {"P": _num(row, "p_arrival_sample") * ratio, "S": _num(row, "s_arrival_sample") * ratio}
        picks = {k: v for k, v in picks.items() if np.isfinite(v)}
        windows = pick_windows(acc, fs, picks, args.window_s, args.max_shift_s, rng)
        pick_source = "catalog"
    add_windows(part, windows, common, picks, pick_source, row.get("trace_start_time", ""), fs)
    part.count("traces_used")


def _load_inventory(path):
    if not path:
        return None
    from obspy import Inventory, read_inventory

    path = Path(path)
    files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    inv = Inventory()
    for f in files:
        try:
            inv += read_inventory(str(f))
        except Exception as exc:
            log.warning("%s: not a readable StationXML file (%s); skipped", f, exc)
    return inv


def prepare_stead(args) -> int:
    """``prepare stead``: see the module docstring."""
    validate_window_args(args)
    hdf5, csv_path = Path(args.hdf5), Path(args.csv)
    for path, what in ((hdf5, "--hdf5"), (csv_path, "--csv")):
        if not path.is_file():
            raise PrepareError(f"{path}: no such file ({what})")
    if args.chunk_size <= 0:
        raise PrepareError(f"--chunk-size must be > 0, got {args.chunk_size}")
    with open_hdf5(hdf5) as h5, open(csv_path, newline="") as fh:
        if "data" not in h5:
            raise PrepareError(f"{hdf5}: no 'data' group; not STEAD's layout")
        reader = csv.DictReader(fh)
        fields = csv_fields(reader, csv_path, "; not STEAD's metadata CSV")
        missing = [c for c in CSV_COLUMNS if c not in fields]
        if missing:
            raise PrepareError(f"{csv_path}: no column(s) {', '.join(missing)}; not STEAD's metadata CSV")
        run = start_run(args, "stead",
                        data_format={"instrument_response": "stationxml or nominal (see trace_response)"})
        if run is None:
            return 0
        inventory = _load_inventory(args.stationxml)
        run_csv_parts(run, reader, csv_path, args.chunk_size, "chunk",
                      lambda row, part: process_row(row, h5, part, args, inventory),
                      "stead", args.progress)
        report = run.finish()
    print_summary(report, args.out)
    return 0


def add_arguments(p) -> None:
    p.add_argument("--hdf5", required=True, help="STEAD waveform file (data/<trace_name>, (6000, 3))")
    p.add_argument("--csv", required=True, help="STEAD metadata CSV")
    p.add_argument("--stationxml", default=None,
                   help="StationXML file or folder of *.xml: remove responses for the stations found "
                        "(default: nominal sensitivity per receiver_type, see docs)")
    p.add_argument("--chunk-size", type=int, default=1000, help="CSV rows per resumable part")
    p.add_argument("--stead-npts", type=int, default=6000, help="samples of a STEAD trace")
    p.add_argument("--min-p-sample", type=float, default=200, help="clean subset: P arrival sample >=")
    p.add_argument("--max-distance-km", type=float, default=100.0, help="clean subset: distance <, km")
    p.add_argument("--min-snr-db", type=float, default=40.0, help="clean subset: mean SNR >, dB")
    p.add_argument("--min-weight", type=float, default=0.75, help="clean subset: P and S weight >")


STEAD_COLUMNS = (
    "network_code", "receiver_code", "receiver_type", "receiver_latitude", "receiver_longitude",
    "p_arrival_sample", "p_weight", "s_arrival_sample", "s_weight", "source_id",
    "source_origin_time", "source_latitude", "source_longitude", "source_depth_km", "source_magnitude",
    "source_distance_km", "snr_db", "trace_start_time", "trace_category", "trace_name",
)


def write_stead_sample(hdf5, csv_path, n_traces: int, seed: int = 0, noise_fraction: float = 0.3,
                       bad: bool = False, chunk: int = 500) -> dict:
    """Write a STEAD-format HDF5 + CSV of simple synthetic traces (tests, benchmarks).

    Earthquake traces are velocity counts of an HH sensor: noise plus a 10 Hz P burst and a
    3 times larger 4 Hz S burst; some fail the clean-subset test (low SNR, far away). With
    ``bad``, four more rows are damaged: NaN samples, wrong npts, listed but missing from
    the HDF5 file, unknown ``trace_category``. Written ``chunk`` traces at a time.

    Returns
    -------
    dict
        ``{"clean": earthquake traces in the clean subset, "noise": noise traces,
        "bad": names of the damaged rows}``.
    """
    rng = np.random.default_rng(seed)
    npts, fs = 6000, STEAD_RATE_HZ
    t = np.arange(npts) / fs
    out = {"clean": 0, "noise": 0, "bad": []}
    with h5py.File(hdf5, "w") as f, open(csv_path, "w", newline="") as fh:
        group = f.create_group("data")
        writer = csv.DictWriter(fh, fieldnames=STEAD_COLUMNS)
        writer.writeheader()
        for start in range(0, n_traces, chunk):
            m = min(chunk, n_traces - start)
            noise = rng.normal(0.0, 2e3, size=(m, npts, 3)).astype(np.float32)
            for j in range(m):
                i = start + j
                day = 1 + i % 28
                is_noise = rng.random() < noise_fraction
                kind = "NO" if is_noise else "EV"
                name = f"ST{i % 50:02d}.XX_2019{(i % 12) + 1:02d}{day:02d}_{kind}{i:07d}"
                row = {"network_code": "XX", "receiver_code": f"ST{i % 50:02d}", "receiver_type": "HH",
                       "receiver_latitude": 35.0, "receiver_longitude": -117.0,
                       "trace_start_time": f"2019-{(i % 12) + 1:02d}-{day:02d} 00:00:{i % 60:02d}.000000",
                       "trace_name": name}
                data = noise[j]
                if is_noise:
                    row["trace_category"] = "noise"
                    out["noise"] += 1
                else:
                    p = int(rng.integers(300, 2500))
                    s = p + int(rng.integers(150, 900))
                    amp = float(rng.uniform(2e5, 2e6))
                    clean = rng.random() < 0.8
                    for onset, scale, freq, comps in ((p, 1.0, 10.0, [2]), (s, 3.0, 4.0, [0, 1])):
                        tt = np.clip(t - onset / fs, 0, None)
                        burst = amp * scale * np.sin(2 * np.pi * freq * tt) * np.exp(-tt / 2.0) * (tt > 0)
                        data[:, comps] += burst[:, None].astype(np.float32)
                    row.update(trace_category="earthquake_local", p_arrival_sample=p, s_arrival_sample=s,
                               p_weight=0.9, s_weight=0.9, source_id=f"ev{i // 3:07d}",
                               source_magnitude=round(float(rng.uniform(1, 4)), 1),
                               source_distance_km=round(float(rng.uniform(5, 90 if clean else 150)), 1),
                               snr_db="[" + " ".join(f"{v:.1f}" for v in
                                                     (rng.uniform(45, 70, 3) if clean
                                                      else rng.uniform(10, 30, 3))) + "]")
                    clean = clean and float(row["source_distance_km"]) < 100
                    out["clean"] += int(clean)
                group.create_dataset(name, data=data)
                writer.writerow(row)
        if bad:
            good = {"trace_category": "noise", "receiver_type": "HH", "network_code": "XX",
                    "receiver_code": "BAD"}
            nan = rng.normal(0.0, 2e3, size=(npts, 3)).astype(np.float32)
            nan[100:110, 1] = np.nan
            for name, data, extra in (("BAD.nan", nan, {}),
                                      ("BAD.short", rng.normal(0.0, 2e3, size=(4000, 3)), {}),
                                      ("BAD.missing", None, {}),
                                      ("BAD.category", rng.normal(0.0, 2e3, size=(npts, 3)),
                                       {"trace_category": "explosion?"})):
                if data is not None:
                    group.create_dataset(name, data=np.asarray(data, dtype=np.float32))
                writer.writerow({**good, **extra, "trace_name": name})
                out["bad"].append(name)
    return out
