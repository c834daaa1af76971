"""The project's import graph: no cycles anywhere, and every arrow points down the layers.

Every import statement counts, at module level or inside a function (a lazy import is still a
dependency), in .py files and in Cython's .pyx/.pxd (cimport too). Layers, from the bottom:

  clikit                      the entry points' conventions: imports nothing of the project
  alloc                       imports nothing of the project but clikit
  rpcsrv.proto                the floor of rpcsrv: imports only itself (and alloc)
  rpcsrv.svc, .xprt, .export  stand on proto (and alloc); not on each other
  rpcsrv.nfsd                 stands on svc, export and proto
  rpcsrv.fast                 the compiled request path: stands on svc, xprt and proto
  rpcsrv.server               wires them together; rpcsrv.__main__ is on top
  loadgen                     imports neither alloc nor rpcsrv (an outside client)
"""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("clikit", "alloc", "rpcsrv", "loadgen")

#: rpcsrv part -> the rpcsrv parts it may import (besides itself); alloc is allowed everywhere in rpcsrv
RPCSRV_ALLOWED = {
    "proto": set(),
    "svc": {"proto"},
    "xprt": {"proto"},
    "export": {"proto"},
    "nfsd": {"proto", "svc", "export"},
    "fast": {"proto", "svc", "xprt"},
    "server": {"proto", "svc", "xprt", "export", "nfsd", "fast"},
    "__main__": {"proto", "svc", "xprt", "export", "nfsd", "fast", "server"},
    "__init__": set(),
}

_CY = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\s+([\w, ()*]+)|c?import\s+([\w., ]+))", re.M)


def _modules():
    """{module name: path} of every .py/.pyx/.pxd file of the project's packages."""
    mods = {}
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, pkg)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for fn in filenames:
                base, ext = os.path.splitext(fn)
                if ext not in (".py", ".pyx", ".pxd"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, base), ROOT).split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                name = ".".join(rel)
                mods.setdefault(name, []).append(os.path.join(dirpath, fn))
    return mods


def _resolve(name, mods):
    """The longest prefix of a dotted name that is one of our modules, or None."""
    parts = name.split(".")
    while parts:
        n = ".".join(parts)
        if n in mods:
            return n
        parts.pop()
    return None


def _imports(path, modname, is_pkg):
    """Dotted names a file imports (from X import y also yields X.y, in case y is a module)."""
    text = open(path, encoding="utf-8").read()
    out = []
    if path.endswith(".py"):
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                out.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = modname.split(".")
                    if not is_pkg:
                        base = base[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module
                subs = [mod + "." + a.name for a in node.names if a.name != "*"]
                # `from pkg import mod` depends on pkg.mod; the bare pkg only when a name is not a module
                out.append((mod, subs))
                out.extend(subs)
    else:
        for m in _CY.finditer(text):
            if m.group(1):
                out.append(m.group(1))
                out.extend(m.group(1) + "." + n.strip(" ()") for n in m.group(2).split(",") if n.strip(" ()"))
            else:
                out.extend(n.strip().split(" as ")[0] for n in m.group(3).split(","))
    return out


def graph():
    mods = _modules()
    g = {m: set() for m in mods}
    for m, paths in mods.items():
        for path in paths:
            is_pkg = os.path.basename(path).startswith("__init__.")
            for name in _imports(path, m, is_pkg):
                if isinstance(name, tuple):
                    name, subs = name
                    if subs and all(x in mods for x in subs):
                        continue
                t = _resolve(name, mods)
                if t is not None and t != m:
                    g[m].add(t)
    return g


def cycles(g):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    g = graph()
    # a known arrow of each kind: relative, absolute, Cython cimport
    assert "rpcsrv.proto.xdr" in g["rpcsrv.proto.rpcmsg"]
    assert "rpcsrv.svc.svc" in g["rpcsrv.server"]
    assert "alloc._core" in g["rpcsrv.xprt._pageio"]


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def _part(mod):
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_dependencies_point_down(pkg):
    g = graph()
    bad = []
    for m, deps in g.items():
        if m.split(".")[0] != pkg:
            continue
        for d in deps:
            top = d.split(".")[0]
            if top == "clikit" and pkg != "clikit":
                continue                      # every package may use the entry points' conventions
            if pkg == "clikit" and top != "clikit":
                bad.append((m, d))
            elif pkg == "alloc" and top not in ("alloc", "clikit"):
                bad.append((m, d))
            elif pkg == "loadgen" and top in ("alloc", "rpcsrv"):
                bad.append((m, d))
            elif pkg == "rpcsrv" and top == "loadgen":
                bad.append((m, d))
            elif pkg == "rpcsrv" and top == "rpcsrv":
                mine, theirs = _part(m), _part(d)
                if theirs != mine and theirs not in RPCSRV_ALLOWED[mine]:
                    bad.append((m, d))
    assert bad == []
