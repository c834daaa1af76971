"""Data safety of WRITE and COMMIT (issue 4).

* UNSTABLE writes followed by COMMIT, and a FILE_SYNC write, are on disk when the server is killed
  with SIGKILL right after the replies; WRITE and COMMIT carry one write verifier per server
  instance; a restarted server on the same export has another verifier and still accepts the old
  file handles (they are stable across restarts).
* SIGKILL alone cannot tell the page cache from the disk, so an in-process server also checks
  the syscalls behind the replies: a reply that says FILE_SYNC (DATA_SYNC) comes after an fsync
  (fdatasync or fsync) of that very file, and a COMMIT reply after an fsync of it.
"""
import itertools
import os
import random
import signal

import pytest

from nfsbulk_testlib import RawRpc, ServerProcess, in_process_server, leaked_pages
from rpcsrv import nfs3xdr as X
from rpcsrv import rpcmsg
from rpcsrv.rpcmsg import AuthSys
from rpcsrv.xdr import Packer

NFS, MOUNT = 100003, 100005
UNSTABLE, DATA_SYNC, FILE_SYNC = 0, 1, 2
ROOT_CRED = AuthSys(1, b"nfsbulk-durability", 0, 0, [0])


class Client:
    """Just the NFSv3 calls this file needs, by hand over RawRpc."""

    def __init__(self, port):
        self.rpc = RawRpc(port)
        self.xids = itertools.count(0x9000)

    def close(self):
        self.rpc.close()

    def _call(self, proc, args, prog=NFS):
        h, u = self.rpc.call(next(self.xids), prog, 3, proc, args, cred=ROOT_CRED)
        assert h.stat == rpcmsg.MSG_ACCEPTED and h.accept_stat == rpcmsg.SUCCESS
        return u

    def mnt(self, path):
        p = Packer()
        p.pack_string(os.fsencode(path))
        u = self._call(1, p.get_buffer(), prog=MOUNT)
        assert u.unpack_uint() == 0
        return u.unpack_opaque(64)

    def create(self, dfh, name):
        p = Packer()
        X.pack_diropargs3(p, dfh, name)
        p.pack_uint(0)                                   # UNCHECKED
        X.pack_sattr3(p, X.Sattr3(mode=0o644))
        u = self._call(8, p.get_buffer())
        assert u.unpack_uint() == 0
        return X.decode_post_op_fh3(u)

    def getattr(self, fh):
        p = Packer()
        p.pack_opaque(fh)
        u = self._call(1, p.get_buffer())
        st = u.unpack_uint()
        return st, (X.decode_fattr3(u) if st == 0 else None)

    def write(self, fh, offset, data, stable):
        """-> (status, count, committed, verifier)"""
        p = Packer()
        p.pack_opaque(fh)
        p.pack_uhyper(offset)
        p.pack_uint(len(data))
        p.pack_uint(stable)
        p.pack_opaque(data)
        u = self._call(7, p.get_buffer())
        st = u.unpack_uint()
        X.decode_wcc_data(u)
        if st != 0:
            return st, None, None, None
        return st, u.unpack_uint(), u.unpack_uint(), u.unpack_fopaque(8)

    def commit(self, fh, offset=0, count=0):
        p = Packer()
        p.pack_opaque(fh)
        p.pack_uhyper(offset)
        p.pack_uint(count)
        u = self._call(21, p.get_buffer())
        st = u.unpack_uint()
        X.decode_wcc_data(u)
        return st, (u.unpack_fopaque(8) if st == 0 else None)


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
        srv.proc.stdout.close()
        srv.proc.stderr.close()
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

    with in_process_server(export, strategy=strategy, threads=2, state_dir=str(tmp_path / "state")) as srv:
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
