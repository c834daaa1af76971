"""Data safety of WRITE and COMMIT (issue 4).

* UNSTABLE writes followed by COMMIT, and a FILE_SYNC write, are on disk when the server is killed
  with SIGKILL right after the replies; WRITE and COMMIT carry one write verifier per server
  instance; a restarted server on the same export has another verifier and still accepts the old
  file handles (they are stable across restarts).
* SIGKILL alone cannot tell the page cache from the disk, so an in-process server also checks
  the syscalls behind the replies: a reply that says FILE_SYNC (DATA_SYNC) comes after an fsync
  (fdatasync or fsync) of that very file, and a COMMIT reply after an fsync of it.
"""
import os
import random
import signal

import pytest

from nfsbulk_testlib import ServerProcess, in_process_server, leaked_pages
from rpcclient import Nfs3
from rpcsrv.proto import nfs3xdr as X
from rpcsrv.proto.rpcmsg import AuthSys

UNSTABLE, DATA_SYNC, FILE_SYNC = 0, 1, 2
ROOT_CRED = AuthSys(1, b"nfsbulk-durability", 0, 0, [0])


class Client(Nfs3):
    """The calls this file needs, as root; create() answers just the new handle."""

    def __init__(self, port):
        super().__init__(port, ROOT_CRED)

    def create(self, dfh, name):
        st, fh, _, _ = super().create(dfh, name, 0, X.Sattr3(mode=0o644))
        assert st == 0
        return fh


def test_commit_then_sigkill_keeps_the_data_and_handles_survive_a_restart(tmp_path):
    export, state = tmp_path / "export", str(tmp_path / "state")
    export.mkdir()
    rnd = random.Random(5)
    blocks = [rnd.randbytes(n) for n in (65536, 65536, 1, 4095, 200000, 131072, 7, 1 << 20)]
    tail = rnd.randbytes(30000)
    srv = ServerProcess(export, threads=3, extra=["--state-dir", state])
    try:
        c = Client(srv.port)
        root = c.mnt(str(export))
        fh = c.create(root, b"data.bin")
        verfs = set()
        off = 0
        for b in blocks:
            st, n, committed, verf = c.write(fh, off, b, UNSTABLE)
            assert (st, n) == (0, len(b)) and committed in (UNSTABLE, DATA_SYNC, FILE_SYNC)
            verfs.add(verf)
            off += len(b)
        st, cverf = c.commit(fh)
        assert st == 0
        verfs.add(cverf)
        st, n, committed, verf = c.write(fh, off, tail, FILE_SYNC)
        assert (st, n, committed) == (0, len(tail), FILE_SYNC)     # never claims less than asked
        verfs.add(verf)
        srv.proc.send_signal(signal.SIGKILL)                        # right after the replies
        assert srv.proc.wait(timeout=30) == -signal.SIGKILL
        c.close()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(30)
        srv.stop()                                     # reaped: closes its pipe and stderr file
    assert len(verfs) == 1, verfs                  # one verifier for every WRITE and COMMIT of one instance
    old_verf = verfs.pop()
    want = b"".join(blocks) + tail
    with open(export / "data.bin", "rb") as f:
        assert f.read() == want

    # a new instance on the same export: another verifier, the same handles
    with ServerProcess(export, threads=2, extra=["--state-dir", state]) as srv2:
        c = Client(srv2.port)
        try:
            assert c.mnt(str(export)) == root
            st, attr = c.getattr(fh)                               # the old handle, no LOOKUP
            assert st == 0 and attr[5] == len(want)
            st, n, committed, new_verf = c.write(fh, 0, b"NEW", UNSTABLE)
            assert (st, n) == (0, 3)
            assert new_verf != old_verf                            # the client must resend uncommitted data
            st, cverf = c.commit(fh)
            assert (st, cverf) == (0, new_verf)
        finally:
            c.close()
        code, err = srv2.stop()
    assert code == 0 and leaked_pages(err) == 0
    with open(export / "data.bin", "rb") as f:
        assert f.read() == b"NEW" + want[3:]


@pytest.mark.parametrize("strategy", ["single", "range"])
def test_sync_replies_come_after_the_sync(tmp_path, monkeypatch, strategy):
    export = tmp_path / "export"
    export.mkdir()
    calls = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd):
        calls.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def fdatasync(fd):
        calls.append(("fdatasync", os.fstat(fd).st_ino))
        return real_fdatasync(fd)

    # the Python path's calls (the compiled path's: tests/fast/test_fast_syscalls.py, by strace)
    with in_process_server(export, strategy=strategy, threads=2, state_dir=str(tmp_path / "state"),
                           fast_path=False) as srv:
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "fdatasync", fdatasync)
        c = Client(srv.port)
        try:
            root = c.mnt(srv.export.path)
            fh = c.create(root, b"f")
            ino = os.stat(export / "f").st_ino
            data = os.urandom(100000)
            for stable in (UNSTABLE, DATA_SYNC, FILE_SYNC, UNSTABLE, FILE_SYNC):
                del calls[:]
                st, n, committed, verf = c.write(fh, 0, data, stable)
                assert (st, n) == (0, len(data)) and committed >= stable
                synced = {kind for kind, i in calls if i == ino}
                if committed == FILE_SYNC:
                    assert "fsync" in synced, (stable, calls)
                elif committed == DATA_SYNC:
                    assert synced & {"fsync", "fdatasync"}, (stable, calls)
            del calls[:]
            st, verf2 = c.commit(fh)
            assert st == 0 and verf2 == verf
            assert ("fsync", ino) in calls
        finally:
            c.close()
