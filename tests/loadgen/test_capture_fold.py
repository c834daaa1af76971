"""The folding rules of loadgen.capture.capture on hand-made call sequences (no tshark)."""
from __future__ import annotations

from loadgen.capture.capture import Line, Summary, _fold, _rehome, render
from loadgen.run.loadfile import parse_text

OK, NOENT = "0x00000000", "0x00000002"


def L(t, op, *paths, client=1, status=OK, numbers=(), targets=None):
    return Line(t, client, op, tuple(paths), tuple(numbers), status,
                tuple(targets) if targets is not None else tuple(p for p in paths if p.startswith("/")))


def ops(lines):
    return [(ln.op, ln.paths) for ln in lines]


def test_path_walk_lookups_fold_into_the_next_call():
    s = Summary()
    lines = [L(1, "LOOKUP3", "/a"), L(2, "LOOKUP3", "/a/b"), L(3, "CREATE3", "/a/b/f"),
             L(4, "LOOKUP3", "/a/b/f"),                       # libnfs looks the new name up
             L(5, "WRITE3", "/a/b/f", numbers=(0, 10, 0)),
             L(6, "LOOKUP3", "/x"), L(7, "GETATTR3", "/a"),   # /x resolved nothing: kept
             L(8, "LOOKUP3", "/a"), L(9, "LOOKUP3", "/a/nope", status=NOENT)]
    out = _fold(lines, s)
    assert ops(out) == [("CREATE3", ("/a/b/f",)), ("WRITE3", ("/a/b/f",)), ("LOOKUP3", ("/x",)),
                        ("GETATTR3", ("/a",)), ("LOOKUP3", ("/a/nope",))]
    assert s.folded["LOOKUP3 calls that resolved the path of the next call"] == 3
    assert s.folded["LOOKUP3 of the name just created"] == 1


def test_rules_are_per_client():
    s = Summary()
    lines = [L(1, "LOOKUP3", "/a", client=1), L(2, "GETATTR3", "/a", client=2),
             L(3, "ACCESS3", "/a/f", client=1, numbers=(1, 1)), L(4, "GETATTR3", "/z", client=2),
             L(5, "READ3", "/a/f", client=1, numbers=(0, 4))]
    out = _fold(lines, s)
    # client 1's LOOKUP3 /a resolved its ACCESS3's path; the ACCESS3 opened /a/f for the READ3
    assert [(ln.client, ln.op) for ln in out] == [(2, "GETATTR3"), (2, "GETATTR3"), (1, "READ3")]


def test_close_time_commits():
    s = Summary()
    lines = [L(1, "WRITE3", "/f", numbers=(0, 1, 0)), L(2, "COMMIT3", "/f"), L(3, "READ3", "/f", numbers=(0, 1)),
             L(4, "COMMIT3", "/f"), L(5, "RENAME3", "/f", "/g"),
             L(6, "WRITE3", "/h", numbers=(0, 1, 0)), L(7, "COMMIT3", "/h"), L(8, "COMMIT3", "/h")]
    out = _fold(lines, s)
    # the fsync COMMIT3 at 2 stays; the close before the RENAME3 and the two at the end go
    assert [ln.time for ln in out] == [1, 2, 3, 5, 6]
    assert sum(v for k, v in s.folded.items() if k.startswith("COMMIT3")) == 3


def test_render_grammar_and_setup_lines():
    s = Summary(capture="x.pcap")
    s.clients = [("client1", "a"), ("client2", "b")]
    lines = [L(10.0, "SYMLINK3", "/d/l", "../t", targets=("/d/l",)),
             L(10.5, "WRITE3", "/d/f", client=2, numbers=(4096, 512, 2)),
             L(11.0, "FSSTAT3", targets=("",), status="*"),
             L(12.0, "GETATTR3", "")]                             # the export root
    text = render(lines, s, "port", "keep")
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert body == [
        '0.000000 Deltree "/clients/client1" 0x00000000',
        '0.000000 MKDIR3 "/clients" *', '0.000000 MKDIR3 "/clients/client1" *',
        '0.000000 MKDIR3 "/clients/client1/c1" *', '0.000000 MKDIR3 "/clients/client1/c2" *',
        '0.000000 SYMLINK3 "/clients/client1/c1/d/l" "../t" 0x00000000',
        '0.500000 WRITE3 "/clients/client1/c2/d/f" 4096 512 2 0x00000000',
        '1.000000 FSSTAT3 *',
        '2.000000 GETATTR3 "/clients/client1/c1" 0x00000000']
    assert s.lines == 4 and s.setup_lines == 5
    prog = parse_text(text)                          # loadgen's parser takes it as written
    assert [it.name for it in prog.items] == ["Deltree", "MKDIR3", "MKDIR3", "MKDIR3", "MKDIR3", "SYMLINK3",
                                              "WRITE3", "FSSTAT3", "GETATTR3"]
    w = prog.items[6]
    assert w.paths == ("/clients/client1/c2/d/f",) and [e.value for e in w.params] == [4096, 512, 2]
    assert w.status == "0x00000000" and w.timestamp == 0.5
    flat = render(lines, s, "none", "drop")
    assert [ln for ln in flat.splitlines() if not ln.startswith("#")][-1] == 'GETATTR3 "/" 0x00000000'


def rpc(proc, leaves, call=True, t=0.0, entries=()):
    """A decoded RPC message as capture_tshark yields it (the fields the converter reads)."""
    from types import SimpleNamespace
    r = SimpleNamespace(procedure=proc, server=("s", 2049), client=("c", 1), conn=("tcp", 0), time=t,
                        frame=0, accepted=True, leaves=leaves, entries=list(entries))
    r.all = lambda k: [v for kk, v in r.leaves if kk == k]
    r.get = lambda k, d=None: next((v for kk, v in r.leaves if kk == k), d)
    return r


def test_dot_and_dotdot_lookups_resolve_in_place():
    from loadgen.capture.capture import _Call, _Converter
    s = Summary()
    conv = _Converter("none", "keep", s)
    conv.handles.learn("s", "root", "")
    conv.handles.learn("s", "dfh", "/a/b")
    got = []
    for name in ("..", ".", "c"):
        c = _Call(rpc(3, [("nfs.fhandle", "dfh"), ("nfs.name", name)]),
                  rpc(3, [("nfs.status3", "2")], call=False))
        got.append(conv.line(c).paths[0])
    assert got == ["/a", "/a/b", "/a/b/c"]


def test_one_captured_client_works_in_clients_client1():
    s = Summary(capture="x.pcap")
    s.clients = [("client1", "a")]
    text = render([L(1.0, "MKDIR3", "/d")], s, "port", "drop")
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        'Deltree "/clients/client1" 0x00000000', 'MKDIR3 "/clients" *', 'MKDIR3 "/clients/client1" *',
        'MKDIR3 "/clients/client1/d" 0x00000000']


def test_clients_with_a_home_of_their_own_are_rerooted_not_nested():
    """Two loadgen clients captured: each made /clients (one of them got
    NFS3ERR_EXIST, depending on who came first) and its own /clients/clientN."""
    EXIST = "0x00000011"
    lines = [L(0.0, "LOOKUP3", "/clients", status=NOENT),
             L(0.1, "MKDIR3", "/clients"), L(0.1, "MKDIR3", "/clients", client=2, status=EXIST),
             L(0.2, "MKDIR3", "/clients/client0"), L(0.2, "MKDIR3", "/clients/client1", client=2),
             L(0.3, "GETATTR3", "/clients/client0"),
             L(0.4, "CREATE3", "/clients/client0/f"), L(0.4, "CREATE3", "/clients/client1/f", client=2),
             L(0.5, "SYMLINK3", "/clients/client1/l", "/clients/client1/f", client=2, targets=("/clients/client1/l",)),
             L(0.6, "RENAME3", "/clients/client0/f", "/clients/client0/g"),
             L(0.7, "RMDIR3", "/clients/client1", client=2, status="0x00000042"),
             # a third client strays outside any /clients/clientN: kept as it was
             L(0.8, "CREATE3", "/clients/client5/x", client=3), L(0.9, "CREATE3", "/elsewhere", client=3)]
    s = Summary(capture="x.pcap")
    s.clients = [("client1", "a"), ("client2", "b"), ("client3", "c")]
    out = _rehome(lines, s)
    assert s.rehomed == {1: "/clients/client0", 2: "/clients/client1"}
    assert [(ln.client, ln.op, ln.paths) for ln in out] == [
        (1, "GETATTR3", ("",)), (1, "CREATE3", ("/f",)), (2, "CREATE3", ("/f",)),
        (2, "SYMLINK3", ("/l", "/clients/client1/f")),           # a symlink's target is text, kept
        (1, "RENAME3", ("/f", "/g")),
        (3, "CREATE3", ("/clients/client5/x",)), (3, "CREATE3", ("/elsewhere",))]
    assert sum(n for what, n in s.folded.items() if "own /clients/client<j>" in what) == 6
    body = [ln for ln in render(out, s, "port", "drop").splitlines() if not ln.startswith("#")]
    assert 'CREATE3 "/clients/client1/c2/f" 0x00000000' in body
    assert 'CREATE3 "/clients/client1/c3/clients/client5/x" 0x00000000' in body
    assert "in /clients/client1/c2 (captured in /clients/client1)" in s.text()


def test_a_hard_linked_handle_is_written_with_a_name_that_still_exists():
    """loadgen's metadata loadfile: LINK3 a.hard a.txt, a READDIRPLUS3 listing both names (a.hard
    last), REMOVE3 a.hard, then the close-time COMMIT3 of a.txt's handle right before REMOVE3
    a.txt. The COMMIT3 is of a.txt (not of the removed a.hard, which a replay by path would get
    NFS3ERR_NOENT for), and so it is folded as a close-time commit."""
    from loadgen.capture.capture import _Call, _Converter, _fold_close_commits
    s = Summary()
    conv = _Converter("none", "drop", s)
    conv.handles.learn("s", "root", "")
    conv.handles.learn("s", "dir", "/m")
    ok = [("nfs.status3", "0")]
    calls = [
        (8, [("nfs.fhandle", "dir"), ("nfs.name", "a.txt")], ok + [("nfs.fhandle", "F")], ()),
        (15, [("nfs.fhandle", "F"), ("nfs.fhandle", "dir"), ("nfs.name", "a.hard")], ok, ()),
        (17, [("nfs.fhandle", "dir"), ("nfs.cookie3", "0")], ok,
         [[("nfs.readdirplus.entry.name", "a.txt"), ("nfs.fhandle", "F")],
          [("nfs.readdirplus.entry.name", "a.hard"), ("nfs.fhandle", "F")]]),
        (12, [("nfs.fhandle", "dir"), ("nfs.name", "a.hard")], ok, ()),
        (21, [("nfs.fhandle", "F")], ok, ()),
        (12, [("nfs.fhandle", "dir"), ("nfs.name", "a.txt")], ok, ()),
        (1, [("nfs.fhandle", "F")], [("nfs.status3", "70")], ()),
    ]
    lines = []
    for t, (proc, call, reply, entries) in enumerate(calls):
        ln = conv.line(_Call(rpc(proc, call, t=float(t)), rpc(proc, reply, call=False, entries=entries)))
        lines.append(ln)
    assert [(ln.op, ln.paths[0]) for ln in lines] == [
        ("CREATE3", "/m/a.txt"), ("LINK3", "/m/a.hard"), ("READDIRPLUS3", "/m"), ("REMOVE3", "/m/a.hard"),
        ("COMMIT3", "/m/a.txt"), ("REMOVE3", "/m/a.txt"), ("GETATTR3", "/m/a.txt")]
    kept = _fold_close_commits(lines, s)
    assert "COMMIT3" not in [ln.op for ln in kept]


def test_handle_paths_rename_and_forget():
    from loadgen.capture.capture_paths import HandlePaths
    h = HandlePaths()
    h.learn("s", "D", "/d")
    h.learn("s", "F", "/d/f")
    h.learn("s", "G", "/e/g")
    h.learn("s", "G", "/d/g")              # a second name for G
    h.rename("s", "/d", "/x")              # a directory moves: every name under it
    assert h.path("s", "D", None) == "/x" and h.path("s", "F", None) == "/x/f"
    assert h.path("s", "G", None) == "/e/g"
    h.forget("s", "/e/g")
    assert h.path("s", "G", None) == "/x/g"
    h.learn("s", "H", "/x/h")
    h.rename("s", "/x/f", "/x/h")          # over H: H's name is gone, H keeps it as its last
    assert h.path("s", "F", None) == "/x/h" and h.path("s", "H", None) == "/x/h"
    h.learn("s", "H2", "/x/h")             # a new file under that name later
    h.forget("s", "/x/h")
    assert h.path("s", "U", "0x1234abcd") == "/pre-capture/fh-1234abcd" and ("s", "U") in h.pre
