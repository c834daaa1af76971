"""The compiled path's system calls, watched with strace: data safety (a FILE_SYNC or DATA_SYNC
WRITE and a COMMIT are answered only after an fsync/fdatasync of that very file) and zero copy (a
WRITE's data goes to the file with pwritev from the pages it was received into, a READ's comes
into the reply pages with preadv and leaves in the one sendmsg of the reply: no read/write of the
file through a buffer). The Python path's calls are checked in tests/server/test_durability.py."""
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from nfsbulk_testlib import ROOT, URL_RE
from rpcclient import Nfs3


def opaque(b):
    return len(b).to_bytes(4, "big") + b + b"\0" * ((-len(b)) & 3)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the fast path serves kernel handles (root)"),
              pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")]

UNSTABLE, DATA_SYNC, FILE_SYNC = 0, 1, 2
LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)$")


def test_sync_and_zero_copy_in_the_syscalls(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    trace = tmp_path / "trace"
    cmd = ["strace", "-f", "-y", "-s", "0", "-o", str(trace),
           "-e", "trace=fsync,fdatasync,pwritev,preadv,pwritev2,preadv2,sendmsg,write,pwrite64,read,pread64",
           sys.executable, "-m", "rpcsrv", "--export", str(export), "--listen", "127.0.0.1:0", "--no-metrics",
           "--threads", "1", "--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        line = proc.stdout.readline().decode()
        m = URL_RE.search(line)
        assert m and "fast-path=on" in line, line + proc.stderr.read(2000).decode(errors="replace")
        port = int(re.search(r"nfsport=(\d+)", m.group(1)).group(1))
        c = Nfs3(port)
        try:
            root = c.mnt(str(export))
            st, fh, _, _ = c.create(root, b"f")
            assert st == 0
            data = os.urandom(200000)
            for stable in (UNSTABLE, DATA_SYNC, FILE_SYNC):
                st, n, committed, _ = c.write(fh, 0, data, stable)
                assert (st, n, committed) == (0, len(data), stable)
            assert c.commit(fh)[0] == 0
            u = c.call(6, opaque(fh) + (0).to_bytes(8, "big") + (150000).to_bytes(4, "big"))    # READ
            assert u.unpack_uint() == 0
        finally:
            c.close()
    finally:
        # SIGTERM to strace would make it detach and leave rpcsrv running: stop the traced server
        children = open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)).read().split()
        for pid in children:
            os.kill(int(pid), signal.SIGTERM)
        if not children:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    calls = []
    for ln in trace.read_text().splitlines():
        mm = LINE.match(ln)
        if mm:
            calls.append((mm.group(1), mm.group(2).rstrip("2"), mm.group(3)))
    f = str(export / "f")
    on_f = [(tid, name) for tid, name, args in calls if f + ">" in args.split(",")[0]]
    # the file is written and read with the vectored calls only (from and into the page array)
    assert [n for _, n in on_f if n in ("write", "pwrite64", "read", "pread64")] == []
    assert sum(1 for _, n in on_f if n == "pwritev") == 3 and sum(1 for _, n in on_f if n == "preadv") == 1
    # in the worker's own order: UNSTABLE: no sync; DATA_SYNC: fdatasync; FILE_SYNC and COMMIT: fsync;
    # each before the sendmsg of its reply
    tid = on_f[0][0]
    kinds = [name for t, name, args in calls
             if t == tid and (name == "sendmsg" or f + ">" in args.split(",")[0])]
    kinds = kinds[kinds.index("pwritev"):]
    assert kinds == ["pwritev", "sendmsg",                        # UNSTABLE
                     "pwritev", "fdatasync", "sendmsg",           # DATA_SYNC
                     "pwritev", "fsync", "sendmsg",               # FILE_SYNC
                     "fsync", "sendmsg",                          # COMMIT
                     "preadv", "sendmsg"], kinds                  # READ
