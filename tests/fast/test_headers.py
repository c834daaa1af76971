"""The compiled path's C headers (rpcsrv/fast/*.h): each compiles on its own, and their
#include "..." graph has no cycle.

Each header includes what it uses, so it compiles alone with the flags setup.py builds the
extension with (-D_GNU_SOURCE, -I rpcsrv/fast): none relies on what an includer happened to
include before it. The top of the graph is fp_process.h, the header _fast_decl.pxi declares the
C parts from (fp_stats.h, the counters, is a root of its own)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAST = ROOT / "rpcsrv" / "fast"
HEADERS = sorted(p.name for p in FAST.glob("*.h"))
LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
EXTERN_FROM = re.compile(r'^cdef extern from "([^"]+)"', re.M)


def include_graph() -> dict[str, list[str]]:
    """header -> the headers it includes with #include "..." (in order)"""
    return {h: LOCAL_INCLUDE.findall((FAST / h).read_text()) for h in HEADERS}


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of the graph as a path (its first node repeated at the end), or None."""
    state: dict[str, int] = {}                          # absent: unseen, 1: on the path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in graph.get(n, ()):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        path.pop()
        state[n] = 2
        return None

    for n in graph:
        if n not in state and (c := visit(n)):
            return c
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a.h": ["b.h"], "b.h": ["c.h"], "c.h": ["a.h"]}) == ["a.h", "b.h", "c.h", "a.h"]
    assert find_cycle({"a.h": ["a.h"]}) == ["a.h", "a.h"]
    assert find_cycle({"a.h": ["b.h", "c.h"], "b.h": ["c.h"], "c.h": []}) is None


def test_the_headers_are_there():
    assert {"blake2.h", "fp_core.h", "fp_dir.h", "fp_dirops.h", "fp_process.h", "fp_readdir.h",
            "fp_stats.h", "fp_tables.h"} <= set(HEADERS)


def test_include_graph_has_no_cycle():
    graph = include_graph()
    for h, incs in graph.items():
        for i in incs:
            assert i in graph, f'{h} includes "{i}", which is not a header of rpcsrv/fast'
    assert find_cycle(graph) is None, "include cycle: " + " -> ".join(find_cycle(graph))


DEFINITION = re.compile(r"^(static|typedef|struct|enum|extern)\b")


def test_includes_come_before_any_definition():
    # an #include after code (as fp_dirops.h once included fp_readdir.h at its end) is a header
    # that only compiles where its includer puts it
    for h in HEADERS:
        lines = (FAST / h).read_text().splitlines()
        first = next((i for i, l in enumerate(lines) if DEFINITION.match(l)), len(lines))
        late = [l for l in lines[first:] if re.match(r"\s*#\s*include\b", l)]
        assert not late, f"{h} includes after its first definition: {late}"


def test_readdir_includes_what_it_uses():
    # the cycle this graph had: fp_dirops.h included fp_readdir.h at its end, and fp_readdir.h used
    # fp_dirops.h's names without including it
    graph = include_graph()
    assert "fp_readdir.h" not in graph["fp_dirops.h"]
    assert "fp_dir.h" in graph["fp_readdir.h"] and "fp_dir.h" in graph["fp_dirops.h"]


def reachable(graph: dict[str, list[str]], root: str) -> set[str]:
    seen, todo = set(), [root]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(graph[n])
    return seen


def test_the_declared_headers_reach_every_header():
    # _fast_decl.pxi's `cdef extern from` headers are the roots: together they include every
    # header (none is left out of the build), and each is one of ours
    cython = "".join(f.read_text() for f in sorted([*FAST.glob("*.pyx"), *FAST.glob("*.pxi")]))
    roots = [h for h in EXTERN_FROM.findall(cython) if (FAST / h).exists()]
    assert roots == ["fp_process.h", "fp_stats.h"]
    graph = include_graph()
    assert set().union(*(reachable(graph, r) for r in roots)) == set(HEADERS)


def test_setup_py_depends_on_every_header():
    # the extension is rebuilt when any of its headers changes
    setup = (ROOT / "setup.py").read_text()
    for h in HEADERS:
        assert f'"{h}"' in setup, f"setup.py's depends for rpcsrv.fast._fast does not name {h}"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_alone(header):
    # an implicit declaration is a missing #include: an error here, as in gcc 14 and later
    r = subprocess.run(["gcc", "-fsyntax-only", "-x", "c", "-D_GNU_SOURCE", "-I", str(FAST),
                        "-Werror=implicit-function-declaration", "-Werror=implicit-int", str(FAST / header)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{header} does not compile alone:\n{r.stderr}"
