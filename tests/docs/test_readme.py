"""The documentation stands alone: README.md, grafana/README.md and docs/*.md refer to nothing
outside the repository, their links resolve, and README's commands run as written (with short
durations, free ports and a temporary export substituted) on this checkout."""
from __future__ import annotations

import os
import re
import select
import shlex
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

    def __init__(self, tmp_path):
        self.export = tmp_path / "export"
        self.port = self.mport = None
        self.tmp = tmp_path

    def learn(self, ready_line):
        self.port = int(re.search(r"nfsport=(\d+)", ready_line).group(1))
        m = re.search(r"metrics http://127\.0\.0\.1:(\d+)/metrics", ready_line)
        self.mport = int(m.group(1)) if m else None

    def __call__(self, cmd):
        cmd = cmd.replace(".venv/bin/", BIN + "/")
        cmd = cmd.replace("/tmp/nfsbulk-export", str(self.export))
        if cmd.endswith("&"):                           # a server: ports of its own choosing
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
            line = p.stdout.readline()
            if line.startswith("rpcsrv: serving nfs://"):
                return p, line
            assert line, "rpcsrv exited: %s" % p.communicate(timeout=30)[1]
        elif p.poll() is not None:
            break
    p.kill()
    raise AssertionError("no ready line from %s: %s" % (cmd, p.communicate(timeout=30)[1]))


def stop_server(p):
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return err


def run_block(block, short, skip=()):
    """Run a README block in order; `cmd &` servers are started and waited for (ready line),
    `kill %1` stops them. Returns what ran."""
    server, ran = None, []
    try:
        for cmd in commands(block):
            if any(s in cmd for s in skip):
                continue
            cmd = short(cmd)
            if cmd.endswith("&"):
                assert server is None
                server, line = start_server(cmd)
                short.learn(line)
                ran.append(cmd)
                continue
            if cmd == "kill %1":
                stop_server(server)
                server = None
                ran.append(cmd)
                continue
            r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, capture_output=True, text=True,
                               timeout=180)
            assert r.returncode == 0, "%s\nexit %d\n%s\n%s" % (cmd, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
            ran.append(cmd)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.communicate()
    return ran


def test_readme_running_the_parts(tmp_path):
    short = Shortened(tmp_path)
    blocks = [b for b in sh_blocks("README.md") if "mkdir -p /tmp/nfsbulk-export" in b]
    assert len(blocks) == 1
    ran = run_block(blocks[0], short)
    assert any(c.startswith("mkdir") for c in ran) and any("--loadfile seq-write" in c for c in ran)
    assert ran[-1] == "kill %1"
    assert os.listdir(short.export) != []            # the load really wrote there


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
    ran = run_block(block, grafana_short)
    assert len(ran) == 4
