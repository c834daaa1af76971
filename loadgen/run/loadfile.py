"""Parse dbench loadfiles into a program of operations.

This module is pure: it takes text and returns values or raises
:class:`LoadfileError` carrying the 1-based line number.  It never touches the
network, the clock or a random generator (random offsets are parsed into an
:class:`Expr` that the client evaluates with its own generator).

Two dialects are accepted, line by line, in the same file:

* dbench's NFS loadfiles (``nfs.load``, ``nfs_2.load``, ...)::

      [timestamp] OP "path" ["path2"] [numbers...] STATUS

  where STATUS is ``0x<hex NFS3 status>`` or ``*`` (any status), plus the
  directives ``REPEAT n`` (repeat the next operation line n times),
  ``LOOP n`` ... ``ENDLOOP`` (repeat a block, may nest), ``SLEEP usec``,
  ``WRITEPATTERN text`` (bytes that fill later write buffers) and
  ``RANDOMSTRING n "pattern"`` (define ``$n``; each ``[...]`` in the pattern
  picks one character of the set every time the directive is executed).

* the classic dbench ``client.txt`` format (recorded SMB calls)::

      NTCreateX "\\clients\\client1\\file" 0x40 0x2 9938 NT_STATUS_OK

  Backslashes become slashes; STATUS is ``NT_STATUS_*``.

Numeric fields are :class:`Expr` values:

* ``123`` / ``0x1000``          a constant;
* ``*`` followed by qualifiers  a random 64-bit value, then ``/a`` aligns down
  to a multiple of a, ``%m`` takes it modulo m, ``+k`` adds k, applied left to
  right (``*/0x1000%5000000``, ``*%100+25``);
* ``+N``                        relative: the value this field had the last time
  the same operation ran in this client, plus N (``WRITE3 f +32768 ...`` after
  ``REPEAT`` walks a file sequentially).  ``+child`` adds the client's index
  and ``+num_children`` the number of clients (``nfs_lock.load``).

Paths are kept as written (with ``client1``); the client rewrites every
``client1`` to its own name, as dbench does.  A path may be a variable ``$n``
set by RANDOMSTRING.

Invariants of the result: every :class:`Op` has a known name, the arity its
operation needs, and a status token that is ``*``, ``0x...`` or
``NT_STATUS_...``; LOOP blocks are balanced.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "LoadfileError", "Expr", "Op", "Repeat", "Loop", "Sleep", "WritePattern",
    "RandomString", "Program", "parse_text", "parse_file", "OP_SPECS", "NFS_OPS", "SMB_OPS",
    "MAX_IO_BYTES", "FIELD_LIMITS", "field_error",
]


class LoadfileError(ValueError):
    """A malformed loadfile line; ``lineno`` is 1-based."""

    def __init__(self, lineno: int, message: str, source: str = "<loadfile>"):
        self.lineno = lineno
        self.message = message
        self.source = source
        super().__init__(f"{source}:{lineno}: {message}")


# Operation signatures: a string of field kinds, P = path, N = number.
# The status token follows them and is not part of the signature.
NFS_OPS: dict[str, str] = {
    "NULL3": "",
    "GETATTR3": "P", "SETATTR3": "P", "LOOKUP3": "P", "ACCESS3": "PNN",
    "READLINK3": "P", "READ3": "PNN", "WRITE3": "PNNN", "CREATE3": "P",
    "MKDIR3": "P", "SYMLINK3": "PP", "REMOVE3": "P", "RMDIR3": "P",
    "RENAME3": "PP", "LINK3": "PP", "READDIR3": "P", "READDIRPLUS3": "P",
    "FSSTAT3": "", "FSINFO3": "", "PATHCONF3": "P", "COMMIT3": "P",
    "LOCK4": "PNN", "UNLOCK4": "PNN", "TEST4": "PNN",
}
SMB_OPS: dict[str, str] = {
    "NTCreateX": "PNNN", "Close": "N", "ReadX": "NNNN", "WriteX": "NNNN",
    "QUERY_PATH_INFORMATION": "PN", "QUERY_FILE_INFORMATION": "NN",
    "QUERY_FS_INFORMATION": "N", "SET_FILE_INFORMATION": "NN",
    "FIND_FIRST": "PNNN", "Flush": "N", "Rename": "PP", "Unlink": "PN",
    "Mkdir": "P", "Rmdir": "P", "LockX": "NNN", "UnlockX": "NNN",
}
# Deltree is in both dialects.
OP_SPECS: dict[str, str] = {**NFS_OPS, **SMB_OPS, "Deltree": "P"}

#: the largest READ or WRITE one loadfile line may ask for (a buffer of that size is allocated):
#: 64 MiB, far above any server's rtmax/wtmax (libnfs splits it into RPCs of at most 1 MiB)
MAX_IO_BYTES = 64 << 20
#: numeric fields with a bound, (operation, index among its numbers) -> (name, largest value, unit).
#: Constants are checked when the loadfile is read; a random or relative value when it is used.
FIELD_LIMITS: dict[tuple[str, int], tuple[str, int, str]] = {
    ("READ3", 0): ("offset", (1 << 64) - 1, "bytes"), ("READ3", 1): ("length", MAX_IO_BYTES, "bytes"),
    ("WRITE3", 0): ("offset", (1 << 64) - 1, "bytes"), ("WRITE3", 1): ("length", MAX_IO_BYTES, "bytes"),
    ("WRITE3", 2): ("stable flag", 2, ""),
    ("ReadX", 1): ("offset", (1 << 64) - 1, "bytes"), ("ReadX", 2): ("length", MAX_IO_BYTES, "bytes"),
    ("WriteX", 1): ("offset", (1 << 64) - 1, "bytes"), ("WriteX", 2): ("length", MAX_IO_BYTES, "bytes"),
}


def field_error(name: str, index: int, value: int) -> str | None:
    """Why `value` cannot be field `index` (among the numbers) of operation `name`, or None."""
    limit = FIELD_LIMITS.get((name, index))
    if limit is None or 0 <= value <= limit[1]:
        return None
    what, top, unit = limit
    unit = " " + unit if unit else ""
    return f"{name} {what} {value:,}{unit}: must be 0 to {top:,}{unit}"
_OP_BY_LOWER = {k.lower(): k for k in OP_SPECS}


class Expr(NamedTuple):
    """A numeric field.

    kind: ``const`` (value), ``random`` (steps: tuple of (char, int) with char in
    '/', '%', '+'), ``rel`` (value added to the previous value; ``symbol`` is
    ``child``/``num_children`` when the increment is symbolic).
    """
    kind: str
    value: int = 0
    steps: tuple = ()
    symbol: str | None = None

    def evaluate(self, rng, previous: int | None, child: int = 0, nchildren: int = 1) -> int:
        if self.kind == "const":
            return self.value
        if self.kind == "random":
            x = rng.getrandbits(64)
            for ch, n in self.steps:
                if ch == "/":
                    x = (x // n) * n
                elif ch == "%":
                    x = x % n
                else:
                    x = x + n
            return x
        inc = self.value
        if self.symbol == "child":
            inc = child
        elif self.symbol == "num_children":
            inc = nchildren
        return (previous or 0) + inc


class Op(NamedTuple):
    lineno: int
    name: str               # canonical name from OP_SPECS
    paths: tuple            # raw path strings or "$n" variables
    params: tuple           # Expr per numeric field
    status: str             # '*', '0x...' or 'NT_STATUS_...'
    timestamp: float = 0.0  # 0.0 when the line has none


@dataclass(frozen=True, slots=True)
class Repeat:
    lineno: int
    count: int
    op: Op


@dataclass(slots=True)
class Loop:
    lineno: int
    count: int
    body: list = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sleep:
    lineno: int
    usec: int


@dataclass(frozen=True, slots=True)
class WritePattern:
    lineno: int
    pattern: bytes


@dataclass(frozen=True, slots=True)
class RandomString:
    lineno: int
    var: str                # "$1"
    pattern: tuple          # tuple of strings: a one-char-set per position


@dataclass
class Program:
    items: list
    source: str = "<loadfile>"
    dialects: frozenset = frozenset()   # subset of {"nfs", "smb"}

    def op_names(self) -> set[str]:
        names: set[str] = set()

        def walk(items):
            for it in items:
                if isinstance(it, Op):
                    names.add(it.name)
                elif isinstance(it, Repeat):
                    names.add(it.op.name)
                elif isinstance(it, Loop):
                    walk(it.body)
        walk(self.items)
        return names


_TOKEN_RE = re.compile(r'"([^"]*)"|(\S+)')
_NUM_RE = re.compile(r"(0[xX][0-9a-fA-F]+|\d+)\Z")
_STEP_RE = re.compile(r"([/%+])(0[xX][0-9a-fA-F]+|\d+)")


def _tokens(line: str) -> list[tuple[str, bool]]:
    """Split on blanks; a double-quoted token keeps its spaces. Returns
    (text, was_quoted)."""
    if '"' not in line:
        return [(t, False) for t in line.split()]
    out = []
    for p in line.split():
        if p[0] == '"':
            if len(p) < 2 or p[-1] != '"' or '"' in p[1:-1]:
                break
            out.append((p[1:-1], True))
        elif '"' in p:
            break
        else:
            out.append((p, False))
    else:
        return out
    out = []
    for m in _TOKEN_RE.finditer(line):
        if m.group(1) is not None:
            out.append((m.group(1), True))
        else:
            out.append((m.group(2), False))
    return out


def _int(text: str, lineno: int, what: str, source: str) -> int:
    if not _NUM_RE.match(text):
        raise LoadfileError(lineno, f"{what}: expected a number, got {text!r}", source)
    return int(text, 0)


def parse_expr(text: str, lineno: int = 0, source: str = "<loadfile>") -> Expr:
    """Parse one numeric field (constant, ``*`` random expression, ``+N``)."""
    try:
        return _parse_expr_cached(text)
    except LoadfileError as e:
        raise LoadfileError(lineno, e.message, source) from None


@lru_cache(maxsize=65536)
def _parse_expr_cached(text: str, lineno: int = 0, source: str = "<loadfile>") -> Expr:
    if text.startswith("*"):
        rest = text[1:]
        steps = []
        pos = 0
        while pos < len(rest):
            m = _STEP_RE.match(rest, pos)
            if not m:
                raise LoadfileError(lineno, f"bad random expression {text!r} at {rest[pos:]!r}", source)
            n = int(m.group(2), 0)
            if m.group(1) in "/%" and n == 0:
                raise LoadfileError(lineno, f"bad random expression {text!r}: division by zero", source)
            steps.append((m.group(1), n))
            pos = m.end()
        return Expr("random", steps=tuple(steps))
    if text.startswith("+"):
        rest = text[1:]
        if rest in ("child", "num_children"):
            return Expr("rel", symbol=rest)
        return Expr("rel", value=_int(rest, lineno, "relative value", source))
    return Expr("const", value=_int(text, lineno, "numeric field", source))


_CLASS_RE = re.compile(r"\[([^\]]*)\]|([^\[\]])")


def _parse_random_pattern(pat: str, lineno: int, source: str) -> tuple:
    parts = []
    pos = 0
    while pos < len(pat):
        m = _CLASS_RE.match(pat, pos)
        if not m:
            raise LoadfileError(lineno, f"bad RANDOMSTRING pattern {pat!r}", source)
        if m.group(1) is not None:
            if not m.group(1):
                raise LoadfileError(lineno, "empty [] set in RANDOMSTRING pattern", source)
            parts.append(m.group(1))
        else:
            parts.append(m.group(2))
        pos = m.end()
    return tuple(parts)


def _is_status(tok: str) -> bool:
    return tok == "*" or tok.startswith("0x") or tok.startswith("NT_STATUS_")


def parse_text(text: str, source: str = "<loadfile>") -> Program:
    """Parse a whole loadfile. Raises LoadfileError on the first bad line."""
    root: list = []
    stack: list[tuple[list, Loop | None]] = [(root, None)]
    pending_repeat: tuple[int, int] | None = None
    dialects: set[str] = set()

    cache: dict[str, tuple] = {}   # operation line text -> Op fields after lineno
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        hit = cache.get(line)
        if hit is not None:
            op = Op(lineno, *hit)
            if pending_repeat is not None:
                stack[-1][0].append(Repeat(pending_repeat[0], pending_repeat[1], op))
                pending_repeat = None
            else:
                stack[-1][0].append(op)
            continue
        key = line
        if "\\" in line:
            line = line.replace("\\", "/")
        toks = _tokens(line)
        if not toks:
            continue
        word, quoted = toks[0]
        if quoted:
            raise LoadfileError(lineno, "line starts with a quoted string, expected an operation", source)
        timestamp = 0.0
        if word[0].isdigit():
            try:
                timestamp = float(word)
            except ValueError:
                raise LoadfileError(lineno, f"bad timestamp {word!r}", source) from None
            toks = toks[1:]
            if not toks:
                raise LoadfileError(lineno, "timestamp without an operation", source)
            word = toks[0][0]
        up = word.upper()
        args = toks[1:]

        # ---- directives ----
        if up == "REPEAT":
            if len(args) != 1:
                raise LoadfileError(lineno, "REPEAT takes one count", source)
            if pending_repeat is not None:
                raise LoadfileError(lineno, "REPEAT must be followed by an operation line", source)
            n = _int(args[0][0], lineno, "REPEAT count", source)
            pending_repeat = (lineno, n)
            continue
        if pending_repeat is not None and up in ("LOOP", "ENDLOOP", "WRITEPATTERN", "RANDOMSTRING", "SLEEP"):
            raise LoadfileError(lineno, f"REPEAT (line {pending_repeat[0]}) must be followed by an operation, got {up}", source)
        if up == "LOOP":
            if len(args) != 1:
                raise LoadfileError(lineno, "LOOP takes one count", source)
            loop = Loop(lineno, _int(args[0][0], lineno, "LOOP count", source))
            stack[-1][0].append(loop)
            stack.append((loop.body, loop))
            continue
        if up == "ENDLOOP":
            if args:
                raise LoadfileError(lineno, "ENDLOOP takes no arguments", source)
            if len(stack) == 1:
                raise LoadfileError(lineno, "ENDLOOP without LOOP", source)
            stack.pop()
            continue
        if up == "WRITEPATTERN":
            if len(args) != 1 or not args[0][0]:
                raise LoadfileError(lineno, "WRITEPATTERN takes one non-empty pattern", source)
            stack[-1][0].append(WritePattern(lineno, args[0][0].encode()))
            continue
        if up == "RANDOMSTRING":
            if len(args) != 2:
                raise LoadfileError(lineno, 'RANDOMSTRING takes a variable number and a "pattern"', source)
            var = _int(args[0][0], lineno, "RANDOMSTRING variable", source)
            stack[-1][0].append(RandomString(lineno, f"${var}", _parse_random_pattern(args[1][0], lineno, source)))
            continue
        if up == "SLEEP":
            # "SLEEP usec" or dbench's "Sleep usec STATUS"
            if len(args) not in (1, 2) or (len(args) == 2 and not _is_status(args[1][0])):
                raise LoadfileError(lineno, "SLEEP takes a duration in microseconds", source)
            stack[-1][0].append(Sleep(lineno, _int(args[0][0], lineno, "SLEEP duration", source)))
            continue

        # ---- operations ----
        name = _OP_BY_LOWER.get(word.lower())
        if name is None:
            raise LoadfileError(lineno, f"unknown operation {word!r}", source)
        if not args:
            raise LoadfileError(lineno, f"{name}: missing status", source)
        status, squoted = args[-1]
        if squoted or not _is_status(status):
            raise LoadfileError(lineno, f"{name}: badly formed status {status!r} (want 0x..., * or NT_STATUS_...)", source)
        if status.startswith("0x"):
            _int(status, lineno, "status", source)
        fields = args[:-1]
        sig = OP_SPECS[name]
        if len(fields) != len(sig):
            raise LoadfileError(lineno, f"{name}: expected {len(sig)} field(s) before the status, got {len(fields)}", source)
        paths = []
        params = []
        for kind, (tok, q) in zip(sig, fields):
            if kind == "P":
                if not (q or tok.startswith("/") or tok.startswith("$")):
                    raise LoadfileError(lineno, f"{name}: expected a path, got {tok!r}", source)
                if tok.startswith("$") and not _NUM_RE.match(tok[1:]):
                    raise LoadfileError(lineno, f"{name}: bad variable {tok!r}", source)
                paths.append(tok)
            else:
                e = parse_expr(tok, lineno, source)
                if e.kind == "const":
                    bad = field_error(name, len(params), e.value)
                    if bad:
                        raise LoadfileError(lineno, bad, source)
                params.append(e)
        if name in SMB_OPS:
            dialects.add("smb")
        elif name in NFS_OPS:
            dialects.add("nfs")
        op = Op(lineno, name, tuple(paths), tuple(params), status, timestamp)
        cache[key] = op[1:]
        if pending_repeat is not None:
            stack[-1][0].append(Repeat(pending_repeat[0], pending_repeat[1], op))
            pending_repeat = None
        else:
            stack[-1][0].append(op)

    if pending_repeat is not None:
        raise LoadfileError(pending_repeat[0], "REPEAT at end of file without an operation", source)
    if len(stack) > 1:
        raise LoadfileError(stack[-1][1].lineno, "LOOP without ENDLOOP", source)
    if not root:
        raise LoadfileError(0, "loadfile contains no operations", source)
    return Program(root, source, frozenset(dialects))


def parse_file(path: str) -> Program:
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_text(f.read(), source=path)
