"""rpcsrv.svc.dispatch: declared tables, lookup errors, and the reply policy of dispatch()."""

import pytest
from hypothesis import given, settings, strategies as st

from rpcsrv.proto import rpcmsg as m
from rpcsrv.svc.dispatch import (
    Dispatcher, Outcome, ProcEntry, Program, dispatch, null_entry,
)
from rpcsrv.proto.rpcmsg import (
    AuthError, GarbageArgs, ProcUnavail, ProgMismatch, ProgUnavail, decode_call,
)
from rpcclient import decode_reply, pack_call
from rpcsrv.proto.xdr import Packer, Unpacker, XdrError

PROG = 200100
XID = 0xCAFE


def w(*words):
    return b"".join(x.to_bytes(4, "big") for x in words)


class Payload:
    """A result whose data the handler put into reply pages: n bytes to send after the header."""

    def __init__(self, n):
        self.n = n


def boom(ctx, args):
    raise RuntimeError("handler bug")


def half_encode(packer, result):
    packer.pack_uint(0xBAD)          # written, then the encoder fails
    raise KeyError("encoder bug")


def refuse(ctx, args):
    raise AuthError(m.AUTH_TOOWEAK)


def semantic_garbage(ctx, args):
    raise GarbageArgs("count out of range")


def u32(u):
    return u.unpack_uint()


def pack_u32(p, v):
    p.pack_uint(v)


def double(ctx, args):
    ctx.append(args)
    return args * 2


V1 = [null_entry(), ProcEntry("echo", u32, lambda ctx, a: a, pack_u32)]
V3 = {
    0: null_entry(),
    1: ProcEntry("double", u32, double, pack_u32),
    2: ProcEntry("boom", u32, boom, pack_u32),
    3: ProcEntry("badenc", u32, lambda c, a: a, half_encode),
    4: ProcEntry("refuse", u32, refuse, pack_u32),
    5: ProcEntry("semantic", u32, semantic_garbage, pack_u32),
    6: ProcEntry("read", u32, lambda c, a: Payload(a), lambda p, r: p.pack_uint(r.n), idempotent=True,
                 reply_max=4, payload=lambda r: r.n),
    7: ProcEntry("status", u32, lambda c, a: a, pack_u32,
                 status=lambda r: "noent" if r else "ok"),
    9: ProcEntry("decodebug", lambda u: 1 // 0, double, pack_u32),
    10: ProcEntry("toobig", u32, lambda c, a: a, lambda p, r: [p.pack_uint(r) for _ in range(r)], reply_max=8),
}

DISP = Dispatcher([Program(PROG, "toy", {1: V1, 3: V3}),
                   Program(100005, "mount", {3: [null_entry()]})])


def run(vers, proc, args=b"", prefix=b""):
    """Dispatch a call; returns (outcome, reply header, the reply bytes after the header)."""
    p = Packer()
    pack_call(p, XID, PROG, vers, proc)
    call = p.get_buffer() + args
    u = Unpacker.from_bytes(call)
    hdr = decode_call(u)
    out = Packer()
    out.append(prefix)
    ctx = []
    oc = dispatch(DISP, hdr, u, ctx, out)
    buf = out.get_buffer()
    assert buf[:len(prefix)] == prefix          # dispatch leaves the prefix alone
    if not oc.reply:
        return oc, None, None
    ru = Unpacker.from_bytes(buf, pos=len(prefix))
    rh = decode_reply(ru)
    assert rh.xid == XID
    return oc, rh, buf[ru.pos:]


# -- tables and lookup -------------------------------------------------------------------

def test_lookup():
    assert DISP.lookup(PROG, 3, 1).name == "double"
    assert DISP.lookup(PROG, 1, 1).name == "echo"
    with pytest.raises(ProgUnavail) as ei:
        DISP.lookup(1, 1, 0, xid=5)
    assert ei.value.reason == "prog_unavail" and ei.value.xid == 5
    with pytest.raises(ProgMismatch) as ei:
        DISP.lookup(PROG, 2, 0)
    assert (ei.value.low, ei.value.high, ei.value.reason) == (1, 3, "prog_mismatch")
    with pytest.raises(ProcUnavail) as ei:
        DISP.lookup(PROG, 3, 8)          # a hole in the dict
    assert ei.value.reason == "proc_unavail"
    with pytest.raises(ProcUnavail):
        DISP.lookup(PROG, 1, 2)          # past the end of the list


def test_table_construction():
    prog = Program(7, "p", {2: [null_entry(), None, null_entry("x")]})
    assert sorted(prog.versions[2]) == [0, 2]
    assert (prog.low, prog.high) == (2, 2)
    with pytest.raises(ValueError):
        Dispatcher([prog, Program(7, "q", {1: [null_entry()]})])
    with pytest.raises(TypeError):
        Program(8, "bad", {1: ["not an entry"]})
    with pytest.raises(ValueError):
        Program(9, "empty", {})


def test_entries_enumerates_the_table():
    names = [(p.name, v, n, e.name) for p, v, n, e in DISP.entries()]
    assert ("toy", 1, 1, "echo") in names and ("mount", 3, 0, "null") in names
    assert len(names) == len(V1) + len(V3) + 1
    assert DISP.program(PROG).name == "toy" and DISP.program(1) is None


# -- dispatch outcomes and their replies ------------------------------------------------------

def test_success():
    oc, rh, rest = run(3, 1, w(21))
    assert (oc.status, oc.program, oc.name, oc.error) == ("ok", "toy", "double", None)
    assert rh.accept_stat == m.SUCCESS and rest == w(42)
    assert oc.result == 42
    oc, rh, rest = run(3, 0)
    assert oc.name == "null" and rest == b""


def test_null_golden_reply_bytes():
    p = Packer()
    pack_call(p, XID, PROG, 3, 0)
    u = Unpacker.from_bytes(p.get_buffer())
    out = Packer()
    dispatch(DISP, decode_call(u), u, None, out)
    assert out.get_buffer() == w(XID, 1, 0, 0, 0, 0)


def test_unknown_prog_vers_proc():
    p = Packer()
    pack_call(p, XID, 999, 1, 0)
    u = Unpacker.from_bytes(p.get_buffer())
    out = Packer()
    oc = dispatch(DISP, decode_call(u), u, None, out)
    assert (oc.status, oc.program, oc.name) == ("prog_unavail", None, None)
    assert out.get_buffer() == w(XID, 1, 0, 0, 0, m.PROG_UNAVAIL)

    oc, rh, rest = run(4, 0)
    assert oc.status == "prog_mismatch" and (rh.low, rh.high) == (1, 3) and rest == b""
    oc, rh, rest = run(3, 8)
    assert oc.status == "proc_unavail" and rh.accept_stat == m.PROC_UNAVAIL
    assert oc.program == "toy" and oc.name is None


@pytest.mark.parametrize("args", [b"", w(1)[:3], w(1, 2)], ids=["missing", "short", "trailing"])
def test_garbage_args(args):
    oc, rh, rest = run(3, 1, args, prefix=b"\x80\0\0\0")
    assert (oc.status, oc.name, oc.error) == ("garbage_args", "double", None)
    assert rh.accept_stat == m.GARBAGE_ARGS and rest == b""
    assert oc.result is None


def test_handler_exception_becomes_system_err():
    oc, rh, rest = run(3, 2, w(1))
    assert oc.status == "system_err" and rh.accept_stat == m.SYSTEM_ERR and rest == b""
    assert isinstance(oc.error, RuntimeError)


def test_decoder_bug_becomes_system_err_not_garbage():
    oc, rh, _ = run(3, 9, w(1))
    assert oc.status == "system_err" and isinstance(oc.error, ZeroDivisionError)


def test_encoder_exception_truncates_partial_reply():
    oc, rh, rest = run(3, 3, w(1), prefix=b"RM..")
    assert oc.status == "system_err" and isinstance(oc.error, KeyError)
    assert rh.accept_stat == m.SYSTEM_ERR and rest == b""   # no SUCCESS header, no 0xBAD


def test_handler_rpcerror_carries_its_reply():
    oc, rh, rest = run(3, 4, w(1))
    assert oc.status == "badauth" and oc.error is None
    assert rh.stat == m.MSG_DENIED and rh.auth_stat == m.AUTH_TOOWEAK
    oc, rh, rest = run(3, 5, w(1))
    assert oc.status == "garbage_args" and rh.accept_stat == m.GARBAGE_ARGS


def test_declared_payload_is_in_the_outcome():
    oc, rh, rest = run(3, 6, w(5))
    assert rest == w(5)
    assert isinstance(oc.result, Payload) and oc.payload == 5
    assert run(3, 1, w(5))[0].payload == 0            # no payload declared: none


def test_result_over_its_declared_maximum_is_our_bug():
    oc, rh, rest = run(3, 10, w(2))                     # 8 bytes: at the maximum
    assert oc.status == "ok" and rest == w(2, 2)
    oc, rh, rest = run(3, 10, w(3))                     # 12 bytes: over it
    assert oc.status == "system_err" and isinstance(oc.error, RuntimeError)
    assert rh.accept_stat == m.SYSTEM_ERR and rest == b""


def test_resolve_answers_the_table_lookup_without_raising():
    p, e, err = DISP.resolve(PROG, 3, 1)
    assert (p.name, e.name, err) == ("toy", "double", None)
    p, e, err = DISP.resolve(PROG, 2, 0)
    assert p.name == "toy" and e is None and isinstance(err, ProgMismatch) and (err.low, err.high) == (1, 3)
    assert isinstance(DISP.resolve(PROG, 3, 8)[2], ProcUnavail)
    assert DISP.resolve(1, 1, 0)[:2] == (None, None) and isinstance(DISP.resolve(1, 1, 0)[2], ProgUnavail)


def test_status_callable():
    assert run(3, 7, w(1))[0].status == "noent"
    assert run(3, 7, w(0))[0].status == "ok"


def test_outcome_repr():
    assert "status='ok'" in repr(Outcome("ok", "toy", "null"))


class _Interrupt(BaseException):
    pass


def test_base_exceptions_propagate():
    disp = Dispatcher([Program(5, "x", {1: [ProcEntry("stop", lambda u: None,
                                                      lambda c, a: (_ for _ in ()).throw(
                                                          _Interrupt()), pack_u32)]})])
    p = Packer()
    pack_call(p, 1, 5, 1, 0)
    u = Unpacker.from_bytes(p.get_buffer())
    with pytest.raises(_Interrupt):
        dispatch(disp, decode_call(u), u, None, Packer())


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 9), st.sampled_from([1, 2, 3, 4]), st.binary(max_size=16))
def test_dispatch_never_raises(proc, vers, args):
    oc, rh, rest = run(vers, proc, args)
    assert oc.reply
    assert oc.status in ("ok", "noent", "garbage_args", "system_err", "prog_mismatch",
                         "proc_unavail", "badauth")
    if oc.status not in ("ok", "noent"):
        assert rest == b""


def test_xdrerror_type_is_what_decoders_raise():
    with pytest.raises(XdrError):
        u32(Unpacker.from_bytes(b"\0"))
