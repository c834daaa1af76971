"""ONC RPC v2 messages (RFC 5531), sans-IO: the server side.

Owns: the call header (xid .. verifier), AUTH_NONE / AUTH_SYS credentials,
and the encoding of every reply header kind.  Procedure arguments and
results belong to the program modules (mount3, nfs3); dispatch.py glues.

Theory and policy
-----------------
* "Errors carry their reply": every error a peer can cause while we process
  a call is an RpcError subclass with a lower-case .reason (the metric
  label), the .xid when it was decoded, and pack_reply(packer) which appends
  the reply header to send and returns True -- or returns False when no
  reply must be sent (GarbageHeader).  decode_call() raises nothing but
  RpcError subclasses, whatever the input.
* decode_call() checks, in wire order:
    - xid missing               -> GarbageHeader(xid=None)      no reply
    - msg_type missing or != CALL -> GarbageHeader(xid)         no reply
    - rpcvers != 2              -> RpcMismatch (MSG_DENIED RPC_MISMATCH 2..2).
                                   Checked as soon as rpcvers is read: a
                                   different RPC version may lay out the rest
                                   differently, so the rest is not parsed.
    - record ends inside prog/vers/proc/cred/verf -> GarbageHeader(xid), no
      reply.  Like the Linux kernel ("short len ... dropping request"): the
      header is not a call we understood, so we do not answer it.  Record
      boundaries are intact, so the connection may stay open; only the
      record is dropped.
    - credential: body longer than 400 bytes (RFC 5531 opaque_auth) ->
      AUTH_BADCRED.  Unknown flavor -> AUTH_BADCRED, as the Linux kernel's
      svc_authenticate() does (AUTH_REJECTEDCRED means "begin a new session",
      which is meaningless for flavors we do not implement).  A flavor we know
      but the caller did not allow (the `flavors` argument) -> AUTH_TOOWEAK.
      AUTH_NONE with a non-empty body -> AUTH_BADCRED.  AUTH_SYS is parsed in
      place (no copy): machinename <= 255 bytes, <= 16 gids, and the parse
      must consume exactly the declared body length, else AUTH_BADCRED.
    - verifier: body longer than 400 bytes, or (for AUTH_NONE and AUTH_SYS
      calls) anything but an empty AUTH_NONE verifier -> AUTH_BADVERF, as
      the kernel's svcauth_null/unix_accept() do.
  After decode_call() the Unpacker is positioned at the procedure arguments.
* Reply verifiers are always AUTH_NONE (we implement no flavor with a
  server verifier).  Replies are packed by pack_success() and by each
  RpcError's pack_reply(); they raise ValueError for unencodable values
  (our bug).  The client side (packing calls, decoding replies) is not
  here: the server never needs it.
* No I/O, no threads, no logging, no locks.
"""

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
    "AuthSys", "CallHeader",
    # errors
    "RpcError", "GarbageHeader", "RpcMismatch", "AuthError", "ProgUnavail", "ProgMismatch",
    "ProcUnavail", "GarbageArgs", "SystemErr",
    # codecs
    "decode_call", "decode_authsys", "pack_success",
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

# Precompiled reply headers: xid, REPLY, reply_stat, then the rest.
_ACCEPTED_NONE = struct.Struct(">6I")    # xid REPLY MSG_ACCEPTED AUTH_NONE 0 accept_stat
_ACCEPTED_NONE_2 = struct.Struct(">8I")  # ... PROG_MISMATCH low high
_DENIED_3 = struct.Struct(">5I")         # xid REPLY MSG_DENIED reject_stat x
_DENIED_4 = struct.Struct(">6I")         # xid REPLY MSG_DENIED RPC_MISMATCH low high
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
        _pack(packer, _DENIED_4, self.xid, REPLY, MSG_DENIED, RPC_MISMATCH, self.low, self.high)
        return True


class AuthError(RpcError):
    reason = "badauth"

    def __init__(self, auth_stat, message="", xid=None):
        super().__init__(message or "auth_stat %d" % auth_stat, xid)
        self.auth_stat = auth_stat

    def pack_reply(self, packer):
        _pack(packer, _DENIED_3, self.xid, REPLY, MSG_DENIED, AUTH_ERROR, self.auth_stat)
        return True


class _AcceptedError(RpcError):
    accept_stat = None

    def pack_reply(self, packer):
        _pack(packer, _ACCEPTED_NONE, self.xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0, self.accept_stat)
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
        _pack(packer, _ACCEPTED_NONE_2, self.xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0, PROG_MISMATCH,
              self.low, self.high)
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
# Reply encoding


def _pack(packer, st, *fields):
    try:
        packer.append(st.pack(*fields))
    except _structerror as e:
        raise ValueError("cannot pack reply header: %s" % e) from None


def pack_success(packer, xid):
    """MSG_ACCEPTED SUCCESS with an AUTH_NONE verifier (the hot path); the results follow."""
    _pack(packer, _ACCEPTED_NONE, xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0, SUCCESS)
