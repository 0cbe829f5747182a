"""The node's second stage: each declared event's record classified off the hot path.

The ONNX model here is a small real graph with SpectrogramCNN's interface and metadata
(input ``(N, 3, 100, 150)``, two logits from the mean brightness of each component's
image), so every test runs real onnxruntime sessions in seconds; the 42 M-parameter
SpectrogramCNN itself is exported, quantized and measured by the report's commands.
"""

import threading

import numpy as np
import pytest

from edge_runtime.protocol import Frame
from edge_runtime.second_stage import SecondStage, SourceClassifier
from edge_runtime.spectrogram import SpectrogramConfig
from host_training.synthetic import parametric as synth

T0 = 1_767_225_600_000_000  # 2026-01-01, microseconds
CONFIG = SpectrogramConfig(record_s=20.0, pre_s=5.0)


def write_model(path, model="SpectrogramCNN", classes=("earthquake", "active_source"), config=CONFIG,
                height=100):
    onnx = pytest.importorskip("onnx", reason="onnx is part of the host extra")
    from onnx import TensorProto, helper

    from edge_runtime.metadata import ModelMetadata
    from host_training.export import set_metadata

    weights = np.array([[0.0, 40.0], [0.0, 5.0], [0.0, 5.0]], dtype=np.float32)  # bright Z -> class 1
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["modelInput", "axes"], ["mean"], keepdims=0),
         helper.make_node("Gemm", ["mean", "W", "b"], ["logits"])],
        "source_toy",
        [helper.make_tensor_value_info("modelInput", TensorProto.FLOAT, ["batch", 3, height, 150])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3]),
         helper.make_tensor("W", TensorProto.FLOAT, [3, 2], weights.ravel()),
         helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0, -20.0])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    set_metadata(proto, ModelMetadata(model=model, classes=list(classes), components=["E", "N", "Z"],
                                      extra={"spectrogram": config.to_dict()}))
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("source") / "source.onnx")


def quake(seed=3, duration_s=40.0, p_s=10.0, pga=0.3):
    rec = synth.earthquake(np.random.default_rng(seed), duration_s=duration_s, p_s=p_s, sp_s=3.0,
                           pga_mps2=pga)
    return rec.data


def feed(stage, data, fs=100.0, frame_n=10, upto_s=None):
    n = data.shape[1] if upto_s is None else int(upto_s * fs)
    for i in range(0, n, frame_n):
        stage.add(T0 + int(i * 1e6 / fs), fs, data[:, i:i + frame_n].T)


def trigger_and_event(t_trigger_s):
    start = T0 + int(t_trigger_s * 1e6)
    trig = {"type": "trigger", "start_us": start, "p_time_us": start - 200_000}
    event = {"type": "event", "start_us": start, "p_time_us": start - 200_000, "end_us": start + 5_000_000}
    return trig, event


def wait_for(stage, n_lines=1, timeout_s=20.0):
    import time

    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < n_lines and time.monotonic() < deadline:
        out += stage.poll()
        time.sleep(0.005)
    return out


def test_model_metadata_gives_the_record(source_model):
    clf = SourceClassifier(source_model)
    assert clf.config == CONFIG and clf.classes == ["earthquake", "active_source"]
    probs = clf.classify(quake()[:, :2000], 100.0)
    assert probs["source_class"] in clf.classes
    assert sum(probs["source_probs"].values()) == pytest.approx(1.0, abs=1e-3)


def test_event_carries_the_class_of_its_record(source_model):
    """The closing line waits for the record (pre_s before P, record_s long) and carries its class."""
    data = quake()
    stage = SecondStage(SourceClassifier(source_model))
    trig, event = trigger_and_event(10.2)
    feed(stage, data, upto_s=12.0)
    assert stage.process([trig]) == [trig]             # the trigger line is written at once
    assert stage.process([event]) == []                # its record (5 s before P .. 15 s after) is not
    for i in range(1200, 3000, 10):                     # complete yet: more frames come
        stage.add(T0 + i * 10_000, 100.0, data[:, i:i + 10].T)
    (line,) = wait_for(stage)
    assert line is event and line["source_class"] in ("earthquake", "active_source")
    # The same record, cut from the raw data, classified directly:
    onset = (trig["p_time_us"] - T0) / 1e6
    first = int(round((onset - CONFIG.pre_s) * 100))
    expected = SourceClassifier(source_model).classify(data[:, first:first + 2000], 100.0)
    assert line["source_probs"] == pytest.approx(expected["source_probs"], abs=2e-3)
    assert line["source_latency_ms"] > 0
    assert stage.to_dict()["classified"] == 1
    stage.close()


def test_loud_and_quiet_records_differ(source_model):
    """The class comes from the record: the toy model calls bright (loud) images active_source."""
    clf = SourceClassifier(source_model)
    loud = clf.classify(quake(pga=3.0)[:, 500:2500], 100.0)
    quiet = clf.classify(quake(pga=0.0)[:, 500:2500], 100.0)
    assert loud["source_probs"]["active_source"] > quiet["source_probs"]["active_source"]


def test_busy_worker_drops_the_record_and_never_blocks(source_model):
    """A second record while the worker is held and its queue (1) full: 'busy', frames keep flowing."""
    clf = SourceClassifier(source_model)
    release = threading.Event()
    real = clf.classify

    def held(record, fs):
        release.wait(10)
        return real(record, fs)

    clf.classify = held
    stage = SecondStage(clf, queue_size=1)
    data = quake(duration_s=80.0)
    lines = []
    for k, t in enumerate((10.0, 20.0, 30.0)):
        trig, event = trigger_and_event(t)
        lines += stage.process([trig])
        lines += stage.process([dict(event, n=k)])
    feed(stage, data, upto_s=26.0)                      # the first record is complete ...
    for _ in range(1000):                               # ... and taken by the (held) worker
        if stage._queue.qsize() == 0:
            break
        threading.Event().wait(0.01)
    feed(stage, data)                                   # the other two complete; nothing blocks
    release.set()
    lines += wait_for(stage, n_lines=3)
    events = sorted((e for e in lines if e["type"] == "event"), key=lambda e: e["n"])
    assert len(events) == 3
    assert events[0]["source_class"] is not None and events[1]["source_class"] is not None
    assert events[2]["source_class"] is None and "busy" in events[2]["source_error"]
    assert stage.to_dict()["busy"] == 1
    stage.close()


def test_wait_runs_out(source_model):
    clf = SourceClassifier(source_model)
    gate = threading.Event()
    real = clf.classify
    clf.classify = lambda record, fs: (gate.wait(10), real(record, fs))[1]
    now = [0.0]
    stage = SecondStage(clf, wait_s=5.0, clock=lambda: now[0])
    trig, event = trigger_and_event(10.0)
    stage.process([trig])
    stage.process([event])
    feed(stage, quake())
    assert stage.poll() == []
    now[0] = 6.0
    (line,) = stage.poll()
    assert line["source_class"] is None and "within 5.0 s" in line["source_error"]
    gate.set()
    stage.close()


def test_stream_ends_before_the_record_is_complete(source_model):
    data = quake(duration_s=40.0)
    stage = SecondStage(SourceClassifier(source_model))
    lines = []
    for t in (10.0, 30.0):  # 15 of 20 s recorded for the first; 5 of 20 s for the second
        trig, event = trigger_and_event(t)
        lines += stage.process([trig]) + stage.process([event])
    feed(stage, data[:, :2400])
    lines += stage.close()
    first, second = (e for e in lines if e["type"] == "event")
    assert first["source_class"] is not None          # padded: >= half the record was there
    assert second["source_class"] is None and "incomplete" in second["source_error"]


def test_the_node_pipeline_feeds_the_second_stage(tiny_model, source_model):
    """The live Pipeline with the second stage attached: one event, classified."""
    from edge_runtime.backends import OnnxBackend
    from edge_runtime.service import ADXL355_COUNTS_PER_MPS2, NodeConfig, Pipeline
    from tools.replay.sender import to_counts

    config = NodeConfig(port="unused", model=str(tiny_model["sim"]), source_model=str(source_model))
    pipe = Pipeline(OnnxBackend(tiny_model["sim"]), config)
    stage = pipe.second_stage = SecondStage(SourceClassifier(source_model))
    counts = to_counts(quake(duration_s=50.0), ADXL355_COUNTS_PER_MPS2).T
    lines = []
    for seq in range(counts.shape[0] // 10):
        lines += stage.process(pipe.on_frame(Frame(seq, T0 + seq * 100_000, 100.0,
                                                   counts[seq * 10:(seq + 1) * 10])))
        lines += stage.poll()
    lines += stage.process(pipe.flush()) + stage.close()
    events = [e for e in lines if e["type"] == "event"]
    assert len(events) == 1 and events[0]["source_class"] in ("earthquake", "active_source")


@pytest.mark.parametrize("kwargs,match", [
    (dict(model="EarthquakeCNN"), "not a SpectrogramCNN"),
    (dict(classes=("P", "S")), "classes"),
    (dict(height=90), "input shape"),
])
def test_models_that_do_not_fit_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SourceClassifier(write_model(tmp_path / "m.onnx", **kwargs))


def test_missing_or_corrupt_model_file(tmp_path):
    with pytest.raises(ValueError, match="no such source model"):
        SourceClassifier(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        SourceClassifier(bad)


def test_node_process_writes_the_source_class(tiny_model, source_model, tmp_path):
    """`python -m edge_runtime run --source-model`: a replayed quake's event line carries its class."""
    import json

    from conftest import node_process, running
    from obspy import UTCDateTime

    from edge_runtime.service import ADXL355_COUNTS_PER_MPS2
    from host_training.recordings.sac import write_record
    from tools.replay.node import wait_for_port
    from tools.replay.pty import open_pty
    from tools.replay.records import read_waveform_records
    from tools.replay.sender import Writer, replay_records

    rec = synth.earthquake(np.random.default_rng(8), duration_s=40.0, p_s=12.0, sp_s=3.0, pga_mps2=0.3)
    write_record(rec.data, 100.0, UTCDateTime(2026, 3, 1), tmp_path / "sac" / "quake", picks={"P": rec.p_s},
                 kind="earthquake")
    # Read before the node starts: it exits after 2 s without bytes, and reading SAC files
    # between its port opening and the first frame can take that on a loaded machine.
    records = read_waveform_records(sorted((tmp_path / "sac").rglob("*.SAC")))
    pty = open_pty()
    proc = node_process(tiny_model["sim"], pty.port, tmp_path, "--source-model", str(source_model),
                        "--idle-exit-s", "2")
    with running(proc, pty):
        wait_for_port(tmp_path / "status.json", proc)
        replay_records(records, Writer(pty, speed=0), ADXL355_COUNTS_PER_MPS2)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    from event_schema import check_events

    lines = check_events(tmp_path / "events.jsonl")  # source_class and its kin included
    events = [e for e in lines if e["type"] == "event"]
    assert len(events) == 1, lines
    assert events[0]["source_class"] in ("earthquake", "active_source"), events[0]
    assert 0.5 <= events[0]["source_prob"] <= 1.0
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["second_stage"]["classified"] == 1 and status["second_stage"]["records"] == 1


def test_a_stream_that_stops_mid_record_does_not_hold_the_event_forever(source_model):
    now = [0.0]
    stage = SecondStage(SourceClassifier(source_model), wait_s=5.0, clock=lambda: now[0])
    trig, event = trigger_and_event(10.0)
    stage.process([trig])
    feed(stage, quake(), upto_s=14.0)  # 9 of the record's 20 s, then nothing (cable pulled)
    assert stage.process([event]) == [] and stage.poll() == []
    now[0] = CONFIG.record_s + 5.0 + 1.0
    (line,) = stage.poll()
    assert line["source_class"] is None and "incomplete" in line["source_error"]
    stage.close()
