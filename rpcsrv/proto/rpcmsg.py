# rpcsrv/rpcmsg.py -- ONC RPC v2 messages (RFC 5531), sans-IO.
#
# Owns: the call header (xid .. verifier), AUTH_NONE / AUTH_SYS credentials,
# and the encoding of every reply header kind.  Procedure arguments and
# results belong to the program modules (mount3, nfs3); dispatch.py glues.
#
# Theory and policy
# -----------------
# * "Errors carry their reply": every error a peer can cause while we process
#   a call is an RpcError subclass with a lower-case .reason (the metric
#   label), the .xid when it was decoded, and pack_reply(packer) which appends
#   the reply header to send and returns True -- or returns False when no
#   reply must be sent (GarbageHeader).  decode_call() raises nothing but
#   RpcError subclasses, whatever the input.
# * decode_call() checks, in wire order:
#     - xid missing               -> GarbageHeader(xid=None)      no reply
#     - msg_type missing or != CALL -> GarbageHeader(xid)         no reply
#     - rpcvers != 2              -> RpcMismatch (MSG_DENIED RPC_MISMATCH 2..2).
#                                    Checked as soon as rpcvers is read: a
#                                    different RPC version may lay out the rest
#                                    differently, so the rest is not parsed.
#     - record ends inside prog/vers/proc/cred/verf -> GarbageHeader(xid), no
#       reply.  Like the Linux kernel ("short len ... dropping request"): the
#       header is not a call we understood, so we do not answer it.  Record
#       boundaries are intact, so the connection may stay open; only the
#       record is dropped.
#     - credential: body longer than 400 bytes (RFC 5531 opaque_auth) ->
#       AUTH_BADCRED.  Unknown flavor -> AUTH_BADCRED, as the Linux kernel's
#       svc_authenticate() does (AUTH_REJECTEDCRED means "begin a new session",
#       which is meaningless for flavors we do not implement).  A flavor we know
#       but the caller did not allow (the `flavors` argument) -> AUTH_TOOWEAK.
#       AUTH_NONE with a non-empty body -> AUTH_BADCRED.  AUTH_SYS is parsed in
#       place (no copy): machinename <= 255 bytes, <= 16 gids, and the parse
#       must consume exactly the declared body length, else AUTH_BADCRED.
#     - verifier: body longer than 400 bytes, or (for AUTH_NONE and AUTH_SYS
#       calls) anything but an empty AUTH_NONE verifier -> AUTH_BADVERF, as
#       the kernel's svcauth_null/unix_accept() do.
#   After decode_call() the Unpacker is positioned at the procedure arguments.
# * Reply verifiers are always AUTH_NONE (we implement no flavor with a
#   server verifier); the encoders take verf=(flavor, body) for completeness.
# * Encoders raise ValueError for unencodable values (our bug).
# * No I/O, no threads, no logging, no locks.

import struct

from .xdr import XdrError

__all__ = [
    # constants
    "RPC_VERSION", "CALL", "REPLY", "MSG_ACCEPTED", "MSG_DENIED",
    "SUCCESS", "PROG_UNAVAIL", "PROG_MISMATCH", "PROC_UNAVAIL", "GARBAGE_ARGS", "SYSTEM_ERR",
    "RPC_MISMATCH", "AUTH_ERROR",
    "AUTH_OK", "AUTH_BADCRED", "AUTH_REJECTEDCRED", "AUTH_BADVERF", "AUTH_REJECTEDVERF",
    "AUTH_TOOWEAK", "AUTH_INVALIDRESP", "AUTH_FAILED", "AUTH_KERB_GENERIC", "AUTH_TIMEEXPIRE",
    "AUTH_TKT_FILE", "AUTH_DECODE", "AUTH_NET_ADDR", "RPCSEC_GSS_CREDPROBLEM",
    "RPCSEC_GSS_CTXPROBLEM",
    "AUTH_NONE", "AUTH_NULL", "AUTH_SYS", "AUTH_UNIX", "AUTH_SHORT", "AUTH_DH", "RPCSEC_GSS",
    "MAX_AUTH_BYTES", "MAX_MACHINENAME", "MAX_GIDS", "DEFAULT_FLAVORS",
    # data
    "AuthSys", "CallHeader", "ReplyHeader",
    # errors
    "RpcError", "GarbageHeader", "RpcMismatch", "AuthError", "ProgUnavail", "ProgMismatch",
    "ProcUnavail", "GarbageArgs", "SystemErr",
    # codecs
    "decode_call", "decode_authsys", "pack_authsys", "pack_call", "decode_reply",
    "pack_accepted_reply", "pack_success", "pack_prog_unavail", "pack_prog_mismatch",
    "pack_proc_unavail", "pack_garbage_args", "pack_system_err", "pack_rpc_mismatch",
    "pack_auth_error",
]

RPC_VERSION = 2

# msg_type
CALL = 0
REPLY = 1
# reply_stat
MSG_ACCEPTED = 0
MSG_DENIED = 1
# accept_stat
SUCCESS = 0
PROG_UNAVAIL = 1
PROG_MISMATCH = 2
PROC_UNAVAIL = 3
GARBAGE_ARGS = 4
SYSTEM_ERR = 5
# reject_stat
RPC_MISMATCH = 0
AUTH_ERROR = 1
# auth_stat
AUTH_OK = 0
AUTH_BADCRED = 1
AUTH_REJECTEDCRED = 2
AUTH_BADVERF = 3
AUTH_REJECTEDVERF = 4
AUTH_TOOWEAK = 5
AUTH_INVALIDRESP = 6
AUTH_FAILED = 7
AUTH_KERB_GENERIC = 8
AUTH_TIMEEXPIRE = 9
AUTH_TKT_FILE = 10
AUTH_DECODE = 11
AUTH_NET_ADDR = 12
RPCSEC_GSS_CREDPROBLEM = 13
RPCSEC_GSS_CTXPROBLEM = 14
# auth_flavor
AUTH_NONE = AUTH_NULL = 0
AUTH_SYS = AUTH_UNIX = 1
AUTH_SHORT = 2
AUTH_DH = 3
RPCSEC_GSS = 6

MAX_AUTH_BYTES = 400
MAX_MACHINENAME = 255
MAX_GIDS = 16
DEFAULT_FLAVORS = frozenset((AUTH_NONE, AUTH_SYS))
_IMPLEMENTED_FLAVORS = DEFAULT_FLAVORS

_ACCEPT_STATS = frozenset((SUCCESS, PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS,
                           SYSTEM_ERR))

# Precompiled reply headers: xid, REPLY, reply_stat, then the rest.
_ACCEPTED_NONE = struct.Struct(">6I")    # xid REPLY MSG_ACCEPTED AUTH_NONE 0 accept_stat
_ACCEPTED_NONE_2 = struct.Struct(">8I")  # ... PROG_MISMATCH low high
_DENIED_3 = struct.Struct(">5I")         # xid REPLY MSG_DENIED reject_stat x
_DENIED_4 = struct.Struct(">6I")         # xid REPLY MSG_DENIED RPC_MISMATCH low high
_CALL_HEAD = struct.Struct(">6I")        # xid CALL rpcvers prog vers proc
_HEAD8 = struct.Struct(">8I")            # ... cred_flavor cred_len
_U32x2 = struct.Struct(">2I")
_U32x3 = struct.Struct(">3I")
_GIDS = tuple(struct.Struct(">%dI" % n) for n in range(MAX_GIDS + 1))
_structerror = struct.error


# --------------------------------------------------------------------------
# Data


class AuthSys:
    """authsys_parms: stamp, machinename (bytes), uid, gid, gids (tuple of ints)."""

    __slots__ = ("stamp", "machinename", "uid", "gid", "gids")

    def __init__(self, stamp, machinename, uid, gid, gids=()):
        if isinstance(machinename, str):
            machinename = machinename.encode("utf-8", "surrogateescape")
        self.stamp = stamp
        self.machinename = machinename
        self.uid = uid
        self.gid = gid
        self.gids = tuple(gids)

    def _key(self):
        return (self.stamp, self.machinename, self.uid, self.gid, self.gids)

    def __eq__(self, other):
        if not isinstance(other, AuthSys):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return ("AuthSys(stamp=%d, machinename=%r, uid=%d, gid=%d, gids=%r)"
                % (self.stamp, self.machinename, self.uid, self.gid, self.gids))


class CallHeader:
    """A decoded call header.  cred is an AuthSys for AUTH_SYS, else None."""

    __slots__ = ("xid", "rpcvers", "prog", "vers", "proc", "cred_flavor", "cred",
                 "verf_flavor", "verf_body")

    def __init__(self, xid, rpcvers, prog, vers, proc, cred_flavor, cred, verf_flavor, verf_body):
        self.xid = xid
        self.rpcvers = rpcvers
        self.prog = prog
        self.vers = vers
        self.proc = proc
        self.cred_flavor = cred_flavor
        self.cred = cred
        self.verf_flavor = verf_flavor
        self.verf_body = verf_body

    def __repr__(self):
        return ("CallHeader(xid=%#x, rpcvers=%d, prog=%d, vers=%d, proc=%d, cred_flavor=%d, "
                "cred=%r, verf_flavor=%d, verf_body=%r)"
                % (self.xid, self.rpcvers, self.prog, self.vers, self.proc, self.cred_flavor,
                   self.cred, self.verf_flavor, self.verf_body))


class ReplyHeader:
    """A decoded reply header (for tests and the raw RPC test client).

    stat is MSG_ACCEPTED or MSG_DENIED.  Accepted: verf_flavor, verf_body,
    accept_stat, and low/high for PROG_MISMATCH.  Denied: reject_stat, and
    low/high for RPC_MISMATCH or auth_stat for AUTH_ERROR.  Unused fields are
    None.  On SUCCESS the Unpacker is left at the procedure results.
    """

    __slots__ = ("xid", "stat", "verf_flavor", "verf_body", "accept_stat", "reject_stat",
                 "low", "high", "auth_stat")

    def __init__(self, xid, stat):
        self.xid = xid
        self.stat = stat
        self.verf_flavor = None
        self.verf_body = None
        self.accept_stat = None
        self.reject_stat = None
        self.low = None
        self.high = None
        self.auth_stat = None

    def __repr__(self):
        fields = ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__
                           if getattr(self, k) is not None)
        return "ReplyHeader(%s)" % fields


# --------------------------------------------------------------------------
# Errors that carry their reply


class RpcError(Exception):
    """A call we must refuse.  .reason is the metric label; pack_reply() the answer."""

    reason = "rpc_error"

    def __init__(self, message="", xid=None):
        super().__init__(message or self.reason)
        self.xid = xid

    def pack_reply(self, packer):
        """Append the reply header to packer; return False if no reply must be sent."""
        raise NotImplementedError


class GarbageHeader(RpcError):
    """Not a decodable CALL header: drop the record, send nothing."""

    reason = "badfmt"

    def pack_reply(self, packer):
        return False


class RpcMismatch(RpcError):
    reason = "rpc_mismatch"

    def __init__(self, message="", xid=None, low=RPC_VERSION, high=RPC_VERSION):
        super().__init__(message, xid)
        self.low = low
        self.high = high

    def pack_reply(self, packer):
        pack_rpc_mismatch(packer, self.xid, self.low, self.high)
        return True


class AuthError(RpcError):
    reason = "badauth"

    def __init__(self, auth_stat, message="", xid=None):
        super().__init__(message or "auth_stat %d" % auth_stat, xid)
        self.auth_stat = auth_stat

    def pack_reply(self, packer):
        pack_auth_error(packer, self.xid, self.auth_stat)
        return True


class _AcceptedError(RpcError):
    accept_stat = None

    def pack_reply(self, packer):
        pack_accepted_reply(packer, self.xid, self.accept_stat)
        return True


class ProgUnavail(_AcceptedError):
    reason = "prog_unavail"
    accept_stat = PROG_UNAVAIL


class ProcUnavail(_AcceptedError):
    reason = "proc_unavail"
    accept_stat = PROC_UNAVAIL


class GarbageArgs(_AcceptedError):
    reason = "garbage_args"
    accept_stat = GARBAGE_ARGS


class SystemErr(_AcceptedError):
    reason = "system_err"
    accept_stat = SYSTEM_ERR


class ProgMismatch(RpcError):
    reason = "prog_mismatch"

    def __init__(self, low, high, message="", xid=None):
        super().__init__(message or "supported versions %d..%d" % (low, high), xid)
        self.low = low
        self.high = high

    def pack_reply(self, packer):
        pack_prog_mismatch(packer, self.xid, self.low, self.high)
        return True


# --------------------------------------------------------------------------
# Call decoding


def decode_authsys(u, body_len):
    """Parse authsys_parms in place from u; it must take exactly body_len bytes.

    The caller has checked that body_len bytes are present.  Raises
    AuthError(AUTH_BADCRED) (xid unset) if malformed; u is then left anywhere.
    """
    start = u.pos
    try:
        stamp = u.unpack_uint()
        name = u.unpack_opaque(MAX_MACHINENAME)
        uid, gid, n = u.unpack_struct(_U32x3)
        if n > MAX_GIDS:
            raise AuthError(AUTH_BADCRED, "AUTH_SYS credential with %d gids" % n)
        gids = u.unpack_struct(_GIDS[n])
    except XdrError as e:
        raise AuthError(AUTH_BADCRED, "malformed AUTH_SYS credential: %s" % e) from None
    if u.pos - start != body_len:
        raise AuthError(AUTH_BADCRED, "AUTH_SYS credential length %d, parsed %d"
                        % (body_len, u.pos - start))
    return AuthSys(stamp, name, uid, gid, gids)


def _short_header(u):
    """The 8 fixed words of the call header are not all there: raise the precise error."""
    try:
        xid = u.unpack_uint()
    except XdrError:
        raise GarbageHeader("record shorter than an xid") from None
    try:
        mtype = u.unpack_uint()
        if mtype != CALL:
            raise GarbageHeader("msg_type %d is not CALL" % mtype, xid)
        rpcvers = u.unpack_uint()
        if rpcvers != RPC_VERSION:
            raise RpcMismatch("RPC version %d" % rpcvers, xid)
    except XdrError:
        pass
    raise GarbageHeader("truncated call header", xid)


def decode_call(u, flavors=DEFAULT_FLAVORS):
    """Decode an RPC call header from Unpacker u (see the module comment for the policy).

    Returns a CallHeader with u positioned at the arguments; raises only
    RpcError subclasses.
    """
    try:
        xid, mtype, rpcvers, prog, vers, proc, cred_flavor, cred_len = u.unpack_struct(_HEAD8)
    except XdrError:
        _short_header(u)
    if mtype != CALL:
        raise GarbageHeader("msg_type %d is not CALL" % mtype, xid)
    if rpcvers != RPC_VERSION:
        raise RpcMismatch("RPC version %d" % rpcvers, xid)
    try:
        # -- credential
        if cred_len > MAX_AUTH_BYTES:
            raise AuthError(AUTH_BADCRED, "credential body of %d bytes" % cred_len, xid)
        padded = (cred_len + 3) & ~3
        if padded > u.remaining:
            raise GarbageHeader("truncated credential", xid)
        if cred_flavor not in _IMPLEMENTED_FLAVORS:
            raise AuthError(AUTH_BADCRED, "unsupported auth flavor %d" % cred_flavor, xid)
        if cred_flavor not in flavors:
            raise AuthError(AUTH_TOOWEAK, "auth flavor %d not allowed" % cred_flavor, xid)
        if cred_flavor == AUTH_SYS:
            try:
                cred = decode_authsys(u, cred_len)
            except AuthError as e:
                e.xid = xid
                raise
        else:  # AUTH_NONE
            if cred_len:
                raise AuthError(AUTH_BADCRED, "AUTH_NONE credential with a body", xid)
            cred = None
        # -- verifier
        verf_flavor, verf_len = u.unpack_struct(_U32x2)
        if verf_len:
            if verf_len > MAX_AUTH_BYTES:
                raise AuthError(AUTH_BADVERF, "verifier body of %d bytes" % verf_len, xid)
            u.skip((verf_len + 3) & ~3)
            raise AuthError(AUTH_BADVERF, "verifier must be an empty AUTH_NONE", xid)
        if verf_flavor != AUTH_NONE:
            raise AuthError(AUTH_BADVERF, "verifier must be an empty AUTH_NONE", xid)
    except XdrError as e:
        raise GarbageHeader("truncated call header: %s" % e, xid) from None
    return CallHeader(xid, rpcvers, prog, vers, proc, cred_flavor, cred, verf_flavor, b"")


# --------------------------------------------------------------------------
# Call encoding (tests and the raw RPC client)


def pack_authsys(packer, cred):
    """Append authsys_parms (without the opaque_auth flavor/length wrapper)."""
    packer.pack_uint(cred.stamp)
    packer.pack_string(cred.machinename, MAX_MACHINENAME)
    packer.pack_uint(cred.uid)
    packer.pack_uint(cred.gid)
    packer.pack_array(cred.gids, packer.pack_uint, MAX_GIDS)


def _pack_opaque_auth(packer, auth):
    if auth is None:
        packer.append(b"\0\0\0\0\0\0\0\0")
    elif isinstance(auth, AuthSys):
        packer.pack_uint(AUTH_SYS)
        pos = packer.reserve_uint()
        start = len(packer)
        pack_authsys(packer, auth)
        n = len(packer) - start
        if n > MAX_AUTH_BYTES:
            raise ValueError("AUTH_SYS credential of %d bytes exceeds %d" % (n, MAX_AUTH_BYTES))
        packer.patch_uint(pos, n)
    else:
        flavor, body = auth
        packer.pack_uint(flavor)
        packer.pack_opaque(body, MAX_AUTH_BYTES)


def pack_call(packer, xid, prog, vers, proc, cred=None, verf=None, rpcvers=RPC_VERSION):
    """Append a call header.  cred/verf: None (AUTH_NONE), an AuthSys, or (flavor, body).

    The caller then appends the arguments.
    """
    try:
        packer.append(_CALL_HEAD.pack(xid, CALL, rpcvers, prog, vers, proc))
    except _structerror as e:
        raise ValueError("cannot pack call header: %s" % e) from None
    _pack_opaque_auth(packer, cred)
    _pack_opaque_auth(packer, verf)


# --------------------------------------------------------------------------
# Reply encoding


def pack_accepted_reply(packer, xid, accept_stat=SUCCESS, verf=None):
    """MSG_ACCEPTED header with accept_stat (no PROG_MISMATCH: use pack_prog_mismatch).

    For SUCCESS the caller then appends the procedure results.
    """
    if accept_stat not in _ACCEPT_STATS or accept_stat == PROG_MISMATCH:
        raise ValueError("bad accept_stat %r for pack_accepted_reply" % (accept_stat,))
    if verf is None:
        try:
            packer.append(_ACCEPTED_NONE.pack(xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0, accept_stat))
        except _structerror as e:
            raise ValueError("cannot pack reply header: %s" % e) from None
    else:
        packer.pack_uint(xid)
        packer.pack_uint(REPLY)
        packer.pack_uint(MSG_ACCEPTED)
        _pack_opaque_auth(packer, verf)
        packer.pack_uint(accept_stat)


def pack_success(packer, xid):
    """MSG_ACCEPTED SUCCESS with an AUTH_NONE verifier (the hot path)."""
    try:
        packer.append(_ACCEPTED_NONE.pack(xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0, SUCCESS))
    except _structerror as e:
        raise ValueError("cannot pack reply header: %s" % e) from None


def pack_prog_unavail(packer, xid):
    pack_accepted_reply(packer, xid, PROG_UNAVAIL)


def pack_proc_unavail(packer, xid):
    pack_accepted_reply(packer, xid, PROC_UNAVAIL)


def pack_garbage_args(packer, xid):
    pack_accepted_reply(packer, xid, GARBAGE_ARGS)


def pack_system_err(packer, xid):
    pack_accepted_reply(packer, xid, SYSTEM_ERR)


def pack_prog_mismatch(packer, xid, low, high):
    try:
        packer.append(_ACCEPTED_NONE_2.pack(xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0,
                                            PROG_MISMATCH, low, high))
    except _structerror as e:
        raise ValueError("cannot pack reply header: %s" % e) from None


def pack_rpc_mismatch(packer, xid, low=RPC_VERSION, high=RPC_VERSION):
    try:
        packer.append(_DENIED_4.pack(xid, REPLY, MSG_DENIED, RPC_MISMATCH, low, high))
    except _structerror as e:
        raise ValueError("cannot pack reply header: %s" % e) from None


def pack_auth_error(packer, xid, auth_stat):
    try:
        packer.append(_DENIED_3.pack(xid, REPLY, MSG_DENIED, AUTH_ERROR, auth_stat))
    except _structerror as e:
        raise ValueError("cannot pack reply header: %s" % e) from None


# --------------------------------------------------------------------------
# Reply decoding (tests and the raw RPC client)


def decode_reply(u):
    """Decode a reply header; raises XdrError if malformed.

    On MSG_ACCEPTED SUCCESS, u is left at the results.
    """
    xid = u.unpack_uint()
    mtype = u.unpack_uint()
    if mtype != REPLY:
        raise XdrError("msg_type %d is not REPLY" % mtype)
    stat = u.unpack_uint()
    r = ReplyHeader(xid, stat)
    if stat == MSG_ACCEPTED:
        r.verf_flavor = u.unpack_uint()
        r.verf_body = u.unpack_opaque(MAX_AUTH_BYTES)
        r.accept_stat = a = u.unpack_uint()
        if a == PROG_MISMATCH:
            r.low = u.unpack_uint()
            r.high = u.unpack_uint()
        elif a not in _ACCEPT_STATS:
            raise XdrError("bad accept_stat %d" % a)
    elif stat == MSG_DENIED:
        r.reject_stat = rs = u.unpack_uint()
        if rs == RPC_MISMATCH:
            r.low = u.unpack_uint()
            r.high = u.unpack_uint()
        elif rs == AUTH_ERROR:
            r.auth_stat = u.unpack_uint()
        else:
            raise XdrError("bad reject_stat %d" % rs)
    else:
        raise XdrError("bad reply_stat %d" % stat)
    return r
