"""rpcsrv: an NFSv3 + MOUNT v3 server over ONC RPC on TCP, with selectable svc_alloc_arg strategies.

Run `rpcsrv --help` (or `python -m rpcsrv --help`). When the server can serve
it prints one line with the client URL and flushes stdout; SIGINT or SIGTERM
stop accepting, finish in-flight requests and exit 0.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
import time

import clikit
from alloc.strategies import STRATEGIES

__version__ = clikit.VERSION


def _hostport(text: str):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    host = host.strip("[]")
    try:
        port = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError("port must be a number: %r" % text) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port out of range: %d" % port)
    return host, port


def _metrics_port(text: str):
    """A port number (0 picks a free one) or ``off``; None means off."""
    if text.strip().lower() in ("off", "none", "no"):
        return None
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a port number or 'off', got %r" % text) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port out of range: %d" % port)
    return port


def _network(text: str):
    import ipaddress
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text) from None
    if v < 1:
        raise argparse.ArgumentTypeError("expected a positive integer, got %d" % v)
    return v


_SIZE_UNITS = {"": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "mib": 1 << 20}


def parse_size(text: str) -> int:
    """A byte count: a number with an optional binary unit (4096, 64K, 1M, 4MiB)."""
    t = text.strip().lower()
    num = t.rstrip("kmib")
    unit = t[len(num):]
    try:
        n = int(num)
    except ValueError:
        raise ValueError("expected a size such as 4096, 64K or 1M, got %r" % text) from None
    if unit not in _SIZE_UNITS:
        raise ValueError("unknown unit in %r (use K or M)" % text)
    return n * _SIZE_UNITS[unit]


def _block_size(text: str) -> int:
    """--max-block-size: 4 KiB to 4 MiB, a multiple of 4 KiB."""
    import alloc
    try:
        n = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not (alloc.MIN_BLOCK_SIZE <= n <= alloc.MAX_BLOCK_SIZE) or n % alloc.PAGE_SIZE:
        raise argparse.ArgumentTypeError("must be a multiple of 4K from 4K to 4M, got %r" % text)
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rpcsrv",
        description="An NFSv3 and MOUNT v3 server over ONC RPC on TCP (both programs on one port) "
                    "exporting a local directory. Worker threads refill their request page arrays "
                    "with the chosen svc_alloc_arg strategy from nfsbulk's page allocator.",
        epilog="Clients: nfs-ls/nfs-cat/nfs-cp or python-libnfs with the URL the server prints, e.g. "
               "nfs://127.0.0.1/EXPORT?nfsport=PORT&mountport=PORT. Metrics: http://HOST:METRICS_PORT/metrics.")
    clikit.add_version(p, "rpcsrv")
    p.add_argument("--export", metavar="DIR",
                   help="directory to export (default: a fresh temporary directory, announced at start "
                        "and removed at exit)")
    p.add_argument("--listen", metavar="HOST:PORT", type=_hostport, default=("127.0.0.1", 2049),
                   help="address to serve on (default 127.0.0.1:2049; port 0 picks a free one)")
    p.add_argument("--threads", type=clikit.int_arg(1, 4096, "threads"), default=8, help="worker threads (nfsd threads; default 8)")
    p.add_argument("--strategy", choices=list(STRATEGIES), default="array",
                   help="svc_alloc_arg strategy: " + "; ".join(
                       "%s (%s)" % (s.name, s.summary) for s in STRATEGIES.values())
                   + ". Default array. --list-strategies prints the table with the kernel's figures")
    p.add_argument("--list-strategies", action="store_true",
                   help="print the svc_alloc_arg strategy table as JSON (name, summary, kernel variant, "
                        "the kernel's us per call where measured) and exit")
    p.add_argument("--fast-path", choices=("on", "off"), default="on",
                   help="on (default): the compiled request path serves NULL, GETATTR, SETATTR, LOOKUP, "
                        "ACCESS, READ, WRITE, CREATE, REMOVE, READDIRPLUS, FSSTAT, FSINFO and COMMIT, workers "
                        "waiting on the sockets themselves, and hands everything else to the Python path; "
                        "off: the Python path alone (the reference implementation). Exports in inode handle "
                        "mode (not root) always use the Python path")
    p.add_argument("--arena-mib", type=clikit.int_arg(1, None, "MiB"), default=256,
                   help="page allocator arena in MiB (default 256)")
    p.add_argument("--max-block-size", type=_block_size, default=1 << 20, metavar="SIZE",
                   help="largest READ and WRITE payload, as knfsd's /proc/fs/nfsd/max_block_size (Linux "
                        "6.16+): 4K to 4M in multiples of 4K, e.g. 64K, 1M, 4M (default 1M). Each worker's "
                        "page array is sized for it as svc_serv_maxpages() sizes rq_pages (size/4K + 4 "
                        "slots: 260 for 1M, 1028 for 4M); rtmax/wtmax and FSINFO follow when the arena "
                        "has room")
    p.add_argument("--pages-per-request", type=int, default=0, metavar="N",
                   help="page-array slots per worker (5 up to the --max-block-size array). Default: sized "
                        "so that all workers and parked partial records fit the arena (the full array when "
                        "it is large enough); rtmax/wtmax follow. A larger value overcommits the arena: "
                        "for memory-pressure experiments")
    p.add_argument("--metrics-port", type=_metrics_port, default=9410, metavar="PORT|off",
                   help="port of the Prometheus /metrics endpoint (default 9410; 0 picks a free port, shown "
                        "on the ready line, as --listen does; 'off' disables, as --no-metrics)")
    p.add_argument("--no-metrics", dest="metrics_port", action="store_const", const=None,
                   help="serve no /metrics endpoint")
    p.add_argument("--metrics-addr", metavar="ADDR", default=None,
                   help="address of the /metrics endpoint (default: the --listen host)")
    p.add_argument("--read-only", action="store_true", help="refuse every modifying procedure with NFS3ERR_ROFS")
    p.add_argument("--root-squash", dest="root_squash", action="store_true", default=None,
                   help="map AUTH_SYS uid 0 to nobody (default: on unless listening on loopback)")
    p.add_argument("--no-root-squash", dest="root_squash", action="store_false", help="trust AUTH_SYS uid 0")
    p.add_argument("--max-connections", type=clikit.int_arg(1, 1 << 20, "connections"), default=1024,
                   help="open client connections at most; at the limit a newcomer is let in and the least "
                        "recently active connection not being served is closed (as knfsd does); refused only "
                        "when all are being served (default 1024)")
    p.add_argument("--idle-timeout", type=clikit.seconds_arg(), default=300.0, metavar="SECONDS",
                   help="close connections silent for this long (default 300)")
    p.add_argument("--record-timeout", type=clikit.seconds_arg(), default=60.0, metavar="SECONDS",
                   help="drop a connection whose RPC record is not complete this long after it began "
                        "(a client dribbling a record; default 60)")
    p.add_argument("--record-stall", type=clikit.seconds_arg(positive=False), default=10.0, metavar="SECONDS",
                   help="drop a connection whose RPC record in progress received nothing for this long "
                        "(a client that sent part of a record and stopped; 0 = off; default 10)")
    p.add_argument("--min-record-rate", type=clikit.number_arg(0, None, "bytes/s"), default=16384.0, metavar="BYTES_PER_S",
                   help="drop a connection whose record in progress averages fewer bytes per second once "
                        "it is 5 s old (a slow drip; 0 = off; default 16384)")
    p.add_argument("--send-timeout", type=clikit.seconds_arg(), default=10.0, metavar="SECONDS",
                   help="drop a client that does not read its replies for this long (default 10)")
    p.add_argument("--allow", action="append", default=[], metavar="CIDR", type=_network,
                   help="accept clients only from this network (repeatable; default: everyone who can "
                        "reach the listen address)")
    p.add_argument("--secure-ports", action="store_true",
                   help="require source ports below 1024, as knfsd's 'secure' export option "
                        "(others get AUTH_ERROR AUTH_TOOWEAK)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where the file-handle key is kept (default ~/.cache/nfsbulk/<export hash>, or "
                        "$NFSBULK_STATE_HOME/<export hash>; a fresh temporary one for a temporary export). "
                        "At start-up, default entries whose export no longer exists (or, made by older "
                        "versions without an export record, older than 7 days) are removed")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    p.add_argument("--tracemalloc-dir", metavar="DIR",
                   help="for hunting memory growth: trace the Python heap from start-up (tracemalloc, 10 "
                        "frames; the server runs slower) and write a snapshot to DIR/rpcsrv-PID-N.tracemalloc "
                        "on each SIGUSR2 (compare two with tracemalloc.Snapshot.load(...).compare_to). "
                        "Allocations of the compiled paths' C code are not traced")
    u = p.add_argument_group("RPC over UDP (page_pool receive path, see rpcsrv/xprt/udp.py)")
    u.add_argument("--udp", action="store_true",
                   help="also serve RPC over UDP on the TCP port number; datagrams land in page_pool pages")
    u.add_argument("--pool-strategy", choices=("single", "list", "array"), default="array",
                   help="page_pool slow-path refill: array (bulk array API, 64 pages, the default), "
                        "list (bulk list API, 64 pages) or single (one page per refill, the baseline)")
    u.add_argument("--udp-threads", type=_positive, default=1,
                   help="UDP receive threads, each with its own SO_REUSEPORT socket and pool (default 1; "
                        "they share one GIL)")
    u.add_argument("--udp-recycle", choices=("direct", "ring", "release"), default="direct",
                   help="where a datagram's pages go after the reply: direct (the pool's cache, default), "
                        "ring (the recycle ring) or release (the page allocator: every datagram needs a "
                        "fresh page, as XDP_REDIRECT in 5.13)")
    u.add_argument("--udp-xdp", choices=("off", "tx", "drop"), default="off",
                   help="the compiled receive loop (recvmmsg batches, an XDP-like verdict in C): tx answers "
                        "NFSv3 NULL calls and the export root's GETATTR (AUTH_NONE; GETATTR with the Python "
                        "path's last reply while the root's attributes hold) from C with sendmmsg (XDP_TX), "
                        "drop drops them "
                        "(XDP_DROP); everything else goes to the Python path (XDP_PASS). off (default): "
                        "the per-datagram Python loop")
    u.add_argument("--udp-batch", type=_positive, default=64,
                   help="datagrams per recvmmsg in the compiled loop (1..64, default 64)")
    u.add_argument("--udp-interleave", type=int, default=0, metavar="BATCHES",
                   help="compiled loop only: rotate the pool's refill strategy (single, list, array) every "
                        "BATCHES receive batches, the cache flushed at each switch, and count CPU time and "
                        "datagrams per strategy: an A/B/C test inside one run (0, the default: no rotation)")
    u.add_argument("--udp-coalesce-us", type=int, default=0, metavar="US",
                   help="compiled loop only: after a receive batch that did not fill, wait US microseconds "
                        "before the next (a NIC's interrupt coalescing; 0..100000, default 0: none)")
    return p


def _export_problem(path: str):
    """Why PATH cannot be exported (one phrase), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        return "a component of the path is not a directory"
    except OSError as e:
        return "cannot stat: %s" % (e.strerror or e)
    import stat as _stat
    if not _stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return "cannot open: %s" % (e.strerror or e)
    os.close(fd)
    return None


def _not_writable(path: str):
    """Why this process cannot create a file in PATH (the strerror), or None when it can.

    A real probe, not access(2): an unnamed O_TMPFILE where the file system has it (nothing is
    ever visible in the export), otherwise a uniquely named file removed at once."""
    try:
        fd = os.open(path, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        os.close(fd)
        return None
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return e.strerror or str(e)
    try:
        fd, name = tempfile.mkstemp(prefix=".nfsbulk-probe-", dir=path)
        os.close(fd)
        os.unlink(name)
        return None
    except OSError as e:
        return e.strerror or str(e)


def list_strategies() -> str:
    """The strategy table as JSON lines: what `loadgen bench` reads (it never imports rpcsrv)."""
    import json
    return "\n".join(json.dumps({"name": s.name, "summary": s.summary, "kernel": s.kernel,
                                 "kernel_us": s.kernel_us, "kernel_calls": s.kernel_calls})
                      for s in STRATEGIES.values())


def _dump_snapshot(directory: str) -> None:
    """Write the traced Python heap to DIR/rpcsrv-PID-N.tracemalloc and say so on stderr."""
    import tracemalloc
    n = len([f for f in os.listdir(directory) if f.startswith("rpcsrv-%d-" % os.getpid())])
    path = os.path.join(directory, "rpcsrv-%d-%d.tracemalloc" % (os.getpid(), n))
    try:
        tracemalloc.take_snapshot().dump(path)
    except OSError as e:
        print("rpcsrv: --tracemalloc-dir: cannot write %s: %s" % (path, e.strerror or e), file=sys.stderr,
              flush=True)
        return
    traced, peak = tracemalloc.get_traced_memory()
    print("rpcsrv: tracemalloc snapshot %s (%d KiB traced, peak %d KiB)" % (path, traced >> 10, peak >> 10),
          file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_strategies:
        print(list_strategies())
        return 0
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="rpcsrv: %(levelname)s %(message)s", stream=sys.stderr)
    if args.tracemalloc_dir is not None:
        if not os.path.isdir(args.tracemalloc_dir) or not os.access(args.tracemalloc_dir, os.W_OK):
            print("rpcsrv: --tracemalloc-dir %s: not a writable directory" % args.tracemalloc_dir,
                  file=sys.stderr)
            return 2
        import tracemalloc
        tracemalloc.start(10)
    host, port = args.listen
    state_dir = args.state_dir
    if args.export is None:
        export = tempfile.mkdtemp(prefix="nfsbulk-export-")
        atexit.register(shutil.rmtree, export, True)
        if state_dir is None:       # a temporary export leaves nothing behind, its key included
            state_dir = tempfile.mkdtemp(prefix="nfsbulk-state-")
            atexit.register(shutil.rmtree, state_dir, True)
        print("rpcsrv: exporting a fresh temporary directory %s" % export, file=sys.stderr, flush=True)
    else:
        export = os.path.abspath(args.export)
        problem = _export_problem(export)
        if problem:
            print("rpcsrv: --export %s: %s" % (args.export, problem), file=sys.stderr)
            return 2
        if state_dir is None:
            from rpcsrv.export import prune_state
            gone = prune_state()
            if gone:
                print("rpcsrv: removed %d stale state entr%s (their exports no longer exist)"
                      % (len(gone), "y" if len(gone) == 1 else "ies"), file=sys.stderr, flush=True)
        if not args.read_only:
            why = _not_writable(export)
            if why:
                print("rpcsrv: warning: --export %s: the server cannot create files in it (%s); every "
                      "modifying call will fail (use --read-only to serve it read-only)" % (args.export, why),
                      file=sys.stderr, flush=True)
    for name in ("idle_timeout", "record_timeout", "send_timeout"):
        if getattr(args, name) <= 0:
            print("rpcsrv: --%s must be positive" % name.replace("_", "-"), file=sys.stderr)
            return 2
    for name in ("record_stall", "min_record_rate"):
        if getattr(args, name) < 0:
            print("rpcsrv: --%s must be 0 (off) or positive" % name.replace("_", "-"), file=sys.stderr)
            return 2
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    root_squash = (not loopback) if args.root_squash is None else args.root_squash

    from rpcsrv.server import Server, ServerConfig, StartupError
    cfg = ServerConfig(export=export, host=host, port=port, threads=args.threads, strategy=args.strategy,
                       arena_mib=args.arena_mib, read_only=args.read_only, root_squash=root_squash,
                       state_dir=state_dir, max_connections=args.max_connections,
                       idle_timeout=args.idle_timeout, record_timeout=args.record_timeout,
                       record_stall=args.record_stall, min_record_rate=args.min_record_rate,
                       send_timeout=args.send_timeout, allow=tuple(args.allow),
                       secure_ports=args.secure_ports, pages_per_request=args.pages_per_request,
                       max_block_size=args.max_block_size, fast_path=args.fast_path == "on")
    if args.udp:
        from rpcsrv.xprt.udp import UdpConfig
        if args.udp_batch > 64:
            print("rpcsrv: --udp-batch must be in 1..64", file=sys.stderr)
            return 2
        if not 0 <= args.udp_coalesce_us <= 100000:
            print("rpcsrv: --udp-coalesce-us must be in 0..100000", file=sys.stderr)
            return 2
        if args.udp_interleave < 0 or (args.udp_interleave and args.udp_xdp == "off"):
            print("rpcsrv: --udp-interleave takes a count >= 0 and needs --udp-xdp tx or drop", file=sys.stderr)
            return 2
        cfg.udp = UdpConfig(pool_strategy=args.pool_strategy, threads=args.udp_threads,
                            recycle=args.udp_recycle, xdp=args.udp_xdp, batch=args.udp_batch,
                            interleave=args.udp_interleave, coalesce_us=args.udp_coalesce_us)
    try:
        server = Server(cfg, version=__version__)
        server.start()
        if args.udp:
            print("rpcsrv: UDP on port %d: pool strategy=%s, %d receive thread(s), recycle=%s, xdp=%s"
                  % (server.port, args.pool_strategy, args.udp_threads, args.udp_recycle, args.udp_xdp),
                  file=sys.stderr, flush=True)
    except StartupError as e:
        print("rpcsrv: %s" % e, file=sys.stderr)
        return e.code
    except ValueError as e:
        print("rpcsrv: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:        # anything not attributed to an option above
        print("rpcsrv: cannot start: %s" % (e.strerror or e), file=sys.stderr)
        return 1
    metrics_note = ""
    httpd = None
    if args.metrics_port is not None:
        from prometheus_client import disable_created_metrics
        from rpcsrv.xprt.metrics_http import serve_metrics
        disable_created_metrics()           # no _created series from any collector in this process
        maddr = args.metrics_addr or host
        try:
            httpd, _thread = serve_metrics(args.metrics_port, addr=maddr, registry=server.registry,
                                           on_accept_error=server.metrics.metrics_accept_error)
            mport = httpd.server_address[1]
            mhost = "[%s]" % maddr if ":" in maddr else maddr
            metrics_note = " metrics http://%s:%d/metrics" % (mhost, mport)
        except OSError as e:
            server.stop()
            print("rpcsrv: --metrics-port %d: cannot serve metrics on %s: %s"
                  % (args.metrics_port, maddr, e.strerror or e), file=sys.stderr)
            return 1
    stop = []

    def on_signal(signum, frame):
        # only a flag: the handler runs in the main thread between bytecodes, and taking a lock
        # here (Event.set) could deadlock with the main thread inside Event.wait
        stop.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    snapshots = []                          # SIGUSR2 with --tracemalloc-dir: dump one (main thread)
    if args.tracemalloc_dir is not None:
        signal.signal(signal.SIGUSR2, lambda signum, frame: snapshots.append(signum))
    if server.fast_unusable:
        print("rpcsrv: fast path off: %s" % server.fast_unusable, file=sys.stderr, flush=True)
    print("rpcsrv: serving %s strategy=%s threads=%d pages/request=%d rtmax/wtmax=%d fast-path=%s%s"
          % (server.url(), cfg.strategy, cfg.threads, server.nslots, server.max_io,
             "on" if server.fast is not None else "off", metrics_note), flush=True)
    while not stop:
        time.sleep(0.2)         # interrupted by the signal; the flag is checked right after
        while snapshots:
            snapshots.pop()
            _dump_snapshot(args.tracemalloc_dir)
    print("rpcsrv: stopping", file=sys.stderr, flush=True)
    if httpd is not None:
        httpd.stop()
    server.stop()
    st = server.allocator.stats()
    left = server.still_running()
    print("rpcsrv: stopped after %d requests; allocator pages still allocated: %d%s"
          % (server.requests_served, st["allocated"], "; threads still running: %s" % left if left else ""),
          file=sys.stderr, flush=True)
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
