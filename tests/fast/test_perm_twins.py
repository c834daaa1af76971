"""fp_core.h's identity and mode-bit checks are rpcsrv.nfsd.perm's, answer for answer.

The fast path squashes the AUTH_SYS caller with fp_who_from (perm.who), picks the rwx bits with
fp_bits (perm.bits), decides READ and WRITE with fp_may_read / fp_may_write (may_read_file,
may_write_file) and answers ACCESS with fp_access (access_from_stat, called by nfs3's ACCESS with
who()'s uid and groups and the export's read-only flag). A difference would be a caller the fast
path lets read or write where the Python path refuses (or the reverse), or other ACCESS bits.
_fast.who_from and _fast.perm are the thin wrappers (end of _fast_worker.pxi). The identities are
drawn from a small pool (0, the anon ids, a few users) so that owners, groups and squashing
collide, plus any uint32; modes are every file type with any of the 12 permission bits; the
requested ACCESS mask is any uint32 (bits past the six defined ones included).
"""
from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest
from hypothesis import example, given, settings, strategies as st

pytest.importorskip("rpcsrv.fast._fast")

from rpcsrv.fast import _fast  # noqa: E402
from rpcsrv.nfsd import perm  # noqa: E402
from rpcsrv.proto.rpcmsg import MAX_GIDS  # noqa: E402

U32 = 0xFFFFFFFF
IDS = st.one_of(st.sampled_from([0, 1, 2, 100, 1000, 65534, U32]), st.integers(0, U32))
FTYPES = [stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK]
MODES = st.tuples(st.sampled_from(FTYPES), st.integers(0, 0o7777)).map(lambda t: t[0] | t[1])
MASKS = st.one_of(st.integers(0, 0x3F), st.just(U32), st.integers(0, U32))


def config(root_squash, anon_uid, anon_gid):
    return SimpleNamespace(root_squash=root_squash, anon_uid=anon_uid, anon_gid=anon_gid)


def python_who(root_squash, anon_uid, anon_gid, have_cred, uid, gid, gids):
    cred = SimpleNamespace(uid=uid, gid=gid, gids=tuple(gids)) if have_cred else None
    return perm.who(SimpleNamespace(config=config(root_squash, anon_uid, anon_gid), cred=cred))


callers = dict(root_squash=st.booleans(), anon_uid=IDS, anon_gid=IDS, have_cred=st.booleans(), uid=IDS,
               gid=IDS, gids=st.lists(IDS, max_size=MAX_GIDS))


@settings(max_examples=1500, deadline=None)
@given(**callers)
@example(root_squash=True, anon_uid=65534, anon_gid=65534, have_cred=True, uid=0, gid=0, gids=[0, 0, 5])
@example(root_squash=False, anon_uid=65534, anon_gid=65534, have_cred=True, uid=0, gid=0, gids=[0])
@example(root_squash=True, anon_uid=7, anon_gid=8, have_cred=False, uid=0, gid=0, gids=[])
@example(root_squash=True, anon_uid=7, anon_gid=8, have_cred=True, uid=1, gid=2, gids=[2] * MAX_GIDS)
def test_who_from_is_perm_who(root_squash, anon_uid, anon_gid, have_cred, uid, gid, gids):
    want = python_who(root_squash, anon_uid, anon_gid, have_cred, uid, gid, gids)
    cuid, cgid, cgroups = _fast.who_from(root_squash, anon_uid, anon_gid, have_cred, uid, gid, gids)
    assert (cuid, cgid) == (want.uid, want.gid)
    assert frozenset(cgroups) == want.groups
    assert len(cgroups) == len(want.groups)            # no group twice in fp_who's array (17 at most)


@settings(max_examples=3000, deadline=None)
@given(mode=MODES, st_uid=IDS, st_gid=IDS, mask=MASKS, read_only=st.booleans(), **callers)
@example(mode=stat.S_IFREG | 0o644, st_uid=5, st_gid=5, mask=U32, read_only=False, root_squash=True,
         anon_uid=65534, anon_gid=65534, have_cred=True, uid=0, gid=0, gids=[])    # squashed root: other
@example(mode=stat.S_IFREG | 0o600, st_uid=0, st_gid=0, mask=U32, read_only=True, root_squash=False,
         anon_uid=65534, anon_gid=65534, have_cred=True, uid=0, gid=0, gids=[])    # root, read-only export
@example(mode=stat.S_IFREG | 0o000, st_uid=0, st_gid=0, mask=U32, read_only=False, root_squash=False,
         anon_uid=65534, anon_gid=65534, have_cred=True, uid=0, gid=0, gids=[])    # root: no x bit, no EXECUTE
@example(mode=stat.S_IFDIR | 0o000, st_uid=3, st_gid=3, mask=U32, read_only=False, root_squash=False,
         anon_uid=65534, anon_gid=65534, have_cred=True, uid=0, gid=0, gids=[])    # root: LOOKUP on any dir
@example(mode=stat.S_IFDIR | 0o070, st_uid=3, st_gid=9, mask=U32, read_only=False, root_squash=False,
         anon_uid=65534, anon_gid=65534, have_cred=True, uid=4, gid=1, gids=[9])   # group from the gids
@example(mode=stat.S_IFREG | 0o070, st_uid=4, st_gid=9, mask=U32, read_only=False, root_squash=False,
         anon_uid=65534, anon_gid=65534, have_cred=True, uid=4, gid=9, gids=[])    # owner's bits win, owner may
def test_perm_is_perms(mode, st_uid, st_gid, mask, read_only, root_squash, anon_uid, anon_gid, have_cred, uid,
                       gid, gids):
    w = python_who(root_squash, anon_uid, anon_gid, have_cred, uid, gid, gids)
    obj = SimpleNamespace(st_mode=mode, st_uid=st_uid, st_gid=st_gid)
    want = (perm.bits(obj, w), perm.may_read_file(obj, w), perm.may_write_file(obj, w),
            perm.access_from_stat(obj, mask, w.uid, w.groups, read_only))
    cw = _fast.who_from(root_squash, anon_uid, anon_gid, have_cred, uid, gid, gids)
    assert _fast.perm(mode, st_uid, st_gid, *cw, mask, read_only) == want
