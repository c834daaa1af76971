"""Read ONC RPC messages out of a packet capture with tshark.

Why tshark: it is Wireshark's dissector, packaged by Debian and kept up to
date with the protocols; it reassembles TCP streams, joins RPC records split
over several segments (and over several record fragments), finds several
records in one segment, and decodes NFSv3 and MOUNT v3 field by field.  Doing
that by hand (pcap/pcapng parsing, TCP reassembly with retransmissions and
holes) is a project of its own; this module only drives tshark and turns its
JSON into :class:`Rpc` values.

tshark runs as a subprocess with ``-T json`` (one JSON object per frame,
written as it reads) and is parsed a frame at a time, so memory stays flat
on large captures.  Duplicate keys matter in that JSON (a frame with two RPC
records has two ``rpc`` layers, a READDIRPLUS reply has one
``nfs.readdir.entry`` key per entry), so objects are read as lists of pairs.

Owns no threads or locks; one tshark process per :func:`read_rpcs` call,
always waited for (killed if the caller stops early).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

__all__ = ["CaptureError", "Rpc", "Frames", "read_rpcs", "parse_server", "tshark_path"]

NFS_PROGRAM, MOUNT_PROGRAM = 100003, 100005


class CaptureError(Exception):
    """The capture cannot be read at all (missing tshark, not a capture file)."""


@dataclass
class Rpc:
    """One RPC message as tshark decoded it.

    ``conn`` names the transport connection: ``("tcp", stream index)`` or
    ``("udp", client ip, client port, server ip, server port)``; ``client`` is
    (ip, port) of the calling side.  ``leaves`` is the NFS/MOUNT layer
    flattened to (key, value) pairs in wire order; ``entries`` holds one list
    of leaves per READDIR(PLUS) reply entry.
    """
    frame: int
    time: float
    conn: tuple
    client: tuple
    server: tuple
    xid: int
    call: bool
    program: int
    version: int
    procedure: int
    accepted: bool = True          # reply: MSG_ACCEPTED and SUCCESS
    leaves: list = field(default_factory=list)
    entries: list = field(default_factory=list)

    def get(self, key: str, default=None):
        for k, v in self.leaves:
            if k == key:
                return v
        return default

    def all(self, key: str) -> list:
        return [v for k, v in self.leaves if k == key]


@dataclass
class Frames:
    """What was read, for the summary."""
    frames: int = 0
    rpc_frames: int = 0
    malformed: int = 0
    non_rpc: int = 0               # frames with no RPC message and no payload (ACKs, handshakes)
    undecoded: int = 0             # frames whose payload is not a decodable RPC message
    segments: int = 0              # frames holding part of a record that tshark reassembles
    lost_segments: int = 0         # frames tshark marks as following (or acking) a segment not captured
    cut_short: str = ""            # tshark's words when the file ends inside a packet
    tshark_errors: list = field(default_factory=list)


def tshark_path() -> str | None:
    return shutil.which("tshark")


def parse_server(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (ip, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--server wants HOST:PORT, got {text!r}")
    host = host.strip("[]")
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"--server: {host!r} is not an IP address") from None
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"--server: bad port {port!r}") from None
    if not 0 < p < 65536:
        raise ValueError(f"--server: port {p} out of range")
    return ip, p


def _flatten(node, out: list, entries: list | None = None) -> None:
    """Leaves of a pairs-list tree, in order; READDIR entries go to ``entries``."""
    for k, v in node:
        if isinstance(v, list) and (not v or isinstance(v[0], tuple)):
            if entries is not None and k == "nfs.readdir.entry":
                e: list = []
                _flatten(v, e)
                entries.append(e)
            else:
                _flatten(v, out, entries)
        elif isinstance(v, list):        # an array of scalars (rare)
            out.extend((k, x) for x in v)
        else:
            out.append((k, v))


def _layer_dict(layer) -> dict:
    leaves: list = []
    if isinstance(layer, list):
        _flatten(layer, leaves)
    d: dict = {}
    for k, v in leaves:
        d.setdefault(k, v)
    return d


def _int(v, default=0) -> int:
    try:
        return int(v, 0) if isinstance(v, str) else int(v)
    except (TypeError, ValueError):
        return default


def _frame_rpcs(layers, frames: Frames) -> list[Rpc]:
    """The RPC messages of one frame (a list of (layer name, tree) pairs)."""
    info = {}
    out: list[Rpc] = []
    cur: Rpc | None = None
    saw_rpc = False
    for name, layer in layers:
        if name == "frame":
            d = _layer_dict(layer)
            info["frame"] = _int(d.get("frame.number"))
            info["time"] = float(d.get("frame.time_epoch", 0) or 0)
        elif name in ("ip", "ipv6"):
            d = _layer_dict(layer)
            info["src"] = d.get(f"{name}.src")
            info["dst"] = d.get(f"{name}.dst")
        elif name == "tcp":
            d = _layer_dict(layer)
            info["proto"] = "tcp"
            info["stream"] = _int(d.get("tcp.stream"))
            info["sport"], info["dport"] = _int(d.get("tcp.srcport")), _int(d.get("tcp.dstport"))
            info["payload"] = _int(d.get("tcp.len")) > 0
            info["segment"] = "tcp.segment_data" in d      # held for reassembly with later frames
        elif name == "udp":
            d = _layer_dict(layer)
            info["proto"] = "udp"
            info["sport"], info["dport"] = _int(d.get("udp.srcport")), _int(d.get("udp.dstport"))
            info["payload"] = _int(d.get("udp.length")) > 8
        elif name == "_ws.malformed":
            frames.malformed += 1
            cur = None
        elif name == "rpc":
            d = _layer_dict(layer)
            if "rpc.xid" not in d or "rpc.msgtyp" not in d or "proto" not in info:
                cur = None
                continue
            call = d["rpc.msgtyp"] == "0"
            me = (info.get("src"), info.get("sport"))
            peer = (info.get("dst"), info.get("dport"))
            client, server = (me, peer) if call else (peer, me)
            if info["proto"] == "tcp":
                conn = ("tcp", info["stream"])
            else:
                conn = ("udp", *client, *server)
            accepted = call or (d.get("rpc.replystat") == "0" and d.get("rpc.state_accept", "0") == "0")
            cur = Rpc(frame=info.get("frame", 0), time=info.get("time", 0.0), conn=conn, client=client,
                      server=server, xid=_int(d["rpc.xid"]), call=call, program=_int(d.get("rpc.program")),
                      version=_int(d.get("rpc.programversion")), procedure=_int(d.get("rpc.procedure")),
                      accepted=accepted)
            out.append(cur)
            saw_rpc = True
        elif name in ("nfs", "mount") and cur is not None and isinstance(layer, list):
            _flatten(layer, cur.leaves, cur.entries)
            cur = None
    if saw_rpc:
        frames.rpc_frames += 1
    elif info.get("segment"):
        frames.segments += 1
    elif info.get("payload"):
        frames.undecoded += 1
    else:
        frames.non_rpc += 1
    return out


def _objects(stream):
    """Yield the text of each top-level object of tshark's ``-T json`` array.
    tshark indents a packet's braces by two spaces, nothing else there, and
    writes one field per line."""
    buf: list[str] = []
    inside = False
    for line in stream:
        if not inside:
            if line.startswith("  {"):
                inside = True
                buf = [line]
            continue
        if '"nfs.data": "' in line:
            # READ/WRITE payload as hex: never used, up to 3 bytes of text per byte; drop it
            # before parsing (the key stays, so the object's commas stay valid)
            line = line[:line.index('"nfs.data"')] + '"nfs.data": ""' + ("," if line.rstrip().endswith(",") else "") + "\n"
        buf.append(line)
        if line.startswith("  }"):
            inside = False
            text = "".join(buf).rstrip().rstrip(",")
            yield text


_LOST = ('"tcp.analysis.lost_segment"', '"tcp.analysis.ack_lost_segment"')


def _read_position(pid: int, path: str) -> int | None:
    """How far process ``pid`` has read into ``path`` (its file offset, from
    /proc), or None where that cannot be seen."""
    try:
        real = os.path.realpath(path)
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == real:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("pos:"):
                            return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def read_rpcs(path: str, server: tuple[str, int] | None = None, frames: Frames | None = None,
              progress=None, every: float = 5.0):
    """Yield :class:`Rpc` for every RPC message (NFS, MOUNT and others) in
    ``path`` in capture order.  ``server`` (ip, port) makes tshark decode that
    port as RPC over TCP and UDP and keeps only traffic to or from that host;
    without it, RPC is found on the standard ports and by tshark's RPC
    heuristics.  Fills ``frames`` with counts; raises CaptureError when tshark
    is missing or the file is not a capture.  ``progress(frames, fraction)``
    is called every ``every`` seconds while reading: the frames read so far
    and the fraction of the file tshark has read (None when not known)."""
    exe = tshark_path()
    if exe is None:
        raise CaptureError("tshark is not installed (apt-get install tshark; `make setup` does it)")
    frames = frames if frames is not None else Frames()
    cmd = [exe, "-n", "-r", path, "-T", "json", "-J", "frame ip ipv6 tcp udp rpc nfs mount _ws.malformed",
           "-o", "tcp.desegment_tcp_streams:TRUE", "-o", "rpc.desegment_rpc_over_tcp:TRUE",
           "-o", "rpc.defragment_rpc_over_tcp:TRUE"]
    if server is not None:
        ip, port = server
        cmd += ["-d", f"tcp.port=={port},rpc", "-d", f"udp.port=={port},rpc",
                "-Y", f"{'ipv6' if ':' in ip else 'ip'}.addr=={ip}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8", errors="replace")
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    next_report = time.monotonic() + every
    try:
        for text in _objects(proc.stdout):
            frames.frames += 1
            if progress is not None and frames.frames % 512 == 0 and time.monotonic() >= next_report:
                next_report = time.monotonic() + every
                pos = _read_position(proc.pid, path)
                progress(frames.frames, min(1.0, pos / size) if pos is not None and size else None)
            if any(mark in text for mark in _LOST):
                frames.lost_segments += 1
            try:
                doc = json.loads(text, object_pairs_hook=list)
                layers = dict(dict(doc)["_source"])["layers"]
                rpcs = _frame_rpcs(layers, frames)
            except (ValueError, KeyError, TypeError, AttributeError):
                frames.malformed += 1          # JSON this module does not expect: count, go on
                continue
            yield from rpcs
    finally:
        if proc.poll() is None:
            try:
                proc.stdout.close()
            except OSError:
                pass
        try:
            err = proc.stderr.read()
        except (OSError, ValueError):
            err = ""
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    msgs = [ln.strip() for ln in err.splitlines()
            if ln.strip() and "Running as user" not in ln and "could be dangerous" not in ln]
    for m in msgs:
        if "cut short in the middle of a packet" in m:
            frames.cut_short = m
        else:
            frames.tshark_errors.append(m)
    if proc.returncode not in (0, None) and frames.frames == 0 and not frames.cut_short:
        detail = "; ".join(frames.tshark_errors) or f"tshark exited with status {proc.returncode}"
        raise CaptureError(detail.replace("tshark: ", ""))
