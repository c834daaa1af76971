"""Parser tests: every directive and offset form used by the reference
loadfiles and client.txt, and line-numbered errors for malformed lines.
The reference files are read where they are installed, never copied."""
from __future__ import annotations

import os
import random

import pytest

from loadgen.run.loadfile import (Expr, LoadfileError, Loop, Op, RandomString, Repeat, Sleep,
                              WritePattern, parse_expr, parse_file, parse_text)
from loadgen.run.workloads import DEFAULT_LOADFILE, rw256k_program

ANCHORS = "/work/shared/anchors/dbench"
CLIENT_TXT = "/usr/share/dbench/client.txt"


def anchor(name):
    path = os.path.join(ANCHORS, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    return path


def flatten(items):
    for it in items:
        if isinstance(it, Loop):
            yield it
            yield from flatten(it.body)
        else:
            yield it


# ---- reference files ---------------------------------------------------

def test_nfs_load_parses_with_timestamps_statuses_and_random_comment_free():
    prog = parse_file(anchor("nfs.load"))
    ops = [it for it in prog.items if isinstance(it, Op)]
    first = ops[0]
    assert (first.name, first.paths, first.status, first.lineno) == (
        "Deltree", ("/clients/client1",), "0x00000000", 30)
    mk = ops[1]
    assert mk.name == "MKDIR3" and mk.status == "*"
    w = next(o for o in ops if o.name == "WRITE3")
    assert w.timestamp == 1.0
    assert [e.value for e in w.params] == [0, 1024, 0]
    link = next(o for o in ops if o.name == "LINK3")
    assert link.paths == ("/clients/client1/hard.link", "/clients/client1/test.file")
    acc = next(o for o in ops if o.name == "ACCESS3")
    assert [e.value for e in acc.params] == [0, 0]
    assert {o.name for o in ops} >= {"FSSTAT3", "FSINFO3", "READDIRPLUS3", "LOCK4", "UNLOCK4", "TEST4",
                                     "PATHCONF3", "READLINK3", "SYMLINK3", "COMMIT3", "SETATTR3"}
    assert prog.dialects == frozenset({"nfs"})
    # timestamps are non-decreasing, as recorded
    ts = [o.timestamp for o in ops]
    assert ts == sorted(ts)


def test_nfs_2_load_randomstring_and_loop():
    prog = parse_file(anchor("nfs_2.load"))
    rs, loop = prog.items
    assert isinstance(rs, RandomString) and rs.var == "$1"
    assert rs.pattern[0] == "/" and rs.pattern[5] == "0123456789" and rs.pattern[6] == "01234567890"
    assert isinstance(loop, Loop) and loop.count == 5
    assert [o.name for o in loop.body] == ["CREATE3", "LOOKUP3", "WRITE3", "WRITE3"]
    assert all(o.paths == ("$1",) for o in loop.body)


def test_nfs_3_load_writepattern_repeat_relative():
    prog = parse_file(anchor("nfs_3.load"))
    kinds = [type(i).__name__ for i in prog.items]
    assert kinds == ["Op", "Op", "Op", "WritePattern", "Op", "Op", "Repeat", "Op"]
    wp = prog.items[3]
    assert wp.pattern == b"1234567890"
    rep = prog.items[6]
    assert rep.count == 1000 and rep.op.name == "WRITE3"
    off = rep.op.params[0]
    assert off == Expr("rel", value=32768)
    # relative offsets walk the file: 0, then +32768 per repetition
    prev = 0
    for k in range(1, 4):
        prev = off.evaluate(random.Random(0), prev)
        assert prev == 32768 * k


def test_nfs_lock_load_symbolic_relative():
    prog = parse_file(anchor("nfs_lock.load"))
    unlock, lock, rep = prog.items[0], prog.items[1], prog.items[2]
    assert unlock.name == "UNLOCK4" and lock.name == "LOCK4"
    assert lock.params[0] == Expr("rel", symbol="child")
    assert rep.count == 10000000 and rep.op.params[0] == Expr("rel", symbol="num_children")
    assert lock.params[0].evaluate(None, None, child=3, nchildren=5) == 3
    assert rep.op.params[0].evaluate(None, 3, child=3, nchildren=5) == 8


def test_client_txt_parses_every_op_and_status():
    if not os.path.exists(CLIENT_TXT):
        pytest.skip("dbench client.txt not installed")
    prog = parse_file(CLIENT_TXT)
    assert prog.dialects == frozenset({"smb"})
    assert prog.op_names() == {
        "Deltree", "Mkdir", "NTCreateX", "Close", "ReadX", "WriteX", "QUERY_PATH_INFORMATION",
        "QUERY_FILE_INFORMATION", "QUERY_FS_INFORMATION", "SET_FILE_INFORMATION", "FIND_FIRST",
        "Flush", "Rename", "Unlink", "LockX", "UnlockX"}
    ops = prog.items
    assert ops[0] == Op(1, "Deltree", ("/clients/client1",), (), "NT_STATUS_OK")
    nt = ops[4]
    assert nt.name == "NTCreateX" and nt.paths == ("/clients/client1/mixfile",)
    assert [e.value for e in nt.params] == [0x40, 0x1, 9935]
    assert nt.status == "NT_STATUS_OBJECT_NAME_NOT_FOUND"
    statuses = {o.status for o in ops}
    assert statuses == {"NT_STATUS_OK", "NT_STATUS_OBJECT_NAME_NOT_FOUND", "NT_STATUS_NO_SUCH_FILE",
                        "NT_STATUS_OBJECT_PATH_NOT_FOUND"}
    ff = next(o for o in ops if o.name == "FIND_FIRST")
    assert ff.paths == ("/clients/client1/FILLER.*",) and [e.value for e in ff.params] == [260, 1366, 0]
    lock = next(o for o in ops if o.name == "LockX")
    assert [e.value for e in lock.params] == [10430, 2147483538, 1]


# ---- expressions -------------------------------------------------------

@pytest.mark.parametrize("text,steps", [
    ("*", ()),
    ("*/0x1000", (("/", 4096),)),
    ("*/0x1000%5000000", (("/", 4096), ("%", 5000000))),
    ("*%100+25", (("%", 100), ("+", 25))),
])
def test_random_expressions(text, steps):
    e = parse_expr(text)
    assert e.kind == "random" and e.steps == steps
    rng = random.Random(1)
    for _ in range(200):
        v = e.evaluate(rng, None)
        assert 0 <= v < 2 ** 64 + 200
        if text == "*/0x1000":
            assert v % 4096 == 0
        if text == "*/0x1000%5000000":
            # applied left to right: align, then modulo (so not aligned any more
            # unless the modulus is a multiple of the alignment)
            assert v < 5000000
        if text == "*%100+25":
            assert 25 <= v <= 124


def test_constant_and_hex():
    assert parse_expr("0x1000") == Expr("const", 4096)
    assert parse_expr("123") == Expr("const", 123)


# ---- directives in small texts ----------------------------------------

def test_all_directives_inline():
    text = (
        "# comment\n"
        "\n"
        "SLEEP 1500\n"
        "WRITEPATTERN abc\n"
        'RANDOMSTRING 2 "/x[ab]y"\n'
        "LOOP 2\n"
        "  LOOP 3\n"
        "    GETATTR3 $2 *\n"
        "  ENDLOOP\n"
        "ENDLOOP\n"
        "REPEAT 4\n"
        '0.5 READ3 "/clients/client1/f" *%100 10 0x00000000\n'
        'Sleep 200 NT_STATUS_OK\n'
    )
    prog = parse_text(text)
    sl, wp, rs, outer, rep, sl2 = prog.items
    assert sl == Sleep(3, 1500) and sl2 == Sleep(13, 200)
    assert wp == WritePattern(4, b"abc")
    assert rs.pattern == ("/", "x", "ab", "y")
    assert outer.count == 2 and outer.body[0].count == 3
    assert outer.body[0].body[0].paths == ("$2",)
    assert isinstance(rep, Repeat) and rep.count == 4 and rep.op.timestamp == 0.5
    assert rep.op.lineno == 12


def test_backslash_paths_become_slashes():
    prog = parse_text('Unlink "\\clients\\client1\\a b.txt" 0x6 NT_STATUS_OK\n')
    assert prog.items[0].paths == ("/clients/client1/a b.txt",)


def test_shipped_default_and_profile_parse():
    prog = parse_text(DEFAULT_LOADFILE)
    assert "WRITE3" in prog.op_names() and "READ3" in prog.op_names()
    p = rw256k_program(2, 1 << 20)
    names = [o.name for o in p.items]
    assert names.count("READ3") == 8 and names.count("WRITE3") == 8 and names.count("COMMIT3") == 2
    assert all(o.params[1].value == 262144 for o in p.items if o.name in ("READ3", "WRITE3"))


# ---- malformed lines ---------------------------------------------------

@pytest.mark.parametrize("text,lineno,fragment", [
    ('GETATTR3 "/a"\n', 1, "badly formed status"),
    ('# c\nFROB "/a" *\n', 2, "unknown operation"),
    ('\n\nREAD3 "/a" 0 *\n', 3, "expected 3 field(s) before the status, got 2"),
    ('READ3 "/a" zz 10 *\n', 1, "expected a number"),
    ('READ3 "/a" */0 10 *\n', 1, "division by zero"),
    ('READ3 "/a" *!3 10 *\n', 1, "bad random expression"),
    ('LOOP 2\nGETATTR3 "/a" *\n', 1, "LOOP without ENDLOOP"),
    ('GETATTR3 "/a" *\nENDLOOP\n', 2, "ENDLOOP without LOOP"),
    ('REPEAT 3\n', 1, "REPEAT at end of file"),
    ('REPEAT x\nGETATTR3 "/a" *\n', 1, "REPEAT count"),
    ('REPEAT 2\nLOOP 2\nENDLOOP\n', 2, "must be followed by an operation"),
    ('RANDOMSTRING 1 "/a[]"\n', 1, "empty [] set"),
    ('RANDOMSTRING 1\n', 1, "RANDOMSTRING takes"),
    ('WRITEPATTERN\n', 1, "WRITEPATTERN takes"),
    ('GETATTR3 foo *\n', 1, "expected a path"),
    ('1.x GETATTR3 "/a" *\n', 1, "bad timestamp"),
    ('GETATTR3 "/a" 0xZZ\n', 1, "status"),
    ('NTCreateX "/a" 0x40 0x2 NT_STATUS_OK\n', 1, "expected 4 field(s) before the status, got 3"),
    ('SLEEP\n', 1, "SLEEP takes"),
    ("", 0, "no operations"),
])
def test_malformed_lines_report_line_numbers(text, lineno, fragment):
    with pytest.raises(LoadfileError) as ei:
        parse_text(text, source="t.load")
    assert ei.value.lineno == lineno
    assert fragment in str(ei.value)
    assert str(ei.value).startswith(f"t.load:{lineno}:")
