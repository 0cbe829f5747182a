"""`make bundle`: what goes into the node bundle, its manifest, and what the installer refuses.

These bundles carry only the pyserial wheel (repacked from this Python) so they stay small;
tests/test_deploy.py builds and installs full ones (numpy, onnxruntime).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import platform
import tarfile
from pathlib import Path

import pytest
from _helpers import HOST_PY, host_bundles

from tools.__main__ import main as tools_main
from tools.deploy.bundle import BundleError, build_bundle, target_arch

REPO = Path(__file__).resolve().parents[1]


def load_installer():
    spec = importlib.util.spec_from_file_location("st_install", REPO / "deploy" / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_bundle(tiny_model, tmp_path_factory):
    import importlib.metadata as md

    built = host_bundles(tmp_path_factory.mktemp("bundle"), {"1.2.3": tiny_model["float"]},
                         [md.distribution("pyserial")])
    return built["1.2.3"], tiny_model


def _members(path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_bundle_holds_only_the_node_and_a_manifest_of_every_file(small_bundle):
    info, tiny = small_bundle
    path = Path(info["path"])
    assert path.name == f"seismictorch-node-1.2.3-{platform.machine()}.tar.gz"
    files = _members(path)
    top = f"seismictorch-node-1.2.3-{platform.machine()}"
    names = {n.split("/", 1)[1] for n in files}
    assert {n.split("/", 1)[0] for n in files} == {top}
    assert "app/edge_runtime/__init__.py" in names and "app/edge_runtime/service.py" in names
    assert not any(n.startswith(("app/host_training", "app/quantization", "app/tools")) for n in names)
    assert not any("__pycache__" in n for n in names)
    assert {"install.py", "bundle.json", "MANIFEST.sha256", "config/node.toml", "model/model.onnx",
            "systemd/seismictorch-node.service", "systemd/seismictorch.conf"} <= names
    assert any(n.startswith("wheels/pyserial-") and n.endswith(".whl") for n in names)
    # every file but the manifest is listed with its sha256, and nothing else is
    manifest = dict(reversed(line.split("  ", 1)) for line in
                    files[f"{top}/MANIFEST.sha256"].decode().splitlines())
    assert set(manifest) == names - {"MANIFEST.sha256"}
    for name, digest in manifest.items():
        assert hashlib.sha256(files[f"{top}/{name}"]).hexdigest() == digest, name
    bundle = json.loads(files[f"{top}/bundle.json"])
    assert bundle["version"] == "1.2.3" and len(bundle["git_commit"]) in (40, 7)
    assert bundle["model"]["sha256"] == hashlib.sha256(Path(tiny["float"]).read_bytes()).hexdigest()
    stored = tiny["exported"] if isinstance(tiny["exported"], dict) else None
    assert bundle["selftest_expected"]["classes"] == ["P", "S", "noise"]
    assert len(bundle["selftest_expected"]["probs"]) == 3, stored
    assert bundle["target"] == {"arch": platform.machine(), "python": HOST_PY,
                                "platform": f"manylinux_2_17_{platform.machine()}"}
    # the unit runs the active release's venv and model
    unit = files[f"{top}/systemd/seismictorch-node.service"].decode()
    assert "ExecStart=/opt/seismictorch/current/venv/bin/python -m edge_runtime run" in unit
    assert "--model /opt/seismictorch/current/model/model.onnx" in unit
    assert "/opt/seismictorch/.venv" not in unit


def test_32bit_arm_target_refused_with_one_line(tiny_model, capsys, tmp_path):
    for tag in ("linux_armv7l", "manylinux_2_17_armv7l"):
        with pytest.raises(BundleError, match="64-bit"):
            target_arch(tag)
    rc = tools_main(["bundle", "--model", str(tiny_model["float"]), "--platform", "linux_armv7l",
                     "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Raspberry Pi OS (64-bit)" in err[0]
    assert target_arch("manylinux_2_17_aarch64") == "aarch64"


def test_bad_bundle_inputs_one_line(tiny_model, capsys, tmp_path):
    chosen = tmp_path / "chosen_model.json"
    chosen.write_text(json.dumps({"model": "gone.onnx", "path": "nowhere/gone.onnx"}))
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    cases = [(["--chosen", str(tmp_path / "missing.json")], "no such file"),
             (["--chosen", str(chosen)], "gone.onnx not found"),
             (["--chosen", str(not_json)], "not a chosen_model.json"),
             (["--model", str(tiny_model["float"]), "--python-version", "3"], "major.minor"),
             (["--model", str(tmp_path / "none.onnx")], "no such file")]
    for extra, expected in cases:
        rc = tools_main(["bundle", *extra, "--out", str(tmp_path / "dist")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and expected in err[0], (extra, err)


def test_chosen_model_json_picks_the_model(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "quant"
    folder.mkdir()
    shutil.copy(tiny_model["float"], folder / "eq_int16.onnx")
    (folder / "chosen_model.json").write_text(json.dumps(
        {"model": "eq_int16.onnx", "path": "elsewhere/eq_int16.onnx", "runtime": "onnxruntime",
         "scheme": "int16", "candidates": ["eq_int16.onnx"]}))
    from tools.deploy.bundle import resolve_choice

    path, fallbacks, choice = resolve_choice(chosen=folder / "chosen_model.json")
    assert path == folder / "eq_int16.onnx" and fallbacks == [] and choice["scheme"] == "int16"


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a bundle member by member; ``change(name, data)`` returns new bytes or None to drop."""
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz", compresslevel=1) as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isfile() else None
            if data is not None:
                data = change(m.name, data)
                if data is None:
                    continue
                m.size = len(data)
                tout.addfile(m, io.BytesIO(data))
            else:
                tout.addfile(m)
        extra = change("EXTRA", b"")
        if extra:
            name, payload = extra
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tout.addfile(info, io.BytesIO(payload))


def test_installer_refuses_a_damaged_bundle_before_changing_anything(small_bundle, tmp_path, capsys):
    info, _ = small_bundle
    src = Path(info["path"])
    top = src.name.removesuffix(".tar.gz")
    install = load_installer()

    def flip_model(name, data):
        if name.endswith("model/model.onnx"):
            return data[:-10] + bytes(b ^ 0xFF for b in data[-10:])
        return data if name != "EXTRA" else None

    def extra_file(name, data):
        return (f"{top}/app/edge_runtime/evil.py", b"print('x')\n") if name == "EXTRA" else data

    def drop_file(name, data):
        if name == "EXTRA":
            return None
        return None if name.endswith("app/edge_runtime/service.py") else data

    def escape(name, data):
        return (f"{top}/../escape.txt", b"x") if name == "EXTRA" else data

    cases = {"flip": (flip_model, "model/model.onnx does not match its sha256"),
             "extra": (extra_file, "evil.py is not in MANIFEST.sha256"),
             "missing": (drop_file, "service.py is listed in MANIFEST.sha256 but missing"),
             "escape": (escape, "refused member")}
    for label, (change, expected) in cases.items():
        bad = tmp_path / f"{label}.tar.gz"
        _rewrite(src, bad, change)
        root = tmp_path / f"root-{label}"
        root.mkdir()
        rc = install.main(["install", "--bundle", str(bad), "--root", str(root)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and expected in err[0], (label, err)
        assert list(root.iterdir()) == [], f"{label}: the root changed"
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    rc = install.main(["install", "--bundle", str(truncated), "--root", str(tmp_path / "root-flip")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "corrupted" in err[0] and "nothing changed" in err[0]


def test_keep_last_n_releases_never_the_current(tmp_path):
    install = load_installer()
    node = install.Node(tmp_path)
    for i, version in enumerate(["1.0.0", "2.0.0", "3.0.0", "4.0.0"]):
        release = node.releases / version
        release.mkdir(parents=True)
        (release / ".complete").write_text("x\n")
        os.utime(release / ".complete", (1000 + i, 1000 + i))
        node.switch(version)
    node.switch("2.0.0")  # rolled back: 2.0.0 is current, 4.0.0 the newest
    removed = install.prune(node, 2)
    assert sorted(removed) == ["1.0.0", "3.0.0"]
    assert sorted(p.name for p in node.releases.iterdir()) == ["2.0.0", "4.0.0"]
    assert node.current_version() == "2.0.0" and node.state()["history"] == ["4.0.0", "2.0.0"]


def test_bundle_for_another_architecture_refused_on_this_machine(small_bundle, tmp_path, capsys):
    info, tiny = small_bundle
    other = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    wheels = Path(info["path"]).parent / "wheels-only"
    wheels.mkdir(exist_ok=True)
    with tarfile.open(info["path"], "r:gz") as tar:
        for m in tar:
            if "/wheels/" in m.name:
                (wheels / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    built = build_bundle(tmp_path / "dist", model=tiny["float"], platform_tag=f"manylinux_2_17_{other}",
                         python_version=HOST_PY, version="9.9.9", wheelhouse=wheels, compresslevel=1)
    install = load_installer()
    # on a running node: refused (its venv and self-test need the node's own Python)
    rc = install.main(["install", "--bundle", built["path"], "--root", "/"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and f"is for {other}, this machine is {platform.machine()}" in err[0]
    # into a root file system: only one that holds the target's Python (an SD card's root)
    root = tmp_path / "root"
    root.mkdir()
    rc = install.main(["install", "--bundle", built["path"], "--root", str(root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and f"has no usr/bin/python{HOST_PY}" in err[0]
    assert list(root.iterdir()) == []


def test_python_older_than_the_node_needs_refused(tmp_path):
    with pytest.raises(BundleError, match="needs Python 3.11 or newer"):
        build_bundle(tmp_path / "dist", model=tmp_path / "m.onnx", python_version="3.10")
