"""The SDS miniSEED archive (edge_runtime/network/archive.py), read back with ObsPy.

Every test compares what ObsPy reads from the day files with the counts and times that
were fed, sample for sample: across midnight, a gap, a restart, a full disk and a quota.
The last test runs a real node process fed frames through a real pty.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pymseed = pytest.importorskip("pymseed")
obspy = pytest.importorskip("obspy")

from _helpers import add_trace_samples  # noqa: E402

from edge_runtime.config import NodeConfig  # noqa: E402
from edge_runtime.network.archive import (  # noqa: E402
    RETRY_S,
    SdsArchive,
    sds_path,
    split_at_midnight,
    to_counts,
)
from edge_runtime.network.stationxml import station_identity  # noqa: E402
from edge_runtime.sensors import SENSORS  # noqa: E402

MIDNIGHT_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
RATE_HZ = 100.0
PERIOD_US = 10_000


def config(**kw) -> NodeConfig:
    return NodeConfig(port="unused", model="unused", station="ST01", network="XX", **kw)


def archive(root, clock=None, quota_mb=None) -> SdsArchive:
    c = config()
    kwargs = {} if clock is None else {"clock": clock}
    return SdsArchive(root, station_identity(c, ("E", "N", "Z")), c.counts_per_mps2, quota_mb, **kwargs)


def noise_counts(rng, n: int, amplitude: float = 2000.0) -> np.ndarray:
    """(n, 3) int32 counts, a random walk (Steim-2 differences of every width)."""
    return np.cumsum(rng.normal(0, amplitude, (n, 3)), axis=0).astype(np.int32) % 200_000


def feed(a: SdsArchive, t0_us: int, counts: np.ndarray, per_frame: int = 10, scale: float | None = None):
    """Frames of ``per_frame`` samples from ``t0_us``, as the sink hands them (m/s^2); the fed samples."""
    scale = a.counts_per_mps2 if scale is None else scale
    fed = {}
    for i in range(0, len(counts), per_frame):
        part = counts[i:i + per_frame]
        t_us = t0_us + i * PERIOD_US
        a.on_samples(t_us, RATE_HZ, part / scale)  # what Pipeline._accept hands the sink
        for k, row in enumerate(part):
            fed[t_us + k * PERIOD_US] = row
    return fed


def read_back(root: Path) -> dict:
    """``{(channel, time_us): count}`` of every sample ObsPy reads from the SDS files under ``root``."""
    out = {}
    for path in sorted(root.glob("*/*/*/*.D/*")):
        for trace in obspy.read(str(path), format="MSEED"):
            assert trace.stats.mseed.encoding == "STEIM2" and trace.stats.mseed.record_length == 512
            assert trace.data.dtype == np.int32
            add_trace_samples(out, trace, PERIOD_US)
    return out


def expected(fed: dict) -> dict:
    return {(cha, t): int(row[c]) for t, row in fed.items() for c, cha in enumerate(("HNE", "HNN", "HNZ"))}


def records_of(path: Path):
    """(start_ns, end_ns, n_samples) of every record in a file, with its length and encoding checked."""
    out = []
    for record in pymseed.MS3RecordReader(str(path), unpack_data=False):
        assert record.reclen == 512 and record.encoding == pymseed.DataEncoding.STEIM2
        assert record.formatversion == 2
        out.append((record.starttime, record.endtime, record.samplecnt))
    assert path.stat().st_size == 512 * len(out)
    return out


def test_counts_come_back_exactly_from_the_sinks_mps2():
    """rint(m/s^2 * scale) is the count the node divided, for every 20-bit count and scale."""
    counts = np.arange(-(2**19), 2**19, dtype=np.int32)
    for scale in [s.counts_per_mps2 for s in SENSORS.values()] + [26104.7, 1000.0, 0.3, 1e-3]:
        np.testing.assert_array_equal(to_counts(counts / scale, scale), counts)
    wide = np.array([2**31 - 1, -(2**31)], dtype=np.int32)
    np.testing.assert_array_equal(to_counts(wide / 26104.7, 26104.7), wide)


@pytest.mark.parametrize("t0_us,rate_hz,n,expected_parts", [
    (MIDNIGHT_US - 50_000, 100.0, 10, [(MIDNIGHT_US - 50_000, 0, 5), (MIDNIGHT_US, 5, 10)]),
    (MIDNIGHT_US - 100_000, 100.0, 10, [(MIDNIGHT_US - 100_000, 0, 10)]),
    (MIDNIGHT_US, 100.0, 10, [(MIDNIGHT_US, 0, 10)]),
    (MIDNIGHT_US - 4_000, 125.0, 3, [(MIDNIGHT_US - 4_000, 0, 1), (MIDNIGHT_US + 4_000, 1, 3)]),
    (MIDNIGHT_US - 1, 100.0, 2, [(MIDNIGHT_US - 1, 0, 1), (MIDNIGHT_US + 9_999, 1, 2)]),
])
def test_a_frame_is_split_at_midnight(t0_us, rate_hz, n, expected_parts):
    assert split_at_midnight(t0_us, rate_hz, n) == expected_parts


def test_sds_path_names_the_day_of_the_record():
    path = sds_path(Path("/a"), "XX", "ST01", "", "HNZ", (MIDNIGHT_US - 1) * 1000)
    assert str(path) == "/a/2025/XX/ST01/HNZ.D/XX.ST01..HNZ.D.2025.365"
    path = sds_path(Path("/a"), "XX", "ST01", "00", "HNE", MIDNIGHT_US * 1000)
    assert path.name == "XX.ST01.00.HNE.D.2026.001"


def test_midnight_gap_and_restart_read_back_exactly(tmp_path):
    """Across midnight (a frame straddling it), a gap of 3.7 frames, a stop (partial records
    flushed) and a restart appending to the same day file: every sample, at its time."""
    rng = np.random.default_rng(3)
    a = archive(tmp_path)
    t0 = MIDNIGHT_US - 20_000_000 - 50_000  # frames straddle midnight (5 samples each side)
    fed = feed(a, t0, noise_counts(rng, 4000))
    gap_end = t0 + 4000 * PERIOD_US + 37 * PERIOD_US
    fed.update(feed(a, gap_end, noise_counts(rng, 3000)))
    a.close()  # SIGTERM: what is held is packed, partly filled, and written
    assert a.counters()["archive_gaps"] == 1
    restart = gap_end + 3000 * PERIOD_US  # the node comes back, continuing the same day
    b = archive(tmp_path)
    fed.update(feed(b, restart, noise_counts(rng, 2000)))
    b.close()
    assert read_back(tmp_path) == expected(fed)
    for path in tmp_path.glob("*/*/*/*.D/*"):
        year, doy = path.name.split(".")[-2:]
        for start_ns, end_ns, _ in records_of(path):  # no record spans midnight
            for t_ns in (start_ns, end_ns):
                day = obspy.UTCDateTime(ns=t_ns)
                assert (day.year, day.julday) == (int(year), int(doy)), path
    starts = [r[0] for r in records_of(tmp_path / "2026/XX/ST01/HNZ.D/XX.ST01..HNZ.D.2026.001")]
    assert gap_end * 1000 in starts and restart * 1000 in starts  # a new record at the gap, at the restart
    assert MIDNIGHT_US * 1000 in starts
    from obspy.clients.filesystem.sds import Client

    st = Client(str(tmp_path)).get_waveforms("XX", "ST01", "", "HNZ", obspy.UTCDateTime(ns=t0 * 1000),
                                             obspy.UTCDateTime(ns=(restart + 2000 * PERIOD_US) * 1000))
    st.merge()  # midnight and the restart join up; the gap stays, masked
    assert len(st) == 1 and st[0].stats.npts == 9037 and int(np.ma.getmaskarray(st[0].data).sum()) == 37


def test_a_torn_last_record_is_cut_before_appending(tmp_path):
    rng = np.random.default_rng(4)
    a = archive(tmp_path)
    fed = feed(a, MIDNIGHT_US, noise_counts(rng, 1000))
    a.close()
    day_file = tmp_path / "2026/XX/ST01/HNZ.D/XX.ST01..HNZ.D.2026.001"
    whole = day_file.read_bytes()
    torn_start_ns, _, torn_n = records_of(day_file)[-1]
    day_file.write_bytes(whole[:-100])  # a power cut in the last record's write
    b = archive(tmp_path)
    later = feed(b, MIDNIGHT_US + 2000 * PERIOD_US, noise_counts(rng, 1000))
    b.close()
    assert b.files.torn_cut == 1
    records_of(day_file)  # whole records only
    lost = {("HNZ", torn_start_ns // 1000 + i * PERIOD_US) for i in range(torn_n)}
    want = {k: v for k, v in expected({**fed, **later}).items() if k not in lost}
    assert read_back(tmp_path) == want  # only the torn record is gone


def test_quota_deletes_the_oldest_days_and_keeps_the_current_one(tmp_path, caplog):
    rng = np.random.default_rng(5)
    a = archive(tmp_path, quota_mb=0.012)  # 12,000 bytes: two days of 9 records (4,608 bytes)
    days = [MIDNIGHT_US + d * 86_400_000_000 for d in range(5)]
    fed = {}
    for t0 in days:
        fed = feed(a, t0, noise_counts(rng, 600))  # a gap each day: partial records flushed
    a.close()
    names = sorted(p.name for p in tmp_path.glob("*/*/*/*.D/*"))
    kept_days = sorted({n.rsplit(".", 2)[-1] for n in names})
    assert kept_days[-1] == "005" and "001" not in kept_days
    assert sum(p.stat().st_size for p in tmp_path.glob("*/*/*/*.D/*")) <= 12_000
    assert a.counters()["archive_days_deleted"] >= 1
    got = read_back(tmp_path)
    assert all(got[k] == v for k, v in expected(fed).items())  # the current day is whole
    assert not (tmp_path / "2026" / "XX" / "ST01" / "HNZ.D" / "XX.ST01..HNZ.D.2026.001").exists()
    # A quota smaller than a day: the current day is kept, said once.
    caplog.set_level(logging.WARNING, "edge_runtime.network.archive")
    small = archive(tmp_path, quota_mb=0.001)
    fed = feed(small, days[-1] + 86_400_000_000, noise_counts(rng, 3000))
    small.close()
    assert sorted({p.name.rsplit(".", 1)[-1] for p in tmp_path.glob("*/*/*/*.D/*")}) == ["006"]
    got = read_back(tmp_path)
    assert all(got[k] == v for k, v in expected(fed).items())
    warnings = [r for r in caplog.records if "larger than quota_mb" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


class Clock:
    def __init__(self):
        self.now_s = 0.0

    def __call__(self):
        return self.now_s


def test_a_disk_that_refuses_writes_is_logged_once_and_retried(tmp_path, caplog):
    """/dev/full (ENOSPC on every write, no root needed) behind the day files of one channel."""
    caplog.set_level(logging.INFO, "edge_runtime.network.archive")
    rng = np.random.default_rng(6)
    clock = Clock()
    a = archive(tmp_path, clock=clock)
    full = tmp_path / "2026/XX/ST01/HNZ.D/XX.ST01..HNZ.D.2026.001"
    full.parent.mkdir(parents=True)
    full.symlink_to("/dev/full")
    fed = {}
    for k in range(30):
        fed.update(feed(a, MIDNIGHT_US + k * 300 * PERIOD_US, noise_counts(rng, 300)))
        clock.now_s += 1.0
    status = a.counters()
    assert status["archive_disk_error"] == "No space left on device (ENOSPC)"
    assert status["archive_backlog"] > 0 and status["archive_write_failures"] >= 5  # every RETRY_S
    errors = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(errors) == 1 and "No space left on device" in errors[0].getMessage()
    full.unlink()  # space again
    clock.now_s += RETRY_S
    a.tick(clock.now_s)
    a.close()
    assert a.counters()["archive_backlog"] == 0 and a.counters()["archive_disk_error"] is None
    assert len([r for r in caplog.records if "writing again" in r.getMessage()]) == 1
    assert read_back(tmp_path) == expected(fed)


def test_a_hung_disk_never_delays_the_loop(tmp_path):
    """Behind its Queued worker, an archive whose write blocks (a FIFO nobody reads, as a hung
    SD card) costs the loop only a queue put per frame; frames beyond the queue are counted."""
    import threading
    import time

    from edge_runtime.sink import Queued

    rng = np.random.default_rng(9)
    a = archive(tmp_path)
    hung = tmp_path / "2026/XX/ST01/HNE.D/XX.ST01..HNE.D.2026.001"
    hung.parent.mkdir(parents=True)
    os.mkfifo(hung)
    queued = Queued(a, maxsize=50, close_timeout_s=60.0)  # at the end, time to drain on a loaded machine
    counts = noise_counts(rng, 3000)
    # A loop blocked by the hung disk would never return from on_samples; one merely slow on a
    # loaded machine does, so the frames go in from a thread that must finish (no call is timed).
    def feed():
        for i in range(0, 3000, 10):  # 300 frames; the worker blocks at its first record
            queued.on_samples(MIDNIGHT_US + i * PERIOD_US, RATE_HZ, counts[i:i + 10] / a.counts_per_mps2)

    loop = threading.Thread(target=feed, daemon=True)
    loop.start()
    loop.join(60)
    assert not loop.is_alive(), "300 frames did not go in within 60 s: the hung disk blocks the loop"
    deadline = time.monotonic() + 30
    while queued.counters()["archive_dropped"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queued.counters()["archive_dropped"] > 0  # counted, never waited for
    drained = []
    reader = threading.Thread(target=lambda: drained.append(hung.read_bytes()))
    reader.start()  # the disk comes back
    queued.close()
    reader.join(30)
    assert drained and len(drained[0]) % 512 == 0 and len(drained[0]) > 0


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True)
    return result.returncode == 0


def test_a_full_filesystem_keeps_whole_records_and_loses_nothing(tmp_path, caplog):
    """A real 64 kB tmpfs filled up mid-record: the torn write is cut off, the records wait,
    and once space is freed every sample is there (needs root to mount; skipped otherwise)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        caplog.set_level(logging.INFO, "edge_runtime.network.archive")
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 40_000)
        rng = np.random.default_rng(7)
        clock = Clock()
        a = archive(disk / "sds", clock=clock)
        fed = {}
        for k in range(20):  # about 42 kB of records: the disk fills after 24 kB
            fed.update(feed(a, MIDNIGHT_US + k * 300 * PERIOD_US, noise_counts(rng, 300)))
            clock.now_s += 1.0
        assert a.counters()["archive_disk_error"] == "No space left on device (ENOSPC)"
        for path in (disk / "sds").glob("*/*/*/*.D/*"):
            assert path.stat().st_size % 512 == 0  # no torn record on a full disk
        filler.unlink()
        clock.now_s += RETRY_S
        a.tick(clock.now_s)
        a.close()
        assert a.counters()["archive_backlog"] == 0
        assert read_back(disk / "sds") == expected(fed)
        assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_an_archive_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"^archive folder .*file/sds: cannot create \(.*\)$"):
        archive(blocker / "sds")


def test_node_process_archives_exactly_the_counts_sent(tiny_model, tmp_path):
    """A real node fed frames through a pty, [archive] on, stopped by SIGTERM and started
    again: ObsPy reads from the SDS tree the counts sent, at their times, across midnight and
    the restart; the StationXML beside them turns them into the m/s^2 the node classified."""
    from _helpers import feed_until_idle, wait_ready, wait_status
    from conftest import REPO, stop

    from tools.replay.node import node_on_pty
    from tools.replay.sender import Writer, count_frames

    rng = np.random.default_rng(8)
    counts = noise_counts(rng, 4000, 300).T  # (3, n) as a board sends them
    t0 = MIDNIGHT_US - 15_000_000
    frames = [f for _, _, f in count_frames(counts, RATE_HZ, t0)]
    sds = tmp_path / "sds"
    flags = ["--archive", str(sds), "--station", "ST07", "--network", "XX", "--latitude", "46.5",
             "--longitude", "6.6"]
    half = len(frames) // 2
    with node_on_pty(tiny_model["sim"], tmp_path / "events.jsonl", tmp_path / "status.json",
                     "--status-every-s", "0.2", *flags, cwd=REPO, grace_s=0) as (proc, pty):
        wait_ready(tmp_path, proc)
        writer = Writer(pty, speed=0)
        for frame in frames[:half]:
            writer.send(frame, 0)
        wait_status(tmp_path / "status.json", proc, lambda s: s["pipeline"]["frames"] >= half,
                    f"accept {half} frames")
        output = stop(proc)  # SIGTERM: the records held, partly filled, are written
    assert proc.returncode == 0 and "shutting down" in output, output
    second = [f for _, _, f in count_frames(counts[:, half * 10:], RATE_HZ, t0 + half * 10 * PERIOD_US)]
    feed_until_idle(tiny_model["sim"], tmp_path, second, *flags)
    for path in sorted(sds.glob("*/*/*/*.D/*")):
        records_of(path)  # 512-byte Steim-2 records, whole
    assert len(list(sds.glob("*/*/*/*.D/*"))) == 6  # three channels, two days
    st = obspy.read(str(sds / "*/*/*/*.D/*"))
    st.merge()  # midnight and the restart: one seamless trace per channel
    assert [tr.id for tr in st.sort()] == ["XX.ST07..HNE", "XX.ST07..HNN", "XX.ST07..HNZ"]
    for tr in st:
        assert tr.stats.starttime.ns == t0 * 1000 and not np.ma.is_masked(tr.data)
        np.testing.assert_array_equal(tr.data, counts["ENZ".index(tr.stats.channel[-1])])
    inventory = obspy.read_inventory(str(sds / "XX.ST07.xml"))
    st.remove_sensitivity(inventory)
    scale = SENSORS["adxl355-2g"].counts_per_mps2
    for tr in st:  # the node's own conversion, counts / counts_per_mps2, to the last bit
        np.testing.assert_array_equal(tr.data, counts["ENZ".index(tr.stats.channel[-1])] / scale)
