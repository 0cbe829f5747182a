"""tools scan: the node's own decisions over an archive, in one process and on Dask.

The scan must declare what replay-test's node processes declare on the same records
(same events, picks within one sample, same classes and probabilities), resume, say what
it skipped, and give the same catalogue on a Dask cluster of separate processes, one of
them killed mid-run.
"""

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, python_env
from fixtures_records import quake, trace, write_sac
from obspy import Stream, UTCDateTime, read

REALDATA = REPO.parent / "shared" / "realdata"
FIXTURES = REPO / "tools" / "fixtures" / "records"


def tools(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tools", *map(str, args)], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=timeout)


def node_events(lines) -> list:
    out = [json.loads(line) for line in lines if line.strip()]
    return sorted(out, key=lambda e: (e["station"], e["type"], e["start_us"]))


def assert_same_decisions(scan_out: Path, replay_json: dict) -> None:
    """Same events and triggers as the node processes wrote, and the same window classes."""
    replayed = []
    for row in replay_json["rows"]:
        replayed += (Path(row["workdir"]) / "events.jsonl").read_text().splitlines()
    ours = node_events((scan_out / "catalog.jsonl").read_text().splitlines())
    theirs = node_events(replayed)
    assert [(e["station"], e["type"], e["start_us"], e["end_us"], e["n_windows"]) for e in ours] == \
        [(e["station"], e["type"], e["start_us"], e["end_us"], e["n_windows"]) for e in theirs]
    rates = {r["record"].split(".")[1]: r["rate_hz"] for r in replay_json["rows"]}
    for a, b in zip(ours, theirs, strict=True):
        period_us = 1e6 / rates[a["station"]]
        for pick in ("p_time_us", "s_time_us"):
            assert (a[pick] is None) == (b[pick] is None), (a, b)
            if a[pick] is not None:
                assert abs(a[pick] - b[pick]) <= period_us, (pick, a, b)
        for key in ("p_prob", "s_prob", "pga_mps2"):
            assert abs(a[key] - b[key]) <= 1e-6, (key, a, b)
        assert a["event_id"] == b["event_id"] if a["type"] == "event" else True
    scan_rows = {r["record"]: r for r in json.loads((scan_out / "summary.json").read_text())["rows"]}
    for row in replay_json["rows"]:
        ours = scan_rows[row["record"]]
        assert ours["windows"] == row["windows"], row["record"]
        if ours["windows_unclassified"] == 0:
            assert ours["window_classes"] == row["window_classes"], row["record"]
        else:  # the scan's default: windows no decision reads are counted, not classified
            assert ours["windows_unclassified"] + sum(ours["window_classes"].values()) == row["windows"]


@pytest.fixture(scope="module")
def realdata_subset():
    """Four real records in place (the catalog's globs are relative to it): 50, 100 and 400 Hz
    SAC in gal, and the 200 Hz Napa miniSEED in counts with its StationXML and QuakeML."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not here")
    fema = REALDATA / "fema_p695_farfield"
    return [*(fema / f"PR.{n}..{c}.SAC" for n in ("F02", "F11", "F12") for c in ("HN1", "HN2")),
            REALDATA / "napa_2014"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["fixtures", "realdata"])
def test_scan_decides_as_replay_test_nodes(tiny_model, realdata_subset, tmp_path, which):
    sources = [FIXTURES] if which == "fixtures" else realdata_subset
    catalog = FIXTURES / "catalog.csv" if which == "fixtures" else REALDATA / "catalog.csv"
    replay = tools("replay-test", *sources, "--model", tiny_model["sim"], "--catalog", catalog,
                   "--out", tmp_path / "replay", "--json", "--faults", "")
    assert "Traceback" not in replay.stderr, replay.stderr[-3000:]
    replayed = json.loads(replay.stdout)
    for flags in ([], ["--all-windows"]):
        out = tmp_path / ("scan" + "".join(flags))
        scan = tools("scan", *sources, "--model", tiny_model["sim"], "--catalog", catalog, "--out", out,
                     "--json", *flags)
        assert "Traceback" not in scan.stderr, scan.stderr[-3000:]
        ours = json.loads(scan.stdout)
        assert set(ours) == set(replayed) and set(replayed["summary"]) <= set(ours["summary"])
        assert ours["summary"]["records"] == replayed["summary"]["records"] >= (3 if which == "fixtures"
                                                                                 else 4)
        assert ours["summary"]["skipped"] == replayed["summary"]["skipped"]
        assert ours["summary"]["detected"] == replayed["summary"]["detected"]
        assert_same_decisions(out, replayed)
        unclassified = sum(r["windows_unclassified"] for r in ours["rows"])
        assert (unclassified == 0) == bool(flags), unclassified
        for name in ("catalog.csv", "catalog.xml", "station_days.csv", "events_per_day.png"):
            assert (out / name).is_file(), name


def test_frames_joined_only_where_the_windows_stay_the_same(tiny_model):
    from edge_runtime.backends import load_backend
    from edge_runtime.config import build_config
    from edge_runtime.service import Pipeline
    from tools.scan.frames import joinable, node_frames

    assert joinable(100.0) and joinable(200.0) and joinable(40.0)
    assert not joinable(128.0) and not joinable(100.0005)
    rng = np.random.default_rng(3)
    counts = np.round(rng.normal(0, 2000, (3, 6000))).astype(np.int32)
    counts[:, 3000:3400] *= 20  # an earthquake-sized burst, within the sensor's word as digitized
    config = build_config({}, {"port": "x", "model": str(tiny_model["sim"])})
    runs = []
    for batch_s in (0.0, 30.0):
        pipeline = Pipeline(load_backend(str(tiny_model["sim"])), config)
        windows = []
        pipeline.window_listeners.append(windows.append)
        frames = list(node_frames(counts, 100.0, 1_700_000_000_000_000, batch_s))
        assert len(frames) == (600 if batch_s == 0 else 2)
        for f in frames:
            pipeline.on_frame(f)
        pipeline.flush()
        runs.append(windows)
    assert [w.center_us for w in runs[0]] == [w.center_us for w in runs[1]]
    p0 = np.array([list(w.probs.values()) for w in runs[0]])
    p1 = np.array([list(w.probs.values()) for w in runs[1]])
    assert np.abs(p0 - p1).max() <= 1e-6


def _run_three_ways(model, record, monkeypatch, piece_s):
    """``run_record`` on the batched windows (pieces of ``piece_s``), every window classified
    (``all``) and only those a decision can read (``gated``, the default), and on the node's
    frames (``frames``)."""
    from edge_runtime.sensors import DEFAULT_SENSOR, get_sensor
    from tools.scan import day as scan_day
    from tools.scan import stream

    sensor = get_sensor(DEFAULT_SENSOR)
    runs = {}
    for how in ("all", "gated", "frames"):
        settings = scan_day.ScanSettings(model=str(model), all_windows=how == "all")
        with monkeypatch.context() as m:
            m.setattr(scan_day, "PIECE_S", piece_s)
            # the detector must never read a window the gate left unclassified
            m.setattr(stream.ChunkedStream, "_late", lambda self, k, arrays: pytest.fail(f"window {k} read"))
            if how == "frames":
                m.setattr(stream, "continuous", lambda *args: False)
            with tempfile.TemporaryDirectory() as tmp:
                events = Path(tmp) / "events.jsonl"
                sink = scan_day._Sink(events)
                rng = np.random.default_rng(0)
                runs[how] = scan_day.run_record(record, settings, sink, events, sensor, rng)
                sink.close()
    return runs


@pytest.mark.parametrize("rate_hz", [100.0, 200.0, 50.0])
def test_batched_windows_decide_as_the_node_frame_by_frame(tiny_model, monkeypatch, rate_hz):
    """Windows cut as a strided view, classified in batches, the detector fed only where it
    can decide: the same triggers, events, picks, probabilities and counters as the node's
    Pipeline fed frame by frame, with the record run in pieces that cut through events."""
    from host_training.recordings.record import Record

    rng = np.random.default_rng(7)
    seconds = 900.0
    n = int(seconds * rate_hz)
    data = rng.normal(0, 2e-3, (3, n))
    for k, at_s in enumerate((40.0, 52.0, 300.0, 303.0, 610.0, 895.0 - 20.0)):
        q = quake(rng, int(30 * rate_hz), rate_hz, 3.0, pga=(0.05, 1.0, 0.3)[k % 3])
        i = int(at_s * rate_hz)
        data[:, i:i + q.shape[1]] += q[:, :n - i]
    data[:, int(700 * rate_hz):int(704 * rate_hz)] = 0.0  # a dead stretch: windows not classified
    record = Record(id="XX.CHK..HN", station="XX.CHK..HN", starttime=UTCDateTime(2026, 3, 1, 0, 0, 0.37),
                    sampling_rate_hz=rate_hz, data=data, present=(True, True, True),
                    channels=("HNE", "HNN", "HNZ"))
    runs = _run_three_ways(tiny_model["sim"], record, monkeypatch, piece_s=301.3)
    node = runs["frames"]
    events = [e for e in node["declared"] if e["type"] == "event"]
    assert len(events) >= 2, node["declared"]
    for how in ("all", "gated"):
        ours = runs[how]
        assert ours["declared"] == node["declared"], how
        for key in ("windows", "windows_dead", "triggers", "events", "samples_clipped",
                    "windows_implausible"):
            assert ours["counters"]["pipeline"][key] == node["counters"]["pipeline"][key], (how, key)
        assert ours["clipped"] == node["clipped"] and ours["missing"] == node["missing"]
    assert runs["all"]["counters"]["window_classes"] == node["counters"]["window_classes"]
    assert node["counters"]["pipeline"]["windows_dead"] > 0
    # gated: the quiet windows between the earthquakes are counted, not classified
    classified = sum(runs["gated"]["counters"]["window_classes"].values())
    assert 0 < classified < node["counters"]["pipeline"]["windows"] * 0.8


def test_streams_the_node_would_break_run_as_frames(tiny_model):
    """Only a record the node takes as one unbroken stream is cut as a strided view."""
    from edge_runtime.backends import load_backend
    from edge_runtime.config import build_config
    from edge_runtime.service import Pipeline
    from tools.scan.stream import continuous

    pipeline = Pipeline(load_backend(str(tiny_model["sim"])), build_config({}, {"port": "x", "model":
                                                                                str(tiny_model["sim"])}))
    t0 = 1_700_000_000_000_000
    assert continuous((3, 10_000), t0, 100.0, pipeline)
    assert not continuous((3, 10_000), t0, 128.0, pipeline)  # 7812.5 us: frame times re-anchor
    assert not continuous((2, 10_000), t0, 100.0, pipeline)  # the node refuses every frame
    assert not continuous((3, 10_000), 900_000_000_000_000, 100.0, pipeline)  # before 2000
    assert not continuous((3, 10_000), t0, 2000.0, pipeline)  # above the node's rate


def _write_day(folder: Path, rng, station: str, day: UTCDateTime, seconds: float = 600.0, fs: float = 100.0,
               quake_at_s=None):
    """An SDS station-day of three miniSEED channels (float32, m/s^2: scan with ``--units m/s2``),
    with one earthquake if asked."""
    n = int(seconds * fs)
    data = rng.normal(0, 0.002, (3, n))
    if quake_at_s is not None:
        q = quake(rng, 2000, fs, 3.0, pga=1.0)
        i = int(quake_at_s * fs)
        data[:, i:i + q.shape[1]] += q
    stream = Stream()
    for k, cha in enumerate(("HNE", "HNN", "HNZ")):
        stream += trace(data[k].astype(np.float32), station, cha, day, fs=fs)
    for tr in stream:
        path = folder / str(day.year) / "XX" / station / f"{tr.stats.channel}.D" / \
            f"XX.{station}..{tr.stats.channel}.D.{day.year}.{day.julday:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tr.write(str(path), format="MSEED", encoding="FLOAT32")


def test_float32_records_kept_float32_only_where_exact(tmp_path):
    """The scan reads float32 m/s^2 as float32 (half the memory of a 200 Hz day): exactly the
    values the float64 read gives; any other unit, one that scales, stays float64."""
    from host_training.recordings.reader import read_records

    _write_day(tmp_path, np.random.default_rng(5), "F32", UTCDateTime(2026, 5, 1), seconds=30)
    (wide,), _ = read_records([tmp_path], units="m/s2")
    (narrow,), _ = read_records([tmp_path], units="m/s2", float32_where_exact=True)
    assert wide.data.dtype == np.float64 and narrow.data.dtype == np.float32
    np.testing.assert_array_equal(narrow.data.astype(np.float64), wide.data)
    (gal,), _ = read_records([tmp_path], units="gal", float32_where_exact=True)
    assert gal.data.dtype == np.float64


def _scan_day_both_ways(model, sds: Path, piece_s: float, caplog) -> tuple[dict, dict, bool]:
    """One station-day read whole and read in pieces of ``piece_s``; ``(whole, pieces,
    read in pieces)`` with the wall times left out."""
    import logging

    from tools.scan.archive import find_station_days
    from tools.scan.day import ScanSettings, scan_station_day

    (day,), _ = find_station_days([sds])
    settings = ScanSettings(model=str(model), units="m/s2")
    out = []
    for p in (0.0, piece_s):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="tools.scan.day"):
            result = scan_station_day(day, settings, piece_s=p)
        for row in result["rows"]:
            row.pop("wall_s")
        result["stats"].pop("wall_s")
        out.append(result)
    return out[0], out[1], "read whole" not in caplog.text


def test_day_read_in_pieces_decides_as_read_whole(tiny_model, tmp_path, caplog):
    """A station-day read a piece at a time (memory: a piece, not the day) gives the catalogue,
    rows, statistics and day trace of the day read whole, with a piece boundary inside an
    event (cutting its windows); a day with a gap the reader merges is read whole."""
    rng = np.random.default_rng(21)
    day = UTCDateTime(2026, 5, 2)
    _write_day(tmp_path / "clean", rng, "PCE", day, seconds=900, quake_at_s=300.0)
    whole, _, _ = _scan_day_both_ways(tiny_model["sim"], tmp_path / "clean", 0.0, caplog)
    events = [json.loads(line) for line in whole["lines"] if json.loads(line)["type"] == "event"]
    assert events, whole["lines"]
    # a boundary inside the first event, off the windows' 0.25 s grid and the trace's 10 s blocks
    inside_s = (events[0]["start_us"] + events[0]["end_us"]) / 2e6 - day.timestamp + 0.37
    whole, pieces, in_pieces = _scan_day_both_ways(tiny_model["sim"], tmp_path / "clean", inside_s, caplog)
    assert in_pieces
    assert events[0]["start_us"] < (day.timestamp + inside_s) * 1e6 < events[0]["end_us"]
    assert pieces == whole

    gapped = tmp_path / "gapped"
    _write_day(gapped, rng, "PCG", day, seconds=900, quake_at_s=300.0)
    for path in gapped.rglob("XX.PCG.*"):
        st = read(str(path))
        st = st.slice(endtime=day + 450) + st.slice(starttime=day + 453)  # a 3 s gap, merged
        st.write(str(path), format="MSEED", encoding="FLOAT32")
    whole, pieces, in_pieces = _scan_day_both_ways(tiny_model["sim"], gapped, 200.0, caplog)
    assert not in_pieces and pieces == whole
    assert any("merged" in a for a in whole["rows"][0]["actions"])


def test_bad_input_one_line_each_and_resume(tiny_model, tmp_path):
    rng = np.random.default_rng(11)
    sds = tmp_path / "sds"
    _write_day(sds, rng, "AAA", UTCDateTime(2026, 5, 1), seconds=120, quake_at_s=40)
    _write_day(sds, rng, "BBB", UTCDateTime(2026, 5, 1), seconds=60)
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "XX.BAD..HNZ.SAC").write_bytes(b"\x00\x01 not a SAC file" * 40)
    q = quake(rng, 600, 100.0, 2.5)
    write_sac(trace(q[2] * 100, "LOW", "HNZ", UTCDateTime(2026, 5, 2), fs=5.0), loose / "XX.LOW..HNZ.SAC",
              idep="iacc")
    # Two files of one channel that overlap by 2 s with different samples.
    write_sac(trace(q[2] * 1e9, "OVL", "HNZ", UTCDateTime(2026, 5, 2)), loose / "a.SAC", idep="iacc")
    write_sac(trace(q[1] * 1e9, "OVL", "HNZ", UTCDateTime(2026, 5, 2, 0, 0, 4)), loose / "b.SAC",
              idep="iacc")
    out = tmp_path / "out"
    args = ("scan", sds, loose, tmp_path / "nowhere", "--model", tiny_model["sim"], "--out", out, "--json",
            "--units", "m/s2")
    first = tools(*args)
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    assert first.returncode == 1, first.stderr[-3000:]
    result = json.loads(first.stdout)
    skipped = {Path(w).name: why for w, why in result["skipped"]}
    assert "no such file" in skipped["nowhere"]
    assert any("BAD" in w for w in skipped)
    assert any("LOW" in w and "5 Hz" in why for w, why in skipped.items()), skipped
    assert any("overlap" in why.lower() for why in skipped.values()), skipped
    err = [line for line in first.stderr.splitlines() if line.startswith("skipped ")]
    assert len(err) == len(result["skipped"]), first.stderr
    s = result["summary"]
    assert s["station_days_run"] == s["station_days"] >= 3 and s["station_days_failed"] == 0
    assert {r["record"].split(".")[1] for r in result["rows"]} >= {"AAA", "BBB"}
    again = tools(*args)
    resumed = json.loads(again.stdout)["summary"]
    assert resumed["station_days_run"] == 0 and resumed["station_days_resumed"] == s["station_days"]
    assert resumed["events"] == s["events"] and resumed["triggers"] == s["triggers"]


def test_unreachable_scheduler_is_one_line(tiny_model, tmp_path):
    result = tools("scan", FIXTURES, "--model", tiny_model["sim"], "--out", tmp_path / "o",
                   "--scheduler", "tcp://127.0.0.1:9", timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --scheduler tcp://127.0.0.1:9: cannot connect"), result.stderr
    assert "Traceback" not in result.stderr


def _dask(*args, log: Path):
    """``dask scheduler`` / ``dask worker`` as a process group of its own, importing this checkout."""
    dask = Path(sys.executable).with_name("dask")
    return subprocess.Popen([str(dask), *map(str, args)], cwd=REPO, env=python_env(), start_new_session=True,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _kill(proc, sig=signal.SIGKILL) -> None:
    import os

    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_dask_cluster_gives_the_same_catalogue_and_a_killed_worker_loses_nothing(tiny_model, tmp_path):
    rng = np.random.default_rng(21)
    sds = tmp_path / "sds"
    for k, station in enumerate(("AAA", "BBB", "CCC", "DDD")):
        for d in (1, 2):
            _write_day(sds, rng, station, UTCDateTime(2026, 6, d), seconds=1500.0,
                       quake_at_s=300.0 + 100 * k if (k + d) % 2 else None)
    single = tools("scan", sds, "--model", tiny_model["sim"], "--out", tmp_path / "single", "--json",
                   "--units", "m/s2")
    assert single.returncode == 0, single.stderr[-3000:]
    expected = sorted((tmp_path / "single" / "catalog.jsonl").read_text().splitlines())
    assert json.loads(single.stdout)["summary"]["station_days"] == 8

    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                      "--scheduler-file", scheduler_file, log=tmp_path / "scheduler.log")
    workers = []
    try:
        address, deadline = None, time.monotonic() + 60
        while address is None and time.monotonic() < deadline:  # the file may be read half-written
            try:
                address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        assert address.startswith("tcp://127.0.0.1:")
        workers = [_dask("worker", "--scheduler-file", scheduler_file, "--nthreads", "1", "--nworkers", "1",
                         "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0",
                         log=tmp_path / f"worker{i}.log") for i in range(2)]
        out = tmp_path / "dask"
        scan = subprocess.Popen([sys.executable, "-m", "tools", "scan", str(sds), "--model",
                                 str(tiny_model["sim"]), "--out", str(out), "--scheduler", address, "--json",
                                 "--units", "m/s2"],
                                cwd=REPO, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        # Once the first station-day is back, one worker dies (SIGKILL: no goodbye to the scheduler).
        deadline = time.monotonic() + 240
        while not list(out.glob("days/*/*.json")) and time.monotonic() < deadline and scan.poll() is None:
            time.sleep(0.1)
        _kill(workers[0])
        stdout, stderr = scan.communicate(timeout=300)
        assert scan.returncode == 0, stderr[-3000:]
        summary = json.loads(stdout)["summary"]
        assert summary["station_days"] == summary["station_days_run"] == 8
        assert summary["station_days_failed"] == 0
        assert sorted((out / "catalog.jsonl").read_text().splitlines()) == expected
        assert len(expected) >= 2  # the earthquakes were declared (trigger + event at least)
    finally:
        for proc in workers + [scheduler]:
            _kill(proc)


def test_scan_benchmark_is_registered():
    import importlib

    from tools.bench.suite import BENCHES

    assert "scan" in BENCHES
    assert callable(importlib.import_module("tools.bench.scan").bench_scan)


def test_a_worker_keeps_freed_memory_despite_the_nannys_trim_threshold():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536; a worker's task then sets
    glibc to keep up to 32 MiB, so a station-day's hour-long arrays come from the heap and stay
    there once freed instead of being mapped and faulted in again each time (glibc's own
    account, mallinfo2: bytes mapped for an 8 MB array while held, bytes kept free after)."""
    code = ("import ctypes, sys\n"
            "import numpy as np\n"
            "from tools.scan.run import settle_worker_malloc\n"
            "class Info(ctypes.Structure):\n"
            "    names = 'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'\n"
            "    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]\n"
            "libc = ctypes.CDLL('libc.so.6')\n"
            "libc.mallinfo2.restype = Info\n"
            "if sys.argv[1] == 'settle':\n"
            "    assert settle_worker_malloc()\n"
            "a = np.ones(1 << 20)\n"
            "mapped = libc.mallinfo2().hblkhd\n"
            "del a\n"
            "print(mapped, libc.mallinfo2().fordblks)\n")
    seen = {}
    for how in ("as-is", "settle"):
        done = subprocess.run([sys.executable, "-c", code, how], cwd=REPO, capture_output=True, text=True,
                              env={**python_env(), "MALLOC_TRIM_THRESHOLD_": "65536"}, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        seen[how] = [int(v) for v in done.stdout.split()[-2:]]
    mb = 1 << 20
    assert seen["as-is"][0] >= 8 * mb and seen["as-is"][1] < 8 * mb, seen  # mapped, then given back
    assert seen["settle"][0] < 8 * mb <= seen["settle"][1], seen  # from the heap, and kept
