"""rpcsrv --max-block-size: payloads past 1 MiB, on both request paths.

The page array follows svc_serv_maxpages() (size / 4 KiB + 4 slots), rtmax/wtmax and FSINFO follow
the size; a 4 MiB WRITE and READ in one RPC each round-trip byte-exact (raw RPC: python-libnfs 4.0
caps its own transfers at 1 MiB and splits larger calls, which the libnfs test shows); a READ over
rtmax is answered short, a WRITE over wtmax writes wtmax bytes (RFC 1813 3.3.6, 3.3.7), a record
over the message bound closes the connection as knfsd does; bad values are one-line errors.
"""
import os
import subprocess
import sys

import pytest

from nfsbulk_testlib import ROOT, ServerProcess, in_process_server, lookup_fh, mount_root
from rpcclient import Nfs3, RpcClient
from rpcsrv.proto.xdr import Packer

MiB = 1 << 20
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="python")]


def fsinfo(c, root):
    p = Packer()
    p.pack_opaque(root)
    u = c.call(19, p.get_buffer())
    assert u.unpack_uint() == 0
    if u.unpack_bool():
        u.unpack_fopaque(84)
    return [u.unpack_uint() for _ in range(7)]      # rtmax rtpref rtmult wtmax wtpref wtmult dtpref


@pytest.mark.parametrize("fast", PATHS)
def test_4mib_read_and_write_in_one_rpc(tmp_path, fast):
    data = os.urandom(5 * MiB)
    (tmp_path / "five").write_bytes(data)
    with in_process_server(tmp_path, threads=2, arena_mib=128, max_block_size=4 * MiB, fast_path=fast) as srv:
        assert srv.nslots == 1028 and srv.max_io == 4 * MiB and (srv.fast is not None) == fast
        c = Nfs3(srv.port)
        try:
            root = c.mnt(str(tmp_path))
            rtmax, rtpref, _, wtmax, wtpref, _, _ = fsinfo(c, root)
            assert rtmax == rtpref == wtmax == wtpref == 4 * MiB
            st, fh = c.lookup(root, b"five")
            assert st == 0
            # one READ of 4 MiB: all of it; one of 5 MiB: rtmax bytes, not at EOF
            st, got, eof = c.read(fh, 0, 4 * MiB)
            assert st == 0 and got == data[:4 * MiB] and eof is False
            st, got, eof = c.read(fh, 0, 5 * MiB)
            assert st == 0 and got == data[:4 * MiB] and eof is False
            st, got, eof = c.read(fh, 4 * MiB, 4 * MiB)
            assert st == 0 and got == data[4 * MiB:] and eof is True
            # one WRITE of 4 MiB, read back; a WRITE of more than wtmax writes wtmax bytes
            new = os.urandom(4 * MiB)
            st, cfh, _, _ = c.create(root, b"w")
            assert st == 0
            st, count, committed, _ = c.write(cfh, 0, new, stable=2)
            assert st == 0 and count == 4 * MiB and committed == 2
            assert (tmp_path / "w").read_bytes() == new
            st, count, _, _ = c.write(cfh, 0, os.urandom(4 * MiB + 1000), stable=2)
            assert st == 0 and count == 4 * MiB
            assert srv.allocator.stats()["allocated"] > 0
        finally:
            c.close()
        # a record over the message bound (4 MiB + a page): the connection is closed, no reply
        rpc = RpcClient(srv.port)
        try:
            root = mount_root(rpc, str(tmp_path))
            fh = lookup_fh(rpc, str(tmp_path), b"w")
            rpc.send_raw(rpc.call_bytes(7, 100003, 3, 7, Nfs3.write_args(fh, 0, b"x" * (4 * MiB + 8192), 2)))
            assert rpc.recv_record() is None
        except (ConnectionResetError, BrokenPipeError):
            pass                                          # closed while we were still sending
        finally:
            rpc.close()


@pytest.mark.parametrize("fast", PATHS)
def test_libnfs_4mib_round_trip(tmp_path, fast):
    """python-libnfs against `rpcsrv --max-block-size 4M` (a subprocess: libnfs holds the GIL while
    it waits): 4 MiB written and read back byte-exact. libnfs 4.0 splits them into its own maximum
    transfer, 1 MiB, per RPC."""
    import libnfs
    with ServerProcess(tmp_path, threads=2, arena_mib=128, fast_path="on" if fast else "off",
                       extra=("--max-block-size", "4M")) as srv:
        n = libnfs.NFS(srv.url)
        data = bytearray(os.urandom(4 * MiB))
        f = n.open("/big", "wb+")
        f.write(data)
        f.close()
        f = n.open("/big", "rb")
        back = f.read(4 * MiB)
        f.close()
        assert bytes(back) == bytes(data)
        assert libnfs.nfs_get_readmax(n._nfs) == libnfs.nfs_get_writemax(n._nfs) == MiB
    assert (tmp_path / "big").read_bytes() == bytes(data)


@pytest.mark.parametrize("size,slots,io", [(4 << 10, 5, 4 << 10), (12 << 10, 7, 12 << 10), (64 << 10, 20, 64 << 10),
                                           (MiB, 260, MiB), (2 * MiB, 516, 2 * MiB)])
def test_array_sized_as_svc_serv_maxpages(tmp_path, size, slots, io):
    """size / 4 KiB + 4 slots (svc_serv_maxpages); rtmax is the size when the array holds it."""
    with in_process_server(tmp_path, max_block_size=size) as srv:
        assert (srv.nslots, srv.max_io) == (slots, io)
        assert srv.limits.rtmax == srv.limits.wtmax == io


def test_small_arena_falls_back_to_a_power_of_two(tmp_path):
    """An arena too small for 8 workers of 1028 slots: the arrays shrink and rtmax is the largest
    power of two they hold, as before."""
    with in_process_server(tmp_path, threads=8, arena_mib=16, max_block_size=4 * MiB) as srv:
        assert srv.nslots < 1028
        assert srv.max_io & (srv.max_io - 1) == 0 and srv.max_io <= (srv.nslots - 4) * 4096


@pytest.mark.parametrize("value", ["3000", "8M", "1.5M", "abc", "0", "4097", "5M"])
def test_bad_values_are_one_line_errors(tmp_path, value):
    r = subprocess.run([sys.executable, "-m", "rpcsrv", "--export", str(tmp_path), "--listen", "127.0.0.1:0",
                        "--metrics-port", "off", "--max-block-size", value],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--max-block-size" in err[-1], r.stderr
