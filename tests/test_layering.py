"""The layering the design promises, checked on every import statement in the tree (function-
level imports included), so a forbidden import fails here the day it is added:

  server/sched/  the scheduling core: no asyncio, HTTP, torch, workers, shm or loadgen, and
                 nothing of server/ outside itself (models' torch-free formats only)
  server/        never imports loadgen/
  workers/ shm/  know nothing of HTTP, policies or loadgen
  models/        knows no server, transport, process or loadgen
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "workers", "shm", "models", "loadgen")

# package prefix -> imports it must never make (a module or any of its submodules)
FORBIDDEN = {
    "server.sched": ("asyncio", "aiohttp", "uvloop", "torch", "prometheus_client", "loadgen",
                     "workers", "shm", "server.app", "server.dispatcher", "server.runner",
                     "server.protocol", "server.metrics", "server.bench", "server.clients",
                     "server.config", "server.launch", "server.keepawake", "server.margin"),
    "server": ("loadgen",),
    "workers": ("server", "loadgen", "aiohttp"),
    "shm": ("server", "workers", "loadgen", "models", "aiohttp"),
    "models": ("server", "workers", "shm", "loadgen", "aiohttp"),
}
# What the core may take from outside itself: the profile and predictions formats.
CORE_ALLOWED_PROJECT = ("server.sched", "models.profile_format", "models.predictions")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            out.append((node.lineno, base))
            # `from server import app` names a module too
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*"]
    return out


def _hits(name: str, banned: str) -> bool:
    return name == banned or name.startswith(banned + ".")


def violations(root: Path = ROOT) -> list[str]:
    bad = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            mod = module_name(path) if root == ROOT else \
                ".".join(path.relative_to(root).with_suffix("").parts)
            rules = [(p, b) for p, bs in FORBIDDEN.items() if _hits(mod, p) for b in bs]
            core = _hits(mod, "server.sched")
            for line, name in imports(path):
                for prefix, banned in rules:
                    if _hits(name, banned) and not _hits(name, prefix):
                        bad.append(f"{path.relative_to(root)}:{line}: {mod} imports {name} "
                                   f"({prefix} must not import {banned})")
                if core and name.split(".")[0] in PACKAGES and \
                        not any(_hits(name, a) for a in CORE_ALLOWED_PROJECT):
                    bad.append(f"{path.relative_to(root)}:{line}: the core imports {name}")
    return sorted(set(bad))


def test_the_tree_keeps_its_layers():
    assert violations() == []


@pytest.mark.parametrize(("where", "line", "expect"), [
    ("server/sched/policies/extra.py", "import asyncio", "asyncio"),
    ("server/sched/extra.py", "from server.metrics import Metrics", "server.metrics"),
    ("server/sched/extra.py", "from ..dispatcher import Dispatcher", "server.dispatcher"),
    ("server/extra.py", "def f():\n    from loadgen.simulate import simulate", "loadgen"),
    ("workers/extra.py", "import server.sched", "server"),
    ("models/extra.py", "from shm import ring", "shm"),
])
def test_a_forbidden_import_is_caught(tmp_path, monkeypatch, where, line, expect):
    path = ROOT / where
    assert not path.exists()
    path.write_text(line + "\n")
    try:
        found = violations()
    finally:
        path.unlink()
    assert len(found) >= 1 and all(where in f for f in found) and expect in found[0]


# The ray extra is optional: only these modules may import it, and nothing on the
# single-machine path imports them (server/runner.py loads RayPool only for --ray).
RAY_MODULES = ("server.raypool", "server.raylocal", "server.raybench")


def ray_violations(root: Path = ROOT) -> list[str]:
    bad = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            mod = module_name(path)
            for line, name in imports(path):
                if _hits(name, "ray") and mod not in RAY_MODULES:
                    bad.append(f"{path.relative_to(root)}:{line}: {mod} imports {name}")
    return bad


def test_only_the_ray_modules_import_ray():
    assert ray_violations() == []


def loaded_by(modules: str, watch: set[str]) -> list[str]:
    """Which of `watch` a fresh interpreter has loaded after importing `modules`."""
    code = (f"import json, sys, {modules}; "
            f"print(json.dumps(sorted(set({sorted(watch)!r}) & set(sys.modules))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def test_the_single_machine_path_loads_no_ray():
    assert loaded_by("server.__main__, server.runner, server.dispatcher, server.bench, "
                     "workers.pool, workers.agent, loadgen.cli, loadgen.simulate",
                     {"ray"}) == []


def test_importing_the_core_loads_no_event_loop_http_or_torch():
    assert loaded_by("server.sched.scheduler, server.sched.policies, server.sched.gearplan",
                     {"asyncio", "aiohttp", "torch", "loadgen"}) == []
