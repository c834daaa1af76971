"""One source of truth for the fast path's tables: rpcsrv/fast/fp_tables.h is generated from the
Python declarations by rpcsrv/fast/gen_tables.py, and the compiled module was built from it.

Three things are held equal: the Python declarations (gen_tables.collect()), the committed header
(gen_tables.render() of them, byte for byte) and what the compiled module has (_fast.tables(), read
from the C arrays and constants). Each table then gets a mutation check: one Python entry is
changed (monkeypatch), and both the generated text and the compiled module must now disagree with
the Python side, on that table alone -- so a Python entry changed without regenerating and
rebuilding fails here.
"""
import errno
from enum import IntEnum, IntFlag

import pytest

pytest.importorskip("rpcsrv.fast._fast")

from rpcsrv.fast import _fast, gen_tables  # noqa: E402
from rpcsrv.nfsd import nfs3  # noqa: E402
from rpcsrv.proto import nfs3const as K, nfs3xdr, record  # noqa: E402
from rpcsrv.svc import metrics, rqst  # noqa: E402
from rpcsrv.xprt import tcpconn  # noqa: E402


def committed():
    with open(gen_tables.OUTPUT) as f:
        return f.read()


def test_committed_header_is_the_generators_output():
    assert committed() == gen_tables.render(gen_tables.collect())
    assert gen_tables.main(["--check"]) == 0


def test_check_fails_on_a_stale_header(tmp_path):
    out = tmp_path / "fp_tables.h"
    out.write_text(committed().replace("NFS3ERR_NOENT = 2,", "NFS3ERR_NOENT = 3,"))
    assert gen_tables.main(["--check", "--output", str(out)]) == 1
    assert gen_tables.main(["--output", str(out)]) == 0
    assert out.read_text() == committed()
    assert gen_tables.main(["--check", "--output", str(out)]) == 0


def test_the_compiled_module_has_the_python_tables():
    assert _fast.tables() == gen_tables.collect()
    assert _fast.STATUS_VALUES == gen_tables.collect()["status_values"]


def test_the_python_paths_read_the_same_declarations():
    for p, entry in nfs3.PROCEDURES.items():
        assert entry.idempotent == K.NFSPROC3_IDEMPOTENT[p], entry.name
        assert entry.name == K.NFSPROC3_NAMES[p]
    from rpcsrv.export.errors import nfsstat_from_oserror
    for e, s in K.ERRNO_TO_NFSSTAT3.items():
        assert nfsstat_from_oserror(OSError(e, "x")) == s
    assert nfsstat_from_oserror(OSError(errno.ECHILD, "x")) == K.NfsStat3.SERVERFAULT


def _names(mp):
    mp.setattr(K, "NFSSTAT3_NAMES", {**K.NFSSTAT3_NAMES, 2: "no_entry"})


def _values(mp):
    mp.setattr(K, "NFSSTAT3_NAMES", {**K.NFSSTAT3_NAMES, 10009: "newerr"})


def _proc_name(mp):
    mp.setattr(K, "NFSPROC3_NAMES", {**K.NFSPROC3_NAMES, 5: "readlink3"})


def _idempotent(mp):
    mp.setattr(K, "NFSPROC3_IDEMPOTENT", {**K.NFSPROC3_IDEMPOTENT, int(K.NfsProc3.WRITE): False})


def _reads(mp):
    mp.setattr(K, "NFSPROC3_READS", {**K.NFSPROC3_READS, int(K.NfsProc3.COMMIT): True})


def _served(mp):
    mp.setattr(gen_tables, "SERVED_IN_C", gen_tables.SERVED_IN_C - {"write"})


def _errno(mp):
    mp.setattr(K, "ERRNO_TO_NFSSTAT3", {**K.ERRNO_TO_NFSSTAT3, errno.EBADF: K.NfsStat3.BADHANDLE})


def _alloc(mp):
    mp.setattr(metrics, "ALLOC_BOUNDS_DNS", metrics.ALLOC_BOUNDS_DNS[:-1] + (2_000_000_000,))


def _rpc(mp):
    mp.setattr(metrics, "RPC_BUCKETS", tuple(50e-6 * 2 ** i for i in range(20)))


def _pages(mp):
    mp.setattr(metrics, "PAGE_BUCKETS", metrics.PAGE_BUCKETS + (4096,))


def _access(mp):
    mp.setattr(K, "Access3", IntFlag("Access3", {f.name: f.value for f in K.Access3} | {"EXECUTE": 0x40}))


def _enums(mp):
    mp.setattr(K, "StableHow", IntEnum("StableHow", {"UNSTABLE": 0, "DATA_SYNC": 1, "FILE_SYNC": 3}))


def _maxfilesize(mp):
    mp.setattr(K, "MAXFILESIZE", (1 << 62) - 1)


def _name_decode(mp):
    mp.setattr(nfs3xdr, "NAME_DECODE_MAX", 8192)


def _stall(mp):
    mp.setattr(rqst, "STALL_WAITS", 5)


def _park(mp):
    mp.setattr(tcpconn, "PARK_WAIT", 0.05)


def _fragments(mp):
    mp.setattr(record, "MAX_EMPTY_FRAGMENTS", 65)


#: (mutation, the table it must show up in)
MUTATIONS = [
    (_names, "status_names"), (_values, "status_values"), (_proc_name, "procs"), (_idempotent, "procs"),
    (_reads, "procs"), (_served, "procs"), (_errno, "errno_map"), (_alloc, "alloc_bounds_dns"),
    (_rpc, "rpc_bounds_ns"), (_pages, "page_bounds"), (_access, "access"), (_enums, "enums"),
    (_maxfilesize, "limits"),
    (_name_decode, "limits"), (_stall, "waits"), (_park, "waits"), (_fragments, "waits"),
]


@pytest.mark.parametrize("mutate, table", MUTATIONS, ids=[m.__name__.strip("_") for m, _ in MUTATIONS])
def test_a_changed_python_entry_fails(monkeypatch, tmp_path, mutate, table):
    before = gen_tables.collect()
    mutate(monkeypatch)
    after = gen_tables.collect()
    # the Python side changed in that table only (a new nfsstat3 value comes with its name)
    also = {"status_names"} if table == "status_values" else set()
    assert {k for k in before if before[k] != after[k]} == {table} | also
    # the generated header differs from the committed one (and --check says so) ...
    out = tmp_path / "fp_tables.h"
    assert gen_tables.main(["--output", str(out)]) == 0
    assert out.read_text() != committed()
    assert gen_tables.main(["--check"]) == 1
    # ... and the compiled module no longer matches the Python tables, in that table
    compiled = _fast.tables()
    assert compiled != after
    assert compiled[table] != after[table]
