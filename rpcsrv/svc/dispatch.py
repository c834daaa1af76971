"""Declared procedure tables and the decode/handle/encode step of one call.

Owns: the map program -> version -> procedure -> ProcEntry (like the
kernel's nfsd_procedures3), and the error policy of one call once its header
was decoded.  Tables are built once at start-up and only read afterwards, so
any number of worker threads may share a Dispatcher without locks.

Error policy of dispatch() ("errors carry their reply", habit 5):
  unknown program                    -> PROG_UNAVAIL
  known program, unknown version     -> PROG_MISMATCH low..high of that program
  unknown procedure                  -> PROC_UNAVAIL
  decode raises XdrError, or bytes remain after the arguments
                                     -> GARBAGE_ARGS
  decode/handler/encode raise an RpcError subclass (e.g. GarbageArgs,
  AuthError(AUTH_TOOWEAK))           -> that error's reply
  any other Exception in decode, handler or encode (our bug)
                                     -> SYSTEM_ERR, and the exception is
                                        returned in Outcome.error for logging.
dispatch() never raises an Exception: a request must never kill a worker.
(BaseExceptions such as KeyboardInterrupt propagate.)  Whatever a failed
step had already written to the packer is truncated away before the error
reply is packed, so the packer may hold a prefix (a reserved record marker)
that dispatch leaves alone.

Results: on success dispatch packs the SUCCESS header, then entry.encode(
packer, result), and checks the encoded result against the entry's declared
worst case (reply_max, the kernel's pc_xdrressize): a larger one is our bug
and becomes SYSTEM_ERR. The result is returned in Outcome.result, and
Outcome.payload is entry.payload(result): the bytes the handler already put
into the reply pages (READ data) that the transport sends after the packed
bytes.

No I/O, no threads, no logging, no locks.
"""

from ..proto.rpcmsg import (
    GarbageArgs, ProcUnavail, ProgMismatch, ProgUnavail, RpcError, SystemErr, pack_success,
)
from ..proto.xdr import XdrError

__all__ = [
    "ProcEntry", "Program", "Dispatcher", "Outcome", "dispatch",
    "decode_void", "encode_void", "null_handler", "null_entry",
    "ProgUnavail", "ProgMismatch", "ProcUnavail", "GarbageArgs", "SystemErr",
]


class ProcEntry:
    """One procedure: decode(unpacker) -> args, handler(ctx, args) -> result,
    encode(packer, result).  name is the metric label (lower case).

    idempotent  False: the duplicate request cache keeps its replies
    status      status(result) -> str, the metric status of a successful call
                (e.g. the NFS status "noent"); default "ok"
    reply_max   the largest encoded result in bytes, without payload (None:
                bounded by the arguments, as READDIR's count)
    payload     payload(result) -> int, bytes of reply data already in the
                reply pages (READ); None: never any
    """

    __slots__ = ("name", "decode", "handler", "encode", "idempotent", "status", "reply_max", "payload")

    def __init__(self, name, decode, handler, encode, idempotent=True, status=None, reply_max=None,
                 payload=None):
        self.name = name
        self.decode = decode
        self.handler = handler
        self.encode = encode
        self.idempotent = idempotent
        self.status = status
        self.reply_max = reply_max
        self.payload = payload

    def __repr__(self):
        return "ProcEntry(%r)" % (self.name,)


def decode_void(unpacker):
    return None


def encode_void(packer, result):
    pass


def null_handler(ctx, args):
    return None


def null_entry(name="null"):
    """Procedure 0 of every program: no arguments, no results."""
    return ProcEntry(name, decode_void, null_handler, encode_void, reply_max=0)


class Program:
    """Program(prog, name, versions): versions maps version -> procedure table,
    a dict {proc: ProcEntry} or a list indexed by proc (None for holes)."""

    __slots__ = ("prog", "name", "versions", "low", "high")

    def __init__(self, prog, name, versions):
        if not versions:
            raise ValueError("program %r has no versions" % (name,))
        table = {}
        for vers, procs in versions.items():
            if isinstance(procs, dict):
                items = procs.items()
            else:
                items = enumerate(procs)
            t = {}
            for proc, entry in items:
                if entry is None:
                    continue
                if not isinstance(entry, ProcEntry):
                    raise TypeError("%s v%d proc %d: not a ProcEntry" % (name, vers, proc))
                t[proc] = entry
            table[vers] = t
        self.prog = prog
        self.name = name
        self.versions = table
        self.low = min(table)
        self.high = max(table)

    def __repr__(self):
        return "Program(%d, %r, versions=%r)" % (self.prog, self.name, sorted(self.versions))


class Dispatcher:
    __slots__ = ("_programs",)

    def __init__(self, programs):
        progs = {}
        for p in programs:
            if p.prog in progs:
                raise ValueError("program %d declared twice" % p.prog)
            progs[p.prog] = p
        self._programs = progs

    def program(self, prog):
        """The Program for number prog, or None."""
        return self._programs.get(prog)

    @property
    def programs(self):
        return list(self._programs.values())

    def entries(self):
        """(program, vers, proc, entry) for every declared procedure: size metrics from it."""
        for p in self._programs.values():
            for vers, procs in sorted(p.versions.items()):
                for proc, entry in sorted(procs.items()):
                    yield p, vers, proc, entry

    def resolve(self, prog, vers, proc):
        """(Program or None, ProcEntry or None, RpcError or None): the table lookup of one call.

        The error is ProgUnavail, ProgMismatch(low, high) or ProcUnavail when
        the program, version or procedure is not declared."""
        p = self._programs.get(prog)
        if p is None:
            return None, None, ProgUnavail("program %d" % prog)
        procs = p.versions.get(vers)
        if procs is None:
            return p, None, ProgMismatch(p.low, p.high, "%s version %d" % (p.name, vers))
        entry = procs.get(proc)
        if entry is None:
            return p, None, ProcUnavail("%s v%d procedure %d" % (p.name, vers, proc))
        return p, entry, None

    def lookup(self, prog, vers, proc, xid=None):
        """The ProcEntry, or raise ProgUnavail / ProgMismatch(low, high) / ProcUnavail."""
        _, entry, err = self.resolve(prog, vers, proc)
        if err is not None:
            err.xid = xid
            raise err
        return entry


class Outcome:
    """What dispatch() did, for metrics, logging and the transport.

    status  "ok" (or entry.status(result)) or the error's lower-case reason
    program the Program's name, or None if the program is unknown
    name    the procedure's name, or None if it was not found
    reply   True if a reply was packed (False only if a handler raised an
            RpcError that wants the call dropped)
    result  the handler's result on success, else None
    error   the unexpected exception (our bug) that became SYSTEM_ERR, else None
    payload bytes of reply data already in the reply pages (entry.payload)
    """

    __slots__ = ("status", "program", "name", "reply", "result", "error", "payload")

    def __init__(self, status, program, name, reply=True, result=None, error=None, payload=0):
        self.status = status
        self.program = program
        self.name = name
        self.reply = reply
        self.result = result
        self.error = error
        self.payload = payload

    def __repr__(self):
        return "Outcome(status=%r, program=%r, name=%r, reply=%r, error=%r)" % (
            self.status, self.program, self.name, self.reply, self.error)


def refuse(packer, mark, err, program, name, xid, error=None):
    """Truncate the packer to mark and pack err's reply: the Outcome of a refused call."""
    packer.truncate(mark)
    err.xid = xid
    reply = err.pack_reply(packer)
    return Outcome(err.reason, program, name, reply, None, error)


def dispatch(dispatcher, call, unpacker, ctx, packer, resolved=None):
    """Decode arguments, run the handler, pack the reply.  Returns an Outcome; never raises.

    `call` is the CallHeader; `unpacker` is positioned at the arguments.
    `resolved` is dispatcher.resolve()'s answer when the caller already has it.
    """
    mark = len(packer)
    xid = call.xid
    p, entry, err = resolved if resolved is not None else dispatcher.resolve(call.prog, call.vers, call.proc)
    pname = p.name if p is not None else None
    if err is not None:
        return refuse(packer, mark, err, pname, None, xid)
    name = entry.name
    try:
        # -- arguments: the peer's fault if they do not decode
        try:
            args = entry.decode(unpacker)
            unpacker.done()
        except XdrError as e:
            return refuse(packer, mark, GarbageArgs(str(e)), pname, name, xid)
        # -- the work, then the reply
        result = entry.handler(ctx, args)
        pack_success(packer, xid)
        start = len(packer)
        entry.encode(packer, result)
        if entry.reply_max is not None and len(packer) - start > entry.reply_max:
            raise RuntimeError("%s result of %d bytes exceeds its declared maximum %d"
                               % (name, len(packer) - start, entry.reply_max))
        status = "ok" if entry.status is None else entry.status(result)
        payload = 0 if entry.payload is None else entry.payload(result)
        return Outcome(status, pname, name, True, result, None, payload)
    except RpcError as e:
        return refuse(packer, mark, e, pname, name, xid)
    except Exception as e:  # our bug: answer SYSTEM_ERR, hand the exception to the caller
        try:
            return refuse(packer, mark, SystemErr(), pname, name, xid, e)
        except Exception:  # pragma: no cover - xid was validated by decode_call
            packer.truncate(mark)
            return Outcome("system_err", pname, name, False, None, e)
