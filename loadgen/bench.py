"""loadgen bench: the seed's table from live runs.

For each round and each strategy (interleaved: single, list, array, range,
single, ... with the order rotating every round so drift hits all alike) it
starts `python -m rpcsrv` as a subprocess on a free port with that strategy
and a fresh export directory, waits for its ready line, runs the load with
this package's runner (client processes on python-libnfs), reads the
server's /metrics when the warmup ends and when the measured window ends,
and stops the server cleanly (SIGTERM; its exit status and its report of
allocator pages still allocated are checked). Figures are medians over
rounds. `--peer NAME=URL` runs the same load against another NFSv3 server
once per round and adds its throughput row.

svc_alloc_arg figures come from the server's own histograms, as deltas over
the measured window: us per call = delta(sum) / delta(count); p50/p99 are
interpolated from the bucket deltas (as histogram_quantile does); pages per
call from nfsbulk_svc_alloc_arg_pages; waits from
nfsbulk_svc_alloc_arg_waits_total. Throughput (ops/s, MB/s = 10^6 bytes of
READ and WRITE payload) comes from the load generator.

This module never imports alloc or rpcsrv: the server is an outside process.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

STRATEGIES = ("single", "list", "array", "range")
LABELS = {"single": "Single page", "list": "Bulk list", "array": "Bulk array", "range": "Range"}
#: Chuck Lever's svc_alloc_arg trace, NFSv3 256 KB reads and writes, 5.13 v6 series (the seed)
KERNEL_US = {"single": (25.007, 532571), "list": (6.258, 517034), "array": (4.590, 517442)}
#: XDP-RX packets/s with page_pool's bulk refill (the seed's second table)
KERNEL_XDP = {"single": 3771046, "list": 3940242, "array": 4249224}
URL_RE = re.compile(r"(nfs://\S+)")


class BenchError(Exception):
    """A run could not be done (server failed to start, load failed); the message says which."""


def free_port(host: str = "127.0.0.1") -> int:
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------- server
class Rpcsrv:
    def __init__(self, strategy: str, export: str, threads: int, arena_mib: int, python=sys.executable,
                 extra=()):
        self.metrics_port = free_port()
        cmd = [python, "-m", "rpcsrv", "--export", export, "--listen", "127.0.0.1:0",
               "--metrics-port", str(self.metrics_port), "--threads", str(threads),
               "--strategy", strategy, "--arena-mib", str(arena_mib), *extra]
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errf)
        self.url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline().decode()
                if not line:
                    break
                m = URL_RE.search(line)
                if m:
                    self.url = m.group(1)
                    return
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        self.proc.wait(30)
        raise BenchError("rpcsrv (--strategy %s) did not start: %s" % (strategy, self.stderr()[-1500:]))

    def stderr(self) -> str:
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")

    def scrape(self) -> dict:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=10) as r:
            return parse_metrics(r.read().decode())

    def stop(self) -> int:
        """SIGTERM, wait; returns the allocator pages the server reported still allocated."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise BenchError("rpcsrv did not stop within 60 s")
        err = self.stderr()
        if self.proc.returncode != 0:
            raise BenchError("rpcsrv exited with status %d: %s" % (self.proc.returncode, err[-1500:]))
        m = re.search(r"allocator pages still allocated: (\d+)", err)
        return int(m.group(1)) if m else -1


def parse_metrics(text: str) -> dict:
    """{(sample name, sorted label items): value} of an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


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
    total = buckets[-1][1]
    rank = q * total
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
    waits = d("nfsbulk_svc_alloc_arg_waits_total", strategy=strategy)
    b0 = dict(_buckets(m0, name, strategy=strategy))
    b1 = _buckets(m1, name, strategy=strategy)
    delta = [(le, c - b0.get(le, 0.0)) for le, c in b1]
    return {
        "calls": int(calls),
        "svc_alloc_arg_us_per_call": secs / calls * 1e6 if calls else float("nan"),
        "pages_per_call": pages / calls if calls else float("nan"),
        "waits": int(waits),
        "p50_us": quantile(0.5, delta) * 1e6,
        "p99_us": quantile(0.99, delta) * 1e6,
        "histogram": [[le if le != float("inf") else "+Inf", c] for le, c in delta],
        "requests": int(sum(v for (n, _), v in m1.items() if n == "nfsbulk_rpc_requests_total")
                        - sum(v for (n, _), v in m0.items() if n == "nfsbulk_rpc_requests_total")),
        "server_read_bytes": int(d("nfsbulk_nfs_read_bytes_total")),
        "server_write_bytes": int(d("nfsbulk_nfs_write_bytes_total")),
    }


# --------------------------------------------------------------------------- load
def run_load(url: str, opts: dict, on_phase=None) -> dict:
    """One loadgen run (this package's runner, client processes); returns its JSON document."""
    from .runner import run
    from . import workloads
    fd, path = tempfile.mkstemp(prefix="loadgen-", suffix=".json")
    os.close(fd)
    cfg = {
        "url": url, "clients": opts["clients"], "time": opts["time"], "warmup": opts["warmup"],
        "loadfile": opts.get("loadfile"), "profile": "rw256k" if opts["profile"] == "rw256k" else None,
        "rw_files": opts.get("rw_files", 4), "rw_file_size": opts.get("rw_file_size", 8 << 20),
        "strict": False, "json": path, "metrics_port": None, "metrics_addr": "127.0.0.1",
        "ignore_timestamps": True, "seed": 0, "start_timeout": 120.0, "rpc_timeout": 30.0,
        "max_mismatches": 5, "on_phase": on_phase,
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
        raise BenchError("the load generator wrote no results (exit %d)" % code)
    finally:
        os.unlink(path)
    if code != 0:
        raise BenchError("the load generator failed (exit %d): %s" % (code, doc.get("client_failures")))
    return doc


def one_run(strategy: str, export_root: str, opts: dict) -> dict:
    export = tempfile.mkdtemp(prefix="%s-" % strategy, dir=export_root)
    srv = Rpcsrv(strategy, export, opts["threads"], opts["arena_mib"])
    scrapes = {}
    try:
        def on_phase(phase):
            scrapes[phase] = srv.scrape()
        doc = run_load(srv.url, opts, on_phase)
        if "end" not in scrapes:
            scrapes["end"] = srv.scrape()
        if "run" not in scrapes:
            raise BenchError("the measured window never started")
    finally:
        leaked = srv.stop()
        shutil.rmtree(export, ignore_errors=True)
    out = svc_window(scrapes["run"], scrapes["end"], strategy)
    out.update(ops_per_s=doc["ops_per_second"], mb_per_s=doc["mb_per_second"], ops=doc["ops_total"],
               loadgen_read_bytes=doc["bytes"]["read"], loadgen_write_bytes=doc["bytes"]["write"],
               elapsed_seconds=doc["elapsed_seconds"], unexpected=doc["unexpected"], errors=doc["errors"],
               pages_leaked=leaked)
    return out


def peer_run(name: str, url: str, opts: dict) -> dict:
    doc = run_load(url, opts)
    return {"ops_per_s": doc["ops_per_second"], "mb_per_s": doc["mb_per_second"], "ops": doc["ops_total"],
            "unexpected": doc["unexpected"]}


# --------------------------------------------------------------------------- driver
def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) == r.get(key)]     # drop NaN
    return statistics.median(vals) if vals else float("nan")


def bench_profile(profile: str, opts: dict, strategies, peers, export_root, progress) -> dict:
    opts = dict(opts, profile=profile)
    runs = {s: [] for s in strategies}
    peer_runs = {n: [] for n, _ in peers}
    n = len(strategies)
    per_run = opts["time"] + opts["warmup"]
    total_runs = opts["rounds"] * (n + len(peers))
    done = 0
    for r in range(opts["rounds"]):
        order = [strategies[(k + r) % n] for k in range(n)]
        for s in order:
            left = (total_runs - done) * (per_run + 4)
            progress("%s: round %d/%d, strategy %s (about %d s left)" % (profile, r + 1, opts["rounds"], s, left))
            runs[s].append(one_run(s, export_root, opts))
            done += 1
        for name, url in peers:
            progress("%s: round %d/%d, peer %s" % (profile, r + 1, opts["rounds"], name))
            peer_runs[name].append(peer_run(name, url, opts))
            done += 1
    result = {"strategies": {}, "peers": {}}
    for s in strategies:
        rs = runs[s]
        result["strategies"][s] = {
            "svc_alloc_arg_us_per_call": median_of(rs, "svc_alloc_arg_us_per_call"),
            "calls": int(median_of(rs, "calls")),
            "pages_per_call": median_of(rs, "pages_per_call"),
            "waits": int(median_of(rs, "waits")),
            "p50_us": median_of(rs, "p50_us"),
            "p99_us": median_of(rs, "p99_us"),
            "ops_per_s": median_of(rs, "ops_per_s"),
            "mb_per_s": median_of(rs, "mb_per_s"),
            "rounds": rs,
        }
    for name, _ in peers:
        rs = peer_runs[name]
        result["peers"][name] = {"ops_per_s": median_of(rs, "ops_per_s"), "mb_per_s": median_of(rs, "mb_per_s"),
                                 "rounds": rs}
    return result


def format_profile(profile: str, res: dict, opts: dict) -> str:
    st = res["strategies"]
    lines = ["", "== %s: %d clients, %d round(s) of %g s after %g s warmup, medians ==" %
             (profile, opts["clients"], opts["rounds"], opts["time"], opts["warmup"]), "",
             "svc_alloc_arg, this server (live):"]
    base = st.get("single", {}).get("svc_alloc_arg_us_per_call")
    for s, v in st.items():
        ratio = base / v["svc_alloc_arg_us_per_call"] if base and v["svc_alloc_arg_us_per_call"] else float("nan")
        lines.append("  %-12s %7.3f us per call over %s calls  (pages/call %.1f, waits %d, p50 %.2f us, "
                     "p99 %.2f us, single/this %.2fx)" % (
                         LABELS[s] + ":", v["svc_alloc_arg_us_per_call"], format(v["calls"], ","),
                         v["pages_per_call"], v["waits"], v["p50_us"], v["p99_us"], ratio))
    lines.append("svc_alloc_arg, the kernel (Chuck Lever, 5.13 series, NFSv3 256 KB r/w, KASAN server):")
    for s, (us, calls) in KERNEL_US.items():
        lines.append("  %-12s %7.3f us per call over %s calls  (single/this %.2fx)" % (
            LABELS[s] + ":", us, format(calls, ","), KERNEL_US["single"][0] / us))
    lines.append("  %-12s (the 2026 SUNRPC refinement: no kernel figure to stand beside)" % "Range:")
    lines.append("")
    lines.append("throughput (MB = 10^6 bytes of READ+WRITE payload):")
    lines.append("  %-14s %12s %10s %10s" % ("", "ops/s", "MB/s", "vs single"))
    base_ops = st.get("single", {}).get("ops_per_s")
    for s, v in st.items():
        delta = (v["ops_per_s"] / base_ops - 1) * 100 if base_ops else float("nan")
        lines.append("  %-14s %12s %10.1f %+9.2f%%" % (LABELS[s], format(round(v["ops_per_s"]), ","),
                                                      v["mb_per_s"], delta))
    for name, v in res["peers"].items():
        delta = (v["ops_per_s"] / base_ops - 1) * 100 if base_ops else float("nan")
        lines.append("  %-14s %12s %10.1f %+9.2f%%" % ("peer " + name, format(round(v["ops_per_s"]), ","),
                                                      v["mb_per_s"], delta))
    lines.append("kernel page_pool XDP-RX (the seed's second user; packets/s, not NFS ops):")
    for s, pps in KERNEL_XDP.items():
        lines.append("  %-14s %12s %+9.2f%%" % ({"single": "Baseline", "list": "List", "array": "Array"}[s],
                                               format(pps, ","), (pps / KERNEL_XDP["single"] - 1) * 100))
    return "\n".join(lines)


def plot(path: str, results: dict) -> None:
    """PNG: us per call by strategy with the kernel's bars beside ours; svc_alloc_arg latency distribution."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    profiles = list(results)
    fig, axes = plt.subplots(2, len(profiles), figsize=(6.5 * len(profiles), 9), squeeze=False)
    for col, prof in enumerate(profiles):
        st = results[prof]["strategies"]
        names = list(st)
        ax = axes[0][col]
        xs = range(len(names))
        ours = [st[s]["svc_alloc_arg_us_per_call"] for s in names]
        kern = [KERNEL_US.get(s, (float("nan"),))[0] for s in names]
        ax.bar([x - 0.2 for x in xs], ours, 0.4, label="nfsbulk (live)")
        ax.bar([x + 0.2 for x in xs], kern, 0.4, label="kernel 5.13 (Chuck Lever)")
        ax.set_xticks(list(xs), [LABELS[s] for s in names])
        ax.set_ylabel("svc_alloc_arg µs per call")
        ax.set_title("svc_alloc_arg cost, %s" % prof)
        ax.legend()
        ax2 = axes[1][col]
        for s in names:
            hist = st[s]["rounds"][0]["histogram"] if st[s]["rounds"] else []
            pts, prev = [], 0.0
            for le, c in hist:
                if le == "+Inf":
                    continue
                pts.append((le * 1e6, c - prev))
                prev = c
            if pts:
                ax2.step([p[0] for p in pts], [p[1] for p in pts], where="pre", label=LABELS[s])
        ax2.set_xscale("log")
        ax2.set_xlabel("svc_alloc_arg time (µs, bucket upper bound)")
        ax2.set_ylabel("calls per bucket (first round)")
        ax2.set_title("svc_alloc_arg latency distribution, %s" % prof)
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(p) -> None:
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated svc_alloc_arg strategies to compare (default %s)" % ",".join(STRATEGIES))
    p.add_argument("--profile", default="rw256k,dbench",
                   help="comma-separated: rw256k (sequential 256 KiB NFSv3 READ/WRITE) and/or dbench "
                        "(the default dbench workload: client.txt) (default: both)")
    p.add_argument("--clients", type=int, default=4, help="client processes per run (default 4)")
    p.add_argument("--time", type=float, default=10.0, help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warmup seconds per run (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians (default 3)")
    p.add_argument("--threads", type=int, default=8, help="rpcsrv worker threads (default 8)")
    p.add_argument("--arena-mib", type=int, default=256, help="rpcsrv allocator arena (default 256)")
    p.add_argument("--rw-file-size", type=int, default=8 << 20, help="rw256k: bytes per file (default 8 MiB)")
    p.add_argument("--rw-files", type=int, default=4, help="rw256k: files per client (default 4)")
    p.add_argument("--export", metavar="DIR",
                   help="directory under which each run gets a fresh export (default: a temporary directory)")
    p.add_argument("--peer", action="append", default=[], metavar="NAME=URL",
                   help="also run the same load against another NFSv3 server (repeatable), e.g. "
                        "ganesha=nfs://127.0.0.1/srv/x?nfsport=20490&mountport=20491")
    p.add_argument("--json", metavar="FILE", help="write every figure and the raw histograms as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG: us per call vs the kernel's, and latency distributions")
    from .udpbench import add_arguments as _udp_arguments
    _udp_arguments(p)


def main(args) -> int:
    if getattr(args, "udp_pps", False):          # the page_pool table: RPC calls/s over UDP (udpbench.py)
        from .udpbench import main as udp_main
        return udp_main(args)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        print("loadgen bench: unknown strategy %s (choose from %s)" % (",".join(bad), ",".join(STRATEGIES)),
              file=sys.stderr)
        return 2
    profiles = [s.strip() for s in args.profile.split(",") if s.strip()]
    if not profiles or any(p not in ("rw256k", "dbench") for p in profiles):
        print("loadgen bench: --profile takes rw256k and/or dbench", file=sys.stderr)
        return 2
    peers = []
    for spec in args.peer:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url.startswith("nfs://"):
            print("loadgen bench: --peer wants NAME=nfs://..., got %r" % spec, file=sys.stderr)
            return 2
        peers.append((name, url))
    if args.clients < 1 or args.rounds < 1 or args.time <= 0 or args.warmup < 0 or args.threads < 1:
        print("loadgen bench: --clients, --rounds, --threads must be >= 1 and --time > 0", file=sys.stderr)
        return 2
    opts = {"clients": args.clients, "time": args.time, "warmup": args.warmup, "rounds": args.rounds,
            "threads": args.threads, "arena_mib": args.arena_mib, "rw_file_size": args.rw_file_size,
            "rw_files": args.rw_files}
    tmp = None
    if args.export:
        root = os.path.abspath(args.export)
        if not os.path.isdir(root):
            print("loadgen bench: --export %s is not a directory" % args.export, file=sys.stderr)
            return 2
    else:
        tmp = root = tempfile.mkdtemp(prefix="nfsbulk-bench-")

    def progress(msg):
        print("bench: " + msg, file=sys.stderr, flush=True)

    results = {}
    try:
        for prof in profiles:
            results[prof] = bench_profile(prof, opts, strategies, peers, root, progress)
            print(format_profile(prof, results[prof], opts), flush=True)
    except BenchError as e:
        print("loadgen bench: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("loadgen bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    doc = {"schema": "nfsbulk-bench/1", "config": dict(opts, strategies=strategies, profiles=profiles,
                                                        peers=dict(peers)),
           "kernel": {"svc_alloc_arg_us_per_call": {s: v[0] for s, v in KERNEL_US.items()},
                      "calls": {s: v[1] for s, v in KERNEL_US.items()}, "xdp_rx_pps": KERNEL_XDP},
           "profiles": results}
    # the top-level per-strategy view of the first profile (rw256k when run)
    first = results[profiles[0]]
    doc["strategies"] = {s: {k: v for k, v in d.items() if k != "rounds"} for s, d in first["strategies"].items()}
    doc["peers"] = {n: {k: v for k, v in d.items() if k != "rounds"} for n, d in first["peers"].items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=lambda x: None)
            f.write("\n")
        print("\nJSON written to %s" % args.json)
    if args.plot:
        try:
            plot(args.plot, results)
            print("plot written to %s" % args.plot)
        except ImportError:
            print("loadgen bench: --plot needs matplotlib", file=sys.stderr)
            return 1
    return 0
