"""The node's seams: a source and an output added through their registries, the loop as
start / turn / stop, a slow output that never delays the loop, the event schema's example."""

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import REPO, python_env
from event_schema import check_events
from test_service import quake_frames

from edge_runtime.config import ConfigError, NodeConfig, build_config, read_toml
from edge_runtime.outputs import OUTPUTS
from edge_runtime.service import Node
from edge_runtime.sink import Consumer, EventSink, Queued
from edge_runtime.sources import SOURCES, Batch, open_source


class FramesSource:
    """A source of frames held in memory, 40 per read, then silence."""

    def __init__(self, config, n_channels, read_timeout_s, faults):
        self.frames = list(quake_frames())
        self.where = "memory"
        self.reads = 0

    def read(self) -> Batch:
        self.reads += 1
        if not self.frames:
            time.sleep(0.01)
            return Batch()
        batch, self.frames = self.frames[:40], self.frames[40:]
        return Batch(batch, heard=True)

    def counters(self) -> dict:
        return {"memory_reads": self.reads}

    def close(self) -> None:
        self.frames = []


class Recorder(Consumer):
    """An output that keeps what it is handed."""

    name = "recorder"

    def __init__(self):
        self.records, self.n_samples, self.n_windows, self.closed = [], 0, 0, False

    def on_samples(self, t0_us, rate_hz, samples_mps2):
        self.n_samples += len(samples_mps2)

    def on_window(self, window):
        self.n_windows += 1

    def on_trigger(self, record):
        self.records.append(dict(record))

    on_event = on_trigger

    def counters(self) -> dict:
        return {"recorder_records": len(self.records)}

    def close(self):
        self.closed = True


def test_a_registered_source_and_output_see_the_quake(tiny_model, tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setitem(SOURCES, "memory", FramesSource)
    monkeypatch.setitem(OUTPUTS, "recorder", lambda config, ctx: recorder)
    config = NodeConfig(port="unused", model=str(tiny_model["sim"]), source="memory", idle_exit_s=0.3,
                        events=str(tmp_path / "events.jsonl"), status=str(tmp_path / "status.json"))
    node = Node(config)
    node.start()
    turns = 0
    while node.turn():
        turns += 1
    final = node.stop()
    assert turns > 0 and recorder.closed
    assert [r["type"] for r in recorder.records] == ["trigger", "event"]
    written = check_events(tmp_path / "events.jsonl")
    assert [r["event_id"] for r in written if r["type"] == "event"] == [recorder.records[1]["event_id"]]
    p = final["pipeline"]
    assert recorder.n_samples == 10 * p["frames"] and recorder.n_windows == p["windows"] + p["windows_dead"]
    assert p["frames_in"] == p["frames_delivered"] == p["frames"] == len(list(quake_frames()))
    assert final["recorder_records"] == 2 and final["memory_reads"] > 0
    assert final["events_written"] == 2 and final["actions"] == [] and final["second_stage"] is None
    assert json.loads((tmp_path / "status.json").read_text())["recorder_records"] == 2


def test_unknown_source_is_one_config_line(tmp_path):
    with pytest.raises(ConfigError, match=r"source = 'shake': unknown source; known: serial"):
        NodeConfig(port="unused", model="m.onnx", source="shake")
    path = tmp_path / "node.toml"
    path.write_text('[node]\nsource = "slink"\nport = "/dev/ttyX"\nmodel = "m.onnx"\n')
    with pytest.raises(ConfigError, match=r"node.toml: \[node\] source = 'slink': unknown source"):
        build_config(read_toml(path), {})
    cmd = [sys.executable, "-m", "edge_runtime", "run", "--source", "udp", "--port", "/dev/null",
           "--model", "m.onnx"]
    result = subprocess.run(cmd, cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: --source = 'udp': unknown source; known: serial, "
                                                   "shake-udp, seedlink"]


def test_open_source_refuses_a_name_the_registry_lacks():
    class Config:
        source = "none"

    with pytest.raises(ValueError, match="source 'none': unknown; known: serial"):
        open_source(Config(), n_channels=3, read_timeout_s=0.1, faults=None)


class Slow(Consumer):
    name = "slow"

    def __init__(self, delay_s):
        self.delay_s, self.records, self.closed = delay_s, [], False

    def on_event(self, record):
        time.sleep(self.delay_s)
        self.records.append(record)

    def close(self):
        self.closed = True


def test_a_slow_output_never_delays_the_loop():
    slow = Slow(0.3)
    sink = EventSink([Queued(slow)])
    records = [{"type": "event", "n": i} for i in range(3)]
    t = time.perf_counter()
    sink.emit(records)
    assert time.perf_counter() - t < 0.1  # three events queued, none waited for
    sink.close()  # the worker finishes what is queued, then closes the output
    assert [r["n"] for r in slow.records] == [0, 1, 2] and slow.closed
    records[0]["n"] = 99
    assert slow.records[0]["n"] == 0  # the output got a copy


def test_a_full_output_queue_drops_and_counts():
    slow = Slow(0.5)
    queued = Queued(slow, maxsize=1)
    sink = EventSink([queued])
    sink.emit([{"type": "event", "n": i} for i in range(5)])
    assert queued.dropped >= 3 and sink.counters()["slow_dropped"] == queued.dropped
    sink.close()
    assert len(slow.records) + queued.dropped == 5


def test_a_failing_output_stops_the_record_for_the_outputs_after_it():
    class Broken(Consumer):
        name = "broken"

        def on_event(self, record):
            raise OSError("disk gone")

    errors, after = [], Recorder()
    sink = EventSink([Broken(), after], count_error=lambda: errors.append(1))
    sink.emit([{"type": "trigger"}, {"type": "event"}])
    assert [r["type"] for r in after.records] == ["trigger"] and errors == [1]


def test_the_example_in_docs_events_md_matches_the_schema():
    page = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```json\n(.*?)```", page, flags=re.S)
    (record,) = check_events([json.loads(example)])
    assert record["type"] == "event"
