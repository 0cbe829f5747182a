"""`make deploy`: install full bundles into a root file system and over real ssh.

The bundles are built for this machine (so the self-test and the node really run here) with
the numpy/onnxruntime/pyserial wheels repacked from this Python (offline and fast; `make
bundle` downloads the target's wheels from PyPI instead). The node Python is Debian's
/usr/bin/python3, as on Raspberry Pi OS. Without systemd here, the installer starts the node
with `--service-cmd` and waits for its sd_notify READY=1 as systemd would. The ssh server is
a real OpenSSH sshd on 127.0.0.1 with a temporary host key and user key.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import debian_root, host_bundles
from conftest import python_env

REPO = Path(__file__).resolve().parents[1]
NODE_PY = "/usr/bin/python3"
SSHD = "/usr/sbin/sshd"
# The node as the unit runs it; a release named in NOT_READY never sends READY=1.
SERVICE = ('case "$SEISMICTORCH_CURRENT" in *{not_ready}) exec sleep 60;; esac; '
           'exec "$SEISMICTORCH_CURRENT/venv/bin/python" -I -m edge_runtime run '
           '--config "$SEISMICTORCH_ROOT/etc/seismictorch/node.toml" --model "$SEISMICTORCH_MODEL"')


def _node_python() -> str:
    if not Path(NODE_PY).is_file():
        pytest.fail(f"{NODE_PY} missing: the deploy tests build the node's venv with Debian's python3 "
                    "(apt-get install python3 python3-venv)")
    return NODE_PY


@pytest.fixture(scope="module")
def bundles(tiny_model, tmp_path_factory):
    """Bundles 1.0.0 and 2.0.0 of the tiny model, and 3.0.0 whose self-test expects other outputs."""
    import onnx

    from host_training.export import get_metadata, set_metadata
    from tools.deploy.bundle import REQUIREMENTS, _installed_closure

    tmp = tmp_path_factory.mktemp("bundles")
    proto = onnx.load(str(tiny_model["float"]))
    meta = get_metadata(proto)
    probs = meta.extra["selftest"]["probs"]
    wrong = [0.0] * len(probs)
    wrong[(probs.index(max(probs)) + 1) % len(probs)] = 1.0  # expects another class than the model gives
    meta.extra["selftest"]["probs"] = wrong
    set_metadata(proto, meta)
    bad = tmp / "bad" / "model.onnx"
    bad.parent.mkdir()
    onnx.save(proto, str(bad))
    built = host_bundles(tmp, {"1.0.0": tiny_model["float"], "2.0.0": tiny_model["float"], "3.0.0": bad},
                         _installed_closure(REQUIREMENTS))
    return {version: Path(info["path"]) for version, info in built.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1: key authentication only, temporary host and user keys."""
    if not Path(SSHD).is_file():
        pytest.fail(f"{SSHD} missing: install Debian's openssh-server (`make test` does it: "
                    "apt-get install openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder sshd insists on
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "LogLevel ERROR\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text().split(' ')[0]} "
                     f"{(d / 'host_key.pub').read_text().split(' ')[1]}\n")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    yield dict(host=f"{user}@127.0.0.1", port=port, key=d / "user_key", known=known, dir=d)
    proc.terminate()
    proc.wait(timeout=10)


def tools(*args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools", *args], capture_output=True, text=True,
                          env=python_env(), cwd=REPO, timeout=timeout)


def _ssh_args(sshd) -> list[str]:
    return ["--host", sshd["host"], "--port", str(sshd["port"]), "--identity", str(sshd["key"]),
            "--known-hosts", str(sshd["known"])]


def _current(root: Path) -> str:
    return Path(os.readlink(root / "opt/seismictorch/current")).name


def _snapshot(root: Path) -> dict:
    """Every installed path under root with its size and mtime (symlinks: their target).

    The running node's own files (status, service log) are left out: they change by themselves.
    """
    out = {}
    for p in sorted(root.rglob("*")):
        if "venv" in p.parts or p.parts[len(root.parts)] == "run" or p.name == "service.log":
            continue
        out[str(p)] = os.readlink(p) if p.is_symlink() else (p.is_dir() or (p.stat().st_size,
                                                                               p.stat().st_mtime_ns))
    return out


def test_unknown_host_key_refused(sshd, bundles, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    args = _ssh_args(sshd)
    args[args.index("--known-hosts") + 1] = str(empty)
    r = tools("deploy", str(bundles["1.0.0"]), *args, "--root", str(tmp_path / "root"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Host key verification failed" in r.stderr and "ssh-keyscan" in r.stderr
    assert not (tmp_path / "root").exists()


@pytest.mark.slow
def test_deploy_upgrade_rollback_locally_and_over_ssh(bundles, sshd, tmp_path):
    node_py = _node_python()
    root = debian_root(tmp_path / "rootfs")  # an SD card's root file system, as install.py checks it
    lib = root / "var/lib/seismictorch"
    conf = root / "etc/seismictorch/node.toml"
    conf.parent.mkdir(parents=True)
    # the operator's config: the node's files under the test root, a board that is not plugged in
    conf.write_text(f'[node]\nstation = "TST1"\nport = "{tmp_path}/no-board"\nmodel = "/unused.onnx"\n'
                    f'[output]\nevents = "{lib}/events.jsonl"\nstatus = "{root}/run/status.json"\n'
                    f'[actions]\nspool = "{lib}/spool"\n')
    before_conf = conf.read_text()
    lib.mkdir(parents=True)
    (lib / "events.jsonl").write_text('{"type": "event", "recorded": "before the upgrades"}\n')
    service = ["--service-cmd", SERVICE.format(not_ready="/releases/2.0.0"), "--ready-timeout-s", "30",
               "--python", node_py]
    try:
        # 1. first install into the root file system (the SD card case)
        t = time.perf_counter()
        r = tools("deploy", str(bundles["1.0.0"]), "--root", str(root), *service)
        first_s = time.perf_counter() - t
        assert r.returncode == 0, r.stdout + r.stderr
        assert "every file matches MANIFEST.sha256" in r.stdout and "PASS" in r.stdout
        assert "service ready (READY=1" in r.stdout
        assert _current(root) == "1.0.0"
        release = root / "opt/seismictorch/releases/1.0.0"
        assert (release / "venv/bin/python").exists() and not (release / "wheels").exists()
        wants = root / "etc/systemd/system/multi-user.target.wants/seismictorch-node.service"
        assert os.readlink(wants) == "/etc/systemd/system/seismictorch-node.service"
        assert (root / "etc/systemd/system/seismictorch-node.service").is_file()
        assert (root / "etc/tmpfiles.d/seismictorch.conf").is_file()
        assert conf.read_text() == before_conf  # an existing config is never replaced
        # 2. the same version again, over ssh: nothing changes
        snap = _snapshot(root)
        r = tools("deploy", str(bundles["1.0.0"]), *_ssh_args(sshd), "--root", str(root), *service)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "already installed and current: nothing changed" in r.stdout
        assert _snapshot(root) == snap
        # 3. an upgrade whose service never becomes ready: back to 1.0.0
        r = tools("deploy", str(bundles["2.0.0"]), *_ssh_args(sshd), "--root", str(root), *service[:2],
                  "--ready-timeout-s", "3", "--python", node_py)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "did not become ready; rolled back to 1.0.0" in r.stdout + r.stderr
        assert _current(root) == "1.0.0"
        # 4. the upgrade over ssh with a service that comes up: venv linked from 1.0.0 (same wheels)
        ready = ["--service-cmd", SERVICE.format(not_ready="/none"), "--ready-timeout-s", "30",
                 "--python", node_py]
        t = time.perf_counter()
        r = tools("deploy", str(bundles["2.0.0"]), *_ssh_args(sshd), "--root", str(root), *ready)
        upgrade_s = time.perf_counter() - t
        assert r.returncode == 0, r.stdout + r.stderr
        assert "service ready" in r.stdout and _current(root) == "2.0.0"
        assert "making it current again" in r.stdout  # installed in step 3, never active
        # 5. a release whose self-test fails is removed, current stays
        r = tools("deploy", str(bundles["3.0.0"]), "--root", str(root), *ready)
        assert r.returncode == 1
        assert "self-test of 3.0.0 failed; release removed, current stays at 2.0.0" in r.stderr
        assert "venv reused from" in r.stdout and "FAIL" in r.stdout
        assert _current(root) == "2.0.0" and not (root / "opt/seismictorch/releases/3.0.0").exists()
        # 6. a corrupted bundle is refused before anything changes
        damaged = tmp_path / bundles["2.0.0"].name
        data = bytearray(bundles["2.0.0"].read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
        snap = _snapshot(root)
        r = tools("deploy", str(damaged), "--root", str(root), *ready)
        assert r.returncode != 0 and "nothing changed" in r.stderr and "Traceback" not in r.stderr
        assert _snapshot(root) == snap
        # 7. rollback over ssh, then the list of releases
        t = time.perf_counter()
        r = tools("rollback", *_ssh_args(sshd), "--root", str(root), *ready[:4])
        rollback_s = time.perf_counter() - t
        assert r.returncode == 0, r.stdout + r.stderr
        assert "current -> releases/1.0.0 (was 2.0.0)" in r.stdout and _current(root) == "1.0.0"
        r = tools("releases", "--root", str(root))
        assert r.returncode == 0 and "* 1.0.0" in r.stdout and "  2.0.0" in r.stdout
        # config and recorded events survived every step
        assert conf.read_text() == before_conf
        assert "before the upgrades" in (lib / "events.jsonl").read_text()
        print(json.dumps({"first_install_s": round(first_s, 1), "upgrade_over_ssh_s": round(upgrade_s, 1),
                          "rollback_over_ssh_s": round(rollback_s, 1)}))
    finally:
        subprocess.run([sys.executable, str(REPO / "deploy/install.py"), "stop", "--root", str(root)])
    assert shutil.which("ssh")


def test_ansible_playbook_syntax():
    exe = Path(sys.executable).with_name("ansible-playbook")
    if not exe.is_file():
        pytest.fail("ansible-playbook missing: pip install ansible-core (dev extra: pip install -e '.[dev]')")
    playbook = REPO / "deploy/ansible/deploy.yml"
    r = subprocess.run([str(exe), "--syntax-check", "-i", str(REPO / "deploy/ansible/inventory.example.ini"),
                        str(playbook)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
