"""``python -m tools deploy|rollback|releases``: install a node bundle (``make deploy``).

Two targets, one installer: the bundle's own ``install.py`` (python3 standard library only)
runs either here against a root file system (``--root /mnt/rootfs``: a node's SD card before
first boot, or a test folder) or on the node over ssh (``--host user@node``: key
authentication only, ``BatchMode``, ``StrictHostKeyChecking=yes`` against a known_hosts file
that this tool keeps, ``~/.config/seismictorch/known_hosts`` unless ``--known-hosts`` is
given). A host not in that file is refused with the command that adds it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from edge_runtime.helpformat import HelpFormatter

DEFAULT_KNOWN_HOSTS = Path("~/.config/seismictorch/known_hosts").expanduser()


class DeployError(ValueError):
    """One line saying why the deploy did not start."""


def extract_installer(bundle: Path, out: Path) -> Path:
    """The bundle's ``install.py`` (the installer matching the bundle's layout)."""
    if not bundle.is_file():
        raise DeployError(f"{bundle}: no such bundle (build one with `make bundle`)")
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            for m in tar:
                if m.isfile() and m.name.count("/") == 1 and m.name.endswith("/install.py"):
                    path = out / "install.py"
                    path.write_bytes(tar.extractfile(m).read())
                    return path
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DeployError(f"{bundle}: corrupted or not a .tar.gz bundle ({exc}); nothing changed") from None
    raise DeployError(f"{bundle}: no install.py in the bundle; nothing changed")


def installer_args(args) -> list[str]:
    extra = []
    if getattr(args, "service_cmd", None):
        extra += ["--service-cmd", args.service_cmd]
    if getattr(args, "ready_timeout_s", None) is not None:
        extra += ["--ready-timeout-s", str(args.ready_timeout_s)]
    return extra


class Ssh:
    """ssh/scp with key authentication and strict host-key checking."""

    def __init__(self, host: str, port: int = 22, identity=None, known_hosts=None):
        self.host = host
        known = Path(known_hosts).expanduser() if known_hosts else DEFAULT_KNOWN_HOSTS
        if not known.is_file():
            known.parent.mkdir(parents=True, exist_ok=True)
            known.touch(mode=0o600)
        self.known_hosts = known
        self.opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                     "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
                     "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
                     "-o", "ConnectTimeout=10", "-p", str(port)]
        if identity:
            self.opts += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
        self.port = port

    def run(self, command: str, stdin=None, capture=False) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", *self.opts, self.host, command], stdin=stdin, text=not stdin,
                              capture_output=capture)

    def check_reachable(self) -> None:
        proc = self.run("true", capture=True)
        if proc.returncode != 0:
            err = (proc.stderr or "").strip().splitlines()
            reason = next((e for e in err if "verification failed" in e or "Permission denied" in e
                           or "REMOTE HOST IDENTIFICATION" in e), err[-1] if err else "ssh failed")
            hint = ""
            if "verification failed" in reason or "No ED25519 host key" in " ".join(err):
                name = self.host.split("@")[-1]
                hint = (f"; after checking its fingerprint, add it with: ssh-keyscan -p {self.port} {name} "
                        f">> {self.known_hosts}")
            raise DeployError(f"ssh {self.host}: {reason.strip()}{hint}")

    def put(self, local: Path, remote: str) -> None:
        with open(local, "rb") as f:
            proc = self.run(f"cat > {shlex.quote(remote)}", stdin=f, capture=True)
        if proc.returncode != 0:
            raise DeployError(f"ssh {self.host}: copying {local.name} failed: "
                              f"{proc.stderr.decode(errors='replace').strip()}")


def deploy(args) -> int:
    """Run the installer for ``args.command`` (deploy, rollback, releases); return its exit status."""
    t0 = time.perf_counter()
    verb = {"deploy": "install", "rollback": "rollback", "releases": "list"}[args.command]
    with tempfile.TemporaryDirectory(prefix="st-deploy-") as tmp:
        tmp = Path(tmp)
        if verb == "install":
            bundle = Path(args.bundle)
            installer = extract_installer(bundle, tmp)
        else:  # rollback/list need no bundle: the installer of the repository does it
            bundle = None
            installer = Path(__file__).resolve().parents[2] / "deploy" / "install.py"
        extra = installer_args(args) + (["--keep", str(args.keep)] if verb == "install" else [])
        if verb == "rollback" and args.to:
            extra += ["--to", args.to]
        if args.host is None:
            cmd = [args.python, str(installer), verb, "--root", args.root, *extra]
            if bundle is not None:
                cmd += ["--bundle", str(bundle.resolve())]
            rc = subprocess.run(cmd).returncode
        else:
            ssh = Ssh(args.host, args.port, args.identity, args.known_hosts)
            ssh.check_reachable()
            remote = f"/tmp/seismictorch-deploy-{os.getpid()}"
            rc = ssh.run(f"mkdir -m 700 {remote}").returncode
            if rc != 0:
                raise DeployError(f"ssh {args.host}: cannot create {remote}")
            try:
                ssh.put(installer, f"{remote}/install.py")
                cmd = [args.python, f"{remote}/install.py", verb, "--root", args.root, *extra]
                if bundle is not None:
                    t = time.perf_counter()
                    ssh.put(bundle, f"{remote}/{bundle.name}")
                    print(f"ok   copied {bundle.name} ({bundle.stat().st_size / 1e6:.1f} MB) to {args.host} "
                          f"in {time.perf_counter() - t:.1f} s", flush=True)
                    cmd += ["--bundle", f"{remote}/{bundle.name}"]
                rc = ssh.run(" ".join(shlex.quote(c) for c in cmd)).returncode
            finally:
                ssh.run(f"rm -rf {remote}", capture=True)
    # stdout either way: the installer's one-line reason stays the only line on stderr
    print(f"{args.command} {'finished' if rc == 0 else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return rc


def add_arguments(sub) -> None:
    """Add the ``deploy``, ``rollback`` and ``releases`` subcommands to ``python -m tools``."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--host", help="user@node: install over ssh (key authentication)")
    common.add_argument("--root", default=None,
                        help="root file system to install into (default / on the node; required "
                             "without --host, e.g. the mounted SD card /mnt/rootfs)")
    common.add_argument("--port", type=int, default=22, help="ssh port")
    common.add_argument("--identity", help="ssh private key (default: ssh's own choice)")
    common.add_argument("--known-hosts", default=None,
                        help=f"known_hosts file for host-key checking (default {DEFAULT_KNOWN_HOSTS})")
    common.add_argument("--python", default="python3",
                        help="the node's Python 3 that runs the installer and builds the venv (with "
                             "--root: a Python of this machine)")
    common.add_argument("--service-cmd", default=None,
                        help="on a node without systemd: command that runs the node (gets NOTIFY_SOCKET "
                             "and must send READY=1)")
    common.add_argument("--ready-timeout-s", type=float, default=None, help="readiness wait (default 60)")
    fmt = HelpFormatter
    d = sub.add_parser("deploy", parents=[common], formatter_class=fmt,
                       help="install a bundle on a node (ssh) or into a root file system (make deploy)",
                       description="Verify every file of BUNDLE, build the release's venv from its wheels, "
                                   "self-test the model, switch current atomically, restart the service; "
                                   "roll back if the self-test or the readiness fails.")
    d.add_argument("bundle", help="dist/seismictorch-node-<version>-<arch>.tar.gz")
    d.add_argument("--keep", type=int, default=3, help="releases kept on the node")
    r = sub.add_parser("rollback", parents=[common], formatter_class=fmt,
                       help="switch a node back to its previous release (make rollback)")
    r.add_argument("--to", default=None, help="an installed version instead of the previous one")
    sub.add_parser("releases", parents=[common], formatter_class=fmt, help="list a node's releases")


def main_deploy(args) -> int:
    if args.host is None and args.root is None:
        print("error: give --host user@node or --root /mnt/rootfs", file=sys.stderr)
        return 2
    if args.root is None:
        args.root = "/"
    try:
        return deploy(args)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
