"""loadgen fuzz (python -m loadgen.reliability.fuzz): send mutated RPC records to a live rpcsrv and count what went wrong.

Starts `python -m rpcsrv` on 127.0.0.1:0 with a fresh export (a few files and
directories, so handles and names are real), builds a valid call for every
NFSv3 and MOUNT v3 procedure, then for --seconds sends mutations of them over
many connections: bit and byte flips, truncations, wrong length words, wrong
record markers, random fragment splits, random garbage, duplicated and
reordered calls. After every batch a fresh connection must get a NULL
answered within --hang-timeout (else a hang is counted); the server process
must stay alive (else a crash). At the end the server is stopped with
SIGTERM and must exit 0 reporting no allocator page still allocated.

Prints records sent, replies, closes, crashes, hangs and pages leaked; exits
non-zero if any of the last three is not 0. Loopback only; bounded in time.
Calls are packed with loadgen's own RPC codec (rpcwire): the fuzzer is an
outside client and imports nothing of the server.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import struct
import sys
import tempfile
import time

import clikit

from ..common.serverproc import RpcsrvProcess, ServerError, leaked_pages
from ..common.rpcwire import MOUNT_PROGRAM as MOUNT, NFS_PROGRAM as NFS, RpcWireError, TcpRpcClient, auth_sys, frame, \
    opaque, pack_call, u32, u64

CRED = auth_sys(0, 0, (0,), b"fuzz", 1)


def start_server(export: str, threads: int, fast_path: str | None = None,
                 max_block_size: str | None = None) -> RpcsrvProcess:
    """rpcsrv on 127.0.0.1:0 with short record and idle timeouts (so a fuzzed connection cannot hold a
    worker); fast_path "on"/"off" picks the request path (None: the server's default, on);
    max_block_size: its --max-block-size (None: the server's 1M)."""
    extra = ("--record-timeout", "2", "--idle-timeout", "5",
             # the handle key beside the export, in the directory removed at the end
             "--state-dir", os.path.join(os.path.dirname(export), "state"))
    if max_block_size:
        extra += ("--max-block-size", max_block_size)
    try:
        return RpcsrvProcess(export, threads=threads, arena_mib=64, fast_path=fast_path, extra=extra)
    except ServerError as e:
        raise SystemExit("fuzz: %s" % e) from None


def templates(port: int, export: str) -> list[bytes]:
    """One valid call record body (header + args) per procedure, with real handles and names."""
    c = TcpRpcClient("127.0.0.1", port, cred=CRED)

    def handle(res: bytes) -> bytes:
        status, n = struct.unpack_from(">2I", res)
        if status != 0:
            raise SystemExit("fuzz: setting up the templates failed (status %d)" % status)
        return res[8:8 + n]

    root = handle(c.call(1, MOUNT, 3, 1, opaque(export.encode())))

    def lookup(name):
        return handle(c.call(2, NFS, 3, 3, opaque(root) + opaque(name)))

    fh, dfh = lookup(b"file"), lookup(b"dir")
    c.close()

    packers = {"opaque": opaque, "string": opaque, "uint": u32, "uhyper": u64}

    def args(*parts):
        return b"".join(packers[kind](v) for kind, v in parts)

    sattr_none = args(("uint", 0), ("uint", 0), ("uint", 0), ("uint", 0), ("uint", 0), ("uint", 0))
    calls = {
        (NFS, 0): b"", (NFS, 1): args(("opaque", fh)),
        (NFS, 2): args(("opaque", fh)) + sattr_none + args(("uint", 0)),
        (NFS, 3): args(("opaque", root), ("string", b"file")),
        (NFS, 4): args(("opaque", fh), ("uint", 0x3F)),
        (NFS, 5): args(("opaque", fh)),
        (NFS, 6): args(("opaque", fh), ("uhyper", 0), ("uint", 8192)),
        (NFS, 7): args(("opaque", fh), ("uhyper", 0), ("uint", 5), ("uint", 0), ("opaque", b"fuzz!")),
        (NFS, 8): args(("opaque", dfh), ("string", b"new"), ("uint", 0)) + sattr_none,
        (NFS, 9): args(("opaque", dfh), ("string", b"sub")) + sattr_none,
        (NFS, 10): args(("opaque", dfh), ("string", b"ln")) + sattr_none + args(("string", b"target")),
        (NFS, 11): args(("opaque", dfh), ("string", b"fifo"), ("uint", 7)) + sattr_none,
        (NFS, 12): args(("opaque", dfh), ("string", b"new")),
        (NFS, 13): args(("opaque", dfh), ("string", b"sub")),
        (NFS, 14): args(("opaque", dfh), ("string", b"new"), ("opaque", dfh), ("string", b"new2")),
        (NFS, 15): args(("opaque", fh), ("opaque", dfh), ("string", b"hard")),
        (NFS, 16): args(("opaque", root), ("uhyper", 0)) + b"\0" * 8 + args(("uint", 4096)),
        (NFS, 17): args(("opaque", root), ("uhyper", 0)) + b"\0" * 8 + args(("uint", 1024), ("uint", 8192)),
        (NFS, 18): args(("opaque", root)), (NFS, 19): args(("opaque", root)), (NFS, 20): args(("opaque", root)),
        (NFS, 21): args(("opaque", fh), ("uhyper", 0), ("uint", 0)),
        (MOUNT, 0): b"", (MOUNT, 1): args(("string", export.encode())), (MOUNT, 2): b"",
        (MOUNT, 3): args(("string", export.encode())), (MOUNT, 4): b"", (MOUNT, 5): b"",
    }
    return [pack_call(0, prog, 3, proc, a, CRED) for (prog, proc), a in calls.items()]


def mutate(rnd: random.Random, body: bytes) -> bytes:
    """One framed byte stream: a mutated call, framed well or badly."""
    b = bytearray(body)
    b[0:4] = struct.pack(">I", rnd.getrandbits(32))            # a fresh xid
    kind = rnd.randrange(9)
    if kind == 0:
        for _ in range(rnd.randrange(1, 8)):
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
    elif kind == 1:
        for _ in range(rnd.randrange(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    elif kind == 2:
        b = b[:rnd.randrange(len(b))]
    elif kind == 3 and len(b) >= 48:                          # a length word somewhere set huge or odd
        i = rnd.randrange(40, len(b) - 3) & ~3
        b[i:i + 4] = struct.pack(">I", rnd.choice([0xFFFFFFFF, 0x7FFFFFFF, 65, 4097, 1 << 20, 3]))
    elif kind == 4:
        b += rnd.randbytes(rnd.randrange(1, 64))
    elif kind == 5:
        b = bytearray(rnd.randbytes(rnd.randrange(1, 200)))
    body = bytes(b) or b"\0\0\0\0"
    framing = rnd.randrange(8)
    if framing == 0:                                          # marker lies about the length
        return struct.pack(">I", 0x80000000 | rnd.randrange(1 << 31)) + body
    if framing == 1:
        return struct.pack(">I", 0x80000000) + body           # zero-length fragment
    if framing == 2 and body:
        return frame(body, max_fragment=rnd.randrange(1, len(body) + 1))
    if framing == 3:
        return struct.pack(">I", len(body)) + body            # last-fragment bit missing
    return frame(body)


def probe(port: int, timeout: float) -> bool:
    try:
        c = TcpRpcClient("127.0.0.1", port, timeout, CRED)
        try:
            c.call(0xFEED, NFS, 3, 0)
            return True
        finally:
            c.close()
    except (OSError, ConnectionError, RpcWireError):
        return False


def run(seconds: float, seed: int, threads: int = 4, hang_timeout: float = 10.0, out=sys.stdout,
        fast_path: str | None = None, max_block_size: str | None = None) -> dict:
    rnd = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="nfsbulk-fuzz-")
    export = os.path.join(tmp, "export")
    os.makedirs(os.path.join(export, "dir"))
    with open(os.path.join(export, "file"), "wb") as f:
        f.write(os.urandom(20000))
    srv = start_server(export, threads, fast_path, max_block_size)
    proc, port = srv.proc, srv.port
    res = {"records": 0, "replies": 0, "closed": 0, "crashes": 0, "hangs": 0, "pages_leaked": None,
           "seconds": seconds, "seed": seed, "path": "fast path" if srv.fast_path else "Python path",
           "max_io": srv.max_io}
    try:
        bodies = templates(port, export)
        t_end = time.monotonic() + seconds
        last_report = time.monotonic()
        while time.monotonic() < t_end:
            socks = []
            for _ in range(rnd.randrange(1, 6)):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                except OSError:
                    break
                for _ in range(rnd.randrange(1, 12)):
                    data = mutate(rnd, rnd.choice(bodies))
                    try:
                        s.sendall(data)
                        res["records"] += 1
                    except OSError:
                        break
                socks.append(s)
            for s in socks:
                try:
                    s.shutdown(socket.SHUT_WR)
                    s.settimeout(2)
                    while True:
                        d = s.recv(1 << 16)
                        if not d:
                            res["closed"] += 1
                            break
                        res["replies"] += 1
                except OSError:
                    res["closed"] += 1
                finally:
                    s.close()
            if proc.poll() is not None:
                res["crashes"] += 1
                break
            if not probe(port, hang_timeout):
                res["hangs"] += 1
                if proc.poll() is not None:
                    res["crashes"] += 1
                break
            if time.monotonic() - last_report > 5:
                print("fuzz: %d records sent, %d s left" % (res["records"], max(0, t_end - time.monotonic())),
                      file=sys.stderr, flush=True)
                last_report = time.monotonic()
    finally:
        if proc.poll() is None:
            try:
                code, err = srv.stop(timeout=60)
                leaked = leaked_pages(err)
                res["pages_leaked"] = leaked if leaked >= 0 else None
                if code != 0:
                    res["crashes"] += 1
            except ServerError:
                res["hangs"] += 1
        else:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("fuzz: %(records)d records sent in %(seconds)g s (seed %(seed)d, %(path)s, rtmax %(max_io)s): "
          "%(replies)d reply reads, "
          "%(closed)d connections closed by the server; crashes %(crashes)d, hangs %(hangs)d, "
          "allocator pages leaked %(pages_leaked)s" % res, file=out, flush=True)
    return res


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time", "--seconds", dest="seconds", type=clikit.seconds_arg(), default=60.0,
                   metavar="SECONDS", help="how long to send (default 60; --seconds is the old spelling)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--threads", type=clikit.int_arg(1, 4096, "threads"), default=4,
                   help="server worker threads (default 4)")
    p.add_argument("--hang-timeout", type=clikit.seconds_arg(), default=10.0, metavar="SECONDS",
                   help="a NULL probe unanswered this long after a batch counts as a hang (default 10)")
    p.add_argument("--fast-path", choices=("on", "off"), default=None,
                   help="the server's request path: on (compiled, rpcsrv's default) or off (the Python path)")
    p.add_argument("--max-block-size", metavar="SIZE", default=None,
                   help="the server's --max-block-size, e.g. 4M (default: the server's 1M)")


def main_args(a) -> int:
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    res = run(a.seconds, seed, a.threads, a.hang_timeout, fast_path=a.fast_path, max_block_size=a.max_block_size)
    return 0 if res["crashes"] == 0 and res["hangs"] == 0 and res["pages_leaked"] == 0 else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadgen.reliability.fuzz", description=__doc__.split("\n\n")[0],
                                epilog="Exit status 0 when crashes, hangs and leaked pages are all 0.")
    add_arguments(p)
    return main_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
