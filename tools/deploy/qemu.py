"""``python -m tools bundle-qemu``: install and run an aarch64 bundle off-device under qemu-user.

Debian's arm64 Python 3.11 (its packages fetched with ``apt-get download`` and unpacked with
``dpkg -x``) is a stand-in for the node's root file system. The bundle goes in the way it goes
onto a node's SD card: ``deploy/install.py install --root`` into a hard-linked copy of that
root verifies every hash, unpacks the aarch64 wheels into the release's venv and runs
``python -m edge_runtime check`` with the root's own Python under ``qemu-aarch64-static``
(``-L root``: no binfmt_misc needed). Then, under qemu and on this machine, the node's window
chain and model classify every 2 s window of a record (the classes must be the same), and the
installed node itself (``python -m edge_runtime run``) reads the record as serial frames from a
pty (tools/replay/): the same events, window classes and frame counts.

The sysroot and the target wheels are kept in ``~/.cache/seismictorch/`` (``$SEISMICTORCH_CACHE``),
keyed by the Debian package versions and by platform + requirements: only the first run
needs the network.

Emulator: Debian 12's qemu-user-static 7.2. onnxruntime 1.28 and newer crash at import under
it (``uncaught target signal 11``), 1.26 runs; the bundle pins ``onnxruntime<1.27`` for that
reason (tools/deploy/bundle.py REQUIREMENTS). qemu-user 10.0.2 from Debian bookworm-backports (package
``qemu-user``, its static ``usr/bin/qemu-aarch64`` usable straight from ``dpkg -x``) runs
onnxruntime 1.32: give it with ``--qemu``. First use needs root for ``dpkg --add-architecture
arm64`` and ``apt-get update``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_runtime.helpformat import HelpFormatter
from tools.replay.node import node_on_pty, wait_for_port
from tools.replay.sender import Writer, replay_records

from .bundle import cache_folder

REPO = Path(__file__).resolve().parents[2]
# The default record: the Napa 2014 record of ../shared/realdata beside the repository.
DEFAULT_RECORD = REPO.parent / "shared" / "realdata" / "napa_2014" / "*.mseed"
DEFAULT_INVENTORY = DEFAULT_RECORD.with_name("CE.68150.xml")
QEMU = "qemu-aarch64-static"
QEMU_HINT = ("install Debian's qemu-user-static (apt-get install qemu-user-static; `make test` "
             "installs it)")
ARM64_PACKAGES = [
    "libc6", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal", "zlib1g", "libexpat1",
    "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libncursesw6", "libtinfo6",
    "libreadline8", "libuuid1", "libgcc-s1", "libstdc++6", "libcrypt1", "libdb5.3", "libnsl2",
    "libtirpc3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libcom-err2", "libkrb5support0",
    "libkeyutils1",
    "base-files"]  # etc/os-release, etc/debian_version: install.py refuses a root without them
ARCH_INDEPENDENT = ["media-types"]
WINDOW_S, STEP_S = 2.0, 0.25

CLASSIFY = """
import sys, numpy as np
from edge_runtime.backends import load_backend
from edge_runtime.preprocess import WindowPreparer
model, fs, windows, out = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
b = load_backend(model)
prep = WindowPreparer(b.metadata.preprocess_config())
w = np.load(windows)
np.save(out, np.concatenate([b.predict(prep(w[i:i + 64], fs)[0]) for i in range(0, len(w), 64)]))
"""


class QemuError(ValueError):
    """The off-device check cannot run; the message is one line with what to install or do."""


def qemu_binary(qemu: str | None = None) -> str:
    """The emulator: ``qemu`` if given (a path or a name on PATH), else qemu-aarch64-static."""
    path = shutil.which(qemu or QEMU)
    if path is None:
        raise QemuError(f"--qemu {qemu}: no such executable" if qemu else f"{QEMU} not found: {QEMU_HINT}")
    return path


def qemu_version(qemu: str | None = None) -> str:
    """``7.2.19`` (Debian: ``7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)``) of the emulator."""
    out = subprocess.run([qemu or qemu_binary(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version\s+(\S+(?:\s+\([^)]*\))?)", out)
    return m.group(1) if m else "unknown"


def _last_line(proc) -> str:
    return ((proc.stderr or "").strip() or (proc.stdout or "").strip() or "(no output)").splitlines()[-1]


def _apt_update() -> str:
    """``apt-get update``; not fatal (another source may fail): what is still missing is named later."""
    proc = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
    return "" if proc.returncode == 0 else f" (apt-get update: {_last_line(proc)})"


def ensure_arm64_apt() -> None:
    """Make apt know arm64 packages (``dpkg --add-architecture arm64``; root, first use only)."""
    archs = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout
    if "arm64" in archs.split():
        return
    if os.geteuid() != 0:
        raise QemuError("apt has no arm64 architecture: run `dpkg --add-architecture arm64 && apt-get "
                        "update` as root once")
    subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
    _apt_update()


def arm64_versions() -> dict[str, str]:
    """Candidate versions of the sysroot's Debian packages (``apt-cache show``), e.g. libc6:arm64."""
    names = [f"{p}:arm64" for p in ARM64_PACKAGES] + ARCH_INDEPENDENT

    def show() -> dict[str, str]:
        out = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True,
                             text=True).stdout
        found = {}
        for block in out.split("\n\n"):
            fields = dict(re.findall(r"^(Package|Version|Architecture): (.+)$", block, re.M))
            if "Package" in fields:
                arch = fields.get("Architecture", "all")
                found[fields["Package"] + (":arm64" if arch == "arm64" else "")] = fields["Version"]
        return found

    ensure_arm64_apt()
    versions, update = show(), ""
    if set(names) - set(versions):  # lists older than the architecture, or never fetched
        update = _apt_update()
        versions = show()
    missing = sorted(set(names) - set(versions))
    if missing:
        raise QemuError(f"apt knows no {', '.join(missing)}: is a Debian 12 (bookworm) source "
                        f"configured?{update}")
    return {n: versions[n] for n in names}


def arm64_sysroot(cache=None, log=None) -> tuple[Path, Path]:
    """Debian's arm64 Python 3.11 unpacked into the cache; returns (sysroot, its python3.11).

    The folder is ``<cache>/arm64-sysroot-python<version>-<key>``, ``key`` a hash of every
    package's version, and appears only once complete (built beside it, then renamed).
    """
    versions = arm64_versions()
    key = hashlib.sha256("\n".join(f"{n}={v}" for n, v in versions.items()).encode()).hexdigest()[:12]
    py = re.sub(r"[^A-Za-z0-9.+_-]", "_", versions["python3.11-minimal:arm64"])
    folder = Path(cache or cache_folder()) / f"arm64-sysroot-python{py}-{key}"
    python = folder / "usr/bin/python3.11"
    if python.is_file():
        return folder, python
    t0 = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}")
    debs = partial.with_name(partial.name + ".debs")
    for d in (partial, debs):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    try:
        pinned = [f"{n}={v}" for n, v in versions.items()]
        proc = subprocess.run(["apt-get", "download", "-qq", *pinned], cwd=debs, capture_output=True,
                              text=True)
        if proc.returncode != 0:  # the mirror moved on since the lists were fetched
            update = _apt_update()
            pinned = [f"{p}:arm64" for p in ARM64_PACKAGES] + ARCH_INDEPENDENT
            proc = subprocess.run(["apt-get", "download", "-qq", *pinned], cwd=debs, capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise QemuError(f"apt-get download of the arm64 packages failed: {_last_line(proc)}{update}")
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
        (partial / "seismictorch-sysroot.json").write_text(json.dumps(versions, indent=2) + "\n")
        try:
            partial.rename(folder)
        except OSError:
            if not python.is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(debs, ignore_errors=True)
    if log:
        log(f"arm64 sysroot {folder} built in {time.perf_counter() - t0:.1f} s")
    return folder, python


def node_root(sysroot: Path, dest: Path) -> Path:
    """A node root file system to install into: a hard-linked copy of the cached sysroot.

    The installer writes new files and replaces others by rename, so the cache is never
    written through (a plain copy where the two are on different file systems).
    """
    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(sysroot, dest, symlinks=True, copy_function=link_or_copy)
    return dest


def read_record(files, inventory: str | None = None, scale: float = 1.0) -> tuple[np.ndarray, float, int]:
    """One record as ``(data (3, n) in m/s^2 E/N/Z, sampling rate Hz, start time us)``.

    ``files`` are the record's component files, each taken as E, N or Z by its channel code
    as the record reader takes it
    (:func:`host_training.recordings.orientation.component_of_code`: ``1``/``2`` are N/E);
    a missing component is zeros. With ``inventory`` the response is removed (counts ->
    m/s^2), else the data are multiplied by ``scale`` (gal: 0.01).
    """
    import obspy

    from host_training.recordings.orientation import component_of_code

    st = obspy.Stream()
    for f in files:
        st += obspy.read(str(f))
    if not len(st):
        raise QemuError(f"no waveform in {', '.join(map(str, files)) or '(no files)'}")
    if inventory:
        st.remove_response(inventory=obspy.read_inventory(inventory), output="ACC")
    st.merge(fill_value=0)
    data = {c: t for t in st if (c := component_of_code(t.stats.channel)) is not None}
    if not data:
        raise QemuError(f"{files[0]}: no E/N/Z/1/2 component")
    n = min(t.stats.npts for t in data.values())
    first = next(iter(data.values())).stats
    x = np.stack([np.asarray(data[c].data[:n], dtype=np.float64) * scale if c in data else np.zeros(n)
                  for c in "ENZ"])
    return x, float(first.sampling_rate), int(round(first.starttime.timestamp * 1e6))


def record_windows(x: np.ndarray, fs: float, out: Path, window_s: float = WINDOW_S,
                   step_s: float = STEP_S) -> int:
    """Save the windows (N, 3, window_s * fs) of a record every ``step_s`` s to ``out``; return N."""
    from edge_runtime.ring import cut_windows

    windows, _ = cut_windows(x, fs, window_s, step_s)
    np.save(out, windows)
    return len(windows)


def node_replay(python: list, env: dict, release: Path, record, out: Path, timeout_s: float = 120.0) -> dict:
    """Replay a record as serial frames through a pty into ``python -m edge_runtime run``.

    The node runs as installed: the release's config, model and sensor; the frames are the
    record digitized by that sensor (tools/replay/sender.py), sent as fast as the node reads. It is
    stopped with SIGTERM once it has read everything (it closes an open event then).

    Returns
    -------
    dict
        ``exit_code``, ``events`` (type, times in us, windows, PGA of each line),
        ``window_classes`` and ``frames`` decoded, from its status file, and ``seconds``.
    """
    import signal
    import tomllib

    from edge_runtime.sensors import DEFAULT_SENSOR, get_sensor

    info = json.loads((release / "bundle.json").read_text())
    config = release / "config" / "node.toml"
    sensor = get_sensor(tomllib.loads(config.read_text()).get("node", {}).get("sensor", DEFAULT_SENSOR))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    error = None
    with open(out / "node.log", "w") as log, \
            node_on_pty(release / info["model"]["file"], out / "events.jsonl", out / "status.json",
                        "--config", str(config), "--snippets", str(out / "snippets"),
                        "--spool", str(out / "spool"), "--idle-exit-s", "5", python=python, env=env,
                        output=log, grace_s=0) as (proc, pty):
        try:
            wait_for_port(out / "status.json", proc, timeout_s, out / "node.log", f"node under {python[0]}")
            writer = Writer(pty, speed=0, timeout_s=timeout_s, alive=lambda: proc.poll() is None)
            replay_records([record], writer, None, sensor=sensor)
            if pty.drain(timeout_s=timeout_s, settle_s=0.5) and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired) as exc:
            error = f"node replay with {python[0]} failed: {exc}"
    if error:  # the node's last words say why (the folder may be temporary)
        tail = (out / "node.log").read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise QemuError(f"{error}; node: {tail[0]}")
    try:
        status = json.loads((out / "status.json").read_text())
        lines = (out / "events.jsonl").read_text().splitlines() if (out / "events.jsonl").exists() else []
        events = [json.loads(line) for line in lines]
    except (OSError, ValueError) as exc:
        raise QemuError(f"node replay with {python[0]}: no status or bad events ({exc}); log: "
                        f"{out / 'node.log'}") from None
    keys = ("type", "start_us", "end_us", "p_time_us", "s_time_us", "n_windows")
    return {"exit_code": proc.returncode,
            "events": [{**{k: e.get(k) for k in keys}, "pga_mps2": round(e.get("pga_mps2") or 0.0, 5)}
                       for e in events],
            "window_classes": status.get("window_classes"),
            "frames": status.get("decoder", {}).get("frames"),
            "seconds": round(time.perf_counter() - t0, 1)}


def run_qemu_check(bundle, records, *, inventory=None, scale=1.0, step_s=STEP_S, cache=None,
                   qemu=None, host_python=None, log=None) -> dict:
    """Install ``bundle`` into an arm64 root under qemu and compare its classes with this machine's.

    Parameters
    ----------
    bundle : path
        ``seismictorch-node-<version>-aarch64.tar.gz``.
    records : list of paths
        Component files of one record, classified in 2 s windows every ``step_s`` seconds.
    inventory, scale :
        StationXML for a record in counts, else a factor to m/s^2.
    qemu : str, optional
        Emulator to use instead of ``qemu-aarch64-static`` on PATH.

    Returns
    -------
    dict
        ``install_ok``, ``install`` (the installer's lines, self-test included), ``windows``,
        ``same_classes``, ``max_abs_diff``, class counts, versions and timings (s).
    """
    bundle = Path(bundle).resolve()
    qemu = qemu_binary(qemu)
    t0 = time.perf_counter()
    sysroot, _ = arm64_sysroot(cache, log)
    t_sysroot = time.perf_counter() - t0
    with tarfile.open(bundle, "r:gz") as tar:
        top = tar.next().name.split("/", 1)[0]
        info = json.loads(tar.extractfile(f"{top}/bundle.json").read())
    if info["target"]["arch"] != "aarch64":
        raise QemuError(f"{bundle}: built for {info['target']['arch']}, not aarch64")
    with tempfile.TemporaryDirectory(prefix="st-qemu-") as tmp:
        tmp = Path(tmp)
        root = node_root(sysroot, tmp / "root")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        ok, lines, t_install = _install(bundle, root, qemu, env)
        result = {"install_ok": ok, "install": lines, "qemu": qemu_version(qemu), "sysroot": str(sysroot),
                  "onnxruntime": next((w.split("-")[1] for w in info["wheels"]
                                       if w.startswith("onnxruntime-")), None),
                  "seconds": {"sysroot": round(t_sysroot, 1), "install_and_check": round(t_install, 1)}}
        if not ok:
            return result
        release = root / "opt/seismictorch/releases" / info["version"]
        site = next((release / "venv" / "lib").glob("python3*/site-packages"))
        record = read_record(records, inventory, scale)
        arm = ([qemu, "-L", str(root), str(root / "usr/bin/python3.11")],
               dict(env, PYTHONPATH=f"{site}:{release / 'app'}"))
        host = ([host_python or sys.executable], dict(env, PYTHONPATH=str(REPO)))
        a, h = _classify(release / info["model"]["file"], record, step_s, tmp, arm, host, result["seconds"])
        node = {"aarch64": node_replay(*arm, release, record, tmp / "node-aarch64"),
                "host": node_replay(*host, release, record, tmp / "node-host")}
        node["same"] = all(node["aarch64"][k] == node["host"][k]
                           for k in ("exit_code", "events", "window_classes", "frames"))
        result["node"] = node
        result["seconds"]["node_replay_qemu"] = node["aarch64"]["seconds"]
        result.update(
            windows=len(a), same_classes=bool(len(a) == len(h) and (a.argmax(1) == h.argmax(1)).all()),
            max_abs_diff=float(np.abs(a - h).max()),
            classes_aarch64=np.bincount(a.argmax(1), minlength=a.shape[1]).tolist(),
            classes_host=np.bincount(h.argmax(1), minlength=h.shape[1]).tolist(),
            release_bytes=sum(p.stat().st_size for p in release.rglob("*")
                              if p.is_file() and not p.is_symlink()))
        result["seconds"]["total"] = round(time.perf_counter() - t0, 1)
        return result


def _install(bundle: Path, root: Path, qemu: str, env: dict) -> tuple[bool, list[str], float]:
    """``deploy/install.py install --root`` of the bundle into ``root``, its self-test run under
    qemu: whether it succeeded, the installer's lines and its seconds."""
    t = time.perf_counter()
    install = subprocess.run([sys.executable, "-I", str(REPO / "deploy" / "install.py"), "install",
                              "--bundle", str(bundle), "--root", str(root), "--qemu", qemu],
                             capture_output=True, text=True, env=env)
    lines = [line for line in (install.stdout + install.stderr).splitlines() if "cpuid" not in line]
    return install.returncode == 0, lines, time.perf_counter() - t


def _classify(model: Path, record, step_s: float, tmp: Path, arm: tuple, host: tuple,
              seconds: dict) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, n_classes) of the record's windows every ``step_s`` s under qemu
    (``arm``: its Python command and environment) and on this machine (``host``); the
    seconds under qemu go into ``seconds``."""
    record_windows(*record[:2], tmp / "windows.npy", step_s=step_s)
    (tmp / "classify.py").write_text(CLASSIFY)
    args = [str(tmp / "classify.py"), str(model), str(record[1]), str(tmp / "windows.npy")]
    t = time.perf_counter()
    run = subprocess.run([*arm[0], *args, str(tmp / "arm.npy")], capture_output=True, text=True, env=arm[1])
    seconds["classify_qemu"] = round(time.perf_counter() - t, 1)
    if run.returncode != 0:
        raise QemuError(f"classification under qemu failed (exit {run.returncode}): {_last_line(run)}")
    run = subprocess.run([*host[0], *args, str(tmp / "host.npy")], capture_output=True, text=True,
                         env=host[1])
    if run.returncode != 0:
        raise QemuError(f"classification on this machine failed: {_last_line(run)}")
    return np.load(tmp / "arm.npy"), np.load(tmp / "host.npy")


def add_arguments(sub) -> None:
    q = sub.add_parser("bundle-qemu", help="install and run an aarch64 bundle off-device under qemu-user",
                       formatter_class=HelpFormatter,
                       description=__doc__.split("\n\n")[0])
    q.add_argument("bundle", help="dist/seismictorch-node-<version>-aarch64.tar.gz")
    q.add_argument("--cache", default=None,
                   help="cache of the arm64 sysroot (default $SEISMICTORCH_CACHE or ~/.cache/seismictorch)")
    q.add_argument("--qemu", default=None,
                   help="qemu-user emulator for aarch64 (default qemu-aarch64-static on PATH)")
    q.add_argument("--record", default=None,
                   help="real record (glob of its component files) whose windows are classified "
                        f"(default: {DEFAULT_RECORD}, beside the repository, when it exists)")
    q.add_argument("--inventory", default=None,
                   help="StationXML for a record in counts (default: none, the record is in m/s^2; "
                        f"with the default record, {DEFAULT_INVENTORY.name} beside it)")
    q.add_argument("--scale", type=float, default=1.0, help="factor to m/s^2 when there is no inventory")
    q.add_argument("--step-s", type=float, default=STEP_S, help="window step, s (windows are 2 s)")


def main_qemu(args) -> int:
    import glob

    if args.record is None:  # ../shared/realdata beside the repository, when there is one
        if not glob.glob(str(DEFAULT_RECORD)):
            print(f"error: --record: give a real record (glob of its component files); the default "
                  f"{DEFAULT_RECORD} does not exist", file=sys.stderr)
            return 2
        args.record = str(DEFAULT_RECORD)
        args.inventory = str(DEFAULT_INVENTORY) if args.inventory is None else args.inventory
    files = sorted(glob.glob(args.record))
    if not files:
        print(f"error: --record {args.record}: no such files", file=sys.stderr)
        return 2
    if args.step_s <= 0:
        print(f"error: --step-s {args.step_s}: must be > 0", file=sys.stderr)
        return 2
    try:
        result = run_qemu_check(args.bundle, files, inventory=args.inventory or None, scale=args.scale,
                                step_s=args.step_s, cache=args.cache, qemu=args.qemu,
                                log=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError, subprocess.CalledProcessError, tarfile.TarError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0 if result["install_ok"] and result.get("same_classes") and result["node"]["same"] else 1
