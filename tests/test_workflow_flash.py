"""Flashing a node, as a new user does it every week (issue 19): `make bundle` of a retrained
model, `make deploy` / `tools deploy --root` onto an SD card's root file system, the upgrade.

Every test goes through the real command (``make ...`` or ``python -m tools ...`` in a
subprocess). Bundles are built for this machine with ``PLATFORM=host`` (its wheels repacked
from this Python, offline), as docs/deploying.md describes for x86 nodes; the root file
system is a folder made to look like Debian's (tests/_helpers.py: debian_root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from _helpers import HOST_PY, debian_root, host_bundles
from conftest import REPO, python_env

NODE_PY = f"/usr/bin/python{HOST_PY}"


def run(*argv, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=REPO, env=python_env(), capture_output=True, text=True,
                          timeout=timeout)


def tools(*args, timeout=600) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "tools", *args, timeout=timeout)


def make_bundle(dist: Path, model: Path, *extra) -> Path:
    """`make bundle` for this machine; the bundle it wrote (the one .tar.gz newer than the others)."""
    before = set(dist.glob("*.tar.gz")) if dist.is_dir() else set()
    stamp = dist.parent / "venv-ready"  # the venv runs this test: make must not reinstall it
    stamp.touch()
    result = run("make", "--no-print-directory", "bundle", f"MODEL={model}", "PLATFORM=host",
                 f"PYVER={HOST_PY}", f"DIST={dist}", f"STAMP={stamp}", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    made = [p for p in dist.glob("*.tar.gz") if p not in before]
    assert len(made) == 1, (made, result.stdout)
    return made[0]


def bundle_info(path: Path) -> dict:
    with tarfile.open(path, "r:gz") as tar:
        member = next(m for m in tar if m.name.endswith("/bundle.json") and m.name.count("/") == 1)
        return json.loads(tar.extractfile(member).read())


def one_line_error(result, *expected: str) -> str:
    err = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    assert len(err) == 1, result.stderr
    for text in expected:
        assert text in err[0], err[0]
    return err[0]


def new_bytes(root: Path) -> int:
    """Bytes of data under ``root``, each file counted once however many hard links it has."""
    seen, total = set(), 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


@pytest.fixture(scope="module")
def small_bundle(tiny_model, tmp_path_factory):
    """A bundle carrying only the pyserial wheel: enough for what is refused before the venv."""
    import importlib.metadata as md

    built = host_bundles(tmp_path_factory.mktemp("bundle"), {"1.0.0": tiny_model["float"]},
                         [md.distribution("pyserial")])
    return Path(built["1.0.0"]["path"])


# ------------------------------------------------------------------ the root file system
def test_deploy_into_a_folder_that_is_no_node_root_is_refused(small_bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_python = tmp_path / "no-python"
    (no_python / "etc").mkdir(parents=True)
    (no_python / "etc/debian_version").write_text("12.11\n")
    not_debian = tmp_path / "not-debian"
    (not_debian / "usr/bin").mkdir(parents=True)
    os.symlink(NODE_PY, not_debian / f"usr/bin/python{HOST_PY}")
    (not_debian / "etc").mkdir()
    (not_debian / "etc/os-release").write_text("ID=fedora\nID_LIKE=rhel\n")
    cases = [(tmp_path / "typo" / "rootfs", ["no such folder"]),
             (empty, [f"has no usr/bin/python{HOST_PY}", "nothing changed"]),
             (no_python, [f"has no usr/bin/python{HOST_PY}"]),
             (not_debian, ["not a Debian-like root", "fedora"])]
    for root, expected in cases:
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        result = tools("deploy", small_bundle, "--root", root, "--python", NODE_PY, timeout=120)
        one_line_error(result, *expected)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, root
    result = tools("releases", "--root", tmp_path / "typo", timeout=60)
    one_line_error(result, "no such folder")


@pytest.mark.slow
def test_retrained_model_ships_as_a_new_release_reusing_the_venv(tiny_model, tmp_path):
    """`make bundle` twice (the second a retrained model, VERSION given once), deployed in turn:
    a new release each, the second one's venv linked from the first (reproducible wheels)."""
    dist, root = tmp_path / "dist", debian_root(tmp_path / "rootfs")
    first = make_bundle(dist, tiny_model["float"])
    info = bundle_info(first)
    model_sha = info["model"]["sha256"]
    assert f".m{model_sha[:8]}." in info["version"], info["version"]  # follows the model
    assert info["git_commit"][:8] in info["version"]
    again = make_bundle(tmp_path / "dist-again", tiny_model["float"])  # the same inputs: the same release
    assert again.name == first.name
    retrained = make_bundle(dist, tiny_model["sim"])
    assert retrained.name != first.name and bundle_info(retrained)["model"]["sha256"] != model_sha
    named = make_bundle(tmp_path / "dist-named", tiny_model["sim"], "VERSION=2.0.0-rc1")
    assert named.name == f"seismictorch-node-2.0.0-rc1-{info['target']['arch']}.tar.gz"
    with tarfile.open(first) as a, tarfile.open(retrained) as b:  # re-packed wheels hash the same
        wheels = {m.name.split("/", 1)[1]: a.extractfile(m).read() for m in a if "/wheels/" in m.name}
        assert wheels and wheels == {m.name.split("/", 1)[1]: b.extractfile(m).read()
                                     for m in b if "/wheels/" in m.name}

    result = tools("deploy", first, "--root", root, "--python", NODE_PY)
    assert result.returncode == 0, result.stdout + result.stderr
    release = root / "opt/seismictorch/releases" / info["version"]
    # the venv runs the root's own Python; nothing in it points at this machine's folders
    assert os.readlink(release / "venv/bin/python") == NODE_PY
    for path in (release / "venv").rglob("*"):  # scripts, pyvenv.cfg, .pth files (byte code aside)
        if path.is_file() and not path.is_symlink() and path.suffix not in (".pyc", ".so"):
            text = path.read_bytes()
            # neither the folder it was built in (a .partial one under the root) nor this checkout
            assert str(root).encode() not in text and str(REPO).encode() not in text, path
    result = tools("deploy", again, "--root", root, "--python", NODE_PY)
    assert result.returncode == 0 and "already installed and current: nothing changed" in result.stdout

    before, t = new_bytes(root), time.perf_counter()
    result = tools("deploy", retrained, "--root", root, "--python", NODE_PY)
    upgrade_s, written = time.perf_counter() - t, new_bytes(root) - before
    assert result.returncode == 0, result.stdout + result.stderr
    assert "venv reused from" in result.stdout and "PASS" in result.stdout, result.stdout
    assert os.readlink(root / "opt/seismictorch/current").endswith(bundle_info(retrained)["version"])
    assert written < 5_000_000, written  # the model, the app and the config; not 100+ MB of venv
    print(json.dumps({"model_only_upgrade_s": round(upgrade_s, 1), "bytes_written_on_root": written,
                      "bundle_bytes": retrained.stat().st_size}))


# ------------------------------------------------------------------ the node config
def test_bundle_checks_the_node_config_before_building(tiny_model, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text((REPO / "deploy/node.toml").read_text().replace("\nport =", "\nprot =", 1))
    t = time.perf_counter()
    result = tools("bundle", "--model", tiny_model["float"], "--config", config, "--platform", "host",
                   "--wheels-from-env", "--out", tmp_path / "dist", timeout=300)
    line = one_line_error(result, str(config), "[node]", "'prot'")
    assert result.returncode == 2, line
    assert time.perf_counter() - t < 10  # refused before any wheel was packed
    assert not list((tmp_path / "dist").glob("*.tar.gz")) if (tmp_path / "dist").exists() else True
    # a config without the node's port: the node would not start either
    config.write_text("[node]\nstation = \"ST01\"\n")
    result = tools("bundle", "--model", tiny_model["float"], "--config", config, "--platform", "host",
                   "--wheels-from-env", "--out", tmp_path / "dist", timeout=300)
    one_line_error(result, "port: required")
