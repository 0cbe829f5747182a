"""Through a real pty: the replay writes frames, the node reads them with pyserial."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from _helpers import wait_frames, wait_status
from conftest import REPO, node_process, python_env, running, stop
from event_schema import check_events
from obspy import UTCDateTime

from edge_runtime.protocol import FrameDecoder
from edge_runtime.reader import SerialSource
from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
from host_training.recordings.sac import write_record
from host_training.synthetic import parametric as synth
from tools.replay.faults import FaultConfig, FaultInjector
from tools.replay.node import wait_for_port
from tools.replay.pty import open_pty
from tools.replay.records import read_waveform_records
from tools.replay.score import format_table, load_events, score, truths_from_sac
from tools.replay.sender import Writer, record_frames, replay_records, to_counts

T0_US = 1_767_225_600_000_000  # 2026-01-01


def test_serial_source_reads_frames_from_pty():
    pty = open_pty()
    source = SerialSource(pty.port, read_timeout_s=0.1)
    try:
        assert source.read() == b"" and source.is_open  # opens; nothing sent yet
        data = np.random.default_rng(0).standard_normal((3, 500)) * 0.01
        writer = Writer(pty, speed=0)
        frames = list(record_frames(data, 100.0, T0_US, ADXL355_COUNTS_PER_MPS2))
        for _seq, t_us, frame in frames:
            writer.send(frame, t_us)
        dec, got = FrameDecoder(), []
        deadline = time.monotonic() + 10
        while len(got) < len(frames) and time.monotonic() < deadline:
            got += dec.feed(source.read())
        assert [f.sequence for f in got] == list(range(len(frames)))
        counts = np.concatenate([f.samples for f in got]).T
        np.testing.assert_array_equal(counts, np.round(data * ADXL355_COUNTS_PER_MPS2).astype(np.int32))
    finally:
        source.close()
        pty.close()


def test_replay_stops_when_nobody_reads():
    """A dead node must not hang the replay: the writer gives up instead of blocking."""
    pty = open_pty()
    try:
        frames = [f for _, _, f in record_frames(np.zeros((3, 20000)), 100.0, 0, 1.0)]
        writer = Writer(pty, speed=0, alive=lambda: False)
        with pytest.raises(RuntimeError, match="reader of the pty is gone"):
            for f in frames:
                writer.send(f, 0)
        writer = Writer(pty, speed=0, timeout_s=0.3)
        with pytest.raises(TimeoutError, match="nobody read the pty"):
            for f in frames:
                writer.send(f, 0)
    finally:
        pty.close()


def test_serial_source_survives_a_missing_port(tmp_path, caplog):
    source = SerialSource(str(tmp_path / "ttyNONE"), read_timeout_s=0.05, retry_s=0.05)
    for _ in range(3):
        assert source.read() == b""
    assert not source.is_open
    assert any("cannot open" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def replay_records_dir(tmp_path_factory):
    """Two earthquakes and a noise record as SAC, like the demo but shorter."""
    folder = tmp_path_factory.mktemp("sac")
    rng = np.random.default_rng(21)
    t = UTCDateTime(2026, 2, 1)
    for name, (pga, sp) in {"quake1": (0.2, 3.0), "quake2": (0.5, 6.0)}.items():
        rec = synth.earthquake(rng, duration_s=40.0, p_s=15.0, pga_mps2=pga, sp_s=sp)
        write_record(rec.data, 100.0, t, folder / name, picks={"P": rec.p_s, "S": rec.s_s},
                     kind="earthquake")
        t += 70.0
    rec = synth.noise_mix(rng, duration_s=60.0, n_passages=2, n_spikes=4)
    write_record(rec.data, 100.0, t, folder / "noise", kind="noise")
    return folder


def run_node(model, port, out, *extra):
    return node_process(model, port, out, "--idle-exit-s", "2", *extra)


def test_node_process_detects_replayed_quakes_through_faults(tiny_model, replay_records_dir, tmp_path):
    """The node in its own process, a real pty, line faults: every quake, no false event."""
    # Read before the node starts: it exits after 2 s without bytes, and reading SAC files
    # between its port opening and the first frame can take that on a loaded machine.
    records = read_waveform_records(sorted(replay_records_dir.rglob("*.SAC")))
    pty = open_pty()
    proc = run_node(tiny_model["sim"], pty.port, tmp_path)
    faults = FaultInjector(FaultConfig(corrupt=0.003, garbage=0.02, truncate=0.002, seed=4))
    with running(proc, pty):
        wait_for_port(tmp_path / "status.json", proc)
        sent = replay_records(records, Writer(pty, speed=0), ADXL355_COUNTS_PER_MPS2, faults=faults)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    status = json.loads((tmp_path / "status.json").read_text())
    damaged = faults.counts["corrupted"] + faults.counts["truncated"]
    assert damaged > 0 and faults.counts["garbage"] > 0
    # Every undamaged frame arrives; every damaged one is dropped and counted.
    assert status["decoder"]["frames"] == sent["frames"] - damaged
    assert status["decoder"]["crc_errors"] + status["decoder"]["header_errors"] >= damaged
    assert status["pipeline"]["errors"] == 0
    check_events(tmp_path / "events.jsonl")
    result = score(load_events(tmp_path / "events.jsonl"), truths_from_sac(replay_records_dir))
    assert result["summary"]["detected"] == 2, result
    assert result["summary"]["false_events"] == 0, format_table(result)
    for row in result["rows"]:
        if row["detected"]:
            assert abs(row["p_error_s"]) < 1.0


def test_node_exits_cleanly_on_sigterm(tiny_model, tmp_path):
    pty = open_pty()
    # Not 2 s of silence: on a loaded machine the node could exit idle before the SIGTERM.
    proc = run_node(tiny_model["sim"], pty.port, tmp_path, "--idle-exit-s", "60")
    try:
        wait_for_port(tmp_path / "status.json", proc)
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    finally:
        pty.close()
    assert proc.returncode == 0, output
    assert "shutting down" in output


def test_node_reports_a_bad_model_in_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    result = subprocess.run([sys.executable, "-m", "edge_runtime", "run", "--port", "/dev/null",
                             "--model", str(bad)], cwd=REPO, env=python_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "bad.onnx" in result.stderr


def test_node_survives_its_port_vanishing(tiny_model, tmp_path):
    """The board is unplugged mid-stream: the node reports it, retries, and never dies."""
    from tools.replay.pty import PtyLink

    # A link, not /dev/pts/N: a freed pty number goes to the next program that opens one
    # (another test, another job on the machine), and the node would rightly refuse it as
    # another device instead of finding its port gone. No --idle-exit-s: the node must
    # still run after the loss and its failed reopen, however slow the machine; the test
    # stops it.
    link = PtyLink(tmp_path / "tty")
    status_path = tmp_path / "status.json"
    proc = node_process(tiny_model["sim"], link.port, tmp_path, "--status-every-s", "0.1")
    with running(proc, link):
        wait_for_port(status_path, proc, timeout_s=60)
        writer = Writer(link.pty, speed=0)
        data = np.zeros((3, 300))
        for _seq, t_us, frame in record_frames(data, 100.0, T0_US, ADXL355_COUNTS_PER_MPS2):
            writer.send(frame, t_us)
        wait_frames(status_path, proc, 30)
        link.unplug()  # the link, then the pty and its device node, are gone
        # The loss and at least one failed reopen, both counted as port faults.
        wait_status(status_path, proc, lambda s: s["reconnects"] >= 1 and s["faults"].get("port", 0) >= 2,
                    "report the lost port and retry it")
        assert proc.poll() is None  # still running, retrying
        output = stop(proc)
    assert proc.returncode == 0, output
    assert "lost" in output and "retrying" in output
    status = json.loads(status_path.read_text())
    assert status["reconnects"] >= 1 and status["decoder"]["frames"] == 30


def test_stream_stopping_mid_event_closes_it_on_wall_time(tiny_model, tmp_path):
    """The board goes quiet during the S wave: the event is written while the node waits."""
    pty = open_pty()
    proc = run_node(tiny_model["sim"], pty.port, tmp_path, "--off-s", "1", "--idle-exit-s", "60")
    try:
        wait_for_port(tmp_path / "status.json", proc)
        rng = np.random.default_rng(8)
        rec = synth.earthquake(rng, duration_s=30.0, p_s=10.0, sp_s=4.0, pga_mps2=0.3)
        writer = Writer(pty, speed=0)
        for _seq, t_us, frame in record_frames(rec.data[:, :1700], 100.0, T0_US, ADXL355_COUNTS_PER_MPS2):
            writer.send(frame, t_us)
        deadline = time.monotonic() + 45  # generous: 17 s of data through the model on a loaded machine
        events = []
        while not events and time.monotonic() < deadline:
            time.sleep(0.2)
            events = load_events(tmp_path / "events.jsonl")
        assert proc.poll() is None  # still running, waiting for its board
        assert len(events) == 1, proc.stdout.read() if proc.poll() is not None else "no event"
        check_events(events)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
        pty.close()
    assert "no frames for" in output and "closing it" in output


def test_replay_cli_writes_frames_to_a_serial_port(tmp_path):
    """`python -m tools replay FILES --port DEV` through pyserial, read back on the pty master."""
    import os
    import select

    rng = np.random.default_rng(2)
    rec = synth.quiet(rng, duration_s=5.0)
    paths = write_record(rec.data, 100.0, UTCDateTime(2026, 5, 1), tmp_path / "r")
    pty = open_pty()
    proc = subprocess.Popen([sys.executable, "-m", "tools", "replay", *map(str, paths), "--port", pty.port,
                             "--speed", "0", "--garbage", "0.2", "--fault-seed", "1"],
                            cwd=REPO, env=python_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    dec, frames = FrameDecoder(), []
    with running(proc, pty):
        deadline = time.monotonic() + 60
        while len(frames) < 50 and time.monotonic() < deadline:
            ready, _, _ = select.select([pty.master_fd], [], [], 0.2)
            if ready:
                frames += dec.feed(os.read(pty.master_fd, 65536))
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert [f.sequence for f in frames] == list(range(50))  # 5 s in 10-sample frames
    assert frames[0].timestamp_us == int(UTCDateTime(2026, 5, 1).timestamp * 1e6)
    assert dec.stats.bytes_discarded > 0  # the injected line noise was skipped
    counts = np.concatenate([f.samples for f in frames]).T
    # SAC holds nm/s^2 (idep IACC) in float32: a count can round the other way.
    np.testing.assert_allclose(counts, to_counts(rec.data.astype(np.float32), ADXL355_COUNTS_PER_MPS2),
                               rtol=0, atol=1)


def test_port_taken_over_by_another_pty_is_refused(tiny_model, tmp_path):
    """Unplug; the same path now leads to another program's pty: not one foreign frame is read,
    and the refusals, one every 50 ms for seconds, go through the rate limiter (a few lines)."""
    import os

    from tools.replay.pty import PtyLink

    link = PtyLink(tmp_path / "tty")
    status_path = tmp_path / "status.json"
    # No --idle-exit-s: the refusals must go on for as long as the test needs to count
    # them on a slow machine; the test stops the node once they did.
    proc = node_process(tiny_model["sim"], link.port, tmp_path, "--reconnect-max-s", "0.05",
                        "--status-every-s", "0.1")
    with running(proc, link):
        wait_for_port(status_path, proc, timeout_s=60)
        writer = Writer(link.pty, speed=0)
        for _seq, t_us, frame in record_frames(np.zeros((3, 300)), 100.0, T0_US, ADXL355_COUNTS_PER_MPS2):
            writer.send(frame, t_us)
        wait_frames(status_path, proc, 30)
        link.unplug()
        foreign = link.replug()  # another program's pty behind the same path, sending frames
        other = record_frames(np.ones((3, 200)), 100.0, T0_US + 10**7, ADXL355_COUNTS_PER_MPS2)
        for _seq, _t, frame in other:
            os.write(foreign.master_fd, frame)
        # About a second of refusals, one every 50 ms.
        wait_status(status_path, proc, lambda s: s["port_refused"] >= 20, "refuse the foreign pty 20 times")
        output = stop(proc)
    assert proc.returncode == 0, output
    status = json.loads(status_path.read_text())
    assert status["decoder"]["frames"] == 30  # the board's 30 frames; none of the foreign 20
    assert status["port_refused"] >= 20 and status["faults"]["port-replaced"] == status["port_refused"]
    refusals = [line for line in output.splitlines() if "now leads to another device" in line]
    assert 1 <= len(refusals) <= 6, output  # 5 in full, then one per interval


def test_event_snippet_as_sac_and_alert_through_an_outage(tiny_model, tmp_path):
    """A quake through the node process: the event line names SAC snippets ObsPy reads back,
    carries the model version and time-fix state, and its alert reaches a server that was down."""
    import obspy
    from test_actions import AlertServer

    server = AlertServer(fail=2)
    pty = open_pty()
    proc = run_node(tiny_model["sim"], pty.port, tmp_path, "--snippets", str(tmp_path / "snippets"),
                    "--url", server.url, "--spool", str(tmp_path / "spool"), "--retry-s", "0.05",
                    "--retry-max-s", "0.1", "--idle-exit-s", "3", "--station", "ST07")
    rng = np.random.default_rng(5)
    rec = synth.earthquake(rng, duration_s=40.0, p_s=10.0, sp_s=4.0, pga_mps2=0.3)
    with running(proc, pty):
        wait_for_port(tmp_path / "status.json", proc)
        writer = Writer(pty, speed=0)
        for _seq, t_us, frame in record_frames(rec.data, 100.0, T0_US, ADXL355_COUNTS_PER_MPS2):
            writer.send(frame, t_us)
        output, _ = proc.communicate(timeout=120)
        server.close()
    assert proc.returncode == 0, output
    events = [e for e in check_events(tmp_path / "events.jsonl") if e["type"] == "event"]
    assert len(events) == 1, output
    event = events[0]
    assert event["model_version"] == tiny_model["exported"]["model_version"]
    assert event["time_fix"] in ("unknown", None)  # a v1 board says nothing about its clock
    files = event["snippet"]["files"]
    assert [f[-7:] for f in files] == ["HNE.SAC", "HNN.SAC", "HNZ.SAC"]
    stream = obspy.read(str(tmp_path / "snippets" / "*.SAC"))
    assert len(stream) == 3 and {tr.stats.station for tr in stream} == {"ST07"}
    z = stream.select(channel="HNZ")[0]
    assert z.stats.sampling_rate == 100.0
    start = z.stats.starttime.timestamp * 1e6 - T0_US
    i0 = int(round(start / 1e4))
    expected = np.round(rec.data[2, i0:i0 + z.stats.npts] * ADXL355_COUNTS_PER_MPS2) / ADXL355_COUNTS_PER_MPS2
    np.testing.assert_allclose(z.data, expected, atol=1e-6)
    assert z.stats.starttime.timestamp * 1e6 <= event["p_time_us"] - 10e6  # snippet_pre_s before
    assert abs(z.stats.sac.a - (event["p_time_us"] / 1e6 - z.stats.starttime.timestamp)) < 0.011
    assert server.attempts >= 3 and [e["p_time_us"] for e in server.received] == [event["p_time_us"]]
    check_events(server.received)  # the alert carries the record as written
    assert not list((tmp_path / "spool").rglob("*.json"))  # delivered, nothing left queued


def test_serial_source_reads_what_is_waiting_up_to_its_maximum():
    """One read takes what the port holds (not a fixed size), bounded by MAX_READ_BYTES."""
    import os

    from edge_runtime.reader import read_size

    assert (read_size(0, 4096), read_size(3000, 4096), read_size(10**6, 4096)) == (1, 3000, 4096)
    pty = open_pty()
    source = SerialSource(pty.port, read_timeout_s=0.1)
    try:
        assert source.read() == b"" and source.is_open
        source.MAX_READ_BYTES = 1000
        os.write(pty.master_fd, bytes(3000))
        sizes = []
        deadline = time.monotonic() + 10
        while sum(sizes) < 3000 and time.monotonic() < deadline:
            sizes.append(len(source.read()))
        assert sum(sizes) == 3000 and max(sizes) == 1000, sizes
    finally:
        source.close()
        pty.close()
