"""The loadfiles shipped in loadgen/loadfiles: each parses, and replays against rpcsrv with
--strict (every status as the loadfile expects, exit 0), by name and by path."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from loadgen.run import workloads
from loadgen.run.loadfile import parse_file
from nfsbulk_testlib import ROOT, ServerProcess

NAMES = ("seq-write", "metadata", "mixed-rw")


def loadgen(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def test_the_three_are_shipped_and_parse():
    shipped = workloads.shipped_loadfiles()
    assert set(NAMES) <= set(shipped)
    for name in NAMES:
        prog = parse_file(shipped[name])
        assert prog.items, name


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    export = tmp_path_factory.mktemp("export")
    with ServerProcess(export, threads=2, arena_mib=64) as srv:
        yield srv


@pytest.mark.parametrize("name", NAMES)
def test_replays_cleanly_with_strict(server, tmp_path, name):
    out = tmp_path / "run.json"
    arg = name if name != "mixed-rw" else workloads.shipped_loadfiles()[name]     # by path too
    r = loadgen("run", server.url, "--loadfile", arg, "--clients", "2", "--time", "2", "--warmup", "0",
                "--strict", "--no-metrics", "--json", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["mismatch_count"] == 0 and doc["unexpected"] == 0 and not doc["client_failures"]
    assert doc["ops_total"] > 0


def test_unknown_name_is_a_usage_error(server):
    r = loadgen("run", server.url, "--loadfile", "no-such-load", "--no-metrics")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("loadgen: --loadfile no-such-load: no such file and no shipped loadfile")
    assert "seq-write" in r.stderr
