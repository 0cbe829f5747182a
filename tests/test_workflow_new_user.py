"""A new user's week, start to finish (issue 19, 'Done when'): train on a folder of their own
SAC files, bundle, deploy to a root file system, replay by hand into the deployed node, score.

Every step is the command the documentation gives (docs/getting-started.md, docs/data.md,
docs/training.md, docs/deploying.md, docs/replay.md), run as a user types it: ``python -m
...`` in a child process, in the user's own working folder, this checkout on its
``PYTHONPATH`` as an installed package would be. Each must exit 0 with no traceback and
leave something real behind: windows, a model, a bundle, an installed release, an events
file, a score that detected the earthquakes. The node that reads the replay is the one the
deploy installed: its venv's Python, its model, as the root's unit runs it. ``make demo``
(the README's quick start) has its own test (tests/test_demo.py); this one starts where a
user goes next, with their own recordings.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _helpers import HOST_PY, debian_root, read_until
from conftest import python_env
from obspy import Trace, UTCDateTime
from obspy.io.sac import SACTrace

from host_training.synthetic import parametric as synth

NODE_PY = f"/usr/bin/python{HOST_PY}"
N_EVENTS, N_NOISE = 60, 30  # records of the user's folder: 180 windows, balanced by prepare sac
T0 = UTCDateTime(2025, 1, 1)


# ------------------------------------------------------------------ the user's recordings
def write_record(folder: Path, station: str, data, start, **headers) -> None:
    """Three SAC files (E, N, Z) of one station, nm/s^2 as SAC's ``idep = IACC`` says."""
    folder.mkdir(parents=True, exist_ok=True)
    for comp, x in zip("ENZ", data, strict=True):
        tr = Trace((np.asarray(x) * 1e9).astype(np.float32))
        tr.stats.update(dict(network="XX", station=station, channel=f"HN{comp}", sampling_rate=100.0,
                             starttime=start))
        sac = SACTrace.from_obspy_trace(tr)
        sac.idep = "iacc"
        for key, value in headers.items():
            setattr(sac, key, value)
        sac.write(str(folder / f"XX.{station}..HN{comp}.SAC"))


def users_recordings(root: Path) -> Path:
    """``root/events/<station>/`` earthquakes (P in ``a``, S in ``t0``, labelled), a day apart so
    each is its own event; ``root/noise/<station>/`` quiet, traffic and spikes; and
    ``root/later/`` two earthquakes and a noise record kept out of training, to replay."""
    rng = np.random.default_rng(19)

    def quake(folder, station, day):
        rec = synth.earthquake(rng, duration_s=40.0, pga_mps2=float(rng.uniform(0.1, 0.6)),
                               sp_s=float(rng.uniform(2.5, 8.0)))
        write_record(folder, station, rec.data, T0 + 86400 * day, a=rec.p_s, ka="P", t0=rec.s_s, kt0="S")

    def noise(folder, station, day, kind):
        write_record(folder, station, synth.NOISE_GENERATORS[kind](rng, duration_s=40.0).data,
                     T0 + 86400 * day)

    for i in range(N_EVENTS):
        quake(root / "events" / f"E{i:03d}", f"E{i:03d}", i)
    for i in range(N_NOISE):
        noise(root / "noise" / f"N{i:03d}", f"N{i:03d}", 1000 + i, ("quiet", "traffic", "spikes")[i % 3])
    quake(root / "later", "LA1", 2000)
    quake(root / "later", "LA2", 2001)
    noise(root / "later", "LN1", 2002, "quiet")
    return root


# ------------------------------------------------------------------ running a command as typed
def children_cpu_s() -> float:
    """CPU seconds of this process's children that ended: on a loaded machine the wall time
    of a step says little, its CPU time what an idle machine would take."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class User:
    """Runs ``python -m ...`` in the user's folder; times (wall, CPU) and checks each step."""

    def __init__(self, home: Path):
        self.home, self.times = home, {}

    def __call__(self, *argv, timeout: float = 300) -> subprocess.CompletedProcess:
        t, cpu = time.perf_counter(), children_cpu_s()
        result = subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=self.home, env=python_env(),
                                capture_output=True, text=True, timeout=timeout)
        step = " ".join(map(str, argv[:3] if argv[1] == "prepare" else argv[:2]))
        self.times[step] = (round(time.perf_counter() - t, 1), round(children_cpu_s() - cpu, 1))
        said = f"$ python -m {shlex.join(map(str, argv))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, said
        assert "Traceback" not in result.stdout + result.stderr, said
        return result


def status_of(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}


def replay_by_hand(home: Path, records: str, model: str, node_python: str, timings: dict) -> tuple[str, str]:
    """``tools replay RECORDS --pty``, the node started from the command it prints (its
    ``python`` being ``node_python``), Enter, the replay, Ctrl-C to the node, Enter.
    Returns the printed score command and the node's output."""
    t, cpu = time.perf_counter(), children_cpu_s()
    replay = subprocess.Popen([sys.executable, "-m", "tools", "replay", records, "--pty", "--speed", "0",
                               "--model", model], cwd=home, env=python_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = None
    try:
        shown = read_until(replay, "press Enter", timeout_s=120)
        line = next(x.strip() for x in shown.splitlines() if "-m edge_runtime run" in x)
        argv = shlex.split(line)
        assert argv[:4] == ["python", "-m", "edge_runtime", "run"] and "--events" in argv, line
        status = home / argv[argv.index("--status") + 1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}  # the node's own packages
        node = subprocess.Popen([node_python, *argv[1:]], cwd=home, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while not status_of(status).get("port_open"):
            assert node.poll() is None, node.stdout.read()
            assert time.monotonic() < deadline, "the node did not open its port within 60 s"
            time.sleep(0.1)
        replay.stdin.write("\n")
        replay.stdin.flush()
        done = read_until(replay, "press Enter once", timeout_s=180)
        sent = json.loads(next(x for x in done.splitlines() if x.startswith("{")))
        assert sent["frames"] > 0, sent
        deadline = time.monotonic() + 60
        while status_of(status).get("decoder", {}).get("frames", 0) < sent["frames"]:
            assert time.monotonic() < deadline, status.read_text()
            time.sleep(0.1)
        node.send_signal(signal.SIGINT)  # Ctrl-C, as docs/replay.md says
        node_output = node.communicate(timeout=60)[0]
        assert node.returncode == 0 and "Traceback" not in node_output, node_output
        score = next(x.strip() for x in done.splitlines() if "-m tools score" in x)
        replay.stdin.write("\n")
        replay.stdin.flush()
        rest = replay.communicate(timeout=60)[0]
        assert replay.returncode == 0 and "Traceback" not in shown + done + rest, shown + done + rest
    finally:
        for proc in (node, replay):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    timings["tools replay --pty"] = (round(time.perf_counter() - t, 1), round(children_cpu_s() - cpu, 1))
    return score, node_output


# ------------------------------------------------------------------ the week
@pytest.mark.slow
def test_a_new_users_path_from_own_sac_files_to_a_scored_replay(tmp_path):
    home = tmp_path / "work"
    users_recordings(home / "mine")
    user = User(home)

    # Training on their own data (docs/data.md, docs/training.md).
    out = user("host_training", "prepare", "sac", "--events", "mine/events", "--noise", "mine/noise",
               "--out", "runs/mine", "--no-progress").stdout
    windows = int(re.search(r"^(\d+) windows -> runs/mine", out, re.M).group(1))
    assert windows == 2 * N_EVENTS + 2 * N_NOISE, out  # a P and an S per earthquake, 2 per noise record
    user("host_training", "prepare", "merge", "runs/mine", "--out", "runs/train_data", "--no-progress")
    card = json.loads((home / "runs/train_data/data_card.json").read_text())
    assert card["card_sha256"], card
    user("host_training", "train", "--model", "earthquake", "--data", "runs/train_data", "--out", "runs/eq",
         "--epochs", "8", "--batch-size", "32", "--threads", "1", "--no-progress")
    trained = json.loads((home / "runs/eq/train_summary.json").read_text())
    assert (home / "runs/eq/best.pt").stat().st_size > 0, trained

    # The node's model (docs/getting-started.md: export, int16, simplify, check).
    user("host_training", "export", "--checkpoint", "runs/eq/best.pt", "--out", "runs/model.onnx")
    user("quantization", "int16", "runs/model.onnx", "runs/model_int16.onnx")
    user("quantization", "simplify", "runs/model_int16.onnx", "runs/model_int16_sim.onnx")
    assert "PASS" in user("edge_runtime", "check", "runs/model_int16_sim.onnx").stdout
    meta = json.loads(user("edge_runtime", "info", "runs/model_int16_sim.onnx").stdout)
    assert meta["data_card_sha256"] == card["card_sha256"], meta  # the model says which data it learnt

    # Bundle for this machine, deploy into a node's root file system (docs/deploying.md).
    user("tools", "bundle", "--model", "runs/model_int16_sim.onnx", "--platform", "host",
         "--python-version", HOST_PY, "--wheels-from-env", "--out", "dist")
    (bundle,) = (home / "dist").glob("seismictorch-node-*.tar.gz")
    root = debian_root(home / "rootfs")
    user("tools", "deploy", bundle.relative_to(home), "--root", "rootfs", "--python", NODE_PY)
    release = root / "opt/seismictorch/current"
    installed_model = release / "model" / "model_int16_sim.onnx"
    assert installed_model.read_bytes() == (home / "runs/model_int16_sim.onnx").read_bytes()
    assert (root / "etc/systemd/system/multi-user.target.wants/seismictorch-node.service").is_symlink()

    # Replay their held-out records by hand into the deployed node, then score (docs/replay.md).
    score, node_output = replay_by_hand(home, "mine/later", str(installed_model.relative_to(home)),
                                        str(release / "venv" / "bin" / "python"), user.times)
    argv = shlex.split(score)
    assert argv[:4] == ["python", "-m", "tools", "score"], score
    assert (home / argv[4]).stat().st_size > 0, node_output  # the events the deployed node wrote
    table = user(*argv[2:]).stdout
    detected = re.search(r"earthquakes detected (\d+)/(\d+)\s+false events (\d+)", table)
    assert detected and detected.groups() == ("2", "2", "0"), table
    print(json.dumps({"wall_s, cpu_s": user.times}))
