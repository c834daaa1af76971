"""rpcsrv.proto.rpcmsg: golden calls and replies (RFC 5531 layouts), the auth policy, truncation.

Replies are packed through the server's own API (pack_success and each error's pack_reply);
calls are packed and replies decoded by the tests' client codec (rpcclient)."""

import pickle

import pytest
from hypothesis import given, settings, strategies as st

from rpcsrv.proto import rpcmsg as m
from rpcsrv.proto.rpcmsg import (
    AuthError, AuthSys, GarbageArgs, GarbageHeader, ProcUnavail, ProgMismatch, ProgUnavail,
    RpcError, RpcMismatch, SystemErr, decode_call,
)
from rpcclient import decode_reply, pack_call
from rpcsrv.proto.xdr import Packer, Unpacker, XdrError


def w(*words):
    return b"".join(x.to_bytes(4, "big") for x in words)


def segmented(data, seg_size):
    segs = [pickle.PickleBuffer(bytearray(data[i:i + seg_size]))
            for i in range(0, len(data), seg_size)]
    return Unpacker(segs, len(data), seg_size)


XID = 0x12345678
NFS = 100003

# NFSv3 NULL, AUTH_NONE credential and verifier.
NULL_CALL = w(XID, 0, 2, NFS, 3, 0) + w(0, 0) + w(0, 0)

# NFSv3 GETATTR, AUTH_SYS {stamp, "client01", uid 1000, gid 100, gids [100, 10]},
# AUTH_NONE verifier, then the argument: a fhandle3 of 8 bytes.
AUTHSYS_BODY = w(0x5F5E0FF1) + w(8) + b"client01" + w(1000, 100) + w(2, 100, 10)
AUTHSYS_CRED = AuthSys(0x5F5E0FF1, b"client01", 1000, 100, (100, 10))
ARGS = w(8) + b"\x01" * 8
GETATTR_CALL = w(XID, 0, 2, NFS, 3, 1) + w(1, len(AUTHSYS_BODY)) + AUTHSYS_BODY + w(0, 0)


def test_golden_authsys_layout():
    assert len(AUTHSYS_BODY) == 36
    assert GETATTR_CALL[:4] == b"\x12\x34\x56\x78"
    assert GETATTR_CALL[12:16] == b"\x00\x01\x86\xa3"


def test_decode_null_call():
    u = Unpacker.from_bytes(NULL_CALL)
    h = decode_call(u)
    assert (h.xid, h.rpcvers, h.prog, h.vers, h.proc) == (XID, 2, NFS, 3, 0)
    assert h.cred_flavor == m.AUTH_NONE and h.cred is None
    assert h.verf_flavor == m.AUTH_NONE and h.verf_body == b""
    u.done()
    assert "xid=0x12345678" in repr(h)


@pytest.mark.parametrize("seg_size", list(range(1, 10)) + [4096])
def test_decode_authsys_call_segmented(seg_size):
    u = segmented(GETATTR_CALL + ARGS, seg_size)
    h = decode_call(u)
    assert (h.xid, h.prog, h.vers, h.proc) == (XID, NFS, 3, 1)
    assert h.cred_flavor == m.AUTH_SYS
    assert h.cred == AUTHSYS_CRED
    assert h.cred.machinename == b"client01" and h.cred.gids == (100, 10)
    assert u.pos == len(GETATTR_CALL)            # positioned at the arguments
    assert u.unpack_opaque(64) == b"\x01" * 8
    u.done()


def test_pack_call_golden():
    p = Packer()
    pack_call(p, XID, NFS, 3, 0)
    assert p.get_buffer() == NULL_CALL
    p = Packer()
    pack_call(p, XID, NFS, 3, 1, AUTHSYS_CRED)
    assert p.get_buffer() == GETATTR_CALL
    p = Packer()
    pack_call(p, XID, NFS, 3, 1, cred=(m.AUTH_SHORT, b"abc"), verf=(m.AUTH_NONE, b""))
    assert p.get_buffer() == w(XID, 0, 2, NFS, 3, 1) + w(2, 3) + b"abc\0" + w(0, 0)
    with pytest.raises(ValueError):
        pack_call(Packer(), 2**32, NFS, 3, 0)
    with pytest.raises(ValueError):
        pack_call(Packer(), 1, NFS, 3, 0, AuthSys(0, b"x" * 256, 0, 0))
    with pytest.raises(ValueError):
        pack_call(Packer(), 1, NFS, 3, 0, AuthSys(0, b"x", 0, 0, range(17)))


# -- golden replies -------------------------------------------------------------------

def _err(e):
    return lambda p: e.pack_reply(p)


REPLIES = [
    (lambda p: m.pack_success(p, XID), w(XID, 1, 0, 0, 0, 0)),
    (_err(ProgUnavail(xid=XID)), w(XID, 1, 0, 0, 0, 1)),
    (_err(ProgMismatch(2, 3, xid=XID)), w(XID, 1, 0, 0, 0, 2, 2, 3)),
    (_err(ProcUnavail(xid=XID)), w(XID, 1, 0, 0, 0, 3)),
    (_err(GarbageArgs(xid=XID)), w(XID, 1, 0, 0, 0, 4)),
    (_err(SystemErr(xid=XID)), w(XID, 1, 0, 0, 0, 5)),
    (_err(RpcMismatch(xid=XID)), w(XID, 1, 1, 0, 2, 2)),
    (_err(AuthError(m.AUTH_BADCRED, xid=XID)), w(XID, 1, 1, 1, 1)),
    (_err(AuthError(m.AUTH_TOOWEAK, xid=XID)), w(XID, 1, 1, 1, 5)),
]


@pytest.mark.parametrize("i", range(len(REPLIES)))
def test_golden_replies_and_decode_reply(i):
    fn, expected = REPLIES[i]
    p = Packer()
    fn(p)
    assert p.get_buffer() == expected
    u = Unpacker.from_bytes(expected)
    r = decode_reply(u)
    u.done()
    assert r.xid == XID
    words = [int.from_bytes(expected[j:j + 4], "big") for j in range(0, len(expected), 4)]
    if words[2] == m.MSG_ACCEPTED:
        assert r.stat == m.MSG_ACCEPTED and r.accept_stat == words[-1 if words[5] != 2 else 5]
    else:
        assert r.stat == m.MSG_DENIED and r.reject_stat == words[3]
    assert "ReplyHeader(" in repr(r)


def test_decode_reply_fields():
    # a verifier with a body (no reply of ours has one): skipped over, results follow
    u = Unpacker.from_bytes(w(XID, 1, 0, 2, 1) + b"v\0\0\0" + w(0, 99))
    r = decode_reply(u)
    assert (r.verf_flavor, r.verf_body, r.accept_stat, u.unpack_uint()) == (2, b"v", m.SUCCESS, 99)
    r = decode_reply(Unpacker.from_bytes(w(XID, 1, 0, 0, 0, 2, 2, 3)))
    assert (r.accept_stat, r.low, r.high) == (m.PROG_MISMATCH, 2, 3)
    r = decode_reply(Unpacker.from_bytes(w(XID, 1, 1, 0, 2, 2)))
    assert (r.reject_stat, r.low, r.high) == (m.RPC_MISMATCH, 2, 2)
    r = decode_reply(Unpacker.from_bytes(w(XID, 1, 1, 1, 3)))
    assert (r.reject_stat, r.auth_stat) == (m.AUTH_ERROR, m.AUTH_BADVERF)
    # SUCCESS leaves the unpacker at the results
    u = Unpacker.from_bytes(w(XID, 1, 0, 0, 0, 0, 77))
    assert decode_reply(u).accept_stat == m.SUCCESS and u.unpack_uint() == 77
    for bad in (w(XID, 0), w(XID, 1, 2), w(XID, 1, 0, 0, 0, 9), w(XID, 1, 1, 7), w(XID, 1)):
        with pytest.raises(XdrError):
            decode_reply(Unpacker.from_bytes(bad))


def test_reply_encoders_reject_bad_values():
    with pytest.raises(ValueError):
        m.pack_success(Packer(), -1)
    with pytest.raises(ValueError):
        AuthError(1, xid=2**32).pack_reply(Packer())
    with pytest.raises(ValueError):
        ProgMismatch(-1, 3, xid=XID).pack_reply(Packer())


# -- errors carry their reply -------------------------------------------------------------

def reply_of(err):
    p = Packer()
    return p.get_buffer() if err.pack_reply(p) else None


def call_err(data, **kw):
    with pytest.raises(RpcError) as ei:
        decode_call(Unpacker.from_bytes(data), **kw)
    return ei.value


def test_reasons():
    assert {c.reason for c in (GarbageHeader, RpcMismatch, AuthError, ProgUnavail, ProgMismatch,
                               ProcUnavail, GarbageArgs, SystemErr)} == {
        "badfmt", "rpc_mismatch", "badauth", "prog_unavail", "prog_mismatch", "proc_unavail",
        "garbage_args", "system_err"}


def test_not_a_call_is_dropped():
    e = call_err(w(XID, 1, 2, NFS, 3, 0, 0, 0, 0, 0))
    assert isinstance(e, GarbageHeader) and e.xid == XID and e.reason == "badfmt"
    assert reply_of(e) is None
    e = call_err(w(XID, 7))
    assert isinstance(e, GarbageHeader) and e.xid == XID


def test_rpc_version_mismatch():
    for vers in (1, 3):
        e = call_err(w(XID, 0, vers, NFS, 3, 0, 0, 0, 0, 0))
        assert isinstance(e, RpcMismatch) and e.reason == "rpc_mismatch"
        assert reply_of(e) == w(XID, 1, 1, 0, 2, 2)
    # the rest of the header is not parsed: another RPC version may differ
    e = call_err(w(XID, 0, 3))
    assert isinstance(e, RpcMismatch) and reply_of(e) == w(XID, 1, 1, 0, 2, 2)


def test_unknown_flavor_is_badcred():
    e = call_err(w(XID, 0, 2, NFS, 3, 0, m.RPCSEC_GSS, 4, 0, 0, 0))
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADCRED
    assert reply_of(e) == w(XID, 1, 1, 1, m.AUTH_BADCRED)


def test_flavor_not_allowed_is_tooweak():
    e = call_err(NULL_CALL, flavors={m.AUTH_SYS})
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_TOOWEAK and e.xid == XID
    assert decode_call(Unpacker.from_bytes(GETATTR_CALL), flavors={m.AUTH_SYS}).cred is not None


def test_auth_none_with_body_is_badcred():
    e = call_err(w(XID, 0, 2, NFS, 3, 0, 0, 4, 0xABCD, 0, 0))
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADCRED


def test_cred_length_boundary():
    # 400 bytes is allowed by opaque_auth: a truncated 400-byte body is merely short ...
    e = call_err(w(XID, 0, 2, NFS, 3, 0, 1, 400))
    assert isinstance(e, GarbageHeader) and e.xid == XID
    # ... 401 is refused as a bad credential before looking for the body.
    e = call_err(w(XID, 0, 2, NFS, 3, 0, 1, 401))
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADCRED


def authsys_call(body, declared=None):
    declared = len(body) if declared is None else declared
    return w(XID, 0, 2, NFS, 3, 1, 1, declared) + body + w(0, 0)


def authsys_body(name=b"h", gids=()):
    pad = b"\0" * (-len(name) % 4)
    return w(1, len(name)) + name + pad + w(0, 0, len(gids), *gids)


def test_authsys_limits_boundary():
    ok = decode_call(Unpacker.from_bytes(authsys_call(authsys_body(b"n" * 255, range(16)))))
    assert len(ok.cred.machinename) == 255 and len(ok.cred.gids) == 16
    for body in (authsys_body(b"n" * 256), authsys_body(gids=range(17))):
        e = call_err(authsys_call(body))
        assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADCRED and e.xid == XID


def test_authsys_declared_length_must_match():
    body = authsys_body(b"host", (1, 2))
    decode_call(Unpacker.from_bytes(authsys_call(body)))
    # declared longer than the parsed structure (extra word inside the body)
    e = call_err(authsys_call(body + w(0)))
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADCRED
    # declared shorter: the structure runs into the verifier
    e = call_err(authsys_call(body[:-4], declared=len(body) - 4) + w(0, 0))
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADCRED
    # body too short to hold the structure
    e = call_err(authsys_call(w(1)))
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADCRED


def test_verifier_must_be_empty_auth_none():
    for verf in (w(1, 0), w(0, 4, 0), w(6, 8, 0, 0)):
        e = call_err(w(XID, 0, 2, NFS, 3, 0, 0, 0) + verf)
        assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADVERF
        assert reply_of(e) == w(XID, 1, 1, 1, m.AUTH_BADVERF)
    e = call_err(w(XID, 0, 2, NFS, 3, 0, 0, 0, 0, 401))
    assert isinstance(e, AuthError) and e.auth_stat == m.AUTH_BADVERF


@pytest.mark.parametrize("golden", [NULL_CALL, GETATTR_CALL], ids=["null", "authsys"])
def test_truncation_at_every_offset(golden):
    for cut in range(len(golden)):
        for u in (Unpacker.from_bytes(golden[:cut]), segmented(golden[:cut], 3)):
            with pytest.raises(GarbageHeader) as ei:
                decode_call(u)
            assert ei.value.xid == (XID if cut >= 4 else None)
            assert reply_of(ei.value) is None
    decode_call(Unpacker.from_bytes(golden))


# -- hypothesis ------------------------------------------------------------------------------

AUTHSYS = st.builds(AuthSys, st.integers(0, 2**32 - 1), st.binary(max_size=255),
                    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                    st.lists(st.integers(0, 2**32 - 1), max_size=16))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.integers(0, 2**32 - 1), st.one_of(st.none(), AUTHSYS), st.binary(max_size=20),
       st.integers(1, 9))
def test_call_roundtrip(xid, prog, vers, proc, cred, args, seg_size):
    p = Packer()
    pack_call(p, xid, prog, vers, proc, cred)
    p.pack_opaque(args)
    u = segmented(p.get_buffer(), seg_size)
    h = decode_call(u)
    assert (h.xid, h.prog, h.vers, h.proc, h.cred) == (xid, prog, vers, proc, cred)
    assert h.cred_flavor == (m.AUTH_NONE if cred is None else m.AUTH_SYS)
    assert u.unpack_opaque() == args
    u.done()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(1, 9))
def test_garbage_raises_only_rpcerror(blob, seg_size):
    try:
        decode_call(segmented(blob, seg_size))
    except RpcError as e:
        assert e.reason in ("badfmt", "rpc_mismatch", "badauth")
        p = Packer()
        if e.pack_reply(p):
            decode_reply(Unpacker.from_bytes(p.get_buffer()))   # a well-formed reply


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([0, 1, 2, 6, 400]))
def test_mostly_valid_prefix_garbage_tail(tail, flavor):
    # a plausible header so the fuzz reaches the credential and verifier code
    try:
        decode_call(Unpacker.from_bytes(w(XID, 0, 2, NFS, 3, 1, flavor) + tail))
    except RpcError as e:
        assert e.xid == XID
