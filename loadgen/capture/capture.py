"""Turn a capture of NFSv3 traffic into a dbench NFS loadfile.

Pipeline: :func:`capture_tshark.read_rpcs` yields RPC messages; calls are
paired with replies by (connection, XID); the paired calls are taken in call
order and each becomes one loadfile line whose paths come from a file handle
-> path map, whose numbers come from the call, and whose status comes from
the reply.

Rules (each one is counted in the :class:`Summary`):

* Paths.  MOUNT's MNT reply names the export root ``/``; LOOKUP, CREATE,
  MKDIR, SYMLINK and READDIRPLUS replies name new handles; a successful
  RENAME moves every path under the old name; a handle with several names
  (hard links) is written with its first name not yet removed
  (:mod:`loadgen.capture.capture_paths`).  A handle first seen in a call
  (it was looked up before the capture started) gets the synthetic path
  ``/pre-capture/fh-<8 hex digits of tshark's CRC32 hash of the handle>``; the
  header of the file says how many.
* Clients.  ``--client-per port`` (one client per TCP connection or UDP
  source port) and ``host`` (per source address) give each captured client a
  directory inside ``/clients/client1``, the directory dbench's and loadgen's
  replaying clients rewrite to their own name: ``/clients/client1`` itself
  for a one-client capture, ``/clients/client1/c<k>`` for captured client *k*
  of several.  Every replaying client therefore runs the whole captured mix
  in a tree nobody else touches, whatever ``--clients`` says.  ``Deltree`` and
  ``MKDIR3 ... *`` set-up lines at the top, as in dbench's nfs.load, make
  every pass of a looping replay start from an empty directory.  A captured
  client that itself worked in a ``/clients/client<j>`` of its own (a capture
  of loadgen or dbench) is re-rooted at it rather than nested, and its calls
  that made, removed or looked up that directory or its parents are folded
  (their statuses depended on which client came first); ``--walks keep``
  writes every call and so nests instead.  ``none`` keeps paths
  as they were under the export root (one pass on a copy of the original
  tree).
* Statuses.  ``0x%08x`` of the reply's nfsstat3; ``*`` when the reply is
  missing or the call was rejected at the RPC level.
* Folding (``--walks drop``, the default).  A replaying client resolves every
  path itself (loadgen walks it with LOOKUP3 on each call, dbench too), so
  the LOOKUP3s that only resolved the path of the next call are dropped: a
  run of successful LOOKUP3s is dropped where the path of each is the target
  or an ancestor of a target of the call that follows.  Likewise a LOOKUP3 of
  the name just CREATEd, the ACCESS3 that opened a file right before its
  READ3/WRITE3/COMMIT3, READDIR(PLUS)3 continuation calls (cookie != 0: the
  replayer reads to EOF), the calls a client makes while mounting (NULL,
  FSINFO3, PATHCONF3 and GETATTR3 of the root before any other call on the
  connection, at most four; the replayer mounts too) and the COMMIT3s of closing a file
  (right before its REMOVE3/RENAME3, or after the client's last other call:
  loadgen closes its handles there and libnfs commits a written file on
  close).  ``--walks keep`` writes them all.
* Not written: NULL, MKNOD3, NFS versions other than 3, other RPC programs,
  retransmitted calls (same connection and XID), replies without a call (a
  capture that starts mid-connection), malformed frames.

What a loadfile line cannot carry, so a replay differs there: SETATTR3's
attributes (loadgen sets the times; a truncation is not replayed), CREATE3's
mode (GUARDED/EXCLUSIVE; loadgen creates UNCHECKED), the data written, and
``..`` / ``.`` lookups beyond resolving them in place.  The folding above is
exact for one pass (``loadgen run --run-once``); a looping replay closes its
handles only at the end of the run.

Output grammar, accepted by loadgen's parser and by dbench's ``child.c``:
``[TIMESTAMP ]OP ["PATH" ["PATH2"]] [NUMBERS...] STATUS``, tokens separated
by one space, paths double-quoted and starting with ``/``, numbers in
decimal, status last; comments start with ``#``.  Names that such a line
cannot carry (a ``"``, a backslash, a control character, or a name ending in a
space) are skipped with a count.

Pure except for reading the capture (through tshark) and writing the output
file; no threads.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

from .capture_paths import PRE_CAPTURE, HandlePaths
from .capture_summary import Summary
from .capture_tshark import MOUNT_PROGRAM, NFS_PROGRAM, CaptureError, read_rpcs

__all__ = ["Summary", "convert", "render", "CaptureError", "PROC_NAMES"]

PROC_NAMES = {
    0: "NULL3", 1: "GETATTR3", 2: "SETATTR3", 3: "LOOKUP3", 4: "ACCESS3", 5: "READLINK3",
    6: "READ3", 7: "WRITE3", 8: "CREATE3", 9: "MKDIR3", 10: "SYMLINK3", 11: "MKNOD3",
    12: "REMOVE3", 13: "RMDIR3", 14: "RENAME3", 15: "LINK3", 16: "READDIR3", 17: "READDIRPLUS3",
    18: "FSSTAT3", 19: "FSINFO3", 20: "PATHCONF3", 21: "COMMIT3",
}
_PROBES = {0, 1, 19, 20}            # NULL, GETATTR, FSINFO, PATHCONF at mount time
_IO = {"READ3", "WRITE3", "COMMIT3"}
MAX_PROBES = 4                      # a mount sends a few; a client that only GETATTRs the root is load


@dataclass
class _Call:
    rpc: object
    reply: object = None


@dataclass
class Line:
    """One loadfile operation before rendering."""
    time: float
    client: int
    op: str
    paths: tuple
    numbers: tuple
    status: str
    targets: tuple = ()             # paths this call works on (for folding)


def _bad_name(name: str) -> bool:
    return (not name or name.endswith(" ") or any(c in name for c in '"\\/')
            or any(ord(c) < 32 or ord(c) == 127 for c in name))


class _Converter:
    def __init__(self, client_per: str, walks: str, summary: Summary):
        self.client_per = client_per
        self.walks = walks
        self.s = summary
        self.handles = HandlePaths()          # (server ip, fhandle) -> path under the export ("" = root)
        self.clients: dict = {}               # client key -> index (1-based)
        self.started: set = set()             # connections past their mount-time probes
        self.probes: Counter = Counter()      # connection -> probes folded so far

    def client_index(self, rpc) -> int:
        if self.client_per == "none":
            key = "all"
        elif self.client_per == "host":
            key = rpc.client[0]
        else:
            key = rpc.conn
        idx = self.clients.get(key)
        if idx is None:
            idx = self.clients[key] = len(self.clients) + 1
            desc = (f"{rpc.client[0]}:{rpc.client[1]} ({rpc.conn[0]})" if self.client_per == "port"
                    else rpc.client[0] if self.client_per == "host" else "every captured client")
            self.s.clients.append((f"client{idx}", desc))
        return idx

    # -- one call ------------------------------------------------------------
    def line(self, c: _Call) -> Line | None:
        rpc, rep = c.rpc, c.reply
        proc = rpc.procedure
        name = PROC_NAMES.get(proc)
        sip = rpc.server[0]
        if name is None or proc == 11:
            self.s.unsupported[name or f"procedure {proc}"] += 1
            return None
        fhs = rpc.all("nfs.fhandle")
        hashes = rpc.all("nfs.fh.hash")
        names = rpc.all("nfs.name")
        if proc == 0:
            self.s.folded["NULL calls"] += 1
            return None
        if (rpc.conn not in self.started and proc in _PROBES and self.walks == "drop"
                and self.probes[rpc.conn] < MAX_PROBES
                and (proc != 1 or (fhs and (sip, fhs[0]) in self.handles.roots))):
            self.probes[rpc.conn] += 1
            self.s.folded["calls made while mounting (FSINFO3, PATHCONF3, GETATTR3 of the root)"] += 1
            return None
        self.started.add(rpc.conn)
        if any(_bad_name(n) for n in names) or (proc == 10 and _bad_name_target(rpc.get("nfs.symlink.to", ""))):
            self.s.bad_names += 1
            return None

        def fpath(i: int) -> str:
            return self.handles.path(sip, fhs[i], hashes[i] if i < len(hashes) else None) if i < len(fhs) else PRE_CAPTURE + "/fh-unknown"

        def child(i: int, n: int) -> str:
            base = fpath(i)
            if n >= len(names) or names[n] == ".":
                return base
            if names[n] == "..":                    # a LOOKUP3 of the parent
                return base.rpartition("/")[0]
            return base + "/" + names[n]

        ok = rep is not None and rep.accepted
        st = None
        if ok:
            st = _int(rep.get("nfs.status3", rep.get("nfs.status")))
        if rep is None:
            self.s.missing_replies += 1
            status = "*"
        elif not rep.accepted or st is None:
            self.s.rejected += 1
            status = "*"
        else:
            status = f"0x{st:08x}"
        good = st == 0
        rfhs = rep.all("nfs.fhandle") if ok else []

        paths: tuple = ()
        nums: tuple = ()
        targets: tuple = ()
        if proc in (1, 2, 5, 20):                          # fh
            p = fpath(0)
            paths, targets = (p,), (p,)
        elif proc == 4:                                     # ACCESS3 fh desired granted
            p = fpath(0)
            granted = _int(rep.get("nfs.access_rights")) if good else 0
            paths, nums, targets = (p,), (_int(rpc.get("nfs.access_check")) or 0, granted or 0), (p,)
        elif proc in (6, 7, 21):                            # READ/WRITE/COMMIT
            p = fpath(0)
            paths, targets = (p,), (p,)
            if proc == 6:
                nums = (_int(rpc.get("nfs.offset3")) or 0, _int(rpc.get("nfs.count3")) or 0)
            elif proc == 7:
                nums = (_int(rpc.get("nfs.offset3")) or 0, _int(rpc.get("nfs.count3")) or 0,
                        _int(rpc.get("nfs.write.stable")) or 0)
        elif proc in (3, 8, 9, 10, 12, 13):                 # dir + name
            p = child(0, 0)
            paths, targets = (p,), (p,)
            if proc == 10:
                paths = (p, rpc.get("nfs.symlink.to", ""))
            if good and proc in (3, 8, 9, 10) and rfhs:
                self.handles.learn(sip, rfhs[0], p)
            elif good and proc in (12, 13):
                self.handles.forget(sip, p)
        elif proc == 14:                                    # RENAME3 from to
            a, b = child(0, 0), child(1, 1)
            paths, targets = (a, b), (a, b)
            if good:
                self.handles.rename(sip, a, b)
        elif proc == 15:                                    # LINK3 newpath existing
            existing = fpath(0)
            new = child(1, 0)
            paths, targets = (new, existing), (new, existing)
        elif proc in (16, 17):                              # READDIR(PLUS)3
            p = fpath(0)
            if _int(rpc.get("nfs.cookie3")) not in (0, None) and self.walks == "drop":
                self.s.folded[f"{name} continuation calls (cookie != 0)"] += 1
                self._entries(sip, p, rep)
                return None
            paths, targets = (p,), (p,)
            self._entries(sip, p, rep)
        elif proc in (18, 19):
            targets = ("",)
        return Line(rpc.time, self.client_index(rpc), name, paths, nums, status, targets)

    def _entries(self, sip, dirpath: str, rep) -> None:
        if rep is None or not rep.accepted:
            return
        for e in rep.entries:
            d = dict(e)
            n = d.get("nfs.readdirplus.entry.name") or d.get("nfs.readdir.entry.name")
            fh = d.get("nfs.fhandle")
            if n and fh and n not in (".", "..") and not _bad_name(n):
                self.handles.learn(sip, fh, dirpath + "/" + n)


def _bad_name_target(t: str) -> bool:
    return not t or '"' in t or "\\" in t or any(ord(c) < 32 for c in t)


def _int(v, default=None):
    if v is None:
        return default
    try:
        return int(v, 0)
    except (TypeError, ValueError):
        return default


def _ancestors(p: str) -> set:
    out = {p}
    while p:
        p = p.rpartition("/")[0]
        out.add(p)
    return out


def _fold(lines: list[Line], summary: Summary) -> list[Line]:
    """Drop path-walk LOOKUP3s, post-create LOOKUP3s and open-time ACCESS3s
    (see the module docstring), per client, keeping the order of the rest."""
    out: list = []
    pending: dict[int, list[Line]] = {}
    last_in: dict[int, Line] = {}
    last_out: dict[int, int] = {}          # client -> index in out of its last line
    for ln in lines:
        c = ln.client
        prev = last_in.get(c)
        last_in[c] = ln
        if ln.op == "LOOKUP3" and ln.status == "0x00000000":
            if prev is not None and prev.op == "CREATE3" and prev.paths[:1] == ln.paths[:1]:
                summary.folded["LOOKUP3 of the name just created"] += 1
                continue
            pending.setdefault(c, []).append(ln)
            continue
        touched: set = set()
        for t in ln.targets:
            touched |= _ancestors(t)
        for p in pending.pop(c, []):
            if p.paths[0] in touched:
                summary.folded["LOOKUP3 calls that resolved the path of the next call"] += 1
            else:
                last_out[c] = len(out)
                out.append(p)
        i = last_out.get(c)
        if ln.op in _IO and i is not None and out[i].op == "ACCESS3" and out[i].paths == ln.paths[:1]:
            out[i] = None
            summary.folded["ACCESS3 calls that opened a file for its next READ3/WRITE3/COMMIT3"] += 1
        last_out[c] = len(out)
        out.append(ln)
    for rest in pending.values():
        out.extend(rest)
    kept = [x for x in out if x is not None]
    kept.sort(key=lambda x: x.time)
    return _fold_close_commits(kept, summary)


def _fold_close_commits(lines: list[Line], summary: Summary) -> list[Line]:
    """Drop the COMMIT3s a client sent when closing a file: those right before
    a REMOVE3/RENAME3 of that file and those after the client's last other
    call.  A replaying loadgen client closes its cached handles at exactly
    those points, and libnfs commits a written file when closing it."""
    closing: dict[int, set] = {}           # client -> paths its next call closes (absent: end of stream)
    drop: set[int] = set()
    for i in range(len(lines) - 1, -1, -1):
        ln = lines[i]
        c = ln.client
        if ln.op == "COMMIT3":
            if c not in closing or ln.paths[0] in closing[c]:
                drop.add(i)
                continue
        if ln.op in ("REMOVE3", "RENAME3"):
            closing[c] = set(ln.paths)
        else:
            closing[c] = set()
    if drop:
        summary.folded["COMMIT3 calls made when closing a file (before its REMOVE3/RENAME3 or at the end)"] += len(drop)
    return [ln for i, ln in enumerate(lines) if i not in drop]


_HOME = re.compile(r"/clients/client\d+")
_ABOVE_HOME = ("", "/clients")          # the export root and /clients: the parents of every home


def _home_of(paths) -> str | None:
    """The ``/clients/client<j>`` every path is in or above, or None."""
    home = None
    for p in paths:
        m = _HOME.match(p)
        if m and (len(p) == m.end() or p[m.end()] == "/"):
            if home is None:
                home = m.group(0)
            elif home != m.group(0):
                return None
        elif p not in _ABOVE_HOME:
            return None
    return home


def _rehome(lines: list[Line], summary: Summary) -> list[Line]:
    """Re-root each captured client that worked in a dbench-style directory of
    its own (every path in or above ``/clients/client<j>``: a capture of
    loadgen's or dbench's clients) at that directory, so rendering does not
    nest ``/clients/client<j>`` under the replaying client's directory.  The
    calls that made or removed that directory and its parents (MKDIR3,
    RMDIR3, LOOKUP3 of it, any call on a parent) are folded: the rendered
    set-up lines make the directory, and their statuses depended on which
    captured client got there first."""
    by_client: dict[int, list[Line]] = {}
    for ln in lines:
        by_client.setdefault(ln.client, []).append(ln)
    homes = {}
    for c, mine in by_client.items():
        home = _home_of(p for ln in mine for p in _own_paths(ln))
        if home is not None:
            homes[c] = home
    if not homes:
        return lines
    out = []
    for ln in lines:
        home = homes.get(ln.client)
        if home is None:
            out.append(ln)
            continue
        own = _own_paths(ln)
        if own and (any(p in _ABOVE_HOME for p in own)
                    or (ln.op in ("MKDIR3", "RMDIR3", "LOOKUP3") and own[0] == home)):
            summary.folded["calls that made, removed or looked up a captured client's own "
                           "/clients/client<j> or its parents (the set-up lines make it)"] += 1
            continue
        cut = len(home)
        paths = tuple(p if (ln.op == "SYMLINK3" and i == 1) else p[cut:] for i, p in enumerate(ln.paths))
        out.append(Line(ln.time, ln.client, ln.op, paths, ln.numbers, ln.status,
                        tuple(t[cut:] for t in ln.targets)))
    summary.rehomed = homes
    return out


def _own_paths(ln: Line) -> tuple:
    """The paths a line names on the server (a SYMLINK3's target is text)."""
    return ln.paths[:1] if ln.op == "SYMLINK3" else ln.paths


def convert(capture: str, client_per: str = "port", walks: str = "drop",
            server: tuple | None = None, progress=None) -> tuple[list[Line], Summary, dict]:
    """Read ``capture`` and return (lines, summary, client index map).
    ``progress`` is passed to :func:`capture_tshark.read_rpcs`.  Raises
    CaptureError when the capture cannot be read at all."""
    if not os.path.isfile(capture):
        raise CaptureError(f"{capture}: no such file")
    s = Summary(capture=capture)
    conv = _Converter(client_per, walks, s)
    pending: dict[tuple, _Call] = {}
    calls: list[_Call] = []
    for rpc in read_rpcs(capture, server, s.frames, progress):
        s.rpc_messages += 1
        if rpc.program == MOUNT_PROGRAM:
            s.mount_messages += 1
            if not rpc.call and rpc.procedure == 1 and rpc.accepted and rpc.get("mount.status") == "0":
                fh = rpc.get("nfs.fhandle")
                if fh:
                    conv.handles.learn(rpc.server[0], fh, "")
            continue
        if rpc.program != NFS_PROGRAM:
            s.other_rpc += 1
            continue
        if rpc.version != 3:
            s.other_nfs_versions += 1
            continue
        key = (rpc.conn, rpc.xid)
        if rpc.call:
            s.nfs3_calls += 1
            if key in pending:
                s.retransmissions += 1
                continue
            c = _Call(rpc)
            pending[key] = c
            calls.append(c)
        else:
            s.nfs3_replies += 1
            c = pending.get(key)
            if c is None or c.reply is not None:
                s.orphan_replies += 1
                continue
            c.reply = rpc
    calls.sort(key=lambda c: (c.rpc.time, c.rpc.frame))
    lines = []
    for c in calls:
        ln = conv.line(c)
        if ln is not None:
            lines.append(ln)
    if walks == "drop":
        lines = _fold(lines, s)
    if client_per != "none" and walks == "drop":
        lines = _rehome(lines, s)
    s.pre_capture_handles = len(conv.handles.pre)
    return lines, s, conv.clients


def _q(p: str) -> str:
    return f'"{p}"'


def client_dir(k: int, n_clients: int) -> str:
    """Where captured client ``k`` (1-based) works in the loadfile: inside the
    replaying client's own ``/clients/client1`` (rewritten to its name), in a
    subdirectory ``c<k>`` when the capture holds more than one client.  Every
    replaying client thus runs the whole captured mix in a tree of its own,
    whatever ``--clients`` says."""
    return "/clients/client1" if n_clients == 1 else f"/clients/client1/c{k}"


def render(lines: list[Line], summary: Summary, client_per: str = "port", timestamps: str = "keep") -> str:
    """The loadfile text for ``lines`` (fills summary.lines/per_op/setup_lines/dirs)."""
    clients = sorted({ln.client for ln in lines})
    n = len(summary.clients) if client_per != "none" else 1
    prefix_for = (lambda k: client_dir(k, n)) if client_per != "none" else (lambda k: "")
    summary.dirs = {k: client_dir(k, n) for k in clients} if client_per != "none" else {}
    head = ["# dbench NFS loadfile made by `loadgen capture-to-loadfile` from " + os.path.basename(summary.capture),
            f"# clients: {len(summary.clients)} ({'one per ' + client_per if client_per != 'none' else 'merged'}"
            f"{', each in /clients/client1/c<k>' if n > 1 else ''}); "
            f"timestamps: {'seconds since the first call' if timestamps == 'keep' else 'none (flat out)'}",
            "# status: the captured reply's nfsstat3, * where the reply was missing"]
    if summary.pre_capture_handles:
        head.append(f"# {summary.pre_capture_handles} file handles were in use before the capture started; "
                    f"their paths are synthetic, under {PRE_CAPTURE}/")
    body: list[str] = []
    t0 = lines[0].time if lines else 0.0
    ts = (lambda t: f"{max(0.0, t - t0):.6f} ") if timestamps == "keep" else (lambda t: "")
    if client_per != "none":
        # as dbench's nfs.load: each pass starts from an empty client directory, so the file loops
        setup = ['Deltree "/clients/client1" 0x00000000', 'MKDIR3 "/clients" *', 'MKDIR3 "/clients/client1" *']
        if n > 1:
            setup += [f'MKDIR3 "{prefix_for(k)}" *' for k in clients]
        summary.setup_lines = len(setup)
        body += [ts(t0) + s for s in setup]
    summary.per_op.clear()
    summary.lines = 0
    summary.long_tokens = 0
    summary.client1_lines = 0
    for ln in lines:
        pre = prefix_for(ln.client)
        toks = [ln.op]
        for i, p in enumerate(ln.paths):
            if ln.op == "SYMLINK3" and i == 1:
                toks.append(_q(p))              # the link's target, kept as written
            else:
                toks.append(_q((pre + p) if (pre + p) else "/"))
        toks += [str(n) for n in ln.numbers]
        toks.append(ln.status)
        if any(len(t) >= 100 for t in toks):
            summary.long_tokens += 1
        if client_per == "none" and any("client1" in p for p in ln.paths):
            summary.client1_lines += 1
        body.append(ts(ln.time) + " ".join(toks))
        summary.per_op[ln.op] += 1
        summary.lines += 1
    if summary.client1_lines:
        head.append(f"# warning: {summary.client1_lines} lines have paths that contain client1, which "
                    f"loadgen and dbench rewrite to the replaying client's name")
    return "\n".join(head + body) + "\n"

