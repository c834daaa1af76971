"""The compiled UDP flood in several processes: RPC calls (NULL, root GETATTR) at a bounded rate, loopback only.

Each of `procs` forked processes runs loadgen/flood/_flood.pyx's sendmmsg loop
(GIL released, no Python per datagram) against one address for `duration`
seconds at no more than `rate` datagrams/s, and reports its counters on a
pipe. Only loopback addresses (127.0.0.0/8) are accepted: this is a load
generator for a server on this machine, never for another host.

Start() returns at once (the caller scrapes the server while the flood
runs); wait() joins the processes, with a deadline, and sums their counters.
This module imports neither alloc nor rpcsrv.
"""

from __future__ import annotations

import ipaddress
import multiprocessing

from ..common.rpcwire import NFS_PROGRAM, NFS_V3, opaque, pack_call

__all__ = ["XdpFlood", "FloodError", "null_call", "getattr_call", "MAX_PROCS"]

MAX_PROCS = 16


class FloodError(Exception):
    pass


def null_call() -> bytes:
    """An NFSv3 NULL call with AUTH_NONE (xid 0; the flood numbers each datagram)."""
    return pack_call(0, NFS_PROGRAM, NFS_V3, 0)


def getattr_call(fh: bytes) -> bytes:
    """An NFSv3 GETATTR of handle fh with AUTH_NONE (the export root's: answered from C while it holds)."""
    return pack_call(0, NFS_PROGRAM, NFS_V3, 1, opaque(fh))


def _worker(conn, host, port, template, duration, rate, batch, drain, xid0):
    try:
        from . import _flood
        res = _flood.flood(host, port, template, duration, rate, batch, drain, xid0)
    except Exception as e:  # report, never hang the parent
        res = {"failure": "%s: %s" % (type(e).__name__, e)}
    conn.send(res)
    conn.close()


class XdpFlood:
    """XdpFlood(host, port, procs, duration, rate, drain): `rate` is per process (datagrams/s)."""

    def __init__(self, host: str, port: int, *, procs: int = 2, duration: float = 5.0, rate: float = 2e6,
                 drain: bool = False, batch: int = 32, template: bytes | None = None, templates=None):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise FloodError("%s is not an IP address" % host) from None
        if ip.version != 4 or not ip.is_loopback:
            raise FloodError("the flood only targets loopback IPv4 addresses (127.0.0.0/8), not %s" % host)
        if not 1 <= procs <= MAX_PROCS:
            raise FloodError("flood processes must be in 1..%d" % MAX_PROCS)
        from . import _flood
        if not 0 < duration <= _flood.MAX_DURATION:
            raise FloodError("flood duration must be in (0, %g] s" % _flood.MAX_DURATION)
        if not 0 < rate <= _flood.MAX_RATE:
            raise FloodError("flood rate must be in (0, %g] datagrams/s per process" % _flood.MAX_RATE)
        # process i sends templates[i % len(templates)]
        self.templates = list(templates) if templates else [template or null_call()]
        self.args = (host, port, duration, rate, batch, drain)
        self.procs = procs
        self.duration = duration
        self.ps = []
        self.conns = []

    def start(self) -> "XdpFlood":
        ctx = multiprocessing.get_context("fork")
        for i in range(self.procs):
            r, w = ctx.Pipe(duplex=False)
            host, port, duration, rate, batch, drain = self.args
            p = ctx.Process(target=_worker, args=(w, host, port, self.templates[i % len(self.templates)], duration,
                                                  rate, batch, drain, (i + 1) << 24), daemon=True)
            p.start()
            w.close()
            self.ps.append(p)
            self.conns.append(r)
        return self

    def wait(self) -> dict:
        """Join the processes (deadline: duration + 30 s); summed counters, FloodError on a failure."""
        results = []
        for r in self.conns:
            if r.poll(self.duration + 30):
                try:
                    results.append(r.recv())
                except EOFError:
                    pass
        for p in self.ps:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        if len(results) < self.procs:
            raise FloodError("%d of %d flood processes reported nothing" % (self.procs - len(results), self.procs))
        fails = [r["failure"] for r in results if "failure" in r]
        if fails:
            raise FloodError("flood process failed: %s" % fails[0])
        tot = {k: sum(r[k] for r in results) for k in ("sent", "send_errors", "replies", "bad_replies")}
        tot["elapsed"] = max(r["elapsed"] for r in results)
        tot["procs"] = self.procs
        return tot

    def stop(self) -> None:
        """Kill what is still running (an interrupted bench)."""
        for p in self.ps:
            if p.is_alive():
                p.kill()
                p.join(5)

