"""A bounded flood of ONC RPC calls over UDP: packets per second against an RPC-over-UDP server.

python-libnfs does not speak UDP for NFS, so this is its own small RPC
client (RFC 5531 call header, AUTH_NONE, hand-packed XDR). Each of `procs`
processes owns one connected UDP socket and keeps `window` calls
outstanding, each with its own xid; a reply retires its xid and a new call
goes out. Nothing is retransmitted: a call without a reply after
`loss_timeout` seconds is counted lost and its window slot reused. Calls are
NULL (op "null"), NFSv3 GETATTR of the export root (op "getattr", the handle
from a MOUNT over UDP first) or both alternately (op "mix").

Phases are on the shared monotonic clock: the processes start sending at
t0, count from t0 + warmup to t0 + warmup + duration (a reply counts in the
phase it arrives in), and stop. The caller gets on_phase("run") and
on_phase("end") at those instants (to scrape the server's metrics over the
same window).

This module never imports alloc or rpcsrv.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import select
import socket
import struct
import sys
import time

from ..common.rpcwire import MOUNT_PROGRAM, MOUNT_V3, NFS_PROGRAM, NFS_V3, opaque as pack_opaque, pack_call

_XID = struct.Struct(">I")
_REPLY_HEAD = struct.Struct(">6I")    # xid REPLY MSG_ACCEPTED verf_flavor verf_len(0) accept_stat
OPS = ("null", "getattr", "mix")


class FloodError(Exception):
    pass


def call_once(host: str, port: int, prog: int, vers: int, proc: int, args: bytes = b"",
              timeout: float = 2.0, tries: int = 3) -> bytes:
    """One call (retransmitted up to `tries` times): the result bytes after an accepted SUCCESS header."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, port))
        s.settimeout(timeout)
        xid = int.from_bytes(os.urandom(4), "big")
        msg = pack_call(xid, prog, vers, proc, args)
        for _ in range(tries):
            s.send(msg)
            try:
                while True:
                    data = s.recv(65536)
                    if len(data) >= 24 and _XID.unpack_from(data)[0] == xid:
                        break
            except socket.timeout:
                continue
            _, mtype, stat, _, vlen, acc = _REPLY_HEAD.unpack_from(data)
            if mtype != 1 or stat != 0 or vlen != 0 or acc != 0:
                raise FloodError("call %d/%d/%d refused: reply %r" % (prog, vers, proc, data[:32]))
            return data[24:]
        raise FloodError("no reply from %s:%d over UDP" % (host, port))
    finally:
        s.close()


def mount_root(host: str, port: int, path: str) -> bytes:
    """MOUNT v3 MNT over UDP: the export's root file handle."""
    res = call_once(host, port, MOUNT_PROGRAM, MOUNT_V3, 1, pack_opaque(path.encode()))
    status, = struct.unpack_from(">I", res)
    if status != 0:
        raise FloodError("MNT %s failed: mountstat3 %d" % (path, status))
    n, = struct.unpack_from(">I", res, 4)
    return res[8:8 + n]


def _templates(op: str, fh: bytes | None):
    null = bytearray(pack_call(0, NFS_PROGRAM, NFS_V3, 0))
    if op == "null":
        return [null]
    if fh is None:
        raise FloodError("op %s needs a file handle" % op)
    getattr_ = bytearray(pack_call(0, NFS_PROGRAM, NFS_V3, 1, pack_opaque(fh)))
    return [getattr_] if op == "getattr" else [null, getattr_]


def _worker(idx: int, host: str, port: int, op: str, fh, window: int, t0: float, warmup: float,
            duration: float, loss_timeout: float, out) -> None:
    """One flooding process: puts its counters on `out`."""
    res = {"sent": 0, "replies": 0, "lost": 0, "errors": 0, "bad": 0, "send_errors": 0,
           "latency_sum": 0.0}
    try:
        templates = _templates(op, fh)
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        s.connect((host, port))
        s.setblocking(False)
        fd = s.fileno()
        pack_xid = _XID.pack_into
        unpack_xid = _XID.unpack_from
        now = time.monotonic
        outstanding = {}
        xid = ((os.getpid() & 0x3FF) << 22) | (idx << 16)
        k = 0
        run_start, run_end = t0 + warmup, t0 + warmup + duration
        while now() < t0:
            time.sleep(min(0.01, max(0.0, t0 - now())))
        counted = False
        next_sweep = now() + loss_timeout / 4
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        ntpl = len(templates)
        while True:
            t = now()
            if t >= run_end:
                break
            counted = t >= run_start
            while len(outstanding) < window:
                xid = (xid + 1) & 0xFFFFFFFF
                msg = templates[k % ntpl]
                k += 1
                pack_xid(msg, 0, xid)
                try:
                    s.send(msg)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    if counted:
                        res["send_errors"] += 1
                    time.sleep(0.001)
                    break
                outstanding[xid] = t
                if counted:
                    res["sent"] += 1
            if not poll.poll(10):
                pass
            t = now()
            counted = run_start <= t < run_end
            while True:
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:                 # ICMP port unreachable and the like
                    if counted:
                        res["errors"] += 1
                    break
                if len(data) < 24:
                    if counted:
                        res["bad"] += 1
                    continue
                sent_at = outstanding.pop(unpack_xid(data)[0], None)
                if sent_at is None:
                    continue                    # a late reply to a call already counted lost
                if counted:
                    res["replies"] += 1
                    res["latency_sum"] += t - sent_at
                    if data[8:12] != b"\0\0\0\0" or data[20:24] != b"\0\0\0\0":
                        res["errors"] += 1
            if t >= next_sweep:
                limit = t - loss_timeout
                old = [x for x, ts in outstanding.items() if ts < limit]
                for x in old:
                    del outstanding[x]
                if counted:
                    res["lost"] += len(old)
                next_sweep = t + loss_timeout / 4
        s.close()
    except Exception as e:  # report, never hang the parent
        res["failure"] = "%s: %s" % (type(e).__name__, e)
    out.put(res)


def run_flood(host: str, port: int, *, procs: int = 4, window: int = 32, op: str = "null",
              fh: bytes | None = None, warmup: float = 1.0, duration: float = 5.0,
              loss_timeout: float = 0.5, on_phase=None) -> dict:
    """Flood, return {"calls_per_s", "replies", "sent", "lost", "errors", ...} over the measured window."""
    if op not in OPS:
        raise ValueError("op must be one of %s" % ", ".join(OPS))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    t0 = time.monotonic() + 0.5 + 0.05 * procs
    ps = [ctx.Process(target=_worker, args=(i, host, port, op, fh, window, t0, warmup, duration,
                                             loss_timeout, out), daemon=True) for i in range(procs)]
    for p in ps:
        p.start()
    for phase, at in (("run", t0 + warmup), ("end", t0 + warmup + duration)):
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if on_phase is not None:
            on_phase(phase)
    results = []
    deadline = time.monotonic() + 30 + loss_timeout
    for _ in ps:
        try:
            results.append(out.get(timeout=max(0.1, deadline - time.monotonic())))
        except Exception:
            break
    for p in ps:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)
    if len(results) < procs:
        raise FloodError("%d of %d flood processes reported nothing" % (procs - len(results), procs))
    fails = [r["failure"] for r in results if "failure" in r]
    if fails:
        raise FloodError("flood process failed: %s" % fails[0])
    tot = {k: sum(r[k] for r in results) for k in ("sent", "replies", "lost", "errors", "bad", "send_errors")}
    lat = sum(r["latency_sum"] for r in results)
    tot.update(calls_per_s=tot["replies"] / duration, duration=duration, procs=procs, window=window, op=op,
               mean_latency_us=lat / tot["replies"] * 1e6 if tot["replies"] else float("nan"))
    return tot


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadgen.flood.udpflood",
                                description="Flood an RPC-over-UDP server with NULL/GETATTR calls; print calls/s.")
    p.add_argument("address", metavar="HOST:PORT")
    p.add_argument("--export", default=None, help="export path to MOUNT (needed for getattr/mix)")
    p.add_argument("--op", choices=OPS, default="null")
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--time", type=float, default=5.0)
    a = p.parse_args(argv)
    host, _, port = a.address.rpartition(":")
    host = host.strip("[]")
    try:
        fh = mount_root(host, int(port), a.export) if a.op != "null" else None
        r = run_flood(host, int(port), procs=a.procs, window=a.window, op=a.op, fh=fh, warmup=a.warmup,
                      duration=a.time)
    except FloodError as e:
        print("udpflood: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
