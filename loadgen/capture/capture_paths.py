"""The capture converter's file handle -> path map (loadgen.capture.capture).

A handle has every name the capture showed for it, in the order they were learned (a CREATE3,
LOOKUP3 or MKDIR3 reply, a READDIRPLUS3 entry; a hard link gives one file two names). A call on
the handle is written with its first name that has not been removed since: after `LINK3 a.hard
a.txt` and `REMOVE3 a.hard`, a COMMIT3 of the handle is a COMMIT3 of `a.txt`, as a replay by path
needs. RENAME3 moves every name at or under the old path (and a name it replaced is gone);
REMOVE3 and RMDIR3 end a name. A handle whose every name is gone keeps its last one (a call on it
then replays as the capture's client saw it: on a name that no longer exists).

Single-threaded: one converter owns one map.
"""
from __future__ import annotations

PRE_CAPTURE = "/pre-capture"


class HandlePaths:
    """(server ip, handle) -> names; `path()` is the one a call is written with."""

    def __init__(self):
        self._names: dict[tuple, list] = {}      # key -> live names, first learned first
        self._last: dict[tuple, str] = {}        # key -> the name it is written with
        self._by_name: dict[tuple, set] = {}     # (server ip, name) -> keys holding it
        self.roots: set = set()                  # the export roots' keys
        self.pre: set = set()                    # handles first seen in a call (before the capture)

    def path(self, server_ip, fh: str, fh_hash: str | None) -> str:
        key = (server_ip, fh)
        p = self._last.get(key)
        if p is None:
            tag = (fh_hash or "0x" + fh.replace(":", "")[-8:]).replace("0x", "")
            p = self._last[key] = f"{PRE_CAPTURE}/fh-{tag}"
            self.pre.add(key)
        return p

    def learn(self, server_ip, fh, path: str) -> None:
        if not fh:
            return
        key = (server_ip, fh)
        names = self._names.setdefault(key, [])
        if path not in names:
            names.append(path)
            self._by_name.setdefault((server_ip, path), set()).add(key)
        self._last[key] = names[0]
        if path == "":
            self.roots.add(key)

    def forget(self, server_ip, path: str) -> None:
        """`path` was removed (REMOVE3, RMDIR3, or replaced by a RENAME3)."""
        for key in self._by_name.pop((server_ip, path), ()):
            names = self._names.get(key, [])
            if path in names:
                names.remove(path)
            if names:
                self._last[key] = names[0]

    def rename(self, server_ip, old: str, new: str) -> None:
        """RENAME3 old -> new: every name at or under `old` moves; what `new` named is gone."""
        self.forget(server_ip, new)
        moved = [(name, keys) for (ip, name), keys in self._by_name.items()
                 if ip == server_ip and (name == old or name.startswith(old + "/"))]
        for name, keys in moved:
            to = new + name[len(old):]
            del self._by_name[(server_ip, name)]
            self._by_name.setdefault((server_ip, to), set()).update(keys)
            for key in keys:
                names = self._names[key]
                names[names.index(name)] = to
        for key, p in list(self._last.items()):      # names[0] moved, and handles known only by their last name
            if key[0] == server_ip and (p == old or p.startswith(old + "/")):
                self._last[key] = new + p[len(old):]
