"""The aarch64 bundle off-device: real aarch64 wheels, Debian's arm64 Python 3.11 under qemu-user.

The bundle is built with the Raspberry Pi OS 64-bit wheels from PyPI (``pip download
--platform manylinux_2_17_aarch64 --python-version 3.11``), installed by deploy/install.py
into a copy of a Debian arm64 root (Debian's python3.11 packages unpacked with ``dpkg -x``),
whose own Python runs ``edge_runtime check`` under ``qemu-aarch64-static -L root`` (no
binfmt_misc needed). Then the node's window chain and model classify 361 windows of a
committed record under qemu and on this machine, and the installed node (``edge_runtime run``)
reads that record as serial frames from a pty under qemu and here: same events. Sysroot and
wheels are cached in ``~/.cache/seismictorch/`` (first run: network, later runs: none).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import python_env

from tools.deploy.bundle import DEFAULT_PLATFORM, build_bundle, cached_wheels
from tools.deploy.qemu import QEMU, QEMU_HINT, qemu_binary, run_qemu_check

REPO = Path(__file__).resolve().parents[1]
RECORD = sorted((REPO / "tools" / "fixtures" / "records").glob("XX.TWO..HN?.SAC"))  # gal, an earthquake
EM_AARCH64 = 183  # ELF e_machine of AArch64


@pytest.fixture(scope="module")
def arm_bundle(request, tmp_path_factory):
    try:
        qemu_binary()
    except ValueError as exc:
        pytest.fail(str(exc))  # never skipped: the aarch64 node is the product's target
    tiny_model = request.getfixturevalue("tiny_model")  # trained only once the emulator is there
    wheels = cached_wheels(DEFAULT_PLATFORM, "3.11")
    info = build_bundle(tmp_path_factory.mktemp("arm") / "dist", model=tiny_model["sim"],
                        platform_tag=DEFAULT_PLATFORM, python_version="3.11", version="1.0.0",
                        wheelhouse=wheels, compresslevel=1)
    return info


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


def test_bundle_carries_real_aarch64_wheels(arm_bundle):
    assert arm_bundle["target"] == {"arch": "aarch64", "platform": DEFAULT_PLATFORM, "python": "3.11"}
    wheels = arm_bundle["wheels"]
    ort = next(w for w in wheels if w.startswith("onnxruntime-"))
    numpy = next(w for w in wheels if w.startswith("numpy-"))
    assert "cp311" in ort and "aarch64" in ort and "aarch64" in numpy and any(w.startswith("pyserial-")
                                                                               for w in wheels)
    # the pin: onnxruntime 1.28+ crashes at import under Debian 12's qemu 7.2
    assert tuple(int(v) for v in ort.split("-")[1].split(".")[:2]) < (1, 27)
    with tarfile.open(arm_bundle["path"], "r:gz") as tar:
        member = next(m for m in tar if m.name.endswith("/wheels/" + ort))
        with zipfile.ZipFile(tar.extractfile(member)) as zf:
            so = next(n for n in zf.namelist() if "onnxruntime_pybind11_state" in n and n.endswith(".so"))
            assert _elf_machine(zf.read(so)[:64]) == EM_AARCH64, so


def test_aarch64_node_installs_checks_and_classifies_like_this_machine(arm_bundle):
    result = run_qemu_check(arm_bundle["path"], RECORD, scale=0.01, step_s=0.05)
    print(result["seconds"], result["qemu"], "onnxruntime", result["onnxruntime"])
    lines = "\n".join(result["install"])
    assert result["install_ok"], lines
    # install.py's foreign-root path: verified, venv unpacked, self-test by the arm64 Python
    assert "every file matches MANIFEST.sha256" in lines and "aarch64 wheels" in lines
    assert "self-test window" in lines and "PASS" in lines and "current -> releases/1.0.0" in lines
    assert result["windows"] == 361  # 20 s at 100 Hz, 2 s windows every 0.05 s
    assert result["same_classes"], (result["classes_aarch64"], result["classes_host"])
    assert result["max_abs_diff"] < 1e-4
    assert sum(result["classes_host"]) == 361 and max(result["classes_host"]) < 361  # not one class only
    # the installed node itself, fed the record's 200 frames through a pty, as on x86
    node = result["node"]
    assert node["aarch64"]["exit_code"] == 0 and node["aarch64"]["frames"] == 200, node["aarch64"]
    assert sum(node["aarch64"]["window_classes"].values()) == 73  # 2 s windows every 0.25 s
    assert any(e["type"] == "event" for e in node["aarch64"]["events"]), node["aarch64"]
    assert node["same"], node


def test_missing_qemu_fails_with_the_install_hint(arm_bundle, tmp_path):
    env = python_env()
    env["PATH"] = str(Path(sys.executable).parent)  # no qemu-aarch64-static on it
    proc = subprocess.run([sys.executable, "-m", "tools", "bundle-qemu", arm_bundle["path"],
                           "--record", str(RECORD[0])], capture_output=True, text=True, env=env, cwd=REPO)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert QEMU in err[0] and QEMU_HINT in err[0]
