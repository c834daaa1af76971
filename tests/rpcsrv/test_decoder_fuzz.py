"""Property-based fuzzing of every NFSv3 and MOUNT v3 argument decoder and of the call header:
arbitrary bytes (and mutations of valid arguments) give a value or XdrError, nothing else."""
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcsrv.nfsd import mount3, nfs3
from rpcsrv.proto import rpcmsg
from rpcsrv.proto.xdr import Packer, Unpacker, XdrError

ENTRIES = sorted(((("nfs", p, e) for p, e in nfs3.make_table().items())), key=lambda x: x[1]) + \
    sorted(((("mount", p, e) for p, e in mount3.make_table().items())), key=lambda x: x[1])


def segmented(data, seg):
    segs = [data[i:i + seg] for i in range(0, len(data), seg)] or [b""]
    return Unpacker(segs, len(data), seg_size=seg)


def try_decode(entry, data, seg):
    u = segmented(data, seg)
    try:
        entry.decode(u)
        u.done()
    except XdrError:
        pass


@given(data=st.binary(max_size=600), seg=st.sampled_from([4, 8, 12, 4096]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_decoder_takes_any_bytes(data, seg):
    for _, _, entry in ENTRIES:
        try_decode(entry, data, seg)


def valid_args():
    """Plausible arguments: a handle, a name, numbers - then mutated by hypothesis."""
    p = Packer()
    p.pack_opaque(b"\x01" * 28)
    p.pack_string(b"name")
    p.pack_uhyper(0)
    p.pack_uint(4096)
    p.pack_uint(2)
    p.pack_opaque(b"x" * 40)
    return bytes(p.get_buffer())


@given(flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8),
       cut=st.integers(0, 200))
@settings(max_examples=300, deadline=None)
def test_every_decoder_takes_mutated_arguments(flips, cut):
    data = bytearray(valid_args())
    for i, v in flips:
        if i < len(data):
            data[i] = v
    data = bytes(data[:cut])
    for _, _, entry in ENTRIES:
        try_decode(entry, data, 4096)


@given(data=st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_call_header_takes_any_bytes(data):
    u = Unpacker.from_bytes(data)
    try:
        rpcmsg.decode_call(u)
    except rpcmsg.RpcError as e:
        assert e.reason in ("badfmt", "rpc_mismatch", "badauth")


@given(machinename=st.binary(max_size=300), gids=st.lists(st.integers(0, 2**32 - 1), max_size=20),
       declared=st.integers(0, 500))
@settings(max_examples=300, deadline=None)
def test_auth_sys_bounds(machinename, gids, declared):
    body = Packer()
    body.pack_uint(1)
    body.pack_opaque(machinename)
    body.pack_uint(0)
    body.pack_uint(0)
    body.pack_uint(len(gids))
    for g in gids:
        body.pack_uint(g)
    raw = bytes(body.get_buffer())
    p = Packer()
    p.append(struct.pack(">IIIIII", 7, 0, 2, 100003, 3, 0))
    p.pack_uint(rpcmsg.AUTH_SYS)
    p.pack_uint(declared)
    p.append(raw[:declared] + b"\0" * max(0, (-declared) % 4 + declared - len(raw)))
    p.pack_uint(0)
    p.pack_uint(0)
    u = Unpacker.from_bytes(bytes(p.get_buffer()))
    ok = declared == len(raw) and len(machinename) <= 255 and len(gids) <= 16 and declared <= 400
    try:
        call = rpcmsg.decode_call(u)
        assert ok, "accepted a bad AUTH_SYS"
        assert call.cred.machinename == machinename and list(call.cred.gids) == gids
    except rpcmsg.RpcError as e:
        assert not ok, "refused a good AUTH_SYS: %r" % e
