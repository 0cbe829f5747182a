"""Helpers several test modules share (fixtures are in conftest.py).

* a real node process: wait for its status to say something (its port open, frames
  decoded) (tests/test_serial.py, tests/test_node_memory.py).
"""

from __future__ import annotations

import json
import time


# ------------------------------------------------------------ node process
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
