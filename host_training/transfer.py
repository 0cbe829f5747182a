"""Does a model trained on synthetic data work on real recordings?

``python -m host_training.transfer --model runs/model.onnx [--data DATASET] [--realdata DIR]``

The model runs exactly as on the node: raw windows (2 s, every 0.25 s) through
:func:`edge_runtime.preprocess.prepare_windows` and :class:`edge_runtime.backends.OnnxBackend`,
events declared by :class:`edge_runtime.detector.EventDetector`. Real records are read
by :func:`host_training.recordings.reader.read_records` (units, TauP picks). Reported:

* pre-event noise: every window that ends 0.5 s before the P arrival (TauP for records
  with an origin, else an AIC onset), class fractions and the share with p(noise) >= 0.5,
  with all components and with one or two (the others zero, as a replay fills them);
* detection: does the node's detector declare an event between P - 1 s and P + 20 s,
  for each record and component set;
* the per-window confusion of real windows (pre-event noise, windows centred within
  0.5 s of P or S) next to the synthetic test split of ``--data``.

These recordings are for measuring transfer only; nothing here trains on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge_runtime.helpformat import HelpFormatter

# ../shared/realdata beside the repository: the default --realdata when it exists.
DEFAULT_REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
COMPONENT_SETS = ("ENZ", "EN", "EZ", "NZ", "E", "N", "Z")
NOISE_MARGIN_S = 0.5


def read_real(realdata: Path):
    """Records of ``realdata`` (FEMA SAC in gal, Napa miniSEED with response and QuakeML)."""
    from host_training.recordings.reader import read_records

    records, skipped = [], []
    fema = realdata / "fema_p695_farfield"
    if not fema.is_dir() and not (realdata / "napa_2014").is_dir():
        # Any other folder of recordings (files, StationXML, QuakeML; units and picks from
        # its catalog.csv when there is one): read as replay-test reads it.
        catalog = realdata / "catalog.csv"
        return read_records([realdata], catalog=catalog if catalog.is_file() else None)
    if fema.is_dir():
        r, s = read_records([fema], units="gal")
        records += r
        skipped += s
    napa = realdata / "napa_2014"
    if napa.is_dir():
        r, s = read_records([napa])
        records += r
        skipped += s
    return records, skipped


def p_arrival_s(record) -> tuple[float, str]:
    """P arrival in s after the first sample: the record's pick, else an AIC onset."""
    from edge_runtime.detector import aic_onset

    if "P" in record.picks:
        return float(record.picks["P"].time - record.starttime), record.picks["P"].source
    fs = record.sampling_rate_hz
    x = record.data[np.asarray(record.present)]
    env = np.abs(x).max(axis=0)
    # Search up to where the shaking reaches 20 % of its peak: the onset lies before it.
    end = int(np.argmax(env >= 0.2 * env.max())) + 1
    end = max(end, int(0.5 * fs))
    trace = x[np.argmax(np.abs(x).max(axis=1)), :end]
    onset = aic_onset(trace)
    # A weak P before a strong S: look again before the first onset, keep an earlier one
    # only where the amplitude steps up clearly (rms ratio > 3 over 1 s either side).
    win = int(fs)
    for _ in range(3):
        if onset < 2 * win:
            break
        earlier = aic_onset(trace[:onset])
        before = trace[max(0, earlier - win):earlier]
        after = trace[earlier:earlier + win]
        if earlier < win // 4 or before.size < 2 or np.std(after) < 3 * max(np.std(before), 1e-12):
            break
        onset = earlier
    return onset / fs, "aic"


def sliding(data: np.ndarray, fs: float, window_s: float = 2.0, step_s: float = 0.25):
    """``(N, 3, n)`` windows every ``step_s`` (as the node cuts them) and their centres in s."""
    from edge_runtime.ring import cut_windows

    windows, starts = cut_windows(data, fs, window_s, step_s)
    return windows, (starts + windows.shape[-1] / 2) / fs


def classify(backend, windows, fs):
    """The node's per-window path: probabilities and filtered peaks."""
    from edge_runtime.preprocess import DEAD_PEAK_MPS2, prepare_windows

    prep = backend.metadata.preprocess_config()
    int16, peak = prepare_windows(windows, fs, prep)
    probs = np.zeros((len(windows), len(backend.classes)))
    probs[:, backend.classes.index("noise")] = 1.0
    live = peak > DEAD_PEAK_MPS2
    if live.any():
        probs[live] = backend.predict(int16[live])
    return probs, peak


def detect(backend, probs, peak, centres_s) -> list[float]:
    """Times (s) of the events the node's detector declares on these windows."""
    from edge_runtime.detector import EventDetector, Scored

    det = EventDetector()
    out = []
    for p, pk, c in zip(probs, peak, centres_s, strict=True):
        for ev in det.update(Scored(int(c * 1e6), dict(zip(backend.classes, p.tolist(), strict=True)),
                                    float(pk))):
            if ev.get("type") == "trigger":
                out.append(c)
    return out


def check_record(backend, record, sets=COMPONENT_SETS) -> list[dict]:
    """Per component set: noise-window classes, phase windows, detection."""
    fs = record.sampling_rate_hz
    p_s, p_src = p_arrival_s(record)
    s_s = float(record.picks["S"].time - record.starttime) if "S" in record.picks else None
    windows, centres = sliding(record.data, fs)
    half = 1.0
    rows = []
    for comps in sets:
        keep = np.array([c in comps for c in "ENZ"])
        if not all(record.present[i] for i in np.flatnonzero(keep)):
            continue  # that component was never recorded
        w = windows * keep[None, :, None]
        probs, peak = classify(backend, w, fs)
        noise = centres + half <= p_s - NOISE_MARGIN_S
        near_p = np.abs(centres - p_s) <= 0.5
        near_s = np.abs(centres - s_s) <= 0.5 if s_s is not None else np.zeros_like(noise)
        triggers = detect(backend, probs, peak, centres)
        hit = [t for t in triggers if p_s - 1.0 <= t <= p_s + 20.0]
        early = [t for t in triggers if t < p_s - 1.0]
        rows.append(dict(record=record.id, components=comps, n_components=len(comps),
                         p_s=round(p_s, 2), p_source=p_src, noise_windows=int(noise.sum()),
                         noise_argmax=_argmax_counts(backend, probs[noise]),
                         noise_ok=int((probs[noise, backend.classes.index("noise")] >= 0.5).sum()),
                         p_windows=_argmax_counts(backend, probs[near_p]),
                         s_windows=_argmax_counts(backend, probs[near_s]),
                         detected=bool(hit), trigger_delay_s=round(hit[0] - p_s, 2) if hit else None,
                         false_triggers_before_p=len(early)))
    return rows


def _argmax_counts(backend, probs) -> dict:
    counts = np.bincount(np.argmax(probs, axis=1), minlength=len(backend.classes)) if len(probs) else \
        np.zeros(len(backend.classes), int)
    return {c: int(k) for c, k in zip(backend.classes, counts, strict=True)}


def synthetic_confusion(backend, data, split: str = "test", max_windows: int = 20000) -> dict:
    """Confusion (true label -> argmax counts) of a dataset split through the node's path."""
    from host_training.datasets.window_dataset import WindowDataset

    ds = WindowDataset.load(data).split(split)
    if len(ds) > max_windows:
        ds = ds.subset(np.random.default_rng(0).permutation(len(ds)) < max_windows)
    probs, _ = classify(backend, ds.waveforms, ds.sampling_rate_hz)
    labels = ds.column("label")
    out = {}
    for lab in backend.classes:
        m = labels == lab
        out[lab] = _argmax_counts(backend, probs[m])
    chans = ds.column("channels") if "channels" in ds.metadata[0] else None
    if chans is not None:
        n_live = np.array([len(str(c)) for c in chans])
        i_noise = backend.classes.index("noise")
        noise = labels == "noise"
        out["noise_ok_by_components"] = {
            str(k): round(float((probs[noise & (n_live == k), i_noise] >= 0.5).mean()), 4)
            for k in (1, 2, 3) if (noise & (n_live == k)).any()}
    return out


def summarize(rows: list[dict]) -> dict:
    """Totals with 3 components and with 1 or 2."""
    out = {}
    for name, sel in (("3 components", lambda r: r["n_components"] == 3),
                      ("1 or 2 components", lambda r: r["n_components"] < 3)):
        part = [r for r in rows if sel(r)]
        n = sum(r["noise_windows"] for r in part)
        ok = sum(r["noise_ok"] for r in part)
        out[name] = dict(noise_windows=n, noise_ok_fraction=round(ok / n, 4) if n else None,
                         record_sets=len(part), detected=sum(r["detected"] for r in part),
                         false_triggers_before_p=sum(r["false_triggers_before_p"] for r in part))
    recs = {}
    for r in rows:
        recs.setdefault(r["record"], []).append(r["detected"])
    out["earthquakes_detected_all_sets"] = sum(all(v) for v in recs.values())
    out["earthquakes_detected_any_set"] = sum(any(v) for v in recs.values())
    out["earthquakes"] = len(recs)
    return out


def run(model, realdata=DEFAULT_REALDATA, data=None) -> dict:
    from edge_runtime.backends import OnnxBackend

    backend = OnnxBackend(model)
    records, skipped = read_real(Path(realdata))
    if not records:
        raise FileNotFoundError(f"{realdata}: no readable records")
    rows = []
    for rec in records:
        rows += check_record(backend, rec)
    result = dict(model=str(model), realdata=str(realdata), summary=summarize(rows), records=rows,
                  skipped=[list(s) for s in skipped])
    if data is not None:
        result["synthetic_test_confusion"] = synthetic_confusion(backend, data)
    real_conf = {"noise (pre-event)": {}, "P (+/-0.5 s)": {}, "S (+/-0.5 s)": {}}
    for r in rows:
        for key, col in (("noise (pre-event)", "noise_argmax"), ("P (+/-0.5 s)", "p_windows"),
                         ("S (+/-0.5 s)", "s_windows")):
            for c, k in r[col].items():
                real_conf[key][c] = real_conf[key].get(c, 0) + k
    result["real_confusion"] = real_conf
    return result


def format_result(result: dict) -> str:
    lines = ["record                          comps  P(s)  src   noise-win  p(noise)>=.5  detected  delay"]
    fmt = "{:30s}  {:5s} {:5.1f}  {:4s} {:9d}  {:>12s}  {:8s}  {}"
    for r in result["records"]:
        frac = f"{r['noise_ok'] / r['noise_windows']:.2f}" if r["noise_windows"] else "  - "
        lines.append(fmt.format(r["record"][:30], r["components"], r["p_s"], r["p_source"][:4],
                                r["noise_windows"], frac, str(r["detected"]), r["trigger_delay_s"]))
    lines.append(json.dumps(result["summary"], indent=1))
    lines.append("real per-window confusion (true -> argmax): " + json.dumps(result["real_confusion"]))
    if "synthetic_test_confusion" in result:
        lines.append("synthetic test split (true -> argmax): "
                     + json.dumps(result["synthetic_test_confusion"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_training.transfer",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="ONNX model exported with its node metadata")
    parser.add_argument("--realdata", default=None,
                        help=f"folder of real recordings (default: ../shared/realdata beside the repository, "
                             f"{DEFAULT_REALDATA}, when it exists)")
    parser.add_argument("--data", default=None,
                        help="synthetic dataset folder: its test split is reported too")
    parser.add_argument("--out", default=None, help="JSON file of the results (default: next to the model)")
    args = parser.parse_args(argv)
    if args.realdata is None and not DEFAULT_REALDATA.is_dir():
        print(f"error: --realdata: give a folder of real recordings (SAC, miniSEED, ...); the default "
              f"{DEFAULT_REALDATA} (../shared/realdata beside the repository) does not exist",
              file=sys.stderr)
        return 2
    args.realdata = args.realdata or str(DEFAULT_REALDATA)
    for path, what in ((args.model, "model"), (args.realdata, "realdata")):
        if not Path(path).exists():
            print(f"error: {path}: no such {what}", file=sys.stderr)
            return 2
    try:
        result = run(args.model, args.realdata, args.data)
    except (OSError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.model).with_suffix(".transfer.json")
    out.write_text(json.dumps(result, indent=1, default=str))
    print(format_result(result))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
