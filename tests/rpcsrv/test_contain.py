"""rpcsrv.export.contain on its own: what ends a kept proof, what a walk does when a rename races it,
the read transaction and its reruns, the bounded table, and the modes without kept proofs.

The Export is used directly (no server); handles come from its own LOOKUPs. Both handle modes
where the test does not need kernel handles.
"""
from __future__ import annotations

import os

import pytest

from rpcsrv.export import Export, NfsError
from rpcsrv.export import contain as C
from rpcsrv.nfsd import nfs3
from rpcsrv.proto.nfs3const import NfsStat3 as S

KEY = b"c" * 32




@pytest.fixture
def tree(tmp_path):
    (tmp_path / "out").mkdir()
    exp = tmp_path / "exp"
    (exp / "a" / "b" / "c").mkdir(parents=True)
    (exp / "a" / "b" / "c" / "f.txt").write_bytes(b"deep file")
    (exp / "top.txt").write_bytes(b"top")
    return tmp_path


def walk(e, path):
    fh = e.root_handle()
    for c in path.split("/"):
        fh, _ = e.lookup(fh, c)
    return fh


def status_of(fn, *a):
    with pytest.raises(NfsError) as ei:
        fn(*a)
    return ei.value.status


def test_kept_proofs_and_what_ends_them(tree, mode):
    """A second use of a handle is a kept proof (no walk); a rename of any proven ancestor ends every
    directory proof; a link change of a file ends its proof only."""
    with Export(str(tree / "exp"), key=KEY, handle_mode=mode, fd_ttl=0.0) as e:
        c = e.contain
        assert c.keep                                  # tmp is a local file system and inotify works
        fh_c, fh_f, fh_top = walk(e, "a/b/c"), walk(e, "a/b/c/f.txt"), walk(e, "top.txt")
        for fh in (fh_c, fh_f, fh_top):
            e.getattr(fh)
        before = c.stats()
        for fh in (fh_c, fh_f, fh_top):
            e.getattr(fh)
        after = c.stats()
        assert after["walks"] == before["walks"] and after["links"] == before["links"]
        assert after["hits"] >= before["hits"] + 3
        # a link change of top.txt ends its proof alone
        os.link(tree / "exp/top.txt", tree / "exp/top2.txt")
        e.getattr(fh_top)
        s2 = c.stats()
        assert s2["links"] == after["links"] + 1 and s2["epochs"] == after["epochs"] and s2["walks"] == after["walks"]
        # a rename of "a" (an ancestor, proven) ends every directory proof: c walks again
        os.rename(tree / "exp/a", tree / "exp/a2")
        e.getattr(fh_c)
        s3 = c.stats()
        assert s3["epochs"] > s2["epochs"] and s3["walks"] > s2["walks"]
        assert e.getattr(fh_f).st_size == 9               # moved within the export: still served


def test_walk_raced_by_a_rename_runs_again_then_jukebox(tree, monkeypatch):
    """A walk whose entries an event touched while it ran is not a proof: it runs again, and after
    TRIES races the request gets JUKEBOX."""
    with Export(str(tree / "exp"), key=KEY, handle_mode="inode") as e:
        fh = walk(e, "a/b")
        real = C.Containment._settle
        calls = []

        def racing(self, chain, e0):
            calls.append(len(chain))
            return False if len(calls) <= 2 else real(self, chain, e0)
        monkeypatch.setattr(C.Containment, "_settle", racing)
        assert e.getattr(fh).st_nlink >= 2
        assert len(calls) == 3 and e.contain.stats()["raced"] == 2
        fh2 = walk(e, "a/b/c")
        monkeypatch.setattr(C.Containment, "_settle", lambda self, chain, e0: False)
        assert status_of(e.getattr, fh2) == S.JUKEBOX


def test_settle_sees_a_move_during_the_walk(tree, mode):
    """The real race: the directory moves out after the walk read its parent; the event queued by
    that rename makes _settle refuse, and the next walk finds it outside."""
    with Export(str(tree / "exp"), key=KEY, handle_mode=mode) as e:
        fh = walk(e, "a/b/c")
        c = e.contain
        real_open = os.open
        moved = []

        def open_then_move(path, flags, mode=0o777, *, dir_fd=None):
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            if path == ".." and not moved:          # the walk just read c's parent: now move c out
                moved.append(1)
                os.rename(tree / "exp/a/b/c", tree / "out/c")
            return fd
        os.open = open_then_move
        try:
            st = status_of(e.getattr, fh)
        finally:
            os.open = real_open
        assert moved and st == S.STALE
        assert c.stats()["raced"] >= 1


def test_read_transaction_reruns_and_rewinds(tree):
    """nfs3's read handlers: a transaction that did not hold runs the handler again (after rewind);
    TRIES that do not hold, and the handler answers JUKEBOX."""
    with Export(str(tree / "exp"), key=KEY, handle_mode="inode") as e:
        fh = walk(e, "top.txt")
        results = iter([False, False, True])
        real_held = e.contain.held
        e.contain.held = lambda txn: real_held(txn) and next(results)
        runs, rewinds = [], []

        class Ctx:
            export = e

            def rewind(self):
                rewinds.append(1)
        handler = nfs3._proven(lambda ctx, args: runs.append(args) or "result")
        assert handler(Ctx(), "x") == "result"
        assert len(runs) == 3 and len(rewinds) == 2
        e.contain.held = lambda txn: False
        res = nfs3.PROCEDURES[1].handler(Ctx(), fh)            # GETATTR
        assert res.status == S.JUKEBOX


def test_table_is_bounded_and_eviction_keeps_proofs_sound(tree):
    """At most max_entries watched objects; evicting a proven directory ends the directory proofs
    (its watch is gone), so nothing proven stays unwatched."""
    exp = tree / "exp"
    for i in range(300):
        (exp / ("d%03d" % i)).mkdir()
    with Export(str(exp), key=KEY, handle_mode="inode", proof_cache=256) as e:
        c = e.contain
        fhs = [walk(e, "d%03d" % i) for i in range(300)]
        for fh in fhs:
            e.getattr(fh)
        st = c.stats()
        assert st["entries"] <= 256 and st["evicted"] >= 300 - 256 and st["epochs"] >= 1
        for fh in fhs:                                  # every one still served after the flushes
            e.getattr(fh)


def test_without_inotify_every_use_walks(tree, monkeypatch):
    """No inotify instance (none left for the user): every use is proven by a walk, nothing kept."""
    monkeypatch.setattr(C.Inotify, "open", classmethod(lambda cls: None))
    with Export(str(tree / "exp"), key=KEY, handle_mode="inode") as e:
        assert not e.contain.keep
        fh = walk(e, "a/b/c")
        for _ in range(3):
            e.getattr(fh)
        assert e.contain.stats()["walks"] >= 3
        os.rename(tree / "exp/a", tree / "out/a")
        assert status_of(e.getattr, fh) == S.STALE


def test_not_local_fs_proves_every_use(tree, monkeypatch):
    """A file system that may change behind this kernel: watches guard each walk, no proof is kept."""
    monkeypatch.setattr(C, "local_fs", lambda fd: False)
    with Export(str(tree / "exp"), key=KEY, handle_mode="inode") as e:
        assert e.contain.ino is not None and not e.contain.keep
        fh = walk(e, "a/b/c/f.txt")
        n0 = e.contain.stats()["links"]
        for _ in range(3):
            assert e.getattr(fh).st_size == 9
        assert e.contain.stats()["links"] == n0 + 3 and e.contain.stats()["proven"] == 0
