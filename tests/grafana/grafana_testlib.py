"""Helpers for the dashboard tests (tests/grafana); fixtures are in conftest.py.

The `stack` fixture builds a Stack: a live rpcsrv, a second rpcsrv under memory pressure, a
loadgen run and Debian's prometheus scraping all three every second. Every
wait polls a real endpoint against a deadline; nothing sleeps to synchronise.
"""
from __future__ import annotations

import importlib.util
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from loadgen.common.serverproc import RpcsrvProcess, ServerError  # noqa: E402
GRAFANA = ROOT / "grafana"
DASH_DIR = GRAFANA / "dashboards"

#: what the dashboards' template variables and Grafana's macros become when a
#: test evaluates a query itself (the live test resolves $job/$instance through
#: Prometheus's label API instead).
MACROS = {
    "$__rate_interval": "30s",
    "$__interval": "1s",
    "$__range": "60s",
}


# -- dashboards ----------------------------------------------------------------

def load_generate_module():
    spec = importlib.util.spec_from_file_location("nfsbulk_grafana_generate", GRAFANA / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_dashboards() -> dict:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASH_DIR.glob("*.json"))}


def iter_panels(dash: dict):
    """Every panel, including those nested in (collapsed) rows; rows themselves too."""
    for p in dash.get("panels", []):
        yield p
        for sub in p.get("panels", []) or []:
            yield sub


def data_panels(dash: dict):
    return [p for p in iter_panels(dash) if p.get("type") != "row"]


def iter_targets(dash: dict):
    """(panel, target) for every query target of every panel."""
    for p in data_panels(dash):
        for t in p.get("targets", []) or []:
            yield p, t


def all_targets():
    """[(dashboard file, panel, target)] over every committed dashboard."""
    return [(name, p, t) for name, d in load_dashboards().items() for p, t in iter_targets(d)]


def target_id(item) -> str:
    name, p, t = item
    return "%s:%s:%s" % (name.removesuffix(".json"), p.get("title"), t.get("refId"))


def substitute(expr: str, variables: dict | None = None) -> str:
    """Replace Grafana macros and template variables (${x} and $x forms)."""
    out = expr
    for k, v in MACROS.items():
        out = out.replace(k, v)
    for k, v in (variables or {}).items():
        out = out.replace("${%s}" % k, v).replace("$" + k, v)
    return out



# -- processes ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_for(what: str, probe, deadline: float, interval: float = 0.2, procs=()):
    """Poll `probe()` until it returns a truthy value; fail at `deadline` or when a process dies."""
    last = None
    while True:
        try:
            v = probe()
            if v:
                return v
        except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
            last = e
        for name, p in procs:
            if p.poll() is not None:
                raise AssertionError("%s exited (rc %s) while waiting for %s" % (name, p.returncode, what))
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s (last error: %r)" % (what, last))
        # a poll interval, not synchronisation: the condition is re-checked against the real endpoint
        time.sleep(interval)


def start_rpcsrv(export: Path, deadline: float, *, threads: int, arena_mib: int, extra=()):
    """`python -m rpcsrv` on 127.0.0.1:0 with metrics on a free port, through the project's one
    launcher (loadgen/common/serverproc.py); returns the started RpcsrvProcess (.proc, .url, .metrics_url,
    .stderr(), .stop())."""
    export.mkdir(parents=True, exist_ok=True)
    try:
        return RpcsrvProcess(export, threads=threads, arena_mib=arena_mib, metrics=True, extra=extra,
                             cwd=str(ROOT), start_timeout=max(1.0, deadline - time.monotonic()))
    except ServerError as e:
        raise AssertionError(str(e)) from None


def metrics_port(srv) -> int:
    """The port of a started server's /metrics (from its ready line)."""
    return urllib.parse.urlsplit(srv.metrics_url).port


def stop(proc, sig=signal.SIGTERM, timeout=15.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# -- a raw ONC RPC poker: creates RPC errors and duplicate-request-cache hits ---

NFS_PROGRAM, NFS_V3, NFSPROC3_REMOVE = 100003, 3, 12


def _call(xid: int, prog: int, vers: int, proc: int, args: bytes = b"") -> bytes:
    body = struct.pack(">6I", xid, 0, 2, prog, vers, proc) + struct.pack(">4I", 0, 0, 0, 0) + args
    return struct.pack(">I", 0x80000000 | len(body)) + body


def _recv_record(sock) -> bytes:
    out = b""
    while True:
        hdr = b""
        while len(hdr) < 4:
            chunk = sock.recv(4 - len(hdr))
            if not chunk:
                raise ConnectionError("server closed the connection")
            hdr += chunk
        mark = struct.unpack(">I", hdr)[0]
        n = mark & 0x7FFFFFFF
        while n:
            chunk = sock.recv(n)
            if not chunk:
                raise ConnectionError("server closed the connection")
            out += chunk
            n -= len(chunk)
        if mark & 0x80000000:
            return out


class Poker(threading.Thread):
    """Every `period` s: one call to an unregistered program (an RPC error,
    reason prog_unavail), and one non-idempotent NFS REMOVE sent twice with the
    same xid (a duplicate request cache miss, then a hit), on a connection of
    its own that it then closes (a disconnect, reason eof). Each reply is read
    before the next call is sent."""

    def __init__(self, port: int, period: float = 0.5):
        super().__init__(daemon=True)
        self.port, self.period = port, period
        self.stopped = threading.Event()
        self.rounds = 0
        self.error = None

    def run(self):
        xid = 0x6E667300
        name = b"nfsbulk-drc-probe"
        fh = b"\0" * 8
        args = struct.pack(">I", len(fh)) + fh + struct.pack(">I", len(name)) + name + b"\0" * (-len(name) % 4)
        try:
            while not self.stopped.is_set():
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    xid += 1
                    s.sendall(_call(xid, 100099, 1, 0))
                    _recv_record(s)
                    xid += 1
                    for _ in range(2):
                        s.sendall(_call(xid, NFS_PROGRAM, NFS_V3, NFSPROC3_REMOVE, args))
                        _recv_record(s)
                self.rounds += 1
                self.stopped.wait(self.period)
        except OSError as e:
            if not self.stopped.is_set():
                self.error = e


# -- the live stack ------------------------------------------------------------

class Stack:
    def __init__(self):
        self.procs = {}
        self.servers = {}           # name -> RpcsrvProcess (their Popen objects are in procs too)
        self.prom_url = None
        self.server_metrics_port = self.pressure_metrics_port = self.loadgen_metrics_port = None
        self.url = None
        self.jobs = {}
        self.expositions = {}
        self.started = time.time()
        self.poker = None
        self.tmp = None

    def prom(self, path: str, **params) -> dict:
        url = self.prom_url + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        try:
            doc = json.loads(http_get(url, timeout=10))
        except urllib.error.HTTPError as e:
            # a bad query is a test failure, not something to wait out
            raise AssertionError("prometheus %s -> %s: %s" % (url, e.code, e.read().decode(errors="replace")))
        if doc.get("status") != "success":
            raise AssertionError("prometheus %s: %s" % (path, doc))
        return doc["data"]

    def query(self, expr: str, at: float | None = None):
        params = {"query": expr}
        if at is not None:
            params["time"] = "%.3f" % at
        return self.prom("/api/v1/query", **params)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0):
        return self.prom("/api/v1/query_range", query=expr, start="%.3f" % start, end="%.3f" % end,
                         step=str(step))["result"]

    def log(self, name: str) -> str:
        if name in self.servers:
            return self.servers[name].stderr()[-3000:]
        p = self.tmp / ("%s.log" % name)
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""


def job_names() -> dict:
    """{'rpcsrv': job name, 'loadgen': job name} as grafana/prometheus.yml names them."""
    text = (GRAFANA / "prometheus.yml").read_text()
    jobs = re.findall(r"job_name:\s*['\"]?([\w.-]+)", text)
    out = {}
    for j in jobs:
        if "loadgen" in j:
            out["loadgen"] = j
        elif "rpcsrv" in j or "server" in j:
            out["rpcsrv"] = j
    assert set(out) == {"rpcsrv", "loadgen"}, jobs
    return out


PROM_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {rpcsrv}
    static_configs:
      - targets: ["127.0.0.1:{server}", "127.0.0.1:{pressure}"]
  - job_name: {loadgen}
    static_configs:
      - targets: ["127.0.0.1:{loadgen_port}"]
"""


