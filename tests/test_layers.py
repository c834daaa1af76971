"""Layers: packages import only downwards. alloc imports nothing of the project; rpcsrv does not
import loadgen; loadgen (an outside client) imports neither alloc nor rpcsrv; rpcsrv's subpackages
(proto, svc, xprt, export, nfsd, fast, and the server/CLI modules) form no import cycle.

Every import counts, also the ones inside functions: a lazy import is still an arrow."""
from __future__ import annotations

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("alloc", "rpcsrv", "loadgen")
FORBIDDEN = {"alloc": {"rpcsrv", "loadgen"}, "rpcsrv": {"loadgen"}, "loadgen": {"alloc", "rpcsrv"}}


def _modules():
    for pkg in PACKAGES:
        for d, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith((".py", ".pyx", ".pxd", ".pxi")):
                    path = os.path.join(d, f)
                    rel = os.path.relpath(path, ROOT)
                    yield rel, ".".join(rel.rsplit(".", 1)[0].split(os.sep))


def _imports(path: str, modname: str):
    """Absolute names of project modules imported by the file (relative imports resolved)."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    pkg = modname.rsplit(".", 1)[0] if not modname.endswith("__init__") else modname.rsplit(".", 1)[0]
    if path.endswith((".pyx", ".pxd", ".pxi")):      # Cython: (c)import lines only
        for m in re.finditer(r"^\s*(?:from\s+(\.*[\w.]*)\s+c?import|c?import\s+([\w.]+))", src, re.M):
            name = m.group(1) or m.group(2)
            yield _resolve(name, pkg)
        return
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve("." * node.level + (node.module or ""), pkg)
            yield base
            for a in node.names:                 # "from rpcsrv import fast" imports rpcsrv.fast
                yield base + "." + a.name


def _resolve(name: str, pkg: str) -> str:
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    base = pkg.split(".")
    base = base[:len(base) - (level - 1)] if level > 1 else base
    rest = name.lstrip(".")
    return ".".join(base + ([rest] if rest else []))


def _unit(mod: str) -> str:
    """rpcsrv.svc.metrics -> rpcsrv.svc; rpcsrv.server -> rpcsrv.server."""
    parts = mod.split(".")
    return ".".join(parts[:2])


def test_packages_import_only_downwards():
    bad = []
    for rel, mod in _modules():
        top = mod.split(".")[0]
        for imp in _imports(os.path.join(ROOT, rel), mod):
            if imp.split(".")[0] in FORBIDDEN[top]:
                bad.append("%s imports %s" % (rel, imp))
    assert not bad, bad


def test_rpcsrv_subpackages_have_no_cycle():
    edges = {}
    for rel, mod in _modules():
        if not mod.startswith("rpcsrv."):
            continue
        a = _unit(mod)
        for imp in _imports(os.path.join(ROOT, rel), mod):
            if imp.startswith("rpcsrv.") and _unit(imp) != a and _unit(imp) != "rpcsrv.__init__":
                edges.setdefault(a, set()).add(_unit(imp))
    # depth-first search for a cycle
    state, path = {}, []

    def visit(n):
        state[n] = "open"
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = "done"

    for n in sorted(edges):
        if n not in state:
            visit(n)
