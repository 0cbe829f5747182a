"""``python -m tools bundle``: the node's offline install bundle (``make bundle``).

A bundle is ``dist/seismictorch-node-<version>-<arch>.tar.gz`` holding one folder with only
what a field node runs::

    app/edge_runtime/          the node package (source; nothing from host_training/tools)
    model/<chosen>             the model the quantization report chose (+ a fallback model)
    wheels/*.whl               numpy, onnxruntime, pyserial (+ deps) for the target platform
    config/node.toml           node configuration (installed only where none exists)
    systemd/...                unit (paths pointing at /opt/seismictorch/current), tmpfiles,
                               sysusers entry, udev rule example
    install.py                 runs ON the node with python3's standard library only
    bundle.json                version (commit + model + content hashes: a retrained model is a
                               new release without a commit), git commit, target, model hashes,
                               data-card hash, the self-test window's expected output, sizes
    MANIFEST.sha256            sha256 of every other file (``sha256sum -c`` format)

The node needs no network: ``install.py`` builds the virtual environment from ``wheels/``
with ``pip install --no-index``. Target wheels are fetched with ``pip download
--only-binary=:all: --platform ... --python-version ...``; for a bundle of the build
machine's own platform (tests, x86 nodes), ``--wheels-from-env`` repacks the wheels
installed in this Python instead (offline).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import platform as host_platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from edge_runtime.backends import RUNTIMES, runtime_for
from edge_runtime.requirements import bundle_requirements, extra_requirements, requirement_name

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PLATFORM = "manylinux_2_17_aarch64"
DEFAULT_PYTHON = "3.11"
# The node's runtime dependencies: pyproject's `edge` extra with the bundle's onnxruntime cap
# for the qemu check (edge_runtime.requirements.BUNDLE_CAPS says why).
REQUIREMENTS = bundle_requirements()
# Raspberry Pi OS 64-bit (bookworm) has glibc 2.36; pip does not widen a --platform tag to
# the older/newer manylinux levels, so every level up to the node's glibc is listed.
MAX_GLIBC_MINOR = 36
ARM32 = ("armv7l", "armv6l", "armhf", "armv7", "arm")
INSTALL_ROOT = "/opt/seismictorch"
MANIFEST = "MANIFEST.sha256"
SKIP = {"__pycache__", ".pytest_cache"}


class BundleError(ValueError):
    """A bundle cannot be built; the message is one line."""


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def target_arch(platform_tag: str) -> str:
    """``manylinux_2_17_aarch64`` -> ``aarch64``; 32-bit ARM refused with one line."""
    arch = re.sub(r"^(manylinux\d*_?(\d+_\d+)?|musllinux_\d+_\d+|linux)_", "", platform_tag)
    if arch in ARM32 or arch.startswith("armv"):
        raise BundleError(
            f"target {platform_tag}: 32-bit Raspberry Pi OS has no onnxruntime or LiteRT wheel for "
            "Python 3.11 on PyPI; install Raspberry Pi OS (64-bit) on the node and build for aarch64")
    if arch not in ("aarch64", "x86_64"):
        raise BundleError(f"target {platform_tag}: unsupported architecture {arch!r} (aarch64 or x86_64)")
    return arch


def platform_tags(platform_tag: str) -> list[str]:
    """Every manylinux level from the given one up to the node's glibc (2.36)."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform_tag)
    if not m:
        return [platform_tag]
    low, arch = int(m.group(1)), m.group(2)
    return [f"manylinux_2_{v}_{arch}" for v in range(low, max(low, MAX_GLIBC_MINOR) + 1)]


def host_platform_tag() -> str:
    return f"manylinux_2_17_{host_platform.machine()}"


def git_commit() -> tuple[str, bool]:
    """(commit, dirty) of the repository, ("unknown", False) outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                     "edge_runtime", "deploy"], capture_output=True, text=True).stdout)
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def project_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return m.group(1) if m else "0"


def resolve_choice(chosen=None, model=None) -> tuple[Path, list[Path], dict]:
    """The node's model, fallback models and the choice record.

    ``chosen`` is quantization's ``chosen_model.json``; its ``path`` is tried as given, then
    relative to the file's folder. With ``model`` the file is used as is (no fallback).
    """
    if (chosen is None) == (model is None):
        raise BundleError("give --chosen chosen_model.json (python -m quantization choose) or --model FILE")
    if model is not None:
        path = Path(model)
        if not path.is_file():
            raise BundleError(f"--model {model}: no such file")
        return path, [], {"model": path.name, "runtime": _runtime(path), "source": "--model"}
    source = Path(chosen)
    if not source.is_file():
        raise BundleError(f"--chosen {chosen}: no such file (write it with `python -m quantization choose`)")
    try:
        choice = json.loads(source.read_text())
        name = choice["model"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise BundleError(f"{source}: not a chosen_model.json (needs a 'model' entry)") from None

    def find(file_name, path=None):
        for candidate in ([Path(path)] if path else []) + [source.parent / file_name]:
            if candidate.is_file():
                return candidate
        return None

    path = find(name, choice.get("path"))
    if path is None:
        raise BundleError(f"{source}: chosen model {name} not found ({choice.get('path')} or beside it)")
    # The fallback runs on the other runtime: a LiteRT file beside an ONNX choice (used where
    # ai-edge-litert is installed), an ONNX file beside a LiteRT choice (always runnable).
    want = tuple(suffix for suffix in RUNTIMES if suffix != path.suffix.lower())
    fallbacks = [p for c in choice.get("candidates", []) if c.lower().endswith(want) and (p := find(c))][:1]
    choice = dict(choice, source=str(source))
    return path, fallbacks, choice


def _runtime(path: Path) -> str:
    try:
        return runtime_for(path).name
    except ValueError as exc:
        raise BundleError(str(exc)) from None


def model_summary(path: Path) -> dict:
    """Hash, runtime, metadata fields and the stored self-test expectation of a model."""
    from edge_runtime.backends import load_backend
    from edge_runtime.metadata import read_selftest

    info = {"file": f"model/{path.name}", "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "runtime": _runtime(path)}
    try:
        meta = load_backend(path).metadata
    except (ValueError, ImportError, OSError) as exc:
        raise BundleError(f"{path}: the node cannot open this model ({exc})") from None
    info.update(model=meta.model, model_version=getattr(meta, "model_version", ""),
                classes=list(meta.classes), data_card_sha256=getattr(meta, "data_card_sha256", "") or None)
    test, where = read_selftest(meta, path)
    if test is None:
        raise BundleError(f"{path}: no stored self-test window; re-export it with `python -m host_training "
                          "export` so `edge_runtime check` can verify it on the node")
    info["selftest"] = {"where": where, "classes": list(meta.classes), "probs": test.get("probs"),
                        "atol": test.get("atol", 1e-3)}
    return info


def download_wheels(out: Path, platform_tag: str, python_version: str, requirements) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--implementation",
           "cp", "--python-version", python_version, "-d", str(out)]
    for tag in platform_tags(platform_tag):
        cmd += ["--platform", tag]
    log.info("pip download for %s, Python %s: %s", platform_tag, python_version, " ".join(requirements))
    proc = subprocess.run(cmd + list(requirements), capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise BundleError(f"pip download for {platform_tag} / Python {python_version} failed: {last}")


def cache_folder() -> Path:
    """``$SEISMICTORCH_CACHE`` or ``~/.cache/seismictorch``: target wheels and the arm64 sysroot."""
    import os

    return Path(os.environ.get("SEISMICTORCH_CACHE") or Path.home() / ".cache" / "seismictorch")


def cached_wheels(platform_tag: str = DEFAULT_PLATFORM, python_version: str = DEFAULT_PYTHON,
                  requirements=None, cache=None) -> Path:
    """Target wheels downloaded once into the cache, keyed by platform, Python and requirements.

    The folder (``<cache>/wheels/<platform>-cp<ver>-<key>``) appears only when the download is
    complete, so an interrupted run leaves nothing half-filled; a second call needs no network.
    Use it as ``build_bundle(..., wheelhouse=...)``.
    """
    import os

    requirements = list(REQUIREMENTS if requirements is None else requirements)
    key = hashlib.sha256(json.dumps([platform_tags(platform_tag), python_version, sorted(requirements)])
                         .encode()).hexdigest()[:12]
    cp = "cp" + python_version.replace(".", "")
    folder = Path(cache or cache_folder()) / "wheels" / f"{platform_tag}-{cp}-{key}"
    if (folder / "requirements.txt").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        download_wheels(partial, platform_tag, python_version, requirements)
        (partial / "requirements.txt").write_text("\n".join(requirements) + "\n")
        partial.rename(folder)
    except OSError:
        if not (folder / "requirements.txt").is_file():  # not another run's complete copy either
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _installed_closure(requirements) -> list:
    """Distributions installed here that the requirements pull in (extras ignored)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen, todo, dists = set(), [Requirement(r) for r in requirements], []
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise BundleError(f"--wheels-from-env: {req.name} is not installed in {sys.prefix}") from None
        dists.append(dist)
        todo += [Requirement(r) for r in dist.requires or []]
    return dists


def source_date_epoch() -> int:
    """``$SOURCE_DATE_EPOCH`` (reproducible builds), else 1980-01-01, the earliest a zip holds:
    the time stamped on every member of a repacked wheel."""
    import os

    try:
        return max(int(os.environ.get("SOURCE_DATE_EPOCH", "")), ZIP_EPOCH)
    except ValueError:
        return ZIP_EPOCH


ZIP_EPOCH = 315_532_800  # 1980-01-01T00:00:00Z


def _zip_member(arcname: str, mode: int, date_time: tuple) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if mode & 0o111 else 0o100644) << 16
    info.create_system = 3  # unix: the mode above is read
    return info


def repack_wheel(dist, out: Path) -> Path:
    """Write an installed distribution back into a wheel (the files of its RECORD).

    Reproducible: members in sorted order, each stamped :func:`source_date_epoch` with mode
    644 or 755, so the same installed files give a byte-identical wheel every time and a
    node reuses the venv of an upgrade whose dependencies did not change.
    """
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise BundleError(f"{dist.metadata['Name']}: installed without a WHEEL file; cannot repack")
    pys, abis, plats = (sorted({t.split("-")[i] for t in tags}) for i in range(3))
    name = re.sub(r"[-.]+", "_", dist.metadata["Name"])
    path = out / f"{name}-{dist.version}-{'.'.join(pys)}-{'.'.join(abis)}-{'.'.join(plats)}.whl"
    root = Path(dist.locate_file(""))
    stamp = time.gmtime(source_date_epoch())[:6]
    members = sorted({str(f) for f in dist.files or []})
    record_name = next((m for m in members if m.endswith(".dist-info/RECORD")), None)
    if record_name is None:
        raise BundleError(f"{dist.metadata['Name']}: no RECORD; cannot repack")
    rows = []
    # Deflated (fast level) like a PyPI wheel: the bundle and its copy to the node stay small.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for arcname in members:
            if arcname.startswith("..") or "__pycache__" in arcname or arcname.endswith(".pyc"):
                continue  # console scripts and byte code: pip makes its own
            if arcname == record_name or arcname.rsplit("/", 1)[-1] in ("INSTALLER", "REQUESTED",
                                                                         "direct_url.json"):
                continue
            data = (root / arcname).read_bytes()
            zf.writestr(_zip_member(arcname, (root / arcname).stat().st_mode, stamp), data, compresslevel=1)
            digest = hashlib.sha256(data).digest()
            rows.append((arcname, "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
                         str(len(data))))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows + [(record_name, "", "")])
        zf.writestr(_zip_member(record_name, 0o644, stamp), buf.getvalue(), compresslevel=1)
    return path


def _unit_text(text: str, model_file: str) -> str:
    """The repository's unit with paths into the active release and its model."""
    current = f"{INSTALL_ROOT}/current"
    text = text.replace(f"{INSTALL_ROOT}/.venv/", f"{current}/venv/")
    text = text.replace(f"file://{INSTALL_ROOT}/docs/", f"file://{current}/docs/")
    lines = []
    for line in text.splitlines():
        if line.startswith("ExecStartPre=") and " check " in line:
            line += f" {current}/{model_file}"
        elif line.startswith("ExecStart=") and " run " in line:
            line += f" --model {current}/{model_file}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".pyc")])


def build_bundle(out="dist", *, chosen=None, model=None, platform_tag=DEFAULT_PLATFORM,
                 python_version=DEFAULT_PYTHON, version=None, config=None, wheels_from_env=False,
                 wheelhouse=None, requirements=None, compresslevel=6, network=False) -> dict:
    """Build the bundle; return its ``bundle.json`` plus ``path``, ``bytes`` and ``seconds``.

    Parameters
    ----------
    out : str or Path
        Folder for the ``.tar.gz``.
    chosen, model :
        ``chosen_model.json`` of ``python -m quantization choose``, or a model file.
    platform_tag, python_version : str
        Target wheels (default Raspberry Pi OS 64-bit: ``manylinux_2_17_aarch64``, ``3.11``).
    version : str, optional
        Release name (default :func:`default_version`: commit, model and bundle hashes).
    wheels_from_env : bool
        Repack this Python's installed wheels (target must be this machine's platform).
    wheelhouse : str or Path, optional
        Folder of ready wheels to use as they are (no download).
    network : bool
        Ship the ``network`` extra's wheels even when the shipped config turns no output on
        that needs them (a node keeps its own config across upgrades); see
        :func:`network_requirements`.
    """
    t0 = time.perf_counter()
    arch = _check_target(platform_tag, python_version)
    model_path, fallbacks, choice = resolve_choice(chosen, model)
    if version is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+_-]*", version):
        raise BundleError(f"--version {version!r}: use letters, digits and . + _ -")
    reqs = _requirements(requirements, model_path)
    if wheels_from_env:
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if arch != host_platform.machine() or python_version != here:
            raise BundleError(f"--wheels-from-env builds for this machine only ({host_platform.machine()}, "
                              f"Python {here}); target is {arch}, Python {python_version}")
    config = Path(config) if config else REPO / "deploy" / "node.toml"
    node_config = check_node_config(config, f"model/{model_path.name}")
    reqs += [spec for spec in network_requirements(node_config, network) if spec not in reqs]
    commit, dirty = git_commit()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".bundle-") as tmp:
        top = Path(tmp) / "staged"
        (top / "wheels").mkdir(parents=True)
        models = _stage(top, model_path, fallbacks, config)
        _add_wheels(top / "wheels", platform_tag, python_version, reqs, wheelhouse, wheels_from_env)
        version = version or default_version(commit, dirty, models[0]["sha256"], top)
        name = f"seismictorch-node-{version}-{arch}"
        top = top.rename(Path(tmp) / name)
        wheels = sorted(p.name for p in (top / "wheels").glob("*.whl"))
        info = {
            "name": name, "version": version, "git_commit": commit, "git_dirty": dirty,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": {"arch": arch, "platform": platform_tag, "python": python_version},
            # what install.py asks pip for: the specs for downloaded wheels, the bare names for
            # wheels taken as they are (their versions are whatever was installed or given)
            "requirements": [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] if (wheels_from_env or wheelhouse)
                             else r.split(";")[0] for r in reqs],
            "model": models[0], "fallback_models": models[1:],
            "data_card_sha256": models[0].get("data_card_sha256"),
            "selftest_expected": models[0]["selftest"],
            "choice": {k: choice.get(k) for k in ("model", "runtime", "scheme", "accuracy",
                                                  "latency_p50_us", "source") if k in choice},
            "wheels": wheels, "wheels_bytes": sum((top / "wheels" / w).stat().st_size for w in wheels),
            "unpacked_bytes_without_venv": None,
            "install_root": INSTALL_ROOT,
        }
        target = _pack(top, info, out, compresslevel)
    info.update(path=str(target), bytes=target.stat().st_size, seconds=time.perf_counter() - t0)
    return info


def default_version(commit: str, dirty: bool, model_sha256: str, staged: Path) -> str:
    """``<project version>+g<commit>.m<model>.b<bundle>[-dirty]``: the release name follows the
    code and the model.

    ``g``: the first 8 hex of the commit; ``m``: of the chosen model's sha256; ``b``: of
    every file staged (code, models, config, wheels, installer), so a retrained model or an
    edited config gets a new version without a commit, and a rebuild of the same inputs the
    same one; ``-dirty`` when edge_runtime/ or deploy/ differ from the commit.
    """
    files = sorted(p for p in staged.rglob("*") if p.is_file())
    content = hashlib.sha256("".join(f"{sha256_file(p)}  {p.relative_to(staged).as_posix()}\n"
                                     for p in files).encode()).hexdigest()
    return (f"{project_version()}+g{commit[:8]}.m{model_sha256[:8]}.b{content[:8]}"
            f"{'-dirty' if dirty else ''}")


def check_node_config(config: Path, model_file: str):
    """Read ``config`` as the node will (``edge_runtime.config``; the unit passes the model
    as ``--model``): its NodeConfig, or BundleError, one line naming the file, section and
    key, before the build."""
    from edge_runtime.config import ConfigError, build_config, read_toml

    if not config.is_file():
        raise BundleError(f"--config {config}: no such file")
    try:
        return build_config(read_toml(config), {"model": f"{INSTALL_ROOT}/current/{model_file}"},
                            source=str(config))
    except ConfigError as exc:
        raise BundleError(f"--config {exc}") from None


# NodeConfig attributes whose output imports the `network` extra (pymseed, paho-mqtt); the
# status page ([web]) and the StationXML need only the standard library.
NETWORK_OUTPUTS = {"archive": "[archive] path", "seedlink_listen": "[seedlink] listen",
                   "mqtt_broker": "[mqtt] broker"}


def network_requirements(node_config, always: bool = False) -> list[str]:
    """The ``network`` extra's pins when ``node_config`` turns on an output that imports it
    (:data:`NETWORK_OUTPUTS`) or ``always``; else none (a node without them imports numpy,
    onnxruntime and pyserial only)."""
    if always or any(getattr(node_config, attr, None) for attr in NETWORK_OUTPUTS):
        return extra_requirements("network")
    return []


def _check_target(platform_tag: str, python_version: str) -> str:
    """The target's architecture; BundleError for a Python or platform the node cannot run."""
    arch = target_arch(platform_tag)
    if not re.fullmatch(r"3\.\d+", python_version):
        raise BundleError(f"--python-version {python_version}: give major.minor, e.g. 3.11")
    if tuple(int(v) for v in python_version.split(".")) < (3, 11):
        # edge_runtime reads its config with tomllib and install.py hashes with file_digest
        raise BundleError(f"--python-version {python_version}: the node needs Python 3.11 or newer "
                          "(Raspberry Pi OS Bookworm ships 3.11)")
    return arch


def _requirements(requirements, model_path: Path) -> list[str]:
    """The node's pins with each ``--require`` replacing the default of its package, plus
    the pins of the model's runtime when it is not in the edge set (LiteRT for ``.tflite``)."""
    reqs = list(REQUIREMENTS)
    for spec in requirements or []:  # --require replaces the default of the same package
        reqs = [r for r in reqs if requirement_name(r) != requirement_name(spec)] + [spec]
    try:
        extra = runtime_for(model_path).extra
    except ValueError as exc:  # a file no runtime opens
        raise BundleError(str(exc)) from None
    reqs += [spec for spec in (extra_requirements(extra) if extra else []) if spec not in reqs]
    return reqs


def _stage(top: Path, model_path: Path, fallbacks: list, config: Path) -> list[dict]:
    """Copy into ``top`` the node package, models, config, systemd files, the node's docs and
    the installer; return the models' summaries (the chosen one first)."""
    _copy_tree(REPO / "edge_runtime", top / "app" / "edge_runtime")
    (top / "model").mkdir()
    models = [model_summary(model_path)] + [model_summary(p) for p in fallbacks]
    for p in [model_path, *fallbacks]:
        shutil.copy2(p, top / "model" / p.name)
    (top / "config").mkdir()
    shutil.copy2(config, top / "config" / "node.toml")
    sysd = top / "systemd"
    sysd.mkdir()
    unit = (REPO / "deploy" / "systemd" / "seismictorch-node.service").read_text()
    (sysd / "seismictorch-node.service").write_text(_unit_text(unit, models[0]["file"]))
    for extra in ("seismictorch.conf", "99-seismictorch-board.rules"):
        shutil.copy2(REPO / "deploy" / "systemd" / extra, sysd / extra)
    # The service user, created by systemd-sysusers at boot (works for an SD card too).
    (sysd / "seismictorch.sysusers").write_text(
        'u seismictorch - "SeismicTorch node" /var/lib/seismictorch /usr/sbin/nologin\n'
        "m seismictorch dialout\n")
    (top / "docs").mkdir()
    shutil.copy2(REPO / "docs" / "node.md", top / "docs" / "node.md")
    shutil.copy2(REPO / "deploy" / "install.py", top / "install.py")
    return models


def _add_wheels(folder: Path, platform_tag: str, python_version: str, reqs: list, wheelhouse,
                wheels_from_env: bool) -> None:
    """The target's wheels into ``folder``: from a wheelhouse, repacked from this Python, or
    downloaded."""
    if wheelhouse:
        found = sorted(Path(wheelhouse).glob("*.whl"))
        if not found:
            raise BundleError(f"--wheelhouse {wheelhouse}: no .whl files there")
        for w in found:
            shutil.copy2(w, folder / w.name)
    elif wheels_from_env:
        for dist in _installed_closure(reqs):
            repack_wheel(dist, folder)
    else:
        download_wheels(folder, platform_tag, python_version, reqs)


def _pack(top: Path, info: dict, out: Path, compresslevel: int) -> Path:
    """Write ``bundle.json`` (with the unpacked size) and the manifest into ``top``, then the
    ``.tar.gz`` into ``out`` (manifest first; renamed into place when complete)."""
    (top / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
    files = sorted(p for p in top.rglob("*") if p.is_file())
    info["unpacked_bytes_without_venv"] = sum(p.stat().st_size for p in files)
    (top / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
    files = sorted(p for p in top.rglob("*") if p.is_file())
    lines = [f"{sha256_file(p)}  {p.relative_to(top).as_posix()}\n" for p in files]
    (top / MANIFEST).write_text("".join(lines))
    name = top.name
    target = out / f"{name}.tar.gz"
    part = target.with_name(target.name + ".part")
    with tarfile.open(part, "w:gz", compresslevel=compresslevel) as tar:
        # MANIFEST first: the installer reads it before any other member.
        tar.add(top / MANIFEST, arcname=f"{name}/{MANIFEST}")
        for p in files:
            tar.add(p, arcname=f"{name}/{p.relative_to(top).as_posix()}")
    part.replace(target)
    return target


def format_summary(info: dict) -> str:
    m = info["model"]
    lines = [f"bundle {info['path']}  ({info['bytes'] / 1e6:.1f} MB, built in {info['seconds']:.1f} s)",
             f"  version {info['version']}  commit {info['git_commit'][:12]}"
             f"{' (uncommitted changes)' if info['git_dirty'] else ''}",
             f"  target {info['target']['arch']} ({info['target']['platform']}), Python "
             f"{info['target']['python']}",
             f"  model {m['file']} ({m['runtime']}, {m['bytes'] / 1e3:.0f} kB, sha256 {m['sha256'][:16]}...)"]
    for f in info["fallback_models"]:
        lines.append(f"  fallback {f['file']} ({f['runtime']}, {f['bytes'] / 1e3:.0f} kB)")
    lines.append(f"  data card sha256 {info['data_card_sha256'] or '(none in the model)'}")
    probs = info["selftest_expected"]["probs"] or []
    lines.append("  self-test expects " + ", ".join(
        f"{c} {p:.4f}" for c, p in zip(info["selftest_expected"]["classes"], probs, strict=False)))
    lines.append(f"  wheels ({info['wheels_bytes'] / 1e6:.1f} MB): " + ", ".join(info["wheels"]))
    lines.append(f"  unpacked {info['unpacked_bytes_without_venv'] / 1e6:.1f} MB; the installed size "
                 "(with its venv) is printed by the deploy")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--chosen", help="chosen_model.json from `python -m quantization choose`")
    p.add_argument("--model", help="a model file to ship instead of a quantization choice")
    p.add_argument("--out", default="dist", help="output folder")
    p.add_argument("--platform", default=DEFAULT_PLATFORM,
                   help="target wheel platform (Raspberry Pi OS 64-bit: manylinux_2_17_aarch64; "
                        "'host' = this machine)")
    p.add_argument("--python-version", default=DEFAULT_PYTHON, help="target Python (major.minor)")
    p.add_argument("--version", default=None,
                   help="release name (default <project version>+g<commit>.m<model sha256>.b<bundle "
                        "content sha256>, -dirty for uncommitted edge_runtime/ or deploy/)")
    p.add_argument("--config", default=None, help="node.toml to ship (default deploy/node.toml)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wheels-from-env", action="store_true",
                     help="repack the wheels installed in this Python (offline; this machine's platform)")
    src.add_argument("--wheelhouse", help="folder of ready target wheels (no download)")
    p.add_argument("--require", action="append", default=[], metavar="SPEC",
                   help="pip requirement replacing the default of that package, e.g. "
                        f"'onnxruntime>=1.17' (default {', '.join(REQUIREMENTS)})")
    p.add_argument("--network", action="store_true",
                   help="ship the network extra's wheels (pymseed, paho-mqtt) even when --config turns "
                        "on no [archive], [seedlink] or [mqtt]: for nodes whose own config does "
                        "(install.py keeps a node's config)")


def main_bundle(args) -> int:
    platform_tag = host_platform_tag() if args.platform == "host" else args.platform
    python_version = args.python_version
    if args.platform == "host" and args.wheels_from_env:
        python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        info = build_bundle(args.out, chosen=args.chosen, model=args.model, platform_tag=platform_tag,
                            python_version=python_version, version=args.version, config=args.config,
                            wheels_from_env=args.wheels_from_env, wheelhouse=args.wheelhouse,
                            requirements=args.require, network=args.network)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(info))
    return 0
