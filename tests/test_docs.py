"""The documentation: the site builds in strict mode, the README stays a five-minute read, and
every command and repository path the docs show exists in the current code.

The site (``mkdocs.yml``, pages under ``docs/``) is built with ``mkdocs build --strict`` into a
temporary folder: a broken link or anchor, or a page missing from ``nav``, fails here. The
commands are read from the code blocks and inline code of the README and every page: each
``python -m MODULE`` must be importable, each sub-command and ``--flag`` given to one of the
four package command lines must be one its parser knows, and each ``make TARGET`` a target
of the Makefile.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 150
# The package command lines whose sub-commands and flags are checked against their parsers.
CLI_PACKAGES = ("host_training", "quantization", "edge_runtime", "tools")


def _texts() -> dict[str, str]:
    pages = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md"))}
    return {"README.md": README.read_text(encoding="utf-8"), **pages}


def _code(text: str) -> list[str]:
    """Shell lines of the fenced code blocks (continuations joined) and the inline code spans."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += re.findall(r"`([^`\n]+)`", prose)
    return [re.sub(r"(^|\s)#.*$", "", line).strip() for line in lines]


def _commands(pattern: str) -> list[tuple[str, str]]:
    """(file, matched command) for every code line of every text that matches ``pattern``."""
    found = []
    for name, text in _texts().items():
        for line in _code(text):
            found += [(name, m.group(0)) for m in re.finditer(pattern, line)]
    return found


def test_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.fail("mkdocs and mkdocs-material are not installed: pip install -e '.[dev]' (make test does)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_site_fetches_no_fonts():
    """Material's Google Fonts would be fetched by every reader's browser: off."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+font:\s*false\s*$", config, flags=re.M), "set theme.font: false in mkdocs.yml"


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines, at most {README_MAX_LINES}: move detail to docs/"


def test_readme_quick_start_is_make_demo_and_make_test():
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"```sh\n(.*?)```", section.group(1), flags=re.S)
    assert block, "the quick start has no sh code block"
    commands = [re.sub(r"#.*$", "", line).strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_readme_links_exist():
    text = README.read_text(encoding="utf-8")
    missing = [link for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
               if "://" not in link and not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def test_python_modules_exist():
    missing = sorted({(name, module) for name, cmd in _commands(r"python -m ([\w.]+)")
                      for module in [cmd.split()[-1].rstrip(".")] if not _module_exists(module)})
    assert not missing, "python -m of missing modules:\n" + "\n".join(f"{f}: {m}" for f, m in missing)


def test_repository_paths_exist():
    """Paths into the repository named in code (``edge_runtime/logs.py``, ``deploy/node.toml``)."""
    tops = ("edge_runtime", "host_training", "quantization", "tools", "deploy", "tests", "docs", "firmware")
    missing = sorted({(name, path) for name, text in _texts().items()
                      for span in re.findall(r"`([^`\n]+)`", text)
                      for path in re.findall(r"(?<![\w./-])((?:%s)/[\w./-]*)" % "|".join(tops), span)
                      if not any(c in path for c in "<*") and not (ROOT / path.rstrip(".")).exists()})
    assert not missing, "paths that do not exist:\n" + "\n".join(f"{f}: {p}" for f, p in missing)


def _subparsers(parser):
    actions = getattr(parser, "_subparsers", None)
    return actions._group_actions[0].choices if actions else {}


def _check_cli(tokens: list[str], parser) -> str | None:
    """Walk ``tokens`` down the sub-commands of ``parser``; name the first word or flag it lacks."""
    for token in tokens:
        if token.startswith("-"):
            if token.split("=")[0] not in parser._option_string_actions:
                return f"no flag {token.split('=')[0]}"
        elif choices := _subparsers(parser):
            if token not in choices:
                return f"no sub-command {token!r}"
            parser = choices[token]
    return None


def test_package_commands_match_their_parsers():
    parsers = {p: importlib.import_module(f"{p}.__main__").build_parser() for p in CLI_PACKAGES}
    wrong = []
    for name, cmd in _commands(r"python -m (" + "|".join(CLI_PACKAGES) + r")(?![\w.])[^|;&`]*"):
        try:
            tokens = shlex.split(cmd.replace("...", " "))
        except ValueError:
            tokens = cmd.replace("...", " ").split()
        reason = _check_cli(tokens[3:], parsers[tokens[2]])
        if reason:
            wrong.append(f"{name}: `{cmd}`: {reason}")
    assert not wrong, "commands the current parsers do not accept:\n" + "\n".join(wrong)


def test_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w ]+):(?!=)", makefile, flags=re.M))
    targets = {t for group in targets for t in group.split()}
    missing = sorted({(name, cmd.split()[1]) for name, cmd in _commands(r"\bmake (\w+)")
                      if cmd.split()[1] not in targets})
    assert not missing, f"make targets the Makefile lacks: {missing}"


def test_node_config_table_lists_every_key():
    """docs/node.md's table: every key the node knows, and which of them deploy/node.toml shows."""
    from edge_runtime.config import SETTINGS

    page = (DOCS / "node.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \|.*\| ([\w ]+) \|$", page, flags=re.M)
    assert sorted((s, k) for s, k, _ in rows) == sorted((s.section, s.key) for s in SETTINGS)
    toml_text = (ROOT / "deploy" / "node.toml").read_text(encoding="utf-8")
    present = {(s, k) for s, table in tomllib.loads(toml_text).items() for k in table}
    section, commented = None, set()
    for line in toml_text.splitlines():
        if m := re.match(r"\[(\w+)\]", line):
            section = m.group(1)
        elif m := re.match(r"#\s*(\w+)\s*=", line):
            commented.add((section, m.group(1)))
    for s, k, shown in rows:
        expected = "yes" if (s, k) in present else "commented out" if (s, k) in commented else "no"
        assert shown == expected, f"docs/node.md: [{s}] {k} in deploy/node.toml: {shown!r}, is {expected!r}"
