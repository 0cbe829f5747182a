"""The node's dependency pins, read from the one place they are written: ``pyproject.toml``.

``[project.optional-dependencies]`` ``edge`` lists what every node installs (numpy,
onnxruntime, pyserial); an optional runtime's extra (``tflite`` for LiteRT, see
:data:`edge_runtime.backends.RUNTIMES`) what a node running that runtime adds. The bundle
(``tools bundle``) asks :func:`extra_requirements` and adds only its own documented cap
(:data:`BUNDLE_CAPS`). From a source tree the file is read; from an installed package,
its installed metadata (the same lists).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

DISTRIBUTION = "seismictorch"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# Caps the bundle adds to the edge pins, with why: onnxruntime >= 1.27 crashes at import under
# Debian 12's qemu-user 7.2, the emulator the off-device aarch64 check (tools bundle-qemu) runs
# on; 1.26 runs there and on the Pi (opset <= 23). qemu-user 10.0 (bookworm-backports) runs
# 1.32: check a --require 'onnxruntime>=1.17' bundle with `tools bundle-qemu --qemu` that emulator.
BUNDLE_CAPS = {"onnxruntime": "<1.27"}

_MARKER = re.compile(r"""^\s*(?P<spec>[^;]+?)\s*;\s*extra\s*==\s*["'](?P<extra>[^"']+)["']\s*$""")


def requirement_name(spec: str) -> str:
    """The distribution name of a requirement (``"onnxruntime>=1.17,<1.27"`` -> ``onnxruntime``)."""
    return re.split(r"[<>=!~;\[ ]", spec.strip(), maxsplit=1)[0].lower()


def extra_requirements(extra: str = "edge", pyproject: Path | None = None) -> list:
    """The requirements of one ``pyproject.toml`` extra, in their written order.

    Parameters
    ----------
    extra : str
        ``edge`` (the node) or an optional runtime's extra (``tflite``).
    pyproject : Path, optional
        The file to read (default: the source tree's, else the installed metadata).

    Raises
    ------
    ValueError
        No such extra, or neither a ``pyproject.toml`` nor an installed distribution to read.
    """
    path = PYPROJECT if pyproject is None else Path(pyproject)
    if path.is_file():
        extras = tomllib.loads(path.read_text())["project"].get("optional-dependencies", {})
        if extra not in extras:
            raise ValueError(f"{path}: no extra {extra!r} (it has {', '.join(sorted(extras))})")
        return list(extras[extra])
    from importlib import metadata

    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        raise ValueError(f"neither {path} nor an installed {DISTRIBUTION} to read the {extra!r} pins "
                         "from") from None
    found = [m["spec"] for m in map(_MARKER.match, requires) if m and m["extra"] == extra]
    if not found:
        raise ValueError(f"installed {DISTRIBUTION}: no extra {extra!r}")
    return found


def bundle_requirements(pyproject: Path | None = None) -> list:
    """The node's pins for a bundle: the ``edge`` extra with :data:`BUNDLE_CAPS` added."""
    out = []
    for spec in extra_requirements("edge", pyproject):
        cap = BUNDLE_CAPS.get(requirement_name(spec))
        out.append(f"{spec},{cap}" if cap else spec)
    return out
