"""The node as the host's tools and tests run it: ``python -m edge_runtime run`` on a pty.

replay-test, the off-device aarch64 check, the node benchmarks and the tests start the
node alike: a child process importing this checkout (:func:`python_env`), reading a pty
(:func:`node_on_pty`: a fresh pair, or one behind a private :class:`~tools.replay.pty.PtyLink`),
writing its events and status to given files (:func:`start_node`), waited for until its
status says the port is open (:func:`wait_for_port`) and ended, then the pty closed, when
the caller is done (:func:`end_node`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .pty import PtyLink, open_pty

REPO = Path(__file__).resolve().parents[2]


def python_env(env=None) -> dict:
    """Environment for a child process that imports this checkout's packages.

    Parameters
    ----------
    env : mapping, optional
        Base environment (default ``os.environ``); this repository goes first on its
        ``PYTHONPATH``.
    """
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_node(port, model, events, status, *extra, python=None, env=None, output=None, cwd=None,
               preexec_fn=None) -> subprocess.Popen:
    """Start ``python -m edge_runtime run`` reading ``port``.

    Parameters
    ----------
    port : str
        Serial device or pty (link) the node opens.
    model, events, status : path
        Its ``--model``, ``--events`` and ``--status`` files; ``extra`` flags follow.
    python : list of str, optional
        Interpreter command (default this Python; an emulator and its Python for qemu).
    env : dict, optional
        Environment (default :func:`python_env`).
    output : file, optional
        File taking the node's stdout and stderr together; by default a text pipe
        (``proc.stdout``).
    cwd, preexec_fn :
        As for :class:`subprocess.Popen`.
    """
    cmd = [*(python or [sys.executable]), "-m", "edge_runtime", "run", "--port", str(port),
           "--model", str(model), "--events", str(events), "--status", str(status), *extra]
    return subprocess.Popen(cmd, cwd=cwd, env=python_env() if env is None else env,
                            stdout=subprocess.PIPE if output is None else output,
                            stderr=subprocess.STDOUT, text=output is None, preexec_fn=preexec_fn)


def end_node(proc, grace_s: float = 10.0) -> None:
    """End a node still running: SIGTERM, then SIGKILL after ``grace_s`` s (0: at once)."""
    if proc.poll() is not None:
        return
    if grace_s > 0:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()


@contextmanager
def node_on_pty(model, events, status, *extra, link=None, grace_s: float = 10.0, **start):
    """A node reading a pty for the length of a ``with`` block: yields ``(proc, pty)``.

    The pty is a fresh raw pair (:func:`~tools.replay.pty.open_pty`), or with ``link`` a
    :class:`~tools.replay.pty.PtyLink` at that path (the node is given the link, and the
    board can be unplugged). ``extra`` and ``start`` go to :func:`start_node`. Wait for
    the node with :func:`wait_for_port`. When the block ends the node, if still running,
    is ended (:func:`end_node` with ``grace_s``), and only then is the pty closed: a pty
    closed under a running node could be given to another program the node then reads.
    """
    pty = PtyLink(link) if link is not None else open_pty()
    try:
        proc = start_node(pty.port, model, events, status, *extra, **start)
        try:
            yield proc, pty
        finally:
            end_node(proc, grace_s)
    finally:
        pty.close()


def wait_for_port(status_path: Path, proc, timeout_s: float = 30.0, log_path=None,
                  name: str = "edge runtime") -> None:
    """Block until the node reports its serial port open (pyserial flushes on open).

    Parameters
    ----------
    status_path : Path
        The node's ``--status`` file, whose ``port_open`` is waited for.
    proc : subprocess.Popen
        The node process (its ``--port`` is read from its command line for the message).
    timeout_s : float
        Longest wait, s.
    log_path : Path, optional
        File holding the node's output; its last lines go into the error. Without it,
        the output of an exited node is read from ``proc.stdout`` when that is a pipe.
    name : str
        What the error calls the node (``"node for record X"``).

    Raises
    ------
    RuntimeError
        One line: which node and port, whether it exited (and its code) or did not open
        the port within ``timeout_s``, and the end of its output.
    """
    port = _arg_after(proc.args, "--port") or "?"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} (port {port}) exited with code {proc.returncode} before "
                               f"opening its port{_output_tail(proc, log_path)}")
        try:
            if json.loads(Path(status_path).read_text()).get("port_open"):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not open its port {port} within {timeout_s:g} s"
                       f"{_output_tail(proc, log_path)}")


def _arg_after(args, flag: str) -> str | None:
    """The value after ``flag`` in a command line (list), or None."""
    args = [str(a) for a in args] if isinstance(args, (list, tuple)) else []
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def _output_tail(proc, log_path=None, lines: int = 3, max_chars: int = 400) -> str:
    """``"; its output ends: a | b | c"`` from the node's log file (or the pipe of an
    exited node), or ``"; no output"``: one line for the CLI user."""
    text = ""
    try:
        if log_path is not None:
            text = Path(log_path).read_text(errors="replace")
        elif proc.poll() is not None and getattr(proc, "stdout", None) is not None:
            text = proc.stdout.read() or ""
            text = text.decode(errors="replace") if isinstance(text, bytes) else text
    except (OSError, ValueError):
        pass
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    if not tail:
        return "; no output" + (f" in {log_path}" if log_path is not None else "")
    joined = " | ".join(tail)
    if len(joined) > max_chars:
        joined = "..." + joined[-max_chars:]
    return f"; its output ends: {joined}"
