"""fp_core.h's fp_check_name is rpcsrv.export.check_name, verdict for verdict.

LOOKUP (allow_dots) and the modifying directory procedures (CREATE, REMOVE: no "." or "..") check
a filename3 in C with fp_check_name; the Python path checks it with export.check_name (contain.py),
which raises NfsError(INVAL) for an empty name, one with '/' or NUL (and "." / ".." without
allow_dots) and NfsError(NAMETOOLONG) past NFS3_MAXNAMLEN (255) bytes, in that order. A
difference would be a name one path serves and the other refuses, or the same refusal with another
status. _fast.check_name is the thin wrapper (end of _fast_worker.pxi); the names are random bytes
(non-UTF-8 included), bytes drawn from the ones that matter, every length around the limit, and up
to the filename3 decode bound (nfs3xdr.NAME_DECODE_MAX, 4096: longer names never reach the check).
"""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings, strategies as st

pytest.importorskip("rpcsrv.fast._fast")

from rpcsrv.export import NfsError, check_name  # noqa: E402
from rpcsrv.fast import _fast  # noqa: E402
from rpcsrv.proto.nfs3const import NFS3_MAXNAMLEN, NfsStat3  # noqa: E402
from rpcsrv.proto.nfs3xdr import NAME_DECODE_MAX  # noqa: E402


def python_verdict(name: bytes, allow_dots: bool) -> int:
    try:
        assert check_name(name, allow_dots=allow_dots) == name
    except NfsError as e:
        return e.status
    return 0


# the bytes the check looks at, and a few it must not care about (high bit, non-UTF-8)
SPECIAL = st.sampled_from(b"./\0a\xff\x80\xc3 ")
AROUND_LIMIT = st.integers(NFS3_MAXNAMLEN - 2, NFS3_MAXNAMLEN + 2)


def names():
    return st.one_of(
        st.binary(max_size=NFS3_MAXNAMLEN + 8),
        st.lists(SPECIAL, max_size=6).map(bytes),
        AROUND_LIMIT.flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        AROUND_LIMIT.flatmap(lambda n: st.lists(SPECIAL, min_size=n, max_size=n).map(bytes)),
        st.binary(min_size=NFS3_MAXNAMLEN, max_size=NAME_DECODE_MAX),
    )


@settings(max_examples=1500, deadline=None)
@given(name=names(), allow_dots=st.booleans())
@example(name=b"", allow_dots=True)
@example(name=b".", allow_dots=False)
@example(name=b"..", allow_dots=False)
@example(name=b"...", allow_dots=False)
@example(name=b"a/b", allow_dots=True)
@example(name=b"a\0", allow_dots=True)
@example(name=b"/" * (NFS3_MAXNAMLEN + 1), allow_dots=True)   # too long and with '/': NAMETOOLONG first
@example(name=b"\xff\xfe", allow_dots=False)
def test_check_name_is_exports(name, allow_dots):
    assert _fast.check_name(name, allow_dots) == python_verdict(name, allow_dots)


@pytest.mark.parametrize("allow_dots", [True, False])
def test_check_name_at_every_edge(allow_dots):
    dots = 0 if allow_dots else NfsStat3.INVAL
    cases = {b"": NfsStat3.INVAL, b".": dots, b"..": dots, b"...": 0, b".a": 0, b"a.": 0,
             b"/": NfsStat3.INVAL, b"\0": NfsStat3.INVAL, b"a/": NfsStat3.INVAL, b"\0a": NfsStat3.INVAL,
             b"x" * NFS3_MAXNAMLEN: 0, b"x" * (NFS3_MAXNAMLEN + 1): NfsStat3.NAMETOOLONG,
             b"/" * NFS3_MAXNAMLEN: NfsStat3.INVAL, b"\0" * (NFS3_MAXNAMLEN + 1): NfsStat3.NAMETOOLONG,
             b"x" * NAME_DECODE_MAX: NfsStat3.NAMETOOLONG, "é".encode(): 0, b"\xff": 0}
    for name, want in cases.items():
        assert python_verdict(name, allow_dots) == want, name
        assert _fast.check_name(name, allow_dots) == want, name
