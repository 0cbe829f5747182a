"""How many earthquakes of a synthetic network the nodes' picks could let the centre declare.

The centre declares an event from at least four P picks on four stations
(``[association] min_p_picks``, ``min_stations``): an earthquake that fewer nodes pick
cannot be declared however good the association. This measures that ceiling offline,
with no pty, broker or node process, and so on many more earthquakes than a
``network-test`` run holds:

* a network of ``network-test``'s own generator (:func:`.synth.build_network`: the
  jittered 15 km grid, Green's-function earthquakes inside it, MEMS noise and knocks);
* every station's record as the node takes it (digitized to the node's ADC counts and back,
  the node's windows every ``step_s``, its window chain and model:
  :meth:`edge_runtime.service.Pipeline.classify`);
* the node's two sources of picks on those windows: its own event detector and its network
  pick trigger at the ``[mqtt]`` pick thresholds
  (:class:`edge_runtime.network.picks.PickTrigger`), their records turned into picks by the
  node's :class:`~edge_runtime.network.picks.PickMaker` (the highest revision of each
  ``pick_id`` kept, as the centre does);
* an earthquake is *detectable* when at least ``min_stations`` stations have a P pick within
  ``tolerance_s`` of its true first P at that station.

False picks are counted on records of the same generator's background noise alone
(``noise_hours`` per station, each station its own noise level as in the network), and on
the network's single-station transients (knocks, door slams, footsteps, vehicles).

``python -m tools.network_test.detectability --model M.onnx --events 40 --seed 0`` prints
the summary (``--json`` for all of it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np

from .synth import FS_HZ, build_network

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z: the records' start, as network-test's
BATCH_WINDOWS = 512  # windows per model call
QUAKE_SPAN_S = (-5.0, 60.0)  # around an origin: picks here are the earthquake's, not false, s


def node_config(model: str, station: str, pick_prob=None, pick_min_pga_mps2=None, pick_windows=None):
    """The node's config as ``network-test`` starts it (defaults; the pick thresholds as given)."""
    from edge_runtime.config import build_config

    return build_config({}, {"port": "offline", "model": model, "station": station,
                             "mqtt_pick_prob": pick_prob, "mqtt_pick_min_pga_mps2": pick_min_pga_mps2,
                             "mqtt_pick_windows": pick_windows})


def classify_record(record_mps2: np.ndarray, backend, config) -> dict:
    """Every window of one continuous record as the node classifies it.

    Parameters
    ----------
    record_mps2 : numpy.ndarray
        ``(3, n)`` acceleration (E, N, Z) at :data:`.synth.FS_HZ`, m/s^2.
    backend : edge_runtime.backends.Backend
        The node's model.
    config : edge_runtime.config.NodeConfig
        The node's settings (:func:`node_config`).

    Returns
    -------
    dict
        ``samples`` (the node's m/s^2: ADC counts over counts per m/s^2), ``starts`` (first
        sample of each window), ``n_window``, ``probs`` ``(N, n_classes)``, ``peak`` ``(N,)``
        m/s^2, ``classes``.
    """
    from edge_runtime.ring import window_samples
    from edge_runtime.service import Pipeline
    from tools.replay.sender import to_counts
    from tools.scan.stream import window_batches

    pipeline = Pipeline(backend, config)
    samples = to_counts(record_mps2, config.counts_per_mps2) / config.counts_per_mps2
    n_window, n_step = window_samples(pipeline.prep.window_s, config.step_s, FS_HZ)
    probs, peaks = [], []
    for _, raw in window_batches(samples, n_window, n_step, batch=BATCH_WINDOWS):
        p, peak, _live = pipeline.classify(raw, FS_HZ)
        p, peak = pipeline._plausible(p, peak)
        probs.append(p)
        peaks.append(peak)
    return {"samples": samples, "starts": np.arange(sum(map(len, peaks))) * n_step, "n_window": n_window,
            "probs": np.concatenate(probs), "peak": np.concatenate(peaks), "classes": pipeline.classes}


def station_picks(classified: dict, config, start_us: int = T0_US) -> list[dict]:
    """The P and S picks a node makes on one classified record (final revision of each pick).

    The node's two detectors (its events at ``[detector]``, its pick trigger at the
    ``[mqtt]`` pick thresholds) see every window in order; their records become picks by
    the node's :class:`~edge_runtime.network.picks.PickMaker`.

    Parameters
    ----------
    classified : dict
        :func:`classify_record`'s windows.
    config : edge_runtime.config.NodeConfig
        The node's settings (:func:`node_config`), its pick thresholds included.
    start_us : int
        Time of the first sample, UTC microseconds.

    Returns
    -------
    list of dict
        The node's pick messages (``phase``, ``time_us``, ``probability``, ...) without
        amplitudes, one per ``pick_id``.
    """
    from edge_runtime.detector import EventDetector, Scored
    from edge_runtime.network.picks import PickMaker, PickTrigger

    c = classified
    trigger = PickTrigger(replace(config.detector, trigger_prob=config.mqtt_pick_prob,
                                  min_pga_mps2=config.mqtt_pick_min_pga_mps2,
                                  on_windows=config.mqtt_pick_windows), config.station)
    detector = EventDetector(config.detector, station=config.station)
    maker = PickMaker(("E", "N", "Z"), keep_s=1.0)
    half_us = 0.5 * c["n_window"] * 1e6 / FS_HZ
    centers = (start_us + c["starts"] * 1e6 / FS_HZ + half_us).astype(np.int64)
    picks: dict[str, dict] = {}

    def keep(made):
        for pick in made:
            if pick["revision"] >= picks.get(pick["pick_id"], {}).get("revision", 0):
                picks[pick["pick_id"]] = pick

    for k, first in enumerate(c["starts"]):
        scored = Scored(int(centers[k]), dict(zip(c["classes"], c["probs"][k].tolist(), strict=True)),
                        float(c["peak"][k]), c["samples"][:, first:first + c["n_window"]], FS_HZ)
        for record in trigger.update(scored):
            keep(maker.from_record(record, trigger=True))
        for record in detector.update(scored):
            keep(maker.from_record(record))
    for record in trigger.detector.reset():
        keep(maker.from_record(record, trigger=True))
    for record in detector.reset():
        keep(maker.from_record(record))
    return list(picks.values())


def p_windows(classified: dict, p_s: float, noise_index: int) -> tuple[float, float]:
    """Largest phase probability and peak filtered acceleration (m/s^2) of the windows whose
    centre is in the first second after a P arrival ``p_s`` (s after the record's start)."""
    centers_s = (classified["starts"] + 0.5 * classified["n_window"]) / FS_HZ
    near = (centers_s >= p_s) & (centers_s <= p_s + 1.0)
    if not near.any():
        return 0.0, 0.0
    return float(1.0 - classified["probs"][near, noise_index].min()), float(classified["peak"][near].max())


def p_snr(classified: dict, p_s: float) -> float:
    """Peak filtered acceleration of the windows in the first second after P over the median
    peak of the windows 12 to 2 s before it (the station's noise then)."""
    centers_s = (classified["starts"] + 0.5 * classified["n_window"]) / FS_HZ
    before = (centers_s >= p_s - 12.0) & (centers_s <= p_s - 2.0)
    near = (centers_s >= p_s) & (centers_s <= p_s + 1.0)
    if not before.any() or not near.any():
        return 0.0
    return float(classified["peak"][near].max() / max(np.median(classified["peak"][before]), 1e-12))


def quake_rows(net, picks: dict, classified: dict, config, tolerance_s: float,
               min_stations: int) -> list[dict]:
    """Per earthquake: stations with a P pick within ``tolerance_s`` of its first P there, and
    stations whose windows after P reach the pick thresholds' probability and peak, and those
    whose P peak is at least twice their noise's (:func:`p_snr`): why a station did not pick."""
    rows = []
    noise_index = list(next(iter(classified.values()))["classes"]).index("noise")
    for quake in net.quakes:
        hit, errors, over_prob, over_pga, over_2x_noise = [], [], 0, 0, 0
        for i, p_s in quake.p_s.items():
            code = net.codes[i]
            dt = [p["time_us"] / 1e6 - T0_US / 1e6 - p_s for p in picks[code] if p["phase"] == "P"]
            dt = [x for x in dt if abs(x) <= tolerance_s]
            if dt:
                hit.append(code)
                errors.append(min(dt, key=abs))
            prob, peak = p_windows(classified[code], p_s, noise_index)
            over_prob += prob >= config.mqtt_pick_prob
            over_pga += peak >= config.mqtt_pick_min_pga_mps2
            over_2x_noise += p_snr(classified[code], p_s) >= 2.0
        rows.append({"magnitude": quake.magnitude, "depth_km": quake.depth_km,
                     "x_km": round(quake.x_km, 1), "y_km": round(quake.y_km, 1),
                     "p_stations": len(hit), "detectable": len(hit) >= min_stations,
                     "stations_over_pick_prob": int(over_prob), "stations_over_pick_pga": int(over_pga),
                     "stations_p_over_2x_noise": int(over_2x_noise),
                     "median_pick_error_s": round(float(np.median(errors)), 3) if errors else None})
    return rows


def transient_picks(net, picks: dict) -> tuple[int, int]:
    """``(transients, P picks within 3 s of one)`` on the network's single-station transients."""
    n = hits = 0
    for code, times in net.transients.items():
        p = np.array([x["time_us"] / 1e6 - T0_US / 1e6 for x in picks[code] if x["phase"] == "P"])
        for t in times:
            if any(a <= t <= b for a, b in ((q.time_s + QUAKE_SPAN_S[0], q.time_s + QUAKE_SPAN_S[1])
                                            for q in net.quakes)):
                continue
            n += 1
            hits += bool(len(p) and np.any(np.abs(p - t) <= 3.0))
    return n, hits


def noise_records(stations: int, hours: float, seed: int):
    """``stations`` records of the generator's background noise alone, ``hours`` long each."""
    from host_training.synthetic.parametric import background

    rng = np.random.default_rng(seed + 7919)
    n = int(hours * 3600 * FS_HZ)
    for _ in range(stations):
        yield background(rng, n, FS_HZ, sigma_mps2=float(rng.uniform(5e-4, 1.5e-3)))[0]


def _summary(net, picks: dict, classified: dict, noise: dict, config, hours: float, tolerance_s: float,
             min_stations: int):
    """The figures of one set of pick thresholds: per earthquake, then the network's."""
    rows = quake_rows(net, picks, classified, config, tolerance_s, min_stations)
    n_transients, transient_hits = transient_picks(net, picks)
    n_noise = sum(p["phase"] == "P" for found in noise.values() for p in found)
    detectable = sum(r["detectable"] for r in rows)
    return {
        "pick_prob": config.mqtt_pick_prob, "pick_min_pga_mps2": config.mqtt_pick_min_pga_mps2,
        "pick_windows": config.mqtt_pick_windows, "detectable": detectable,
        "detectable_fraction": round(detectable / max(len(rows), 1), 3),
        "median_p_stations": float(np.median([r["p_stations"] for r in rows])) if rows else None,
        "median_stations_over_pick_prob": float(np.median([r["stations_over_pick_prob"] for r in rows]))
        if rows else None,
        "median_stations_over_pick_pga": float(np.median([r["stations_over_pick_pga"] for r in rows]))
        if rows else None,
        "noise_station_hours": round(hours, 3), "noise_p_picks": n_noise,
        "false_p_picks_per_station_hour": round(n_noise / hours, 2) if hours else None,
        "transients": n_transients, "transients_picked": transient_hits, "quakes": rows,
    }


def measure(model: str, events: int = 40, seed: int = 0, stations: int = 12, magnitudes=(3.0, 3.5),
            noise_hours: float = 0.5, tolerance_s: float = 1.0, min_stations: int = 4,
            cache_dir=None, thresholds=({},)) -> dict:
    """The detectability of ``events`` earthquakes and the false picks (see the module notes).

    ``thresholds``: one dict per set of pick thresholds to try (``pick_prob``,
    ``pick_min_pga_mps2``, ``pick_windows``; a key left out is the node's default), all on
    the same classified windows.

    Returns
    -------
    dict
        The network's ``settings`` and one ``results`` entry per set of thresholds (fractions,
        counts, false picks per station-hour, per-earthquake rows).
    """
    from edge_runtime.backends import load_backend

    started = time.monotonic()
    net = build_network(stations, events, seed, magnitude_range=tuple(magnitudes), cache_dir=cache_dir)
    built_s = time.monotonic() - started
    backend = load_backend(model, threads=1)
    base = node_config(model, "N000")
    classified = {code: classify_record(net.records[code], backend, base) for code in net.codes}
    quiet = {i: classify_record(record, backend, base)
             for i, record in enumerate(noise_records(stations, noise_hours, seed))}
    results = []
    for t in thresholds:
        configs = {code: node_config(model, code, **t) for code in net.codes}
        picks = {code: station_picks(classified[code], configs[code]) for code in net.codes}
        noise = {i: station_picks(c, configs[net.codes[i]]) for i, c in quiet.items()}
        results.append(_summary(net, picks, classified, noise, configs[net.codes[0]],
                                noise_hours * len(quiet), tolerance_s, min_stations))
    settings = {"model": str(model), "seed": seed, "stations": stations, "events": events,
                "magnitudes": list(magnitudes), "tolerance_s": tolerance_s, "min_stations": min_stations,
                "build_s": round(built_s, 1), "run_s": round(time.monotonic() - started - built_s, 1)}
    return {"settings": settings, "results": results}


def _thresholds(text: str) -> dict:
    """``PROB:PGA:WINDOWS`` (an empty field keeps the node's default) as ``node_config`` keywords."""
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give PROB:PGA_MPS2:WINDOWS, e.g. 0.3:0.005:2")
    keys, kinds = ("pick_prob", "pick_min_pga_mps2", "pick_windows"), (float, float, int)
    try:
        return {k: kind(v) for k, kind, v in zip(keys, kinds, parts, strict=True) if v}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: PROB and PGA_MPS2 are numbers, WINDOWS a whole number") \
            from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.network_test.detectability",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the nodes' window model (.onnx)")
    parser.add_argument("--events", type=int, default=40, help="earthquakes (default: 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network (default: 0)")
    parser.add_argument("--stations", type=int, default=12, help="stations (default: 12)")
    parser.add_argument("--magnitudes", type=float, nargs=2, default=(3.0, 3.5), metavar=("MIN", "MAX"),
                        help="magnitude range (default: 3.0 3.5)")
    parser.add_argument("--noise-hours", type=float, default=0.5,
                        help="hours of background noise per station for false picks (default: 0.5)")
    parser.add_argument("--tolerance-s", type=float, default=1.0,
                        help="a P pick this close to the true P counts, s (default: 1)")
    parser.add_argument("--thresholds", type=_thresholds, action="append", metavar="PROB:PGA:WINDOWS",
                        help="[mqtt] pick_prob, pick_min_pga_mps2, pick_windows to try, an empty field "
                             "the node's default; repeat to compare (default: the node's)")
    parser.add_argument("--bank-cache", default=None, help="folder of cached Green's function banks")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    args = parser.parse_args(argv)
    try:
        result = measure(args.model, args.events, args.seed, args.stations, args.magnitudes, args.noise_hours,
                         args.tolerance_s, cache_dir=args.bank_cache, thresholds=args.thresholds or [{}])
    except (OSError, ValueError) as exc:
        print(f"detectability: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = result["settings"]
    for r in result["results"]:
        print(f"pick {r['pick_prob']} / {r['pick_min_pga_mps2']} m/s^2 / {r['pick_windows']} windows: "
              f"{r['detectable']} of {s['events']} earthquakes M{s['magnitudes'][0]}-{s['magnitudes'][1]}, "
              f"{r['detectable_fraction']:.0%} with >= {s['min_stations']} P picks within "
              f"{s['tolerance_s']} s, "
              f"median {r['median_p_stations']} stations; false P picks on noise "
              f"{r['false_p_picks_per_station_hour']} per station-hour; "
              f"{r['transients_picked']} of {r['transients']} transients picked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
