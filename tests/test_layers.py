"""The project's source graph: no cycles anywhere, every arrow points down the layers, and three
guard rails (sockets, proto, C headers).

What is read. Every import statement counts, at module level or inside a function (a lazy import
is still a dependency), in .py files and in Cython's .pyx/.pxd (cimport too). A Cython
`include "x.pxi"` pastes x.pxi into the module that includes it, so the imports, cimports and
`cdef extern from` lines of an included .pxi (and of whatever it includes in turn) count for the
including module. `cdef extern from "x.h"` makes the header a dependency of that module, and a
`#include "y.h"` in a .h (or a hand-written .c; a .c beside a .pyx of the same name is Cython's
output and is skipped) makes y.h a dependency of that file. A header is a node of the graph named
by its path ("rpcsrv/fast/fp_ops.h") and belongs to the layer of its directory. Headers included
with <...>, or not found beside the file that names them, are the system's, not graph nodes.

Layers, from the bottom:

  clikit                      the entry points' conventions: imports nothing of the project
  alloc                       imports nothing of the project but clikit
  rpcsrv.proto                the floor of rpcsrv: imports only itself (not even alloc, rule b)
  rpcsrv.svc, .xprt, .export  stand on proto (and alloc); not on each other
  rpcsrv.nfsd                 stands on svc, export and proto
  rpcsrv.fast                 the compiled request path: stands on svc, xprt and proto
  rpcsrv.server               wires them together; rpcsrv.__main__ is on top
  loadgen                     imports neither alloc nor rpcsrv (an outside client); inside it, the
                              sub-packages of LOADGEN_ORDER from the bottom (common, run, capture,
                              flood, bench, reliability, distributed): a module imports only its
                              own sub-package and those before it; loadgen's own top-level modules
                              (__main__, locustfile) are above them all, and no sub-package
                              imports them. Every sub-package is in the list.

Guard rails:

(a) Sockets only in xprt and fast. No module of rpcsrv outside rpcsrv/xprt/ and rpcsrv/fast/
    touches the network itself: it imports none of SOCKET_MODULES (socket, select and the
    standard library's layers straight above them), calls none of SOCKET_METHODS (methods that
    only sockets have: getsockname, setsockopt, recv_into, ...; generic names such as send, recv
    or close are left out, since xprt's own objects rightly offer them), and its C parts name none
    of SOCKET_HEADERS (<sys/socket.h>, <poll.h>, ...). Everything else reaches the network through
    xprt's (or fast's) functions. SOCKET_ALLOWED lists the exceptions, each with its reason; it
    is empty.
(b) proto imports no alloc: rpcsrv.proto is plain XDR and RPC encoding, usable (and tested)
    without the page allocator, so nothing under rpcsrv/proto imports alloc.
(c) No cycle among the C headers. Two graphs: the `#include "..."` arrows alone, and those
    arrows together with "uses" arrows (a header that uses a name defined at file scope by
    another header depends on it, whether it includes it or relies on being included after it).
    A cycle in the second means two headers that can only be compiled as one, in a fixed order.

Each rule has a test that feeds it a small synthetic tree breaking it, so a checker that never
reports anything cannot pass unnoticed.
"""
import ast
import functools
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("clikit", "alloc", "rpcsrv", "loadgen")

#: rpcsrv part -> the rpcsrv parts it may import (besides itself); alloc is allowed in every part
#: but proto (rule b)
RPCSRV_ALLOWED = {
    "proto": set(),
    "svc": {"proto"},
    "xprt": {"proto"},
    "export": {"proto"},
    "nfsd": {"proto", "svc", "export"},
    "fast": {"proto", "svc", "xprt"},
    "server": {"proto", "svc", "xprt", "export", "nfsd", "fast"},
    "__main__": {"proto", "svc", "xprt", "export", "nfsd", "fast", "server"},
    "__init__": set(),
}

#: loadgen's sub-packages from the bottom: a module may import from its own sub-package and from
#: those before it, never from one after it or from loadgen's top-level modules (__main__,
#: locustfile), which stand above every sub-package
LOADGEN_ORDER = ("common", "run", "capture", "flood", "bench", "reliability", "distributed")

# ---------------------------------------------------------------------------------------------
# rule (a): what counts as touching the network

#: the rpcsrv parts that may use sockets
SOCKET_PARTS = {"xprt", "fast"}
#: modules whose import is socket use: the socket layer and the standard library right above it
SOCKET_MODULES = {"socket", "select", "selectors", "socketserver", "ssl", "asyncio", "http.server",
                  "wsgiref.simple_server"}
#: method names only sockets (and select's poll objects) have: a call of one of them on any object
#: is socket use. send, recv, bind, connect, shutdown, close, fileno are left out on purpose:
#: xprt's endpoints offer send/recv, and the others are everyday names.
SOCKET_METHODS = {"accept", "listen", "getsockname", "getpeername", "setsockopt", "getsockopt",
                  "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into", "sendall",
                  "sendto", "sendmsg", "connect_ex", "setblocking", "settimeout", "socketpair",
                  "create_connection", "create_server", "getaddrinfo", "getnameinfo",
                  "gethostbyname", "gethostbyaddr", "inet_pton", "inet_ntop", "inet_aton",
                  "inet_ntoa", "fromfd"}
#: C headers of the socket API (named by `cdef extern from` or #include <...>)
SOCKET_HEADERS = {"sys/socket.h", "sys/select.h", "sys/epoll.h", "poll.h", "netdb.h", "sys/un.h",
                  "netinet/in.h", "netinet/tcp.h", "netinet/udp.h", "arpa/inet.h", "linux/if_xdp.h"}
#: C functions of the socket API, called from Cython or C code
SOCKET_C_CALLS = {"socket", "accept", "accept4", "bind", "listen", "connect", "recv", "recvfrom",
                  "recvmsg", "recvmmsg", "send", "sendto", "sendmsg", "sendmmsg", "setsockopt",
                  "getsockopt", "getsockname", "getpeername", "poll", "ppoll", "select", "pselect",
                  "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
                  "getaddrinfo", "inet_pton", "inet_ntop"}
#: module (or header path) -> why it may use sockets although it is outside SOCKET_PARTS.
#: Empty: rpcsrv.server asked its listening socket for the bound address itself
#: (sock.getsockname()) until it got rpcsrv.xprt.tcp.bound_address.
SOCKET_ALLOWED = {}

# ---------------------------------------------------------------------------------------------
# reading the tree

_CY = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\s+([\w, ()*]+)|c?import\s+([\w., ]+))", re.M)
_CY_INCLUDE = re.compile(r"""^\s*include\s+["']([^"']+)["']""", re.M)
_CY_EXTERN = re.compile(r"""^\s*cdef\s+extern\s+from\s+["']([^"']+)["']""", re.M)
_C_INCLUDE = re.compile(r"""^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]""", re.M)
# comments (dropped) and string/char literals (kept by _strip_comments, blanked by _c_code)
_C_COMMENT_OR_LITERAL = re.compile(r"""/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""", re.S)
_C_TOKEN = re.compile(r"[A-Za-z_]\w*|\S")
_IDENT = re.compile(r"[A-Za-z_]\w*\Z")


class Tree:
    """The sources of the packages under a root, read once: modules, included .pxi, C files."""

    def __init__(self, root=ROOT, packages=PACKAGES):
        self.root = root
        #: module name -> its .py/.pyx/.pxd paths (relative to root, "/"-separated)
        self.mods = {}
        #: .h files and hand-written .c files
        self.c_files = []
        pxi = []
        for pkg in packages:
            for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                for fn in sorted(filenames):
                    rel = os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")
                    base, ext = os.path.splitext(rel)
                    if ext in (".py", ".pyx", ".pxd"):
                        parts = base.split("/")
                        if parts[-1] == "__init__":
                            parts = parts[:-1]
                        self.mods.setdefault(".".join(parts), []).append(rel)
                    elif ext == ".pxi":
                        pxi.append(rel)
                    elif ext == ".h" or (ext == ".c" and not os.path.exists(os.path.join(root, base + ".pyx"))):
                        self.c_files.append(rel)
        # a .pxi no module includes is read as a module of its own (its imports still count)
        included = {p for m in self.mods for f in self.mods[m] for p in self.cython_files(f)[1:]}
        for p in pxi:
            if p not in included:
                self.mods[p] = [p]

    def text(self, rel):
        with open(os.path.join(self.root, rel), encoding="utf-8") as f:
            return f.read()

    def _local(self, rel, name):
        """The project file `name` as seen from file `rel` (looked up beside it), or None."""
        cand = os.path.normpath(os.path.join(os.path.dirname(rel), name)).replace(os.sep, "/")
        return cand if os.path.isfile(os.path.join(self.root, cand)) else None

    def cython_files(self, rel):
        """rel and every .pxi it includes, transitively (each once, in include order)."""
        out, todo = [], [rel]
        while todo:
            f = todo.pop(0)
            if f in out:
                continue
            out.append(f)
            if not f.endswith(".py"):
                for name in _CY_INCLUDE.findall(self.text(f)):
                    p = self._local(f, name)
                    assert p is not None, "%s includes %r, which is not beside it" % (f, name)
                    todo.append(p)
        return out

    def files(self, mod):
        """Every file whose text belongs to a module: its own and the .pxi they include."""
        out = []
        for rel in self.mods[mod]:
            out.extend(f for f in self.cython_files(rel) if f not in out)
        return out

    # -- imports ----------------------------------------------------------------------------

    def imports(self, rel, modname):
        """Dotted names a file imports; `from X import y` yields (X, [X.y, ...]) and each X.y."""
        text = self.text(rel)
        out = []
        if rel.endswith(".py"):
            is_pkg = os.path.basename(rel).startswith("__init__.")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Import):
                    out.extend(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = modname.split(".")
                        if not is_pkg:
                            base = base[:-1]
                        base = base[:len(base) - (node.level - 1)]
                        mod = ".".join(base + ([node.module] if node.module else []))
                    else:
                        mod = node.module
                    subs = [mod + "." + a.name for a in node.names if a.name != "*"]
                    # `from pkg import mod` depends on pkg.mod; the bare pkg only when a name is not a module
                    out.append((mod, subs))
                    out.extend(subs)
        else:
            for m in _CY.finditer(text):
                if m.group(1):
                    out.append(m.group(1))
                    out.extend(m.group(1) + "." + n.strip(" ()") for n in m.group(2).split(",") if n.strip(" ()"))
                else:
                    out.extend(n.strip().split(" as ")[0] for n in m.group(3).split(","))
        return out

    def externs(self, rel):
        """(project headers, system headers) a Cython file names in `cdef extern from "..."`."""
        local, system = [], []
        if not rel.endswith(".py"):
            for name in _CY_EXTERN.findall(self.text(rel)):
                p = self._local(rel, name)
                (local if p else system).append(p or name)
        return local, system

    def c_includes(self, rel):
        """(project files, system headers) a C file #includes."""
        local, system = [], []
        for kind, name in _C_INCLUDE.findall(_strip_comments(self.text(rel))):
            p = self._local(rel, name) if kind == '"' else None
            (local if p else system).append(p or name)
        return local, system

    def _resolve(self, name):
        """The longest prefix of a dotted name that is one of our modules, or None."""
        parts = name.split(".")
        while parts:
            n = ".".join(parts)
            if n in self.mods:
                return n
            parts.pop()
        return None

    @functools.cached_property
    def graph(self):
        """{node: nodes it depends on}: modules (dotted names) and C files (paths)."""
        g = {m: set() for m in self.mods}
        g.update((c, set()) for c in self.c_files)
        for m in self.mods:
            for rel in self.files(m):
                for name in self.imports(rel, m):
                    if isinstance(name, tuple):
                        name, subs = name
                        if subs and all(x in self.mods for x in subs):
                            continue
                    t = self._resolve(name)
                    if t is not None and t != m:
                        g[m].add(t)
                g[m].update(self.externs(rel)[0])
        for c in self.c_files:
            g[c].update(p for p in self.c_includes(c)[0] if p != c)
        return g

    # -- rule (a) ---------------------------------------------------------------------------

    def socket_uses(self, node):
        """How a module (or C file) touches the network itself: a list of short descriptions."""
        out = []
        if node in self.c_files:
            code = _c_code(self.text(node))
            out.extend("#include <%s>" % h for h in self.c_includes(node)[1] if h in SOCKET_HEADERS)
            out.extend("calls %s()" % f for f in _called(code, SOCKET_C_CALLS))
            return out
        for rel in self.files(node):
            names = [n[0] if isinstance(n, tuple) else n for n in self.imports(rel, node)]
            out.extend("%s: imports %s" % (rel, n) for n in names if n in SOCKET_MODULES)
            if rel.endswith(".py"):
                for call in ast.walk(ast.parse(self.text(rel))):
                    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                            and call.func.attr in SOCKET_METHODS):
                        out.append("%s:%d: calls .%s()" % (rel, call.lineno, call.func.attr))
            else:
                text = _c_code(self.text(rel))
                out.extend("%s: cdef extern from %r" % (rel, h) for h in self.externs(rel)[1]
                           if h in SOCKET_HEADERS)
                out.extend("%s: calls .%s()" % (rel, f) for f in _called(text, SOCKET_METHODS, method=True))
                out.extend("%s: calls %s()" % (rel, f) for f in _called(text, SOCKET_C_CALLS))
        return out

    # -- rule (c) ---------------------------------------------------------------------------

    def header_graph(self, uses):
        """{C file: C files it depends on}: #include "..." arrows, and with uses=True also an arrow
        to every other C file that defines (at file scope) a name this one uses."""
        g = {c: set(self.graph[c]) for c in self.c_files}
        if uses:
            defs = {c: c_definitions(self.text(c)) for c in self.c_files}
            for c in self.c_files:
                used = c_identifiers(self.text(c)) - defs[c]
                g[c].update(d for d in self.c_files if d != c and used & defs[d])
        return g


@functools.lru_cache(maxsize=None)
def tree():
    return Tree()


def graph():
    return tree().graph


# ---------------------------------------------------------------------------------------------
# a small C reader: enough for this project's headers (file-scope definitions, identifiers used)

def _strip_comments(text):
    return _C_COMMENT_OR_LITERAL.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)


def _c_code(text):
    """C (or Cython) text with comments and string/char literals blanked, line continuations joined."""
    return _C_COMMENT_OR_LITERAL.sub(lambda m: '""' if m.group(0)[0] in "\"'" else " ", text).replace("\\\n", " ")


def _called(code, names, method=False):
    """The names of `names` called in code: `name(` (method=True: `.name(`), each once, sorted."""
    pat = (r"\.\s*" if method else r"(?<![\w.])") + r"([A-Za-z_]\w*)\s*\("
    return sorted({n for n in re.findall(pat, code) if n in names})


def _split_cpp(code):
    """(preprocessor lines, the rest) of C code as returned by _c_code."""
    cpp, rest = [], []
    for line in code.split("\n"):
        (cpp if line.lstrip().startswith("#") else rest).append(line)
    return cpp, "\n".join(rest)


def c_identifiers(text):
    """Every identifier a C file mentions (code, macro bodies, #if conditions; not #include names)."""
    cpp, rest = _split_cpp(_c_code(text))
    idents = set(re.findall(r"[A-Za-z_]\w*", rest))
    for line in cpp:
        d = re.match(r"\s*#\s*(\w+)(.*)", line)
        if d and d.group(1) not in ("include", "ifndef", "ifdef", "undef"):
            idents.update(re.findall(r"[A-Za-z_]\w*", d.group(2)))
    return idents


def c_definitions(text):
    """The names a C file defines at file scope: macros, typedefs, struct/union/enum tags, enum
    constants, functions (defined or declared) and variables. Include guards are left out (an
    #ifndef NAME followed by #define NAME), as is anything inside a function."""
    cpp, rest = _split_cpp(_c_code(text))
    names = set()
    guards = set()
    for line in cpp:
        d = re.match(r"\s*#\s*(ifndef|define)\s+([A-Za-z_]\w*)", line)
        if d and d.group(1) == "ifndef":
            guards.add(d.group(2))
        elif d and d.group(2) not in guards:
            names.add(d.group(2))
    # __attribute__((...)) groups are noise for the declaration reader
    rest = re.sub(r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)", " ", rest)
    depth = 0               # brace depth
    stmt = []               # depth-0 tokens of the current file-scope statement ("{}" for a body)
    enum_depth = None       # brace depth of the enum body being read
    prev = None

    def finish():
        if not stmt:
            return
        if stmt[0] == "typedef":
            m = re.search(r"\(\s*\*\s*([A-Za-z_]\w*)\s*\)", " ".join(stmt))     # typedef T (*name)(...)
            if m:
                names.add(m.group(1))
            else:
                names.update(t for t in stmt[-1:] if _IDENT.match(t))
        elif "(" in stmt and ("=" not in stmt or stmt.index("(") < stmt.index("=")):
            i = stmt.index("(")
            if i and _IDENT.match(stmt[i - 1]):
                names.add(stmt[i - 1])                                          # a function
        else:
            part = []
            for t in stmt + [","]:                                              # variables
                if t == ",":
                    head = part[:min([part.index(x) for x in ("=", "[") if x in part] or [len(part)])]
                    idents = [x for x in head if _IDENT.match(x) and x not in ("struct", "union", "enum")]
                    if idents:
                        names.add(idents[-1])
                    part = []
                else:
                    part.append(t)
        stmt.clear()

    for t in _C_TOKEN.findall(rest):
        if t == "{":
            if depth == 0 and stmt[-2:-1] in (["struct"], ["union"], ["enum"]) and _IDENT.match(stmt[-1]):
                names.add(stmt[-1])                                             # a tag
            if depth == 0 and (stmt[-1:] == ["enum"] or stmt[-2:-1] == ["enum"]):
                enum_depth = depth + 1
            depth += 1
        elif t == "}":
            depth -= 1
            if depth < (enum_depth or 0):
                enum_depth = None
            if depth == 0:
                stmt.append("{}")
                if "(" in stmt and stmt[0] != "typedef" and "=" not in stmt:
                    finish()                                                    # a function's body ends
        elif depth == 0:
            if t == ";":
                finish()
            else:
                stmt.append(t)
        elif enum_depth == depth and _IDENT.match(t) and prev in ("{", ","):
            names.add(t)                                                        # an enum constant
        prev = t
    return names


# ---------------------------------------------------------------------------------------------
# the checks, as functions of a Tree (so that the synthetic trees below can break them)

def cycles(g):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _pieces(node):
    """A node's path pieces: "rpcsrv.svc.svc" and "rpcsrv/fast/fp_ops.h" alike."""
    return node.split("/") if "/" in node else node.split(".")


def _part(node):
    p = _pieces(node)
    return p[1] if len(p) > 1 else "__init__"


def _loadgen_rank(node, order):
    """A loadgen node's height in `order`; loadgen's top-level modules are above every sub-package."""
    part = _part(node)
    return order.index(part) if part in order else len(order)


def loadgen_subpackages(t):
    """The sub-packages of loadgen in a tree: its folders holding modules."""
    return sorted({_pieces(m)[1] for m in t.mods if _pieces(m)[0] == "loadgen" and len(_pieces(m)) > 2}
                  | {_pieces(m)[1] for m in t.mods if _pieces(m)[0] == "loadgen" and len(_pieces(m)) == 2
                     and any(f.endswith("/__init__.py") for f in t.mods[m])})


def layer_violations(t, pkg, loadgen_order=LOADGEN_ORDER):
    """(node, dependency) arrows of package pkg that point up or sideways."""
    bad = []
    for m, deps in t.graph.items():
        if _pieces(m)[0] != pkg:
            continue
        for d in deps:
            top = _pieces(d)[0]
            if top == "clikit" and pkg != "clikit":
                continue                      # every package may use the entry points' conventions
            if pkg == "clikit" and top != "clikit":
                bad.append((m, d))
            elif pkg == "alloc" and top not in ("alloc", "clikit"):
                bad.append((m, d))
            elif pkg == "loadgen" and top in ("alloc", "rpcsrv"):
                bad.append((m, d))
            elif pkg == "loadgen" and top == "loadgen" and (
                    _loadgen_rank(d, loadgen_order) > _loadgen_rank(m, loadgen_order)):
                bad.append((m, d))            # up loadgen's sub-packages, or to its top-level modules
            elif pkg == "rpcsrv" and top == "loadgen":
                bad.append((m, d))
            elif pkg == "rpcsrv" and top == "alloc" and _part(m) == "proto":
                bad.append((m, d))            # rule (b)
            elif pkg == "rpcsrv" and top == "rpcsrv":
                mine, theirs = _part(m), _part(d)
                if theirs != mine and theirs not in RPCSRV_ALLOWED[mine]:
                    bad.append((m, d))
    return sorted(bad)


def socket_violations(t, allowed=SOCKET_ALLOWED):
    """{rpcsrv node outside xprt/ and fast/: its socket uses} (rule a), minus the allowed ones."""
    out = {}
    for node in sorted(t.graph):
        if _pieces(node)[0] == "rpcsrv" and _part(node) not in SOCKET_PARTS and node not in allowed:
            uses = t.socket_uses(node)
            if uses:
                out[node] = uses
    return out


def proto_alloc_imports(t):
    """(module under rpcsrv/proto, the alloc module it imports) pairs (rule b)."""
    return sorted((m, d) for m, deps in t.graph.items() if _pieces(m)[:2] == ["rpcsrv", "proto"]
                  for d in deps if _pieces(d)[0] == "alloc")


# ---------------------------------------------------------------------------------------------
# the real tree

def test_the_graph_is_read():
    g = graph()
    # a known arrow of each kind: relative, absolute, Cython cimport
    assert "rpcsrv.proto.xdr" in g["rpcsrv.proto.rpcmsg"]
    assert "rpcsrv.svc.svc" in g["rpcsrv.server"]
    assert "alloc._core" in g["rpcsrv.xprt._pageio"]
    # cdef extern from a project header, in the .pyx itself and in an included .pxi
    assert "rpcsrv/xprt/udp_xdp.h" in g["rpcsrv.xprt._udpfast"]
    assert "rpcsrv/fast/_fast_decl.pxi" in tree().files("rpcsrv.fast._fast")
    assert {"rpcsrv/fast/fp_process.h", "rpcsrv/fast/fp_stats.h"} <= g["rpcsrv.fast._fast"]
    # C #include "..." (and not Cython's generated .c files)
    assert "rpcsrv/fast/fp_ops.h" in g["rpcsrv/fast/fp_dir.h"]
    assert "rpcsrv/fast/_fast.c" not in g
    # included .pxi are not modules of their own
    assert not [m for m in g if m.endswith(".pxi")]
    # loadgen's arrows between its sub-packages: `from ..common.meta import`, and from the top
    assert "loadgen.common.meta" in g["loadgen.run.report"]
    assert "loadgen.run.runner" in g["loadgen.bench.harness"]              # a lazy one
    assert "loadgen.distributed.locustuser" in g["loadgen.locustfile"]


def test_the_c_reader():
    h = tree().text("rpcsrv/fast/fp_readdir.h")
    defs = c_definitions(h)
    assert {"fp_dent_cmp", "fp_name_cookie", "fp_readdirplus"} <= defs       # functions
    assert "NFSBULK_FP_READDIR_H" not in defs                                # the include guard
    assert "fp_dir" in c_definitions(tree().text("rpcsrv/fast/fp_dir.h"))   # typedef struct {...} fp_dir;
    tables = c_definitions(tree().text("rpcsrv/fast/fp_tables.h"))
    assert {"ACC_READ", "ACC_DELETE", "NFSPROC3_READ"} <= tables             # enum constants
    assert {"fp_procs", "fp_stat_values"} <= tables                          # generated arrays
    assert {"nb_sigma", "nb_iv64"} <= c_definitions(tree().text("rpcsrv/fast/blake2.h"))   # variables
    assert "fp_dir" in c_identifiers(h)


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


@pytest.mark.parametrize("pkg", PACKAGES)
def test_dependencies_point_down(pkg):
    assert layer_violations(tree(), pkg) == []


def test_loadgen_order_names_every_subpackage():
    assert loadgen_subpackages(tree()) == sorted(LOADGEN_ORDER)


def test_sockets_only_in_xprt_and_fast():
    assert socket_violations(tree()) == {}
    # the rule sees the sockets that are there
    assert tree().socket_uses("rpcsrv.xprt.tcp")
    assert tree().socket_uses("rpcsrv.fast._fast")


def test_socket_allow_list_is_not_stale():
    """Every allowed exception names a node that exists and still uses sockets."""
    t = tree()
    assert [n for n in SOCKET_ALLOWED if n not in t.graph or not t.socket_uses(n)] == []


def test_proto_imports_no_alloc():
    assert proto_alloc_imports(tree()) == []


def test_no_include_cycle_among_headers():
    assert cycles(tree().header_graph(uses=False)) == []


def test_no_dependency_cycle_among_headers():
    """A header that uses another's names depends on it, included or not: before the header split,
    fp_dirops.h included fp_readdir.h at its end and fp_readdir.h used fp_dirops.h's names (fp_dir,
    fp_child, ...) without including it, a cycle no #include showed."""
    assert cycles(tree().header_graph(uses=True)) == []


# ---------------------------------------------------------------------------------------------
# each rule can fail: a synthetic tree breaking all of them

def _write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.fixture
def bad_tree(tmp_path):
    _write(tmp_path, {
        "rpcsrv/__init__.py": "",
        "rpcsrv/proto/__init__.py": "",
        "rpcsrv/proto/xdr.py": "def f():\n    import alloc\n",                    # (b), lazily
        "rpcsrv/proto/_fastxdr.pyx": 'include "_fastxdr_decl.pxi"\n',
        "rpcsrv/proto/_fastxdr_decl.pxi": "from alloc._core cimport Allocator\n",  # (b), via a .pxi
        "rpcsrv/svc/__init__.py": "",
        "rpcsrv/svc/net.py": "import select\n",                                      # (a) import
        "rpcsrv/svc/peer.py": "def who(conn):\n    return conn.sock.getpeername()\n",  # (a) call
        "rpcsrv/svc/_poll.pyx": 'cdef extern from "poll.h":\n    int poll(void *, int, int)\n',  # (a) C
        "rpcsrv/svc/svc.py": "from rpcsrv.xprt import tcp\n",                        # layering
        "rpcsrv/xprt/__init__.py": "",
        "rpcsrv/xprt/tcp.py": "import socket\n",                                     # allowed here
        "rpcsrv/nfsd/__init__.py": "",
        "rpcsrv/nfsd/wire.h": "#include <sys/socket.h>\n",                           # (a) C header
        "alloc/__init__.py": "",
        "alloc/_core.pxd": "cdef class Allocator:\n    pass\n",
        # (c) an include cycle
        "rpcsrv/fast/a.h": '#include "b.h"\n',
        "rpcsrv/fast/b.h": '#include "a.h"\n',
        # (c) the fp_dirops/fp_readdir shape: d.h includes e.h at its end, e.h uses d.h's names
        "rpcsrv/fast/d.h": ('#ifndef D_H\n#define D_H\ntypedef struct { int fd; } d_dir;\n'
                            'static int d_open(d_dir *x) { return x->fd; }\n#include "e.h"\n'
                            'static int d_process(d_dir *x) { return e_list(x); }\n#endif\n'),
        "rpcsrv/fast/e.h": ('#ifndef E_H\n#define E_H\n'
                            'static int e_list(d_dir *x) { return d_open(x); }\n#endif\n'),
    })
    return Tree(str(tmp_path), packages=("rpcsrv", "alloc"))


def test_each_rule_can_fail(bad_tree):
    t = bad_tree
    assert "alloc._core" in t.graph["rpcsrv.proto._fastxdr"]                      # the .pxi's cimport
    assert proto_alloc_imports(t) == [("rpcsrv.proto._fastxdr", "alloc._core"), ("rpcsrv.proto.xdr", "alloc")]
    assert ("rpcsrv.proto.xdr", "alloc") in layer_violations(t, "rpcsrv")
    assert ("rpcsrv.svc.svc", "rpcsrv.xprt.tcp") in layer_violations(t, "rpcsrv")
    bad = socket_violations(t)
    assert sorted(bad) == ["rpcsrv.svc._poll", "rpcsrv.svc.net", "rpcsrv.svc.peer", "rpcsrv/nfsd/wire.h"]
    assert bad["rpcsrv.svc.peer"] == ["rpcsrv/svc/peer.py:2: calls .getpeername()"]
    assert bad["rpcsrv.svc._poll"] == ["rpcsrv/svc/_poll.pyx: cdef extern from 'poll.h'",
                                       "rpcsrv/svc/_poll.pyx: calls poll()"]
    assert bad["rpcsrv/nfsd/wire.h"] == ["#include <sys/socket.h>"]
    assert "rpcsrv.svc.net" not in socket_violations(t, allowed={"rpcsrv.svc.net": "a test"})
    assert cycles(t.header_graph(uses=False)) == [["rpcsrv/fast/a.h", "rpcsrv/fast/b.h"]]
    assert cycles(t.header_graph(uses=True)) == [["rpcsrv/fast/a.h", "rpcsrv/fast/b.h"],
                                                 ["rpcsrv/fast/d.h", "rpcsrv/fast/e.h"]]
    assert cycles(t.graph) == [["rpcsrv/fast/a.h", "rpcsrv/fast/b.h"]]       # include arrows are in the main graph


@pytest.fixture
def bad_loadgen_tree(tmp_path):
    _write(tmp_path, {
        "loadgen/__init__.py": "",
        "loadgen/__main__.py": "from .bench import bench\nfrom .run.stats import x\n",     # the top: fine
        "loadgen/locustfile.py": "from loadgen.distributed.locustuser import NfsUser\n",    # fine
        "loadgen/common/__init__.py": "",
        "loadgen/common/meta.py": "def f():\n    from ..run import stats\n",              # up, lazily
        "loadgen/run/__init__.py": "",
        "loadgen/run/stats.py": "from ..common.meta import f\nfrom . import report\n",    # down, own: fine
        "loadgen/run/report.py": "from loadgen.bench.ci import x\n",                       # up, absolute
        "loadgen/bench/__init__.py": "from ..distributed import locustuser\n",             # up, from __init__
        "loadgen/bench/ci.py": "from ..run.stats import x\nfrom loadgen import locustfile\n",  # to the top
        "loadgen/bench/bench.py": "from . import ci\nimport rpcsrv.server\n",             # rpcsrv
        "loadgen/distributed/__init__.py": "",
        "loadgen/distributed/locustuser.py": "from ..bench.bench import y\n",             # down: fine
        "loadgen/extra/__init__.py": "",                                                    # not in the order
        "rpcsrv/__init__.py": "",
        "rpcsrv/server.py": "",
    })
    return Tree(str(tmp_path), packages=("loadgen", "rpcsrv"))


def test_the_loadgen_order_can_fail(bad_loadgen_tree):
    t = bad_loadgen_tree
    order = ("common", "run", "bench", "distributed")
    assert layer_violations(t, "loadgen", loadgen_order=order) == [
        ("loadgen.bench", "loadgen.distributed.locustuser"),
        ("loadgen.bench.bench", "rpcsrv.server"),
        ("loadgen.bench.ci", "loadgen.locustfile"),
        ("loadgen.common.meta", "loadgen.run.stats"),
        ("loadgen.run.report", "loadgen.bench.ci"),
    ]
    assert loadgen_subpackages(t) == ["bench", "common", "distributed", "extra", "run"]
    assert loadgen_subpackages(t) != sorted(order)            # what test_loadgen_order_names_every_subpackage says
    # the same tree read with run above bench: report's arrow is fine then, bench's to run.stats is not
    swapped = layer_violations(t, "loadgen", loadgen_order=("common", "bench", "run", "distributed"))
    assert ("loadgen.run.report", "loadgen.bench.ci") not in swapped
    assert ("loadgen.bench.ci", "loadgen.run.stats") in swapped
