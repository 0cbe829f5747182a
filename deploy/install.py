#!/usr/bin/env python3
"""Install a SeismicTorch node bundle ON the node (python3 standard library only).

    python3 install.py install --bundle seismictorch-node-<version>-<arch>.tar.gz [--root /]
    python3 install.py rollback [--root /]
    python3 install.py list [--root /]

Layout under ROOT (``/``, or the mounted root file system of an SD card)::

    opt/seismictorch/releases/<version>/   one folder per release (app, model, venv, wheels)
    opt/seismictorch/current -> releases/<version>   switched by an atomic rename
    opt/seismictorch/state.json            activation history (for rollback)
    etc/seismictorch/node.toml             configuration: written only when absent
    var/lib/seismictorch/                  events, snippets, spool: never touched

Order of an install: every file of the bundle is hashed against MANIFEST.sha256 in a
scratch folder (a corrupted bundle is refused before anything under ROOT changes), a ROOT
other than ``/`` must be a node's root file system (Debian-like, with the bundle's
``usr/bin/python3.X``), the release is built (on the node: venv from the bundle's wheels,
``pip install --no-index``; into a root: the wheels unpacked for the root's own Python; an
installed release's venv of the same wheels is reused by hard links), ``python -m
edge_runtime check`` runs the self-test window, ``current`` is switched (symlink to a
temporary name, then ``os.replace``), the unit is installed and enabled, the service is
restarted and must report ready; a failed self-test leaves ``current`` as it was, a
service that does not become ready switches back to the previous release.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BASE = "opt/seismictorch"
UNIT = "seismictorch-node.service"
MANIFEST = "MANIFEST.sha256"


class InstallError(Exception):
    """One line saying why nothing (more) was changed."""


def say(msg: str) -> None:
    print(msg, flush=True)


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tree_bytes(path: Path) -> int:
    total, seen = 0, set()
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


# --------------------------------------------------------------------------- bundle
def unpack_verified(bundle: Path, scratch: Path) -> Path:
    """Extract ``bundle`` into ``scratch`` and check every file against its manifest."""
    if not bundle.is_file():
        raise InstallError(f"{bundle}: no such bundle")
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            if len(tops) != 1:
                raise InstallError(f"{bundle}: not a node bundle ({len(tops)} top folders, not one)")
            for m in members:
                if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                    raise InstallError(f"{bundle}: refused member {m.name!r} (absolute, '..' or a link)")
            tar.extractall(scratch, members=members, filter="data") if hasattr(tarfile, "data_filter") \
                else tar.extractall(scratch, members=members)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, InstallError):
            raise
        raise InstallError(f"{bundle}: corrupted or not a .tar.gz bundle ({exc}); nothing changed") from None
    top = scratch / tops.pop()
    manifest = top / MANIFEST
    if not manifest.is_file():
        raise InstallError(f"{bundle}: no {MANIFEST}; nothing changed")
    listed = {}
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise InstallError(f"{bundle}: {MANIFEST} line {n} is malformed; nothing changed")
        listed[name] = digest
    present = {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()} - {MANIFEST}
    for name in sorted(present - set(listed)):
        raise InstallError(f"{bundle}: {name} is not in {MANIFEST}; nothing changed")
    for name, digest in sorted(listed.items()):
        path = top / name
        if not path.is_file():
            raise InstallError(f"{bundle}: {name} is listed in {MANIFEST} but missing; nothing changed")
        if sha256(path) != digest:
            raise InstallError(f"{bundle}: {name} does not match its sha256 in {MANIFEST}; nothing changed")
    return top


# --------------------------------------------------------------------------- state
class Node:
    def __init__(self, root: Path):
        self.root = root
        self.base = root / BASE
        self.releases = self.base / "releases"
        self.current = self.base / "current"
        self.state_file = self.base / "state.json"

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {"history": []}

    def save_state(self, state: dict) -> None:
        tmp = self.state_file.with_name(f".state.{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def current_version(self) -> str | None:
        try:
            return Path(os.readlink(self.current)).name
        except OSError:
            return None

    def installed(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        done = [p for p in self.releases.iterdir() if (p / ".complete").is_file()]
        return [p.name for p in sorted(done, key=lambda p: (p / ".complete").stat().st_mtime)]

    def switch(self, version: str) -> None:
        """Point ``current`` at ``releases/<version>`` atomically (readers see old or new)."""
        tmp = self.base / f".current.{os.getpid()}"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, self.current)
        state = self.state()
        state["history"] = [v for v in state.get("history", []) if v != version] + [version]
        state["current"] = version
        self.save_state(state)


# --------------------------------------------------------------------------- release
# Never imported by the node (the self-test, which runs after this, proves it): test suites,
# onnxruntime's model-conversion tools, and pip (the node installs only from bundles).
STRIP = ["numpy/**/tests", "onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/tools",
         "pip", "pip-*.dist-info", "setuptools", "setuptools-*.dist-info", "_distutils_hack",
         "distutils-precedence.pth"]


def strip_venv(venv: Path) -> int:
    """Remove :data:`STRIP` from the venv's site-packages; return the bytes freed."""
    freed = 0
    for site in (venv / "lib").glob("python3*/site-packages"):
        for pattern in STRIP:
            for path in list(site.glob(pattern)):
                if path.is_dir():
                    freed += tree_bytes(path)
                    shutil.rmtree(path, ignore_errors=True)
                elif path.is_file():
                    freed += path.stat().st_size
                    path.unlink()
    for script in (venv / "bin").glob("pip*"):
        script.unlink()
    return freed


def venv_key(release: Path, python: str) -> str:
    """What a release's venv is made of: its wheels' hashes (from the verified manifest) and
    the interpreter it runs on. Two releases with one key have byte-identical venvs."""
    listed = [line for line in (release / MANIFEST).read_text().splitlines() if "  wheels/" in line]
    return hashlib.sha256("\n".join(sorted(listed) + [python]).encode()).hexdigest()


def reuse_venv(release: Path, key: str, node: Node) -> str | None:
    """Hard-link the venv of an installed release with the same key into ``release``; the
    name of that release, or None when there is none (a first install, new wheels)."""
    for other in reversed(node.installed()):
        previous = node.releases / other
        if other == release.name or not (previous / "venv.key").is_file():
            continue
        if (previous / "venv.key").read_text().strip() == key:
            # Same wheels, same Python: the packages are byte-identical, link them.
            shutil.copytree(previous / "venv", release / "venv", symlinks=True, copy_function=os.link)
            return other
    return None


def finish_venv(release: Path, key: str, keep_wheels: bool = False) -> None:
    """Point the venv at the release's app folder and record its key; drop the wheels."""
    site = next((release / "venv" / "lib").glob("python3*/site-packages"))
    # The node package lives in app/, found through a path file relative to site-packages.
    pth = site / "seismictorch-node.pth"
    if pth.exists():
        pth.unlink()  # a hard link shared with the other release: replace, never write through
    pth.write_text(os.path.relpath(release / "app", site) + "\n")
    (release / "venv.key").write_text(key + "\n")
    if not keep_wheels:  # installed now; the venv is what runs (saves their size on the SD card)
        shutil.rmtree(release / "wheels")


def build_venv(release: Path, info: dict, python: str, node: Node, keep_wheels: bool = False,
               strip: bool = True) -> str:
    """Create ``release/venv`` from the bundle's wheels; reuse an identical one by hard links."""
    key = venv_key(release, python)
    other = reuse_venv(release, key, node)
    if other:
        how = f"reused from {other} (same wheels)"
    else:
        venv = release / "venv"
        run([python, "-m", "venv", str(venv)], "python3 -m venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
               "--disable-pip-version-check", "--find-links", str(release / "wheels")]
        run(pip + info["requirements"], "pip install from the bundle's wheels")
        wheels = list((release / "wheels").glob("*.whl"))
        how = f"built from {len(wheels)} wheels"
        if strip:
            how += f", {strip_venv(venv) / 1e6:.0f} MB the node never imports removed"
    finish_venv(release, key, keep_wheels)
    return how


def run(cmd, what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise InstallError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
    return proc


def os_release(node: Node) -> dict:
    """``etc/os-release`` (or ``usr/lib/os-release``) of the root as ``{KEY: value}``; {} if none.

    Links are followed inside the root (an absolute link names a path of the root, not of
    this machine).
    """
    for name in ("/etc/os-release", "/usr/lib/os-release"):
        path = node.path(name)
        for _ in range(8):
            if not path.is_symlink():
                break
            target = os.readlink(path)
            path = node.path(target) if target.startswith("/") else path.parent / target
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {k.strip(): v.strip().strip('"') for k, v in pairs}
    return {}


def check_root(node: Node, info: dict) -> None:
    """Refuse, before anything is written, a ``--root`` that is no node's root file system.

    A node's root holds the bundle's Python (``usr/bin/python3.X``) and is Debian-like
    (Raspberry Pi OS, Debian, Ubuntu: ``etc/debian_version``, or ``etc/os-release`` naming
    debian in ID or ID_LIKE). An empty, unmounted or misspelt folder is none of these.
    """
    if node.root == Path("/"):
        return
    py = info.get("target", {}).get("python", "3")
    where = f"--root {node.root}"
    if not node.root.is_dir():
        raise InstallError(f"{where}: no such folder (is the SD card's root partition mounted there?); "
                           "nothing changed")
    if not os.path.lexists(node.path(f"/usr/bin/python{py}")):
        raise InstallError(f"{node.root} has no usr/bin/python{py}, the Python the bundle is built for: is "
                           "it the node's root file system (the SD card's root partition, mounted)? "
                           "nothing changed")
    release = os_release(node)
    family = {release.get("ID", "")} | set(release.get("ID_LIKE", "").split())
    if not (node.path("/etc/debian_version").is_file() or family & {"debian", "raspbian", "ubuntu"}):
        raise InstallError(f"{where}: not a Debian-like root file system (no etc/debian_version, "
                           f"etc/os-release ID {release.get('ID') or '(none)'}): the node runs Raspberry Pi "
                           "OS or Debian; nothing changed")


def python_version(python: str) -> str | None:
    """``major.minor`` of an interpreter of this machine; None when it does not run."""
    try:
        proc = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def root_target(node: Node, info: dict, name: str, qemu: str | None = None,
                python: str = sys.executable) -> dict | None:
    """None for an install on the running node (``--root /``); for a root file system, how
    its release is made.

    The venv is unpacked from the wheels with ``bin/python`` pointing at the root's own
    ``/usr/bin/python3.X`` (never at a Python of this machine), and the self-test runs
    on this machine: the root's Python under qemu-user for another architecture (an aarch64
    SD card on an x86-64 workstation; Debian: qemu-user-static), this machine's ``python``
    of the same version otherwise.
    """
    arch = info.get("target", {}).get("arch") or platform.machine()
    py = info.get("target", {}).get("python", "3")
    if node.root == Path("/"):
        if arch != platform.machine():
            raise InstallError(f"{name} is for {arch}, this machine is {platform.machine()}: install it on "
                               f"the node (make deploy HOST=...) or build a bundle for {platform.machine()}; "
                               "nothing changed")
        return None
    node_python = node.path(f"/usr/bin/python{py}")
    target = {"arch": arch, "qemu": None, "root": str(node.root), "node_python": f"/usr/bin/python{py}"}
    if arch == platform.machine():
        if python_version(python) != py:
            raise InstallError(f"--python {python}: not a Python {py} of this machine, which the self-test "
                               f"of a Python {py} bundle needs; nothing changed")
        return dict(target, python=python)
    if qemu:  # a given emulator, e.g. a newer qemu-user unpacked from Debian backports
        if shutil.which(qemu) is None:
            raise InstallError(f"--qemu {qemu}: no such executable; nothing changed")
        qemu = shutil.which(qemu)
    else:
        qemu = shutil.which(f"qemu-{arch}-static") or shutil.which(f"qemu-{arch}")
    if qemu is None:
        raise InstallError(f"{name} is for {arch}: its self-test needs qemu-{arch}-static here "
                           "(apt-get install qemu-user-static); nothing changed")
    link = os.readlink(node_python) if node_python.is_symlink() else None
    real = node.path(link) if link and link.startswith("/") else node_python.resolve()
    return dict(target, qemu=qemu, python=str(real))


def unpack_venv(release: Path, info: dict, target: dict, node: Node, strip: bool = True) -> str:
    """A venv for a root file system: the wheels unpacked into site-packages (what pip does
    for these wheels), ``bin/python`` pointing at the root's own interpreter; an installed
    release's identical venv is reused by hard links."""
    key = venv_key(release, f"{target['arch']}:{target['node_python']}")
    tested = f"; self-test under {Path(target['qemu']).name}" if target["qemu"] else \
        f"; self-test with this machine's {target['python']}"
    other = reuse_venv(release, key, node)
    if other:
        finish_venv(release, key)
        return f"reused from {other} (same wheels){tested}"
    py = info["target"]["python"]
    venv = release / "venv"
    site = venv / "lib" / f"python{py}" / "site-packages"
    site.mkdir(parents=True)
    (venv / "bin").mkdir()
    for name in ("python", "python3", f"python{py}"):
        os.symlink(target["node_python"], venv / "bin" / name)
    os.symlink("lib", venv / "lib64")
    (venv / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {py}\n")
    wheels = sorted((release / "wheels").glob("*.whl"))
    for wheel in wheels:
        unpack_wheel(wheel, site)
    for dist_info in site.glob("*.dist-info"):
        (dist_info / "INSTALLER").write_text("seismictorch-install\n")
    how = f"unpacked from {len(wheels)} {target['arch']} wheels for the root's {target['node_python']}"
    if strip:
        how += f", {strip_venv(venv) / 1e6:.0f} MB the node never imports removed"
    finish_venv(release, key)
    return how + tested


def unpack_wheel(wheel: Path, site: Path) -> None:
    """Unpack one wheel into ``site`` (purelib/platlib data folders merged, scripts left out)."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.startswith("/") or ".." in member.split("/"):
                raise InstallError(f"{wheel.name}: refused member {member!r}")
        zf.extractall(site)
    for data in site.glob("*.data"):  # purelib/platlib go to site-packages; scripts are not needed
        for kind in ("purelib", "platlib"):
            if (data / kind).is_dir():
                shutil.copytree(data / kind, site, dirs_exist_ok=True)
        shutil.rmtree(data)


def selftest(release: Path, info: dict, config: Path, target: dict | None = None) -> tuple[bool, list[str]]:
    """``python -m edge_runtime check`` of the release's model, isolated from any PYTHONPATH.

    For a root file system (``target``) the Python of :func:`root_target` runs it on the
    release's site-packages and app folder: the root's own under qemu-user for another
    architecture, this machine's of the same version otherwise.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if target:
        site = next((release / "venv" / "lib").glob("python3*/site-packages"))
        env["PYTHONPATH"] = f"{site}:{release / 'app'}"
        python = [target["qemu"], "-L", target["root"], target["python"]] if target["qemu"] \
            else [target["python"], "-s"]
        cmd = [*python, "-m", "edge_runtime", "check", str(release / info["model"]["file"])]
    else:
        cmd = [str(release / "venv" / "bin" / "python"), "-I", "-m", "edge_runtime", "check",
               str(release / info["model"]["file"])]
    if config.is_file():
        cmd += ["--config", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(release))
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode == 0, lines


def install_files(node: Node, release: Path) -> None:
    """Unit, tmpfiles, sysusers; config and udev rule only where absent; enable the unit."""
    sysd = release / "systemd"
    targets = [(sysd / UNIT, node.path(f"/etc/systemd/system/{UNIT}"), True),
               (sysd / "seismictorch.conf", node.path("/etc/tmpfiles.d/seismictorch.conf"), True),
               (sysd / "seismictorch.sysusers", node.path("/usr/lib/sysusers.d/seismictorch.conf"), True),
               (sysd / "99-seismictorch-board.rules",
                node.path("/etc/udev/rules.d/99-seismictorch-board.rules"), False),
               (release / "config" / "node.toml", node.path("/etc/seismictorch/node.toml"), False)]
    for src, dst, replace in targets:
        if dst.exists() and not replace:
            continue  # the operator's file (edited ids, station, thresholds) survives upgrades
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    wants = node.path("/etc/systemd/system/multi-user.target.wants")
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / UNIT
    if not link.is_symlink():
        tmp = wants / f".{UNIT}.{os.getpid()}"
        os.symlink(f"/etc/systemd/system/{UNIT}", tmp)
        os.replace(tmp, link)


# --------------------------------------------------------------------------- service
def restart_service(node: Node, args) -> tuple[bool, str]:
    """Restart the node's service and wait for readiness; (ready, how)."""
    if args.service_cmd:
        return _hook_service(node, args)
    live = node.root == Path("/") and shutil.which("systemctl") and Path("/run/systemd/system").is_dir()
    if not live:
        return True, ("service not restarted: " + ("installed into a root file system, enabled for its "
                                                   "next boot" if node.root != Path("/")
                                                   else "no running systemd here"))
    for cmd in (["systemd-sysusers"], ["systemd-tmpfiles", "--create", "seismictorch.conf"],
                ["systemctl", "daemon-reload"]):
        if shutil.which(cmd[0]):
            subprocess.run(cmd, capture_output=True)
    # Type=notify: `restart` returns once the node sent READY=1, or fails.
    proc = subprocess.run(["systemctl", "restart", UNIT], capture_output=True, text=True,
                          timeout=args.ready_timeout_s + 30)
    active = subprocess.run(["systemctl", "is-active", UNIT], capture_output=True, text=True).stdout.strip()
    return proc.returncode == 0 and active == "active", f"systemctl restart {UNIT}: {active}"


def _hook_service(node: Node, args) -> tuple[bool, str]:
    """Without systemd: run ``--service-cmd`` with NOTIFY_SOCKET as systemd would, wait for READY=1."""
    pidfile = node.base / "service.pid"
    stop_hook_service(node)
    sock_path = Path(tempfile.mkdtemp(prefix="st-notify-")) / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(NOTIFY_SOCKET=str(sock_path), SEISMICTORCH_ROOT=str(node.root),
               SEISMICTORCH_CURRENT=str(node.current.resolve()),
               SEISMICTORCH_MODEL=str(node.current.resolve() / _info(node.current)["model"]["file"]))
    log = open(node.base / "service.log", "ab")
    # Own session and no inherited stdin: an ssh session that ran the install can close.
    proc = subprocess.Popen(args.service_cmd, shell=True, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + args.ready_timeout_s
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, min(0.2, deadline - time.monotonic())))
            try:
                msg = sock.recv(4096).decode(errors="replace")
            except socket.timeout:
                if proc.poll() is not None:
                    return False, f"service exited with {proc.returncode} before READY=1"
                continue
            if "READY=1" in msg.split("\n"):
                return True, f"service ready (READY=1, pid {proc.pid})"
        return False, f"service not ready within {args.ready_timeout_s:g} s (no READY=1)"
    finally:
        sock.close()
        shutil.rmtree(sock_path.parent, ignore_errors=True)
        log.close()


def _info(release: Path) -> dict:
    return json.loads((release / "bundle.json").read_text())


def stop_hook_service(node: Node) -> None:
    pidfile = node.base / "service.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.killpg(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    pidfile.unlink(missing_ok=True)


# --------------------------------------------------------------------------- commands
def same_content(a: Path, b: Path) -> bool:
    """Whether two manifests list the same files, ``bundle.json`` aside (it holds the build
    time): a rebuild of the same code, model, config and wheels is the same release."""
    def files(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if not line.endswith("  bundle.json")]

    return files(a) == files(b)


def cmd_install(args) -> int:
    t0 = time.monotonic()
    node = Node(Path(args.root).resolve())
    bundle = Path(args.bundle).resolve()
    with tempfile.TemporaryDirectory(prefix="st-bundle-") as scratch:
        top = unpack_verified(bundle, Path(scratch))
        info = json.loads((top / "bundle.json").read_text())
        version = info["version"]
        check_root(node, info)  # before anything under the root is written
        target = root_target(node, info, bundle.name, args.qemu, args.python)
        say(f"ok   {bundle.name}: {len(info['wheels'])} wheels, model {info['model']['file']}: "
            f"every file matches {MANIFEST}")
        node.releases.mkdir(parents=True, exist_ok=True)
        with open(node.base / ".lock", "a") as lock:  # "a": taking the lock changes nothing
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InstallError(f"another install is running on {node.base}") from None
            release = node.releases / version
            if (release / ".complete").is_file():
                if not same_content(release / MANIFEST, top / MANIFEST):
                    raise InstallError(f"release {version} is installed with different content; build the "
                                       "bundle with a new --version")
                if node.current_version() == version:
                    say(f"ok   {version} is already installed and current: nothing changed")
                    return 0
                say(f"ok   {version} is already installed; making it current again")
            else:
                build_release(node, top, info, target, args)
            activate(node, version, args)
            venv_mb = tree_bytes(release / "venv") / 1e6
            say(f"done {version} installed in {time.monotonic() - t0:.1f} s; release "
                f"{tree_bytes(release) / 1e6:.0f} MB on disk (venv {venv_mb:.0f} MB)")
    return 0


def build_release(node: Node, top: Path, info: dict, target: dict | None, args) -> None:
    """The verified bundle ``top`` as ``releases/<version>``: venv, self-test, then renamed
    into place; a failed self-test removes it and leaves ``current`` as it was."""
    version = info["version"]
    release = node.releases / version
    if release.exists():
        shutil.rmtree(release)  # a half-built release of an interrupted install
    partial = node.releases / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.move(str(top), str(partial))
    t = time.monotonic()
    if target:
        how = unpack_venv(partial, info, target, node, not args.no_strip)
    else:
        how = build_venv(partial, info, args.python, node, args.keep_wheels, not args.no_strip)
    say(f"ok   venv {how} in {time.monotonic() - t:.1f} s")
    config = node.path("/etc/seismictorch/node.toml")
    ok, lines = selftest(partial, info, config if config.is_file() else partial / "config" / "node.toml",
                         target)
    for line in lines:
        say(f"     {line}")
    if not ok:
        shutil.rmtree(partial, ignore_errors=True)
        kept = node.current_version()
        raise InstallError(f"self-test of {version} failed; release removed, current stays at "
                           f"{kept or '(none)'}")
    (partial / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    os.replace(partial, release)


def activate(node: Node, version: str, args) -> None:
    """Switch ``current`` to an installed release, install its unit and files, restart the
    service; back to the previous release when it does not become ready. Old releases pruned."""
    previous = node.current_version()
    node.switch(version)
    install_files(node, node.releases / version)
    say(f"ok   current -> releases/{version}" + (f" (was {previous})" if previous else ""))
    ready, how = restart_service(node, args)
    say(f"{'ok  ' if ready else 'FAIL'} {how}")
    if not ready:
        if previous and previous != version:
            node.switch(previous)
            again, how2 = restart_service(node, args)
            raise InstallError(f"{version} did not become ready; rolled back to {previous} ({how2})")
        raise InstallError(f"{version} did not become ready and there is no previous release")
    removed = prune(node, args.keep)
    if removed:
        say(f"ok   removed old releases: {', '.join(removed)} (keeping {args.keep})")


def prune(node: Node, keep: int) -> list[str]:
    releases = node.installed()
    current = node.current_version()
    history = node.state().get("history", [])
    # newest activations first; keep `keep` of them, the current one always
    order = [v for v in reversed(history) if v in releases]
    order += [v for v in reversed(releases) if v not in history]
    removed = []
    for v in order[keep:]:
        if v != current:
            shutil.rmtree(node.releases / v, ignore_errors=True)
            removed.append(v)
    if removed:
        state = node.state()
        state["history"] = [v for v in state.get("history", []) if v not in removed]
        node.save_state(state)
    return removed


def existing_node(root: str) -> Node:
    """The node under ``root``; InstallError when that folder does not exist (a typo)."""
    node = Node(Path(root).resolve())
    if not node.root.is_dir():
        raise InstallError(f"--root {root}: no such folder (is the SD card's root partition mounted there?)")
    return node


def cmd_rollback(args) -> int:
    t0 = time.monotonic()
    node = existing_node(args.root)
    current = node.current_version()
    installed = set(node.installed())
    history = [v for v in node.state().get("history", []) if v in installed and v != current]
    target = args.to or (history[-1] if history else None)
    if target is None:
        raise InstallError(f"no previous release to roll back to (installed: {sorted(installed) or 'none'})")
    if target not in installed:
        raise InstallError(f"--to {target}: not installed (installed: {', '.join(sorted(installed))})")
    node.switch(target)
    install_files(node, node.releases / target)
    say(f"ok   current -> releases/{target} (was {current})")
    ready, how = restart_service(node, args)
    say(f"{'ok  ' if ready else 'FAIL'} {how}")
    if not ready:
        if current:
            node.switch(current)
            restart_service(node, args)
        raise InstallError(f"{target} did not become ready; back at {current}")
    say(f"done rolled back to {target} in {time.monotonic() - t0:.1f} s")
    return 0


def cmd_list(args) -> int:
    node = existing_node(args.root)
    current = node.current_version()
    releases = node.installed()
    if not releases:
        say(f"no release installed under {node.base}")
        return 0
    for v in releases:
        when = (node.releases / v / ".complete").read_text().strip()
        say(f"{'*' if v == current else ' '} {v}  installed {when}")
    return 0


def cmd_stop(args) -> int:
    stop_hook_service(Node(Path(args.root).resolve()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default="/", help="root file system to install into")
    common.add_argument("--service-cmd", default=None,
                        help="without systemd: command that runs the node (gets NOTIFY_SOCKET; must send "
                             "READY=1)")
    common.add_argument("--ready-timeout-s", type=float, default=60.0, help="readiness wait, s")
    i = sub.add_parser("install", parents=[common], help="verify and install a bundle")
    i.add_argument("--bundle", required=True, help="seismictorch-node-*.tar.gz")
    i.add_argument("--keep", type=int, default=3, help="releases kept (the current one always)")
    i.add_argument("--python", default=sys.executable, help="Python that builds the venv")
    i.add_argument("--keep-wheels", action="store_true", help="keep the wheels in the release after install")
    i.add_argument("--qemu", default=None,
                   help="root of another architecture: the qemu-user emulator for its self-test "
                        "(default qemu-<arch>-static on PATH)")
    i.add_argument("--no-strip", action="store_true",
                   help="keep test suites, onnxruntime's conversion tools and pip in the venv")
    r = sub.add_parser("rollback", parents=[common], help="switch back to the previously active release")
    r.add_argument("--to", default=None, help="a given installed version")
    sub.add_parser("list", parents=[common], help="list installed releases (* = current)")
    sub.add_parser("stop", parents=[common], help="stop the --service-cmd node started by install")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "keep", 1) < 1:
        print("error: --keep must be >= 1", file=sys.stderr)
        return 2
    try:
        return {"install": cmd_install, "rollback": cmd_rollback, "list": cmd_list,
                "stop": cmd_stop}[args.command](args)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
