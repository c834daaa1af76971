"""`loadgen capture-to-loadfile`: its help, flags and exit statuses.

The conversion itself is :mod:`loadgen.capture.capture` (pairing, paths, folding,
rendering) over :mod:`loadgen.capture.capture_tshark` (tshark as the dissector).
Single-threaded; writes the output through a temporary file renamed into
place, so a failed run never leaves a half-written loadfile.
"""
from __future__ import annotations

import os
import sys
import time

from .capture import CaptureError, convert, render
from .capture_tshark import parse_server

__all__ = ["HELP_DESCRIPTION", "HELP_EPILOG", "add_arguments", "main"]

HELP_DESCRIPTION = """\
Make a dbench NFS loadfile from a packet capture of NFSv3 traffic (TCP or UDP),
so `loadgen run --loadfile` (or real dbench) can replay your own workload.

How to capture (as root, on the NFS server or a client; P is the server's port,
2049 for a kernel server; add the MOUNT port too so the export root is known):

    tcpdump -i lo -s 0 -w nfs.pcap port P          # loopback, e.g. rpcsrv
    tcpdump -i eth0 -s 0 -w nfs.pcap host SERVER   # a real network

-s 0 keeps whole packets (a cut packet cannot be decoded). Start the capture
before the client mounts: handles looked up before it are given synthetic
paths. Then:

    loadgen capture-to-loadfile nfs.pcap -o my.load --server 127.0.0.1:P
    loadgen run URL --loadfile my.load --run-once --strict

Decoding is tshark's (Wireshark): TCP reassembly, records split over segments
or several records per segment. Calls are paired with replies by connection
and XID; each call becomes one line whose status is the reply's.
"""

HELP_EPILOG = """\
What is folded (--walks drop, the default), because the replaying client makes
these calls itself: LOOKUP3s that only resolved the path of the next call, the
LOOKUP3 that follows a CREATE3 of the same name, the ACCESS3 that opened a file
right before its READ3/WRITE3/COMMIT3, READDIR(PLUS)3 continuation calls, the
calls of a mount (NULL, FSINFO3, PATHCONF3, GETATTR3 of the root) and the
COMMIT3s of closing a file (right before its REMOVE3/RENAME3, or after the
client's last call). What is skipped: NULL and MKNOD3 calls, other NFS
versions and RPC programs, retransmissions, replies whose call is not in the
capture (one that starts mid-connection), data that is no decodable RPC
message, malformed frames. A summary of all of it goes to stderr, with a
warning when the capture dropped packets (frames after a TCP segment missing
from the file); a long conversion prints its progress there every 5 s.

Exit status: 0 written; 1 the capture holds no NFSv3 call to write (nothing
written); 2 usage error, tshark missing, or a file tshark cannot read.
"""


def add_arguments(p) -> None:
    """Flags of `loadgen capture-to-loadfile`."""
    p.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file (tcpdump -w, tshark -w, dumpcap)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.load",
                   help="loadfile to write ('-' for stdout)")
    p.add_argument("--client-per", choices=["port", "host", "none"], default="port",
                   help="port: one client per TCP connection or UDP source port; host: per client "
                        "address. Both put captured client k in /clients/client1/c<k> (/clients/client1 "
                        "when there is one), which every replaying client rewrites to its own directory as "
                        "dbench does, after Deltree and MKDIR3 set-up lines so the file can loop; a "
                        "captured client that worked in a /clients/clientN of its own is re-rooted, not "
                        "nested. none: one client, paths as under the export root, for one pass on a copy "
                        "of the captured tree (default port)")
    p.add_argument("--timestamps", choices=["keep", "drop"], default="keep",
                   help="keep: each line starts with the seconds since the first call, so a replay paces "
                        "as captured; drop: no timestamps, replay flat out (default keep)")
    p.add_argument("--server", metavar="HOST:PORT",
                   help="the NFS server's address and port: decode that port as RPC over TCP and UDP "
                        "(needed for a non-standard port such as rpcsrv's) and keep only traffic of that "
                        "host. Without it, RPC is found on port 2049 and by tshark's RPC heuristics")
    p.add_argument("--walks", choices=["drop", "keep"], default="drop",
                   help="drop: fold the calls a replaying client makes by itself (path-walk LOOKUP3s, "
                        "open-time ACCESS3s, READDIR continuations, mount-time calls, close-time COMMIT3s); "
                        "keep: write every call (default drop)")


def _progress(capture: str):
    """A progress printer for long conversions: one stderr line every 5 s."""
    start = time.monotonic()
    name = os.path.basename(capture)

    def report(frames: int, fraction) -> None:
        done = f"{fraction * 100:.0f} % of {name} read, " if fraction is not None else f"{name}: "
        print(f"loadgen capture-to-loadfile: {done}{frames:,} frames decoded, "
              f"{time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return report


def main(args) -> int:
    """Run the conversion for parsed ``args``; returns the exit status."""
    server = None
    if args.server:
        try:
            server = parse_server(args.server)
        except ValueError as e:
            print(f"loadgen capture-to-loadfile: {e}", file=sys.stderr)
            return 2
    try:
        lines, summary, _clients = convert(args.capture, args.client_per, args.walks, server, _progress(args.capture))
    except CaptureError as e:
        print(f"loadgen capture-to-loadfile: {e}", file=sys.stderr)
        return 2
    if not lines:
        print(summary.text(), file=sys.stderr)
        if not args.server:
            hint = " (if the server uses a non-standard port, name it with --server HOST:PORT)"
        elif summary.frames.frames == 0:
            hint = f" (no frame is to or from {server[0]})"
        else:
            hint = ""
        print(f"loadgen capture-to-loadfile: no NFSv3 call to write in {args.capture}{hint}; "
              f"nothing written", file=sys.stderr)
        return 1
    text = render(lines, summary, args.client_per, args.timestamps)
    try:
        if args.output == "-":
            sys.stdout.write(text)
        else:
            tmp = args.output + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, args.output)
    except OSError as e:
        print(f"loadgen capture-to-loadfile: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 2
    print(summary.text(), file=sys.stderr)
    return 0
