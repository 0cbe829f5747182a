"""Which install extra a console script needs, said in one line before any third-party import.

``pip install .`` without extras installs the four console scripts and none of their
packages; ``.[edge]`` the node's packages only. Each script's ``main`` asks
:func:`missing_extra` first, so a missing package is one line naming the extra, not a
``ModuleNotFoundError`` traceback. Standard library only: it runs where numpy is absent.
"""

from __future__ import annotations

import importlib.util

# extra -> the top-level modules (import names) it provides that the scripts import
EXTRA_MODULES = {
    "edge": ("numpy", "onnxruntime", "serial"),
    "host": ("torch", "obspy", "scipy", "h5py", "onnx", "matplotlib", "tqdm"),
}


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a finder that refuses it, a broken package
        return True


def missing_extra(script: str, extras: tuple = ("edge",)) -> str | None:
    """The one line to print when a package of ``extras`` is not installed, else None.

    Parameters
    ----------
    script : str
        What the user ran, e.g. ``seismictorch-host`` or ``seismictorch-tools replay``.
    extras : tuple of str
        Keys of :data:`EXTRA_MODULES` the script needs; the first is the one it is named by.

    Returns
    -------
    str or None
        ``seismictorch-host needs the host extra: pip install '.[host,edge]' in the
        repository (missing: torch, obspy)``, or None when every module is there.
    """
    missing = [m for extra in extras for m in EXTRA_MODULES[extra] if _absent(m)]
    if not missing:
        return None
    return (f"{script} needs the {extras[0]} extra: pip install '.[{','.join(extras)}]' in the "
            f"repository (missing: {', '.join(missing)})")
