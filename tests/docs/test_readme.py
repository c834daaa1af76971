"""The documentation stands alone: README.md, grafana/README.md and docs/*.md refer to nothing
outside the repository, their links resolve, and README's commands run as written (with short
durations, free ports and a temporary export substituted) on this checkout."""
from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md", "grafana/README.md"] + ["docs/" + n for n in sorted(os.listdir(os.path.join(ROOT, "docs")))
                                             if n.endswith(".md")]
OUTSIDE = ("../", "/work", "shared/")
BIN = os.path.dirname(sys.executable)


def text(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def sh_blocks(rel):
    return re.findall(r"```sh\n(.*?)```", text(rel), re.S)


def commands(block):
    """The block's commands: comments dropped, continuation lines joined."""
    out, cur = [], ""
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        out.append((cur + line).strip())
        cur = ""
    return out


@pytest.mark.parametrize("rel", DOCS)
def test_refers_only_to_the_repository(rel):
    body = text(rel)
    for needle in OUTSIDE:
        assert needle not in body, "%s mentions %r" % (rel, needle)
    for target in re.findall(r"\]\(([^)#]+)\)", body):          # markdown links
        if "://" in target:
            continue
        path = os.path.normpath(os.path.join(ROOT, os.path.dirname(rel), target))
        assert path.startswith(ROOT + os.sep) and os.path.exists(path), "%s links to %s" % (rel, target)


@pytest.mark.parametrize("rel", ["README.md", "grafana/README.md"])
def test_commands_have_no_placeholders(rel):
    for block in sh_blocks(rel):
        for cmd in commands(block):
            assert "..." not in cmd and "URL" not in cmd.split() and " P&" not in cmd, cmd


def test_repository_files_named_in_readme_exist():
    body = text("README.md")
    for path in re.findall(r"`((?:alloc|rpcsrv|loadgen|grafana|docs|tests)/[\w./-]*)`", body):
        assert os.path.exists(os.path.join(ROOT, path)), path
    assert os.path.exists(os.path.join(ROOT, "LICENSE"))
    assert "GNU GENERAL PUBLIC LICENSE" in text("LICENSE") and "Version 2" in text("LICENSE")


class Shortened:
    """README's commands as they would run here: .venv/bin from this interpreter, the export in a
    temporary directory, short durations, and ports the processes pick themselves. A server's
    README port (20049, metrics 9410) becomes 0; once its ready line names the ports it got,
    `learn()` puts them into the commands that follow. loadgen's metrics port (default 9411)
    becomes 0 as well."""

    def __init__(self, tmp_path, keep_clients=False, paths=None):
        self.export = tmp_path / "export"
        self.port = self.mport = None
        self.tmp = tmp_path
        self.outputs = []            # (command, stdout, stderr) of each foreground command that ran
        self.keep_clients = keep_clients    # True: --clients N as written (the capture walkthrough's layout)
        self.paths = paths or {}            # README path -> this test's

    def learn(self, ready_line):
        self.port = int(re.search(r"nfsport=(\d+)", ready_line).group(1))
        m = re.search(r"metrics http://127\.0\.0\.1:(\d+)/metrics", ready_line)
        self.mport = int(m.group(1)) if m else None

    def __call__(self, cmd):
        cmd = cmd.replace(".venv/bin/", BIN + "/")
        cmd = cmd.replace("/tmp/nfsbulk-export", str(self.export))
        for readme_path, path in self.paths.items():
            cmd = cmd.replace(readme_path, str(path))
        if cmd.startswith("tcpdump "):                   # the port of the server it captures
            cmd = cmd.replace("port 20049", "port %d" % self.port)
        elif cmd.endswith("&"):                         # a server: ports of its own choosing
            cmd = cmd.replace("127.0.0.1:20049", "127.0.0.1:0").replace("--metrics-port 9410", "--metrics-port 0")
        else:
            for readme_port, port in (("20049", self.port), ("9410", self.mport)):
                if readme_port in cmd:
                    assert port is not None, "%s: no server has said its port yet" % cmd
                    cmd = cmd.replace(readme_port, str(port))
        if re.search(r"loadgen run \S+", cmd) and "--metrics-port" not in cmd and "--master" not in cmd:
            cmd += " --metrics-port 0"
        if " fuzz " in cmd:                             # fuzz has no warmup
            cmd = re.sub(r"--time \d+", "--time 2", cmd)
        else:
            cmd = re.sub(r"--time \d+", "--time 1 --warmup 0", cmd)
        if not self.keep_clients:
            cmd = re.sub(r"--clients \d+", "--clients 1", cmd)
        if "--profile rw256k" in cmd and " run " in cmd:
            cmd += " --rw-files 1 --rw-file-size 1M"
        for out in ("run.json", "alloc.json"):
            cmd = cmd.replace(" " + out, " " + str(self.tmp / out))
        return cmd


def start_server(cmd, timeout=90):
    p = subprocess.Popen(shlex.split(cmd.rstrip("& ")), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=ROOT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 1.0)
        if r:
            line = p.stdout.readline()       # README: the ready line is the first on stdout
            assert line.startswith("rpcsrv: serving nfs://"), "first stdout line %r: %s" % (
                line, "" if line else p.communicate(timeout=30)[1])
            return p, line
        elif p.poll() is not None:
            break
    p.kill()
    raise AssertionError("no ready line from %s: %s" % (cmd, p.communicate(timeout=30)[1]))


def stop_server(p):
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return err


class Tcpdump:
    """README's `tcpdump ... -w FILE port N &`, started as written; ready at its "listening on" line.
    `kill %N` of it: a sentinel datagram to the captured port, a wait (with a deadline) until tcpdump
    has written it to FILE (README's -U: each packet written as tcpdump gets it), then SIGTERM."""

    def __init__(self, cmd, port):
        argv = shlex.split(cmd.rstrip("& "))
        self.path = argv[argv.index("-w") + 1]
        self.port = port
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline, line = time.monotonic() + 20, ""
        while "listening on" not in line:
            assert time.monotonic() < deadline and self.p.poll() is None, "tcpdump did not start: " + line
            if select.select([self.p.stderr], [], [], 1.0)[0]:
                line = self.p.stderr.readline()

    def stop(self):
        import socket
        mark = os.urandom(16).hex().encode()
        deadline = time.monotonic() + 30
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while True:
                s.sendto(mark, ("127.0.0.1", self.port))
                with open(self.path, "rb") as f:
                    if mark in f.read():
                        break
                assert time.monotonic() < deadline, "tcpdump never wrote the sentinel datagram"
                select.select([], [], [], 0.2)          # the next datagram; the file is the event
        self.p.send_signal(signal.SIGTERM)
        _, err = self.p.communicate(timeout=30)
        assert self.p.returncode == 0, err
        return err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate()


def run_block(block, short, skip=()):
    """Run a README block in order, as bash would: `cmd &` starts a job (an rpcsrv, waited for until
    its ready line; tcpdump, until it listens), `kill %N` stops job N (bash numbers a new job one
    above the highest still running). Every other command must exit 0. Returns what ran."""
    jobs, ran = {}, []
    try:
        for cmd in commands(block):
            if any(s in cmd for s in skip):
                continue
            cmd = short(cmd)
            if cmd.endswith("&"):
                n = max(jobs, default=0) + 1
                if cmd.startswith("tcpdump "):
                    assert short.port is not None, "tcpdump before a server"
                    jobs[n] = ("tcpdump", Tcpdump(cmd, short.port))
                else:
                    proc, line = start_server(cmd)
                    short.learn(line)
                    jobs[n] = ("server", proc)
                ran.append(cmd)
                continue
            m = re.fullmatch(r"kill %(\d+)", cmd)
            if m:
                kind, job = jobs.pop(int(m.group(1)))
                stop_server(job) if kind == "server" else job.stop()
                ran.append(cmd)
                continue
            r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, capture_output=True, text=True,
                               timeout=180)
            assert r.returncode == 0, "%s\nexit %d\n%s\n%s" % (cmd, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
            ran.append(cmd)
            short.outputs.append((cmd, r.stdout, r.stderr))
    finally:
        for kind, job in jobs.values():
            if kind == "tcpdump":
                job.kill()
            elif job.poll() is None:
                job.kill()
                job.communicate()
    return ran


def test_readme_running_the_parts(tmp_path):
    short = Shortened(tmp_path)
    blocks = [b for b in sh_blocks("README.md") if "mkdir -p /tmp/nfsbulk-export" in b]
    assert len(blocks) == 1
    ran = run_block(blocks[0], short)
    assert any(c.startswith("mkdir") for c in ran) and any("--loadfile seq-write" in c for c in ran)
    assert ran[-1] == "kill %1"
    assert os.listdir(short.export) != []            # the load really wrote there
    # the run table's columns, as README lists them, are the header loadgen run printed
    body = text("README.md")
    para = body[body.index("at the end, a table"):body.index("`loadgen run` exits 0 only when")]
    listed = re.findall(r"`([^`]+)`", para[:para.index("then a `Throughput`")])
    run_out = [o for c, o, _ in short.outputs if " run " in c]
    assert run_out
    for out in run_out:
        (header,) = [ln for ln in out.splitlines() if ln.strip().startswith("Operation ")]
        assert re.findall(r"[A-Za-z][\w.]*(?: ms)?", header) == listed, (header, listed)
        assert re.search(r"^Throughput .* MB/sec .* ops/sec .* clients ", out, re.M)
        assert re.search(r"^Operations \d+", out, re.M)


def test_readme_standalone_commands(tmp_path):
    """The block of commands that start their own servers: the quick ones run (shortened); the
    long benchmarks are checked against their parsers."""
    short = Shortened(tmp_path)
    (blocks,) = [b for b in sh_blocks("README.md") if "loadgen bench" in b and "alloc.bench" in b]
    os.makedirs(short.export)
    # the benchmarks are long, and compare reads their outputs: checked against the parsers
    slow = ("loadgen bench", "loadgen soak", "loadgen compare", "alloc.bench", "alloc.poolbench")
    ran = run_block(blocks, short, skip=slow)
    assert any("--udp" in c for c in ran) and any("loadgen fuzz" in c for c in ran)
    from loadgen.__main__ import build_parser
    for cmd in commands(blocks):
        if any(s in cmd for s in slow):
            argv = shlex.split(cmd)
            if ">" in argv:                             # a shell redirection is not the command's
                argv = argv[:argv.index(">")]
            if argv[0].endswith("/loadgen"):
                build_parser().parse_args(argv[1:])     # SystemExit(2) on an unknown flag
            else:
                mod = argv[argv.index("-m") + 1]
                r = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True,
                                   cwd=ROOT, timeout=60)
                assert r.returncode == 0
                for flag in (a for a in argv if a.startswith("--")):
                    assert flag in r.stdout, (mod, flag)


def test_grafana_quick_look(tmp_path):
    short = Shortened(tmp_path)
    (block,) = [b for b in sh_blocks("grafana/README.md") if "mkdir -p /tmp/nfsbulk-export" in b]
    # the server's default metrics port is 9410 (loadgen's 9411 is replaced by Shortened)
    orig = short.__call__

    def grafana_short(cmd):
        cmd = orig(cmd)
        if "-m rpcsrv" in cmd:
            cmd = cmd.rstrip("& ") + " --metrics-port 0 &"
        return cmd
    grafana_short.learn = short.learn
    grafana_short.outputs = short.outputs
    ran = run_block(block, grafana_short)
    assert len(ran) == 4


def test_readme_make_commands_are_the_makefiles():
    """The two commands: both targets exist and start with `make setup`'s steps (a dry run)."""
    (block,) = [b for b in sh_blocks("README.md") if b.startswith("make bench")]
    assert [c.split()[:2] for c in commands(block)] == [["make", "bench"], ["make", "test"]]
    for target in ("bench", "test"):
        r = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "build_ext --inplace" in r.stdout and ("pytest" in r.stdout if target == "test"
                                                      else "loadgen bench" in r.stdout), r.stdout


@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("tcpdump", "tshark")),
                    reason="the capture walkthrough needs root, tcpdump and tshark (make setup installs them)")
def test_readme_capture_walkthrough(tmp_path):
    """README's capture block as written (a 1 s load of 2 clients, a 2 s replay of 4): the capture
    converts, the replay of one pass is clean with --strict, four clients replay it at once (each
    captured client in its own /clients/clientN/c<k>), and nothing escapes as a traceback."""
    short = Shortened(tmp_path, keep_clients=True,
                      paths={"/tmp/nfsbulk-capture": tmp_path / "capture", "/tmp/nfs.pcap": tmp_path / "nfs.pcap",
                             "/tmp/my.load": tmp_path / "my.load"})
    (block,) = [b for b in sh_blocks("README.md") if "capture-to-loadfile" in b]
    ran = run_block(block, short)
    assert [c.split()[0].rsplit("/", 1)[-1] for c in ran] == [
        "mkdir", "rpcsrv", "tcpdump", "loadgen", "kill", "loadgen", "loadgen", "loadgen", "kill"]
    outs = {c: (o, e) for c, o, e in short.outputs}
    (convert,) = [c for c in outs if "capture-to-loadfile" in c]
    summary = outs[convert][1]
    assert "in /clients/client1/c" in summary and "dropped packets" not in summary, summary
    body = (tmp_path / "my.load").read_text()
    assert 'Deltree "/clients/client1"' in body and "/clients/client1/c" in body
    (once,) = [c for c in outs if "--run-once --strict" in c]
    (four,) = [c for c in outs if "--clients 4" in c]
    for c in (once, four):
        assert "Traceback" not in outs[c][0] + outs[c][1]
    # four replaying clients each made their own tree
    trees = sorted(os.listdir(tmp_path / "capture" / "clients"))
    assert {"client0", "client1", "client2", "client3"} <= set(trees), trees


def test_readme_several_machines(tmp_path):
    """README's master and worker commands, on this host: the URL names a server of ours, the
    master binds 127.0.0.1 on a free port (announced on its first line), 2 workers instead of
    8, a shipped loadfile for my.load; the master prints the table and writes run.json with one
    row per worker, and every process exits 0."""
    (block,) = [b for b in sh_blocks("README.md") if "--master" in b and "loadgen worker" in b]
    master_cmd, worker_cmd = commands(block)
    export = tmp_path / "export"
    export.mkdir()
    srv, line = start_server(BIN + "/rpcsrv --export %s --listen 127.0.0.1:0 --no-metrics &" % export)
    try:
        url = re.search(r"(nfs://\S+)", line).group(1)
        cmd = master_cmd.replace(".venv/bin/", BIN + "/")
        cmd = re.sub(r"'nfs://[^']*'", "'%s'" % url, cmd)
        cmd = cmd.replace("0.0.0.0:5557", "127.0.0.1:0").replace("--expect-workers 8", "--expect-workers 2")
        cmd = cmd.replace("0.0.0.0:8089", "127.0.0.1:0").replace("my.load", "metadata")
        cmd = re.sub(r"--warmup \d+ --time \d+", "--warmup 0 --time 2", cmd)
        cmd = cmd.replace(" run.json", " " + str(tmp_path / "run.json")) + " --metrics-port 0"
        master = subprocess.Popen(shlex.split(cmd), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        try:
            first = master.stdout.readline()
            m = re.match(r"loadgen: master listening on 127\.0\.0\.1:(\d+), waiting for 2 worker", first)
            assert m, first + master.stderr.read()
            wcmd = worker_cmd.replace(".venv/bin/", BIN + "/").replace("10.0.0.5:5557", "127.0.0.1:" + m.group(1))
            wcmd = wcmd.replace("--processes 4", "--processes 2")
            worker = subprocess.run(shlex.split(wcmd), cwd=ROOT, capture_output=True, text=True, timeout=180)
            out, err = master.communicate(timeout=120)
        finally:
            if master.poll() is None:
                master.kill()
                master.communicate()
        assert worker.returncode == 0, worker.stderr
        # README: each worker process says when it connected, started and ended; the supervisor once
        said = worker.stderr.splitlines()
        for pattern in (r"loadgen worker: connected to master 127\.0\.0\.1:\d+ as \S+$",
                        r"loadgen worker: client \d started: workload .*, warmup 0 s, run 2 s, server nfs://",
                        r"loadgen worker: client \d ended: \d+ ops measured, .*; exit 0$"):
            assert sum(1 for ln in said if re.match(pattern, ln)) == 2, (pattern, said)
        assert said[-1] == "loadgen worker: 2 processes ended, exit 0", said
        assert master.returncode == 0, out + err
        assert "web UI http://127.0.0.1:" in first
        doc = json.load(open(tmp_path / "run.json"))
        assert len(doc["workers"]) == 2 and doc["ops_total"] > 0 and doc["clients"] == 2
        assert re.search(r"^Throughput .* 2 clients ", out, re.M), out
    finally:
        stop_server(srv)


def test_readme_ganesha_comparison_parses():
    """The ganesha block needs ganesha running (docs/ganesha.md): checked against bench's parser here;
    tests/bench runs a peer for real."""
    blocks = [b for b in sh_blocks("README.md") if "--peer" in b and "ganesha" in b]
    assert blocks
    from loadgen.__main__ import build_parser
    for cmd in (c for b in blocks for c in commands(b)):
        argv = shlex.split(cmd.replace("$(cat ganesha.pid)", "1"))
        build_parser().parse_args(argv[1:])


#: which test runs (or, for what needs another machine or ganesha, parses) each of README's sh
#: blocks: a block no entry claims fails test_every_readme_block_is_claimed
CLAIMS = {
    "test_readme_make_commands_are_the_makefiles": lambda b: b.startswith("make bench"),
    "test_readme_running_the_parts": lambda b: "mkdir -p /tmp/nfsbulk-export" in b,
    "test_readme_standalone_commands": lambda b: "loadgen bench" in b and "alloc.bench" in b,
    "test_readme_capture_walkthrough": lambda b: "capture-to-loadfile" in b,
    "test_readme_several_machines": lambda b: "--master" in b and "loadgen worker" in b,
    "test_readme_ganesha_comparison_parses": lambda b: "--peer" in b and "ganesha" in b,
}


def test_every_readme_block_is_claimed():
    for block in sh_blocks("README.md"):
        owners = [name for name, claims in CLAIMS.items() if claims(block)]
        assert len(owners) == 1, (owners, block[:200])
        assert owners[0] in globals()


def test_readme_bench_comparison_runs(tmp_path):
    """The first comparison of README's block, shortened (2 rounds of 1 s, two strategies, one
    client, 2,000 client.txt lines): the table, the verdict lines, the JSON and the PNG it
    promises; then `loadgen compare` of that JSON with itself (README: two runs side by side)."""
    (block,) = [b for b in sh_blocks("README.md") if CLAIMS["test_readme_standalone_commands"](b)]
    cmd = next(c for c in commands(block) if c.startswith(".venv/bin/loadgen bench --profile rw256k,dbench"))
    cmd = cmd.replace(".venv/bin/", BIN + "/").replace("--rounds 3", "--rounds 2")
    cmd = cmd.replace(" bench.json", " %s/bench.json" % tmp_path).replace(" bench.png", " %s/bench.png" % tmp_path)
    cmd += " --time 1 --warmup 0 --strategies single,array --clients 1 --dbench-lines 2000"
    r = subprocess.run(shlex.split(cmd), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for prof in ("rw256k", "dbench"):
        assert re.search(r"^verdict %s: array vs single: ops/s x[\d.]+ \[" % prof, r.stdout, re.M), r.stdout[-3000:]
    assert "svc_alloc_arg us/call" in r.stdout and "server CPU us/op" in r.stdout
    doc = json.load(open(tmp_path / "bench.json"))
    assert set(doc["profiles"]) == {"rw256k", "dbench"} and set(doc["strategies"]) == {"single", "array"}
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    c = subprocess.run([BIN + "/loadgen", "compare", str(tmp_path / "bench.json"), str(tmp_path / "bench.json")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr
    assert "array" in c.stdout and "x1.000" in c.stdout, c.stdout
