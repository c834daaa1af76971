"""Per-export state kept outside the export: the state home, each export's entry in it, the
handle key, and pruning entries whose export is gone.

Owns: ``$NFSBULK_STATE_HOME`` (default ``~/.cache/nfsbulk``), one entry per export named by
the first 16 hex digits of sha256(realpath(export)), holding ``handle.key`` (32 random bytes, mode
0600) and ``export`` (the export's realpath, the record prune_state reads). Writes are atomic
(a temporary file, then rename or link), so servers starting at once on one export agree on one
key; no locks are held, and nothing here is cached.
"""

from __future__ import annotations

import hashlib
import os
import threading

__all__ = ["STATE_HOME_ENV", "EXPORT_RECORD", "LEGACY_MAX_AGE_DAYS", "StateDirError", "state_home",
           "default_state_dir", "record_export", "prune_state", "load_or_create_key"]


#: environment variable naming the state home (default ~/.cache/nfsbulk); the test suite points it
#: at a temporary directory so that its exports leave nothing in the user's cache
STATE_HOME_ENV = "NFSBULK_STATE_HOME"
#: the file in a state entry that records which export it belongs to (its realpath)
EXPORT_RECORD = "export"
#: entries without an export record (made before there was one) are pruned after this many days
LEGACY_MAX_AGE_DAYS = 7


class StateDirError(ValueError):
    """The state directory cannot be created or read: ``path`` and ``reason`` (one line);
    ``code`` is 2 when the path can never work (inside the export), 1 otherwise."""

    def __init__(self, path: str, reason: str, code: int = 1):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.code = path, reason, code


def state_home() -> str:
    """Where per-export state entries live: ``$NFSBULK_STATE_HOME`` or ``~/.cache/nfsbulk``."""
    return os.environ.get(STATE_HOME_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "nfsbulk")


def default_state_dir(root: str) -> str:
    """``<state_home()>/<sha256(realpath(root))[:16]>``."""
    real = os.path.realpath(root)
    h = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    return os.path.join(state_home(), h)


def record_export(state_dir: str, real: str) -> None:
    """Write ``state_dir/export`` (the export's realpath) unless it already says so: what
    prune_state() reads to tell a live entry from one whose export is gone."""
    path = os.path.join(state_dir, EXPORT_RECORD)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            if f.read().rstrip("\n") == real:
                return
    except OSError:
        pass
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(real + "\n")
    os.replace(tmp, path)


def prune_state(home: str | None = None, now: float | None = None) -> list[str]:
    """Remove stale entries from the state home; returns the paths removed.

    The rule: an entry (a directory named by 16 hex digits) is stale when the export its
    ``export`` record names no longer exists, or, without a record (entries made before records
    existed), when its handle key is older than LEGACY_MAX_AGE_DAYS days. Live exports keep their
    key, so their file handles stay valid across restarts. Errors (a racing server, permissions)
    leave the entry alone.
    """
    import shutil
    import time
    home = home or state_home()
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(home)
    except OSError:
        return removed
    for name in names:
        if len(name) != 16 or any(c not in "0123456789abcdef" for c in name):
            continue
        entry = os.path.join(home, name)
        try:
            with open(os.path.join(entry, EXPORT_RECORD), encoding="utf-8", errors="surrogateescape") as f:
                real = f.read().rstrip("\n")
            stale = not os.path.isdir(real)
        except FileNotFoundError:
            try:
                stale = now - os.stat(os.path.join(entry, "handle.key")).st_mtime > LEGACY_MAX_AGE_DAYS * 86400
            except FileNotFoundError:
                stale = True            # neither record nor key: an entry left half-made
            except OSError:
                continue
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            if not os.path.exists(entry):
                removed.append(entry)
    return removed


def load_or_create_key(state_dir: str) -> bytes:
    """Read ``state_dir/handle.key`` or create it (32 random bytes, mode 0600,
    published atomically with link(2) so concurrent starters agree)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, "handle.key")
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, os.urandom(32))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            continue
        try:
            key = os.read(fd, 4096)
        finally:
            os.close(fd)
        if len(key) < 16:
            raise ValueError(f"{path}: key too short ({len(key)} bytes)")
        return key
    raise RuntimeError(f"could not create {path}")  # pragma: no cover
