"""fp_core.h's fp_parse_call is rpcsrv.proto.rpcmsg.decode_call on the calls the fast path serves.

fp_process parses every record's call header with fp_parse_call and serves the call only if it
accepts it; anything it refuses falls back to the Python path, whose decode_call (with the server's
default flavors, AUTH_NONE and AUTH_SYS) answers it. So the two must accept exactly the same
headers -- a header C accepts and Python refuses would be served where the Python path answers an
error (AUTH_BADCRED, AUTH_BADVERF, RPC_MISMATCH) or drops it -- and, when they accept, read the
same fields: xid, prog, vers, proc, the AUTH_SYS uid, gid and gids, and where the arguments begin.
_fast.parse_call is the thin wrapper (end of _fast_worker.pxi). The headers are well-formed calls
with random fields (AUTH_NONE and AUTH_SYS, machinenames and gid counts up to and past their
limits, declared credential lengths that are right or off), the same with one word replaced by a
value near a limit, cut at any offset or with a word added or removed, and random bytes.
"""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings, strategies as st

pytest.importorskip("rpcsrv.fast._fast")

from rpcsrv.fast import _fast  # noqa: E402
from rpcsrv.proto.rpcmsg import MAX_AUTH_BYTES, MAX_GIDS, MAX_MACHINENAME, RpcError, decode_call  # noqa: E402
from rpcsrv.proto.xdr import Unpacker  # noqa: E402

U32 = 0xFFFFFFFF
NFS, V3 = 100003, 3


def w(*words):
    return b"".join(x.to_bytes(4, "big") for x in words)


def opaque(b):
    return w(len(b)) + b + b"\0" * (-len(b) % 4)


def python_parse(data: bytes):
    u = Unpacker.from_bytes(data)
    try:
        h = decode_call(u)
    except RpcError:
        return None
    c = h.cred
    return (h.xid, h.prog, h.vers, h.proc, c is not None, c.uid if c else 0, c.gid if c else 0,
            tuple(c.gids) if c else (), u.pos)


WORDS = st.one_of(st.integers(0, U32), st.sampled_from([0, 1, 2, 3, 6, NFS, V3]))
# values around the limits the decoders check (flavors, body lengths, machinename, gid count)
IDS_ = st.sampled_from([0, 1, 100, 65534, U32])
EDGY = st.sampled_from([0, 1, 2, 3, 4, 6, 15, 16, 17, 255, 256, 396, 400, 401, 404, 0x7FFFFFFF, U32])


@st.composite
def calls(draw):
    # half are well-formed (random fields, any machinename and gid count the limits allow), half have
    # any of the items off as well (message type, RPC version, flavors, lengths past the limits)
    ok = draw(st.booleans())
    head = w(draw(WORDS), 0 if ok else draw(st.sampled_from([0, 1, 2])), 2 if ok else draw(st.sampled_from([2, 1, 3])),
             draw(st.one_of(st.just(NFS), WORDS)), draw(st.one_of(st.just(V3), WORDS)), draw(WORDS))
    flavor = draw(st.sampled_from([0, 1, 1]) if ok else st.sampled_from([0, 1, 2, 6]))
    if flavor == 1:
        top = MAX_MACHINENAME if ok else MAX_MACHINENAME + 1
        name = draw(st.one_of(st.binary(max_size=16), st.binary(min_size=MAX_MACHINENAME - 1, max_size=top)))
        gids = draw(st.one_of(st.lists(st.integers(0, U32), max_size=MAX_GIDS if ok else MAX_GIDS + 1),
                              st.lists(IDS_, min_size=MAX_GIDS - 1, max_size=MAX_GIDS if ok else MAX_GIDS + 1)))
        body = w(draw(WORDS)) + opaque(name) + w(draw(WORDS), draw(WORDS), len(gids), *gids)
    else:
        body = b"" if ok else draw(st.sampled_from([b"", w(0), w(1, 2)]))
    declared = len(body) if ok else draw(st.one_of(st.just(len(body)), st.sampled_from([len(body) - 4, len(body) + 4]),
                                                   EDGY)) % (U32 + 1)
    cred = w(flavor, declared) + body
    verf = w(0, 0) if ok else draw(st.sampled_from([w(0, 0), w(1, 0), w(6, 0), w(0, 4, 0), w(0, 401)]))
    args = draw(st.binary(max_size=24))
    return head + cred + verf + args


@st.composite
def mutated(draw):
    data = bytearray(draw(calls()))
    kind = draw(st.sampled_from(["word", "cut", "insert", "delete"]))
    if kind == "word" and len(data) >= 4:
        i = 4 * draw(st.integers(0, len(data) // 4 - 1))
        data[i:i + 4] = w(draw(st.one_of(EDGY, WORDS)))
    elif kind == "cut":
        del data[draw(st.integers(0, len(data))):]
    elif kind == "insert":
        i = 4 * draw(st.integers(0, len(data) // 4))
        data[i:i] = w(draw(EDGY))
    elif len(data) >= 4:
        i = 4 * draw(st.integers(0, len(data) // 4 - 1))
        del data[i:i + 4]
    return bytes(data)


NULL_CALL = w(7, 0, 2, NFS, V3, 0) + w(0, 0) + w(0, 0)
AUTHSYS = w(1) + opaque(b"client01") + w(1000, 100, 2, 100, 10)
GETATTR = w(8, 0, 2, NFS, V3, 1) + w(1, len(AUTHSYS)) + AUTHSYS + w(0, 0) + opaque(b"\1" * 8)


@settings(max_examples=4000, deadline=None)
@given(data=st.one_of(calls(), mutated(), st.binary(max_size=120)))
@example(data=NULL_CALL)
@example(data=GETATTR)
@example(data=b"")
@example(data=GETATTR[:-16])                                                   # header whole, arguments cut
def test_parse_call_is_decode_call(data):
    assert _fast.parse_call(data) == python_parse(data)


def authsys_call(name=b"h", ngids=0, declared=None, verf=w(0, 0)):
    body = w(1) + opaque(name) + w(5, 6, ngids, *range(ngids))
    return w(9, 0, 2, NFS, V3, 4) + w(1, len(body) if declared is None else declared) + body + verf


LIMITS = {
    "null": (NULL_CALL, True), "getattr": (GETATTR, True),
    "16 gids": (authsys_call(ngids=MAX_GIDS), True), "17 gids": (authsys_call(ngids=MAX_GIDS + 1), False),
    "255-byte machinename": (authsys_call(name=b"m" * MAX_MACHINENAME), True),
    "256-byte machinename": (authsys_call(name=b"m" * (MAX_MACHINENAME + 1)), False),
    "cred declared short": (authsys_call(declared=20), False),      # the body is 24 bytes
    "cred declared long": (authsys_call(declared=28), False),
    "AUTH_SYS verifier": (authsys_call(verf=w(1, 0)), False),
    "verifier with a body": (authsys_call(verf=w(0, 4, 0)), False),
    "a REPLY": (w(7, 1, 2, NFS, V3, 0, 0, 0, 0, 0), False),
    "RPC version 3": (w(7, 0, 3, NFS, V3, 0, 0, 0, 0, 0), False),
    "AUTH_NONE with a body": (w(7, 0, 2, NFS, V3, 0, 0, 4, 0, 0, 0), False),
    "RPCSEC_GSS": (w(7, 0, 2, NFS, V3, 0, 6, 0, 0, 0), False),
    "401-byte cred": (w(7, 0, 2, NFS, V3, 0, 1, MAX_AUTH_BYTES + 1) + b"\0" * 404 + w(0, 0), False),
}


@pytest.mark.parametrize("case", list(LIMITS))
def test_parse_call_at_the_limits(case):
    data, accepted = LIMITS[case]
    assert (python_parse(data) is not None) == accepted
    assert _fast.parse_call(data) == python_parse(data)
