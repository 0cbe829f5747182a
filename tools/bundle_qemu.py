"""``python -m tools bundle-qemu``: run an aarch64 bundle off-device under qemu-user.

Debian's arm64 Python 3.11 (its packages unpacked with ``dpkg -x`` into a sysroot) runs under
``qemu-aarch64-static``; the bundle's own aarch64 wheels are installed for it (``pip install
--target --platform``: without binfmt_misc a venv cannot re-exec its interpreter), then

1. ``python -m edge_runtime check`` of the bundle's model (self-test window),
2. the node's window chain and model on every window of a real record (2 s every 0.25 s),
   compared with the same on this machine: the classes must be the same.

Known: onnxruntime 1.28 and newer crash at import under qemu 7.2 (Debian 12), 1.26 runs;
the bundle pins ``onnxruntime<1.27`` for that reason (tools/bundle.py REQUIREMENTS).
Needs root for apt-get (``dpkg --add-architecture arm64``) on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .bundle import platform_tags

QEMU = "qemu-aarch64-static"
ARM64_PACKAGES = [
    "libc6", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal", "zlib1g", "libexpat1",
    "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libncursesw6", "libtinfo6",
    "libreadline8", "libuuid1", "libgcc-s1", "libstdc++6", "libcrypt1", "libdb5.3", "libnsl2",
    "libtirpc3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libcom-err2", "libkrb5support0",
    "libkeyutils1"]

CLASSIFY = """
import sys, numpy as np
from edge_runtime.backend import load_backend
from edge_runtime.preprocess import WindowPreparer
model, fs, windows, out = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
b = load_backend(model)
prep = WindowPreparer(b.metadata.preprocess_config())
w = np.load(windows)
np.save(out, np.concatenate([b.predict(prep(w[i:i + 64], fs)[0]) for i in range(0, len(w), 64)]))
"""


def arm64_sysroot(folder: Path) -> Path:
    """Debian's arm64 python3.11 unpacked into ``folder`` (apt-get download + dpkg -x)."""
    python = folder / "usr/bin/python3.11"
    if python.is_file():
        return python
    if shutil.which(QEMU) is None:
        raise ValueError(f"{QEMU} missing: apt-get install qemu-user-static")
    if "arm64" not in subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                                     text=True).stdout:
        subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    debs = folder.parent / (folder.name + ".debs")
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-qq", *[f"{p}:arm64" for p in ARM64_PACKAGES], "media-types"],
                   cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(folder)], check=True)
    return python


def record_windows(record_glob: str, inventory: str | None, out: Path) -> float:
    """Windows (N, 3, 2 s) in m/s^2 of a real record, E/N/Z; returns the sampling rate (Hz)."""
    import glob

    import obspy

    st = obspy.Stream()
    for f in sorted(glob.glob(record_glob)):
        st += obspy.read(f)
    if inventory:
        st.remove_response(inventory=obspy.read_inventory(inventory), output="ACC")
    st.merge()
    data = {t.stats.channel[-1]: t.data for t in st}
    n = min(len(v) for v in data.values())
    fs = float(st[0].stats.sampling_rate)
    x = np.stack([data.get(c, np.zeros(n))[:n] for c in "ENZ"])
    w, step = int(2 * fs), int(0.25 * fs)
    np.save(out, np.stack([x[:, i:i + w] for i in range(0, n - w, step)]))
    return fs


def run_qemu_check(bundle, sysroot, record_glob, inventory=None, host_python=None) -> dict:
    """Check ``bundle`` under qemu and compare its window classes with this machine's."""
    bundle = Path(bundle)
    python = arm64_sysroot(Path(sysroot))
    with tempfile.TemporaryDirectory(prefix="st-qemu-") as tmp:
        tmp = Path(tmp)
        with tarfile.open(bundle, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        top = next(tmp.iterdir())
        info = json.loads((top / "bundle.json").read_text())
        if info["target"]["arch"] != "aarch64":
            raise ValueError(f"{bundle}: built for {info['target']['arch']}, not aarch64")
        site = top / "site"
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
               str(top / "wheels"), "--target", str(site), "--only-binary=:all:", "--implementation", "cp",
               "--python-version", info["target"]["python"]]
        for tag in platform_tags(info["target"]["platform"]):
            cmd += ["--platform", tag]
        subprocess.run(cmd + info["requirements"], check=True)
        env = dict(os.environ, PYTHONPATH=f"{site}:{top / 'app'}")
        qemu = [QEMU, "-L", str(Path(sysroot)), str(python)]
        model = top / info["model"]["file"]
        check = subprocess.run(qemu + ["-m", "edge_runtime", "check", str(model), "--config",
                                       str(top / "config/node.toml")],
                               capture_output=True, text=True, env=env)
        fs = record_windows(record_glob, inventory, tmp / "windows.npy")
        (tmp / "classify.py").write_text(CLASSIFY)
        args = [str(tmp / "classify.py"), str(model), str(fs), str(tmp / "windows.npy")]
        arm = subprocess.run(qemu + args + [str(tmp / "arm.npy")], capture_output=True, text=True, env=env)
        if arm.returncode != 0:
            raise ValueError(f"classification under qemu failed: {arm.stderr.strip().splitlines()[-1:]}")
        host_env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        subprocess.run([host_python or sys.executable] + args + [str(tmp / "host.npy")], check=True,
                       env=host_env)
        a, h = np.load(tmp / "arm.npy"), np.load(tmp / "host.npy")
        return {"check_ok": check.returncode == 0,
                "check": [line for line in check.stdout.splitlines() if "cpuid" not in line],
                "windows": len(a), "same_classes": bool((a.argmax(1) == h.argmax(1)).all()),
                "max_abs_diff": float(np.abs(a - h).max()),
                "classes_aarch64": np.bincount(a.argmax(1), minlength=a.shape[1]).tolist(),
                "classes_host": np.bincount(h.argmax(1), minlength=h.shape[1]).tolist(),
                "onnxruntime": next((w for w in info["wheels"] if w.startswith("onnxruntime-")), None)}


def add_arguments(sub) -> None:
    q = sub.add_parser("bundle-qemu", help="run an aarch64 bundle off-device under qemu-user",
                       formatter_class=__import__("argparse").ArgumentDefaultsHelpFormatter,
                       description=__doc__.split("\n\n")[0])
    q.add_argument("bundle", help="dist/seismictorch-node-<version>-aarch64.tar.gz")
    q.add_argument("--sysroot", default="runs/arm64-sysroot", help="arm64 Debian sysroot (made on first use)")
    q.add_argument("--record", default="/work/shared/realdata/napa_2014/*.mseed",
                   help="real record (glob of its component files) whose windows are classified")
    q.add_argument("--inventory", default="/work/shared/realdata/napa_2014/CE.68150.xml",
                   help="StationXML for a record in counts (empty: the record is in m/s^2)")


def main_qemu(args) -> int:
    try:
        result = run_qemu_check(args.bundle, args.sysroot, args.record, args.inventory or None)
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0 if result["check_ok"] and result["same_classes"] else 1
