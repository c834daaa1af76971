"""What `loadgen capture-to-loadfile` read, skipped and wrote: the counts of every rule of
:mod:`loadgen.capture.capture` and their report (the lines the command prints on stderr)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .capture_paths import PRE_CAPTURE
from .capture_tshark import Frames

__all__ = ["Summary"]


@dataclass
class Summary:
    capture: str = ""
    frames: Frames = field(default_factory=Frames)
    rpc_messages: int = 0
    nfs3_calls: int = 0
    nfs3_replies: int = 0
    mount_messages: int = 0
    other_rpc: int = 0
    other_nfs_versions: int = 0
    retransmissions: int = 0
    orphan_replies: int = 0
    missing_replies: int = 0
    rejected: int = 0
    unsupported: Counter = field(default_factory=Counter)
    bad_names: int = 0
    pre_capture_handles: int = 0
    folded: Counter = field(default_factory=Counter)
    clients: list = field(default_factory=list)     # (name, description)
    setup_lines: int = 0
    lines: int = 0
    per_op: Counter = field(default_factory=Counter)
    long_tokens: int = 0
    client1_lines: int = 0          # --client-per none: paths a replayer would rewrite
    rehomed: dict = field(default_factory=dict)     # client -> the /clients/client<j> it was re-rooted from
    dirs: dict = field(default_factory=dict)        # client -> its directory in the loadfile

    def _where(self, k: int) -> str:
        where = self.dirs.get(k)
        if where is None:
            return ""
        old = self.rehomed.get(k)
        return f", in {where}" + (f" (captured in {old})" if old else "")

    def text(self) -> str:
        f = self.frames
        out = [f"capture {self.capture}: {f.frames} frames, {self.rpc_messages} RPC messages "
               f"({self.nfs3_calls} NFSv3 calls, {self.nfs3_replies} NFSv3 replies, "
               f"{self.mount_messages} MOUNT, {self.other_rpc} other RPC), "
               f"{f.segments} frames holding part of a record split over segments, "
               f"{f.non_rpc} frames without payload"]
        if f.cut_short:
            out.append(f"  capture cut short: {f.cut_short.replace('tshark: ', '')} "
                       f"(read up to frame {f.frames})")
        for e in f.tshark_errors[:5]:
            out.append(f"  tshark: {e.replace('tshark: ', '')}")
        out.append(f"  clients: {len(self.clients)}" +
                   ("".join(f"\n    {n} = {d}{self._where(i + 1)}" for i, (n, d) in enumerate(self.clients[:20]))) +
                   (f"\n    ... {len(self.clients) - 20} more" if len(self.clients) > 20 else ""))
        wrote = f"  wrote {self.lines} operation lines"
        if self.lines:
            wrote += ((f" (+{self.setup_lines} Deltree/MKDIR3 setup lines)" if self.setup_lines else "") + ": " +
                      ", ".join(f"{k} {v}" for k, v in sorted(self.per_op.items())))
        out.append(wrote)
        skipped = [
            (f.malformed, "malformed frames"),
            (f.undecoded, "frames whose data is not a decodable RPC message (the tail of a record cut by "
                          "the capture start, a lost segment, a reply whose call is not in the capture, "
                          "or another protocol)"),
            (self.orphan_replies, "replies without their call (capture started mid-connection or lost it)"),
            (self.retransmissions, "retransmitted calls"),
            (self.rejected, "calls rejected at the RPC level (status *)"),
            (self.missing_replies, "calls without a reply (status *)"),
            (self.other_nfs_versions, "NFS messages of other versions than 3"),
            (self.other_rpc, "messages of other RPC programs"),
            (self.bad_names, "calls on names a loadfile cannot carry"),
        ]
        skipped += [(n, f"{op} calls (not replayable)") for op, n in sorted(self.unsupported.items())]
        skipped += [(n, what) for what, n in sorted(self.folded.items())]
        shown = [f"    {n} {what}" for n, what in skipped if n]
        out.append("  skipped or folded:" + ("\n" + "\n".join(shown) if shown else " nothing"))
        if self.pre_capture_handles:
            out.append(f"  {self.pre_capture_handles} file handles were in use before the capture started: "
                       f"their paths are synthetic, under {PRE_CAPTURE}/")
        if f.lost_segments:
            out.append(f"  warning: the capture dropped packets: {f.lost_segments} frames follow or acknowledge "
                       f"a TCP segment that is not in it, so calls and replies in those gaps are missing "
                       f"(capture with a bigger buffer, e.g. tcpdump -B 16384, and check its \"packets "
                       f"dropped by kernel\" line)")
        if self.client1_lines:
            out.append(f"  warning: {self.client1_lines} lines have paths that contain client1, which loadgen "
                       f"and dbench rewrite to the replaying client's name; --client-per port avoids it")
        if self.long_tokens:
            out.append(f"  warning: {self.long_tokens} lines have a path of 100 bytes or more, "
                       f"longer than real dbench's token buffer")
        return "\n".join(out)
