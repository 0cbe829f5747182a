"""Helpers several test modules share (fixtures are in conftest.py).

* node bundles built for this machine from wheels repacked from this Python, and a
  folder that passes for a node's root file system to install them into
  (tests/test_bundle.py, tests/test_deploy.py, tests/test_workflow_flash.py);
* a real node process on a real pty: start it, wait for its status to say something
  (its port open, frames decoded), read its status, feed it frames until it goes idle
  (tests/test_reliability.py, tests/test_protocol_v2.py, tests/test_serial.py,
  tests/test_node_memory.py);
* a node held at a known step: open a FIFO it reads once it provably reads it
  (tests/test_reliability.py, tests/test_stop_during_start.py).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import sys
import time
from pathlib import Path

from conftest import REPO, node_process

ARCH = platform.machine()
HOST_PY = f"{sys.version_info.major}.{sys.version_info.minor}"


# ---------------------------------------------------------------- bundles
def host_bundles(folder: Path, models: dict, dists) -> dict[str, dict]:
    """Node bundles for this machine (its architecture, this Python), one per ``{version: model}``.

    The wheelhouse ``folder/wheels`` holds the wheels of ``dists`` (installed distributions)
    repacked from this Python: offline and fast, where ``make bundle`` downloads the target's
    wheels from PyPI. Bundles go to ``folder/dist``, compressed at level 1 (speed, not size).
    Returns ``build_bundle``'s information of each version.
    """
    from tools.deploy.bundle import build_bundle, repack_wheel

    wheels = folder / "wheels"
    wheels.mkdir(parents=True)
    for dist in dists:
        repack_wheel(dist, wheels)
    return {version: build_bundle(folder / "dist", model=model, platform_tag=f"manylinux_2_17_{ARCH}",
                                  python_version=HOST_PY, version=version, wheelhouse=wheels,
                                  compresslevel=1)
            for version, model in models.items()}


def debian_root(root: Path, python_version: str = HOST_PY) -> Path:
    """A folder that passes for a node's root file system (``deploy/install.py --root``).

    Debian's ``usr/lib/os-release`` (``etc/os-release`` links to it) and
    ``etc/debian_version``, and ``usr/bin/python3.X`` as an absolute link, as Debian has
    it: in the node's root it names the root's own Python; run here, it is this machine's
    Debian Python, so the installed release runs on this machine.
    """
    (root / "usr" / "lib").mkdir(parents=True, exist_ok=True)
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
                                             'VERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    (root / "etc/debian_version").write_text("12.11\n")
    os.symlink(f"/usr/bin/python{python_version}", root / f"usr/bin/python{python_version}")
    return root


# ------------------------------------------------------------ node process
def start_node(model, port, out: Path, *extra, env=None, preexec_fn=None):
    """The node on ``port``, status every 0.2 s in ``out/status.json`` (a stale one removed first)."""
    (out / "status.json").unlink(missing_ok=True)  # wait_ready must see this run's status
    return node_process(model, port, out, "--status-every-s", "0.2", *extra, env=env, preexec_fn=preexec_fn)


def status_of(out: Path) -> dict:
    """The node's status file in ``out`` (retried while the node replaces it)."""
    for _ in range(50):
        try:
            return json.loads((out / "status.json").read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError("no status file")


def wait_status(status_path, proc, ready, what: str, timeout_s: float = 60.0) -> dict:
    """Until ``ready(status)`` holds for the node's status file; the status then.

    A condition, never a fixed sleep: a loaded machine (CI on 2 cores) may take seconds
    where an idle one takes milliseconds. Fails at once, with the node's output, if the
    node exits meanwhile; at the deadline, fails naming what did not happen, with the
    output of the node (killed to read it).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the node exited ({proc.returncode}) before it could {what}: "
                                 f"{proc.stdout.read()}")
        try:
            status = json.loads(status_path.read_text())
            if ready(status):
                return status
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the node did not {what} within {timeout_s} s; its output:\n"
                         f"{proc.communicate(timeout=30)[0]}")


def wait_frames(status_path, proc, n: int, timeout_s: float = 60.0) -> None:
    """Until the node's status counts ``n`` decoded frames (it reads in bursts)."""
    wait_status(status_path, proc, lambda s: s["decoder"]["frames"] >= n, f"decode {n} frames", timeout_s)


def wait_ready(out: Path, proc, timeout_s: float = 60.0) -> None:
    """Until the node in ``out`` reports its port open (pyserial flushes what came before):
    :func:`tools.replay.node.wait_for_port`, failing with the node's output."""
    from tools.replay.node import wait_for_port

    try:
        wait_for_port(out / "status.json", proc, timeout_s)
    except RuntimeError as exc:
        proc.kill()
        raise AssertionError(f"{exc}; the rest of its output:\n{proc.communicate(timeout=30)[0]}") from None


def feed_until_idle(model, out: Path, blobs, *extra, idle_exit_s: float = 1.5,
                    timeout_s: float = 120.0) -> str:
    """Run a node on a fresh pty until the line has been quiet ``idle_exit_s``; its output.

    The node starts with ``--idle-exit-s idle_exit_s`` and the ``extra`` flags; once its
    port is open, ``blobs`` (bytes: frames, text lines, garbage) are written in order as
    fast as it reads them. Fails, with the node's output, unless it then exits 0 by itself
    within ``timeout_s``.
    """
    from tools.replay.node import node_on_pty
    from tools.replay.sender import Writer

    (out / "status.json").unlink(missing_ok=True)  # wait_ready must see this run's status
    with node_on_pty(model, out / "events.jsonl", out / "status.json", "--status-every-s", "0.2",
                     "--idle-exit-s", str(idle_exit_s), *extra, cwd=REPO, grace_s=0) as (proc, pty):
        wait_ready(out, proc)
        writer = Writer(pty, speed=0)
        for blob in blobs:
            writer.send(blob, 0)
        output, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, output
    return output


# ---------------------------------------------------------------- a node held at a known step
def open_when_read(fifo: Path, proc, what: str, timeout_s: float = 90.0) -> int:
    """The write end of ``fifo``, opened once the node ``proc`` has it open for reading.

    A writer opens a FIFO without blocking only while a reader has it open (ENXIO before),
    so the returned descriptor proves the node is at the step that reads ``fifo``, and holds
    it there until the test writes or closes. ``what`` names the file in the failure message;
    the deadline is for imports and model load on a loaded 2-core machine (~0.2 s idle).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: the node does not read it yet
                raise
        if proc.poll() is not None:
            raise AssertionError(f"the node exited ({proc.returncode}) before reading its {what}: "
                                 f"{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the node did not read its {what} within {timeout_s:.0f} s")
        time.sleep(0.01)


def read_until(proc, text: str, timeout_s: float = 60.0) -> str:
    """``proc``'s output up to and including the first line holding ``text`` (``tools replay``
    waits for Enter after it prints its prompts)."""
    seen, deadline = "", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"no {text!r} in the output of `tools replay`: {seen}")



def add_trace_samples(out: dict, trace, period_us: int) -> dict:
    """Each sample of an ObsPy ``trace`` into ``out`` as ``{(channel, time_us): count}``; a
    sample already there (the same channel and time twice) fails."""
    start_us = round(trace.stats.starttime.ns / 1000)
    for i, value in enumerate(trace.data):
        key = (trace.stats.channel, start_us + i * period_us)
        assert key not in out, f"sample {key} twice"
        out[key] = int(value)
    return out
