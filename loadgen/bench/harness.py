"""One benchmark run: start the server, load it, read it over the measured window, stop it.

A run of a strategy: start `python -m rpcsrv --strategy S` (loadgen/common/serverproc.py: its own
process group, ready line, metrics URL) on a fresh export; run this package's load generator
(client processes: mount, setup, warmup, measured window); when the warmup ends and when the
window ends, scrape the server's /metrics and read its CPU time from /proc; stop it with SIGTERM
and check its exit status and its report of allocator pages still allocated.

A run of a peer (another NFSv3 server, `--peer NAME=URL`): the same load; when `--peer-pid` names
its process, its CPU time over the window is read the same way.

Figures of a run: svc_alloc_arg us per call = delta(sum) / delta(count) of the server's histogram;
p50/p99 interpolated from bucket deltas (as histogram_quantile does); server CPU us per op =
delta(utime + stime) / ops of the window; the svc_alloc_arg share = delta(histogram sum) /
delta(CPU). Throughput and per-op latency come from the load generator's JSON.

Ctrl-C: the load generator turns SIGINT into a clean stop and exits 130; that becomes
:class:`Interrupted` here, after the server is stopped. Single-threaded; imports neither alloc
nor rpcsrv.

The UDP benches (udpbench.py, xdpbench.py) share three pieces from here: `bench_root` (where the
runs' exports go), `start_udp_server` and `bench_outcome` (a BenchError or Ctrl-C becomes an exit
code and one line, the temporary root is removed either way).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

from ..common.serverproc import RpcsrvProcess, ServerError, leaked_pages, proc_cpu_seconds

__all__ = ["BenchError", "Interrupted", "run_load", "svc_window", "strategy_run", "peer_run", "quantile"]


class BenchError(Exception):
    """A run could not be done (server failed to start, load failed); the message says which."""


class Interrupted(Exception):
    """Ctrl-C stopped the run; nothing of it is kept."""


def bench_root(export: str | None, prefix: str) -> tuple[str | None, str | None]:
    """(root, tmp): the runs' exports go under --export `export`, or a fresh temporary directory
    (then also returned as tmp, for the caller to remove). root is None when `export` is not a
    directory (the caller reports it as a usage error)."""
    if export:
        root = os.path.abspath(export)
        return (root if os.path.isdir(root) else None), None
    tmp = tempfile.mkdtemp(prefix=prefix)
    return tmp, tmp


def start_udp_server(export: str, opts: dict, extra: list) -> RpcsrvProcess:
    """rpcsrv for a UDP bench: svc_alloc_arg strategy array, metrics on, `extra` rpcsrv flags.
    BenchError if it does not start (its export is removed then)."""
    try:
        return RpcsrvProcess(export, strategy="array", threads=opts["threads"], arena_mib=opts["arena_mib"],
                             metrics=True, extra=extra)
    except ServerError as e:
        shutil.rmtree(export, ignore_errors=True)
        raise BenchError(str(e)) from None


class _Outcome:
    code = 0


@contextlib.contextmanager
def bench_outcome(tmp: str | None):
    """``with bench_outcome(tmp) as out:`` the rounds; after it ``out.code`` is 0, 1 (a BenchError,
    printed as one line) or 130 (Ctrl-C). The temporary root `tmp` is removed either way."""
    out = _Outcome()
    try:
        yield out
    except BenchError as e:
        print("loadgen bench: %s" % e, file=sys.stderr)
        out.code = 1
    except KeyboardInterrupt:
        print("loadgen bench: interrupted", file=sys.stderr)
        out.code = 130
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _get(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def _buckets(m, name, **labels):
    """[(le, cumulative count)] sorted by le."""
    want = set(labels.items())
    out = []
    for (n, lab), v in m.items():
        if n == name + "_bucket" and want <= set(lab):
            le = dict(lab)["le"]
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def quantile(q: float, buckets) -> float:
    """histogram_quantile over [(le, cumulative)] (linear interpolation inside the bucket)."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def svc_window(m0: dict, m1: dict, strategy: str) -> dict:
    """svc_alloc_arg figures over the window between two scrapes."""
    name = "nfsbulk_svc_alloc_arg_seconds"
    d = lambda n, **kw: _get(m1, n, **kw) - _get(m0, n, **kw)  # noqa: E731
    calls = d(name + "_count", strategy=strategy)
    secs = d(name + "_sum", strategy=strategy)
    pages = d("nfsbulk_svc_alloc_arg_pages_sum", strategy=strategy)
    scanned = d("nfsbulk_svc_alloc_arg_slots_scanned_sum", strategy=strategy)
    waits = d("nfsbulk_svc_alloc_arg_waits_total", strategy=strategy)
    b0 = dict(_buckets(m0, name, strategy=strategy))
    delta = [(le, c - b0.get(le, 0.0)) for le, c in _buckets(m1, name, strategy=strategy)]
    req = lambda m: sum(v for (n, _), v in m.items() if n == "nfsbulk_rpc_requests_total")  # noqa: E731
    return {
        "calls": int(calls),
        "svc_alloc_arg_seconds": secs,
        "svc_alloc_arg_us_per_call": secs / calls * 1e6 if calls else float("nan"),
        "pages_per_call": pages / calls if calls else float("nan"),
        "slots_scanned_per_call": scanned / calls if calls else float("nan"),
        "waits": int(waits),
        "p50_us": quantile(0.5, delta) * 1e6,
        "p99_us": quantile(0.99, delta) * 1e6,
        "histogram": [[le if le != float("inf") else "+Inf", c] for le, c in delta],
        "requests": int(req(m1) - req(m0)),
        "server_read_bytes": int(d("nfsbulk_nfs_read_bytes_total")),
        "server_write_bytes": int(d("nfsbulk_nfs_write_bytes_total")),
    }


def run_load(url: str, opts: dict, on_phase=None) -> dict:
    """One loadgen run (this package's runner, client processes); returns its JSON document.
    Raises Interrupted when Ctrl-C stopped it, BenchError when it failed."""
    from ..run.runner import EXIT_INTERRUPTED, run
    from ..run import workloads
    fd, path = tempfile.mkstemp(prefix="loadgen-", suffix=".json")
    os.close(fd)
    os.unlink(path)                      # the runner writes it only when the window started
    cfg = {
        "url": url, "clients": opts["clients"], "time": opts["time"], "warmup": opts["warmup"],
        "loadfile": opts.get("loadfile"), "profile": "rw256k" if opts["profile"] == "rw256k" else None,
        "rw_files": opts.get("rw_files", 4), "rw_file_size": opts.get("rw_file_size", 8 << 20),
        "strict": False, "json": path, "metrics_port": None, "metrics_addr": "127.0.0.1",
        "ignore_timestamps": True, "seed": 0, "start_timeout": 120.0, "rpc_timeout": 30.0,
        "max_mismatches": 5, "on_phase": on_phase,
        "rate": opts.get("rate"), "arrival": opts.get("arrival") if opts.get("rate") else None,
        "say_behind": False,        # a --curve point above the maximum falls behind by design; its JSON says so
    }
    desc = opts["profile"] if opts["profile"] == "rw256k" else (opts.get("loadfile") or workloads.DEFAULT_CLIENT_TXT)
    sink = open(os.devnull, "w") if opts.get("quiet", True) else None
    try:
        code = run(cfg, desc, out=sink, err=sys.stderr)
    finally:
        if sink:
            sink.close()
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = None
    finally:
        if os.path.exists(path):
            os.unlink(path)
    if code == EXIT_INTERRUPTED:
        raise Interrupted()
    if doc is None:
        raise BenchError("the load generator wrote no results (exit %d)" % code)
    if code != 0:
        raise BenchError("the load generator failed (exit %d): %s" % (code, doc.get("client_failures")))
    return doc


def _load_figures(doc: dict) -> dict:
    """The load generator's figures kept per run: throughput, counts and per-op fine histograms."""
    return {
        "ops_per_s": doc["ops_per_second"], "mb_per_s": doc["mb_per_second"], "ops": doc["ops_total"],
        "loadgen_read_bytes": doc["bytes"]["read"], "loadgen_write_bytes": doc["bytes"]["write"],
        "elapsed_seconds": doc["elapsed_seconds"], "unexpected": doc["unexpected"], "errors": doc["errors"],
        "op_latency": {op: {k: v[k] for k in ("count", "ok", "error", "unexpected", "sum_seconds", "max_seconds",
                                              "buckets", "fine_buckets")}
                       for op, v in doc["ops"].items()},
        # open loop (--curve's points): the schedule and the corrected latencies, histograms dropped
        "open_loop": _open_loop_figures(doc.get("open_loop")),
    }


def _open_loop_figures(ol):
    if not ol:
        return None

    def q(d):
        return {k: d[k] for k in ("count", "p50_seconds", "p90_seconds", "p99_seconds", "p999_seconds",
                                  "max_seconds")}
    out = {k: ol[k] for k in ("rate", "arrival", "offered_ops_per_second", "achieved_ops_per_second", "scheduled",
                              "unsent", "lag_end_seconds", "behind", "mean_service_seconds", "clients_needed")}
    out.update(all=q(ol["all"]), service_all=q(ol["service_all"]), lag=q(ol["lag"]),
               ops={op: q(v) for op, v in ol["ops"].items()})
    return out


class _Window:
    """Scrapes and CPU readings at the phase edges the runner reports ("run", then "end")."""

    def __init__(self, scrape, cpu, announce=None):
        self.scrape, self.cpu, self.announce = scrape, cpu, announce
        self.m, self.c, self.t = {}, {}, {}

    def __call__(self, phase):
        self.t[phase] = time.monotonic()
        self.c[phase] = self.cpu() if self.cpu else None
        self.m[phase] = self.scrape() if self.scrape else None
        if self.announce:
            self.announce("measuring" if phase == "run" else "stopping")

    def cpu_seconds(self):
        a, b = self.c.get("run"), self.c.get("end")
        return b - a if a is not None and b is not None else None


def _cpu_figures(cpu, ops, svc_seconds=None) -> dict:
    out = {"server_cpu_seconds": cpu,
           "server_cpu_us_per_op": cpu / ops * 1e6 if cpu is not None and ops else None}
    if svc_seconds is not None:
        out["svc_alloc_arg_cpu_share"] = svc_seconds / cpu if cpu else None
    return out


def strategy_run(strategy: str, export_root: str, opts: dict, announce=None, block: int | None = None) -> dict:
    """One run of rpcsrv --strategy STRATEGY (and --max-block-size BLOCK when given) under the load;
    the run's figures (see the module). `announce(text)` is told each phase: server up (with its
    pid), measuring, stopping."""
    export = tempfile.mkdtemp(prefix="%s-" % strategy, dir=export_root)
    extra = ["--max-block-size", str(block)] if block else []
    try:
        try:
            srv = RpcsrvProcess(export, strategy=strategy, threads=opts["threads"], arena_mib=opts["arena_mib"],
                                metrics=True, python=opts.get("python", sys.executable),
                                fast_path=opts.get("fast_path"), extra=extra)
        except ServerError as e:
            raise BenchError(str(e)) from None
        if announce:
            announce("rpcsrv pid %d up, mount + setup + warmup" % srv.pid)
        win = _Window(srv.scrape, srv.cpu_seconds, announce)
        try:
            doc = run_load(srv.url, opts, win)
            if "end" not in win.m:
                win("end")
            if "run" not in win.m:
                raise BenchError("the measured window never started")
        except ServerError as e:
            raise BenchError(str(e)) from None
        finally:
            try:
                code, err = srv.stop()
            except ServerError as e:
                raise BenchError(str(e)) from None
        if code != 0:
            raise BenchError("rpcsrv --strategy %s exited with status %d: %s" % (strategy, code, err[-1500:]))
    finally:
        shutil.rmtree(export, ignore_errors=True)
    out = svc_window(win.m["run"], win.m["end"], strategy)
    out.update(_load_figures(doc))
    out.update(_cpu_figures(win.cpu_seconds(), out["ops"], out["svc_alloc_arg_seconds"]))
    out.update(pages_leaked=leaked_pages(err), server_pid=srv.pid, fast_path=srv.fast_path,
               max_block_size=block, max_io=srv.max_io, pages_per_worker=srv.pages_per_request,
               # a worker's page array: the memory each nfsd thread holds for rq_pages
               bytes_per_worker=srv.pages_per_request * 4096 if srv.pages_per_request else None)
    return out


def peer_run(name: str, url: str, pid: int | None, opts: dict, announce=None) -> dict:
    """One run of the load against a peer server; its CPU per op when its pid is known."""
    if announce:
        announce("mount + setup + warmup")
    win = _Window(None, (lambda: proc_cpu_seconds(pid)) if pid else None, announce)
    doc = run_load(url, opts, win)
    out = _load_figures(doc)
    out.update(_cpu_figures(win.cpu_seconds(), out["ops"]))
    out["server_pid"] = pid
    return out
