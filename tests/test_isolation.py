"""edge_runtime runs with numpy, onnxruntime and pyserial only.

A child interpreter blocks every import of torch, scipy, obspy, h5py, matplotlib, tqdm
and the host packages, then imports every edge_runtime module, loads an exported model
and runs frames through the live pipeline.
"""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO, python_env

ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime", "serial"}
# Optional runtimes and the network extra (paho-mqtt, pymseed): imported only inside functions
# (lazily), never at module level; blocked below, so the node imports without them.
OPTIONAL_LAZY = {"ai_edge_litert", "paho", "pymseed"}
BLOCKED = ["torch", "scipy", "obspy", "h5py", "matplotlib", "tqdm", "onnx", "onnxsim",
           "host_training", "quantization", "tools", "ai_edge_litert", "paho", "pymseed"]

# A child interpreter's first lines: every import of a name in argv[2] (comma-separated) fails.
BLOCK_IMPORTS = r"""
import importlib.abc, sys
BLOCKED = set(sys.argv[2].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {name} in the edge environment")
        return None

sys.meta_path.insert(0, Block())
"""

# Its last: 60 frames of noise through ``pipe``, no blocked module loaded, the windows printed.
FEED_60_FRAMES = r"""rng = np.random.default_rng(0)
dec = FrameDecoder()
for i in range(60):
    counts = (rng.standard_normal((10, 3)) * 50).astype(np.int32)
    for frame in dec.feed(encode_frame(i, 1_767_225_600_000_000 + i * 100_000, 100.0, counts)):
        pipe.on_frame(frame)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("windows", pipe.counts["windows"])
"""

CHILD = BLOCK_IMPORTS + r"""import pkgutil, importlib, numpy as np
import edge_runtime
for mod in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime."):
    importlib.import_module(mod.name)

from edge_runtime.backends import OnnxBackend
from edge_runtime.protocol import FrameDecoder, encode_frame
from edge_runtime.service import NodeConfig, Pipeline

backend = OnnxBackend(sys.argv[1])
pipe = Pipeline(backend, NodeConfig(port="unused", model=sys.argv[1]))
""" + FEED_60_FRAMES


def test_edge_runtime_runs_without_host_packages(tiny_model):
    result = subprocess.run([sys.executable, "-c", CHILD, str(tiny_model["sim"]), ",".join(BLOCKED)],
                            capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    # 6 s of samples, 2 s windows every 0.25 s: 17 windows classified.
    assert "windows 17" in result.stdout


def test_edge_runtime_source_imports_only_allowed_modules():
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((REPO / "edge_runtime").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                optional = top in OPTIONAL_LAZY and id(node) in lazy
                assert top in stdlib or top in ALLOWED_THIRD_PARTY or top == "edge_runtime" or optional, \
                    f"{path.name} imports {name}" + (" at module level" if top in OPTIONAL_LAZY else "")


def test_edge_extra_lists_only_the_edge_packages():
    import tomllib

    extras = tomllib.loads(Path(REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = sorted(d.split(">")[0].split("=")[0].split("<")[0].strip() for d in extras["edge"])
    assert names == ["numpy", "onnxruntime", "pyserial"]


# The SeedLink output without the network extra: not imported unless configured, then one line.
SEEDLINK_CHILD = BLOCK_IMPORTS + r"""import sys
from edge_runtime.config import NodeConfig
from edge_runtime.logs import LimitedLog
from edge_runtime.outputs import OutputContext, build_sink

ctx = OutputContext(("E", "N", "Z"), 2.0, LimitedLog(None))
sink = build_sink(NodeConfig(port="unused", model="unused"), ctx)
assert "edge_runtime.network.seedlink" not in sys.modules, "imported though not configured"
try:
    build_sink(NodeConfig(port="unused", model="unused", seedlink_listen="127.0.0.1:0"), ctx)
except ValueError as exc:
    print("refused:", exc)
"""


def test_seedlink_output_is_imported_only_when_configured(tmp_path):
    result = subprocess.run([sys.executable, "-c", SEEDLINK_CHILD, "", ",".join(BLOCKED)],
                            capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused: miniSEED outputs need the network extra" in result.stdout
