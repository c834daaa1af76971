"""The one launcher of `python -m rpcsrv` as a subprocess (bench, soak, fuzz and the tests use it).

Owns: the argv, the child process and its stderr (a temporary file, so a chatty server can never
block on a full pipe), the ready handshake, and the stop. Invariants:

* The child runs in its own process group, so a Ctrl-C typed at a terminal (SIGINT to the
  foreground group) reaches only the parent; the parent decides when the server stops, and a
  Ctrl-C during stop() is held until the child has exited (then raised).
* Start-up waits on the server's stdout for its ready line
  ``rpcsrv: serving nfs://HOST/EXPORT?nfsport=P&mountport=P... fast-path=on|off [metrics URL]``
  with a deadline (select on the pipe, never a sleep); a server that exits or stays silent is a
  :class:`ServerError` carrying the tail of its stderr.
* ``stop()`` sends SIGTERM (or the signal given) and waits with a deadline; past it the child is
  killed and :class:`ServerError` says so. A server that is still running when the object is
  garbage or leaves a ``with`` block is stopped.
* Server CPU time comes from /proc/PID/stat (utime + stime, the whole process, all threads).

Single-threaded: one object is used by one thread at a time. Imports nothing of the project.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

__all__ = ["RpcsrvProcess", "ServerError", "free_port", "parse_metrics", "proc_cpu_seconds", "leaked_pages",
           "READY_RE"]

#: the server's first stdout line (rpcsrv/__main__.py)
READY_RE = re.compile(r"rpcsrv: serving (?P<url>nfs://\S+) .*?fast-path=(?P<fast>on|off)"
                      r"(?: metrics (?P<metrics>http://\S+))?")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """rpcsrv did not start, did not stop in time, or could not be read; the message says which."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (for --metrics-port, which has no port-0 form)."""
    s = socket.socket()
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads) from /proc; None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()     # after "pid (comm) "; field 3 (state) is [0]
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def parse_metrics(text: str) -> dict:
    """{(sample name, sorted label items): value} of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def leaked_pages(stderr: str) -> int:
    """The allocator pages the server reported still allocated when it stopped (-1: no report)."""
    m = re.search(r"allocator pages still allocated: (\d+)", stderr)
    return int(m.group(1)) if m else -1


class RpcsrvProcess:
    """`python -m rpcsrv --export EXPORT` on 127.0.0.1:0 (or `listen`), started and ready.

    Attributes once started: ``proc`` (Popen), ``pid``, ``url`` (libnfs URL with both ports),
    ``port`` (NFS), ``mount_port``, ``metrics_url`` (None unless ``metrics=True``), ``fast_path``
    (bool), ``pages_per_request`` and ``max_io`` (the ready line's page-array size and rtmax), ``ready_line``,
    ``export``, ``argv``.
    """

    def __init__(self, export, *, strategy: str | None = None, threads: int = 4, arena_mib: int = 128,
                 listen: str = "127.0.0.1:0", metrics: bool = False, extra=(), python: str = sys.executable,
                 cwd: str | None = None, env: dict | None = None, start_timeout: float = 60.0,
                 fast_path: str | None = None):
        self.export = str(export)
        self.proc = None
        self.url = self.metrics_url = self.ready_line = None
        self._errf = None
        self._result = None
        attempts = 3 if metrics else 1          # a free metrics port can be taken between probe and bind
        for attempt in range(attempts):
            argv = [python, "-m", "rpcsrv", "--export", self.export, "--listen", listen,
                    "--threads", str(threads), "--arena-mib", str(arena_mib),
                    *(["--metrics-port", str(free_port())] if metrics else ["--no-metrics"])]
            if strategy is not None:
                argv += ["--strategy", strategy]
            if fast_path is not None:           # "on" or "off"; the server's default otherwise
                argv += ["--fast-path", fast_path]
            self.argv = argv + [str(a) for a in extra]
            try:
                self._start(cwd, env, start_timeout)
                if fast_path is not None and self.fast_path != (fast_path == "on"):
                    self.stop()
                    raise ServerError("rpcsrv started with fast-path=%s although --fast-path %s was asked: %s"
                                      % ("on" if self.fast_path else "off", fast_path, self.ready_line))
                return
            except ServerError:
                if attempt + 1 < attempts and "cannot serve metrics" in self.stderr():
                    continue
                raise

    # ---------------------------------------------------------------- start
    def _start(self, cwd, env, timeout):
        e = None
        if env:
            e = dict(os.environ)
            e.update(env)
        self._close_errf()
        self._errf = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._errf, cwd=cwd, env=e,
                                         process_group=0)
            self.pid = self.proc.pid
            deadline = time.monotonic() + timeout
            buf = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    why = "no ready line within %g s" % timeout
                    break
                r, _, _ = select.select([self.proc.stdout], [], [], left)
                if not r:
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.proc.wait(30)
                    why = "exited with status %s before its ready line" % self.proc.returncode
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    m = READY_RE.search(line.decode(errors="replace"))
                    if m:
                        self._ready(line.decode(errors="replace"), m)
                        return
        except BaseException:                    # KeyboardInterrupt included: never leave a child behind
            self._kill()
            raise
        self._kill()
        raise ServerError("rpcsrv did not start (%s): %s" % (why, self.stderr()[-1500:].strip()))

    def _ready(self, line, m):
        self.ready_line = line.strip()
        self.url = m.group("url")
        self.port = int(re.search(r"nfsport=(\d+)", self.url).group(1))
        mp = re.search(r"mountport=(\d+)", self.url)
        self.mount_port = int(mp.group(1)) if mp else None
        self.fast_path = m.group("fast") == "on"
        self.metrics_url = m.group("metrics")
        sl = re.search(r"pages/request=(\d+)", line)
        io = re.search(r"rtmax/wtmax=(\d+)", line)
        self.pages_per_request = int(sl.group(1)) if sl else None
        self.max_io = int(io.group(1)) if io else None

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    # ---------------------------------------------------------------- while running
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        if self._errf is None:
            return self._result[1] if self._result else ""
        self._errf.seek(0)
        return self._errf.read().decode(errors="replace")

    def scrape(self, timeout: float = 10.0) -> dict:
        """The server's /metrics, parsed (see :func:`parse_metrics`)."""
        import urllib.request               # here, not at import: `bench --help` and usage errors stay quick
        if not self.metrics_url:
            raise ServerError("rpcsrv was started without metrics")
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=timeout) as r:
                return parse_metrics(r.read().decode())
        except OSError as e:
            raise ServerError("cannot read %s: %s (server %s)" % (
                self.metrics_url, e, "running" if self.running() else "exited")) from None

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds the server has used so far (None once it is gone)."""
        return proc_cpu_seconds(self.pid)

    def rss_kib(self) -> int | None:
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    # ---------------------------------------------------------------- stop
    def stop(self, sig=signal.SIGTERM, timeout: float = 60.0) -> tuple[int, str]:
        """Signal the server, wait for it, return (exit status, its whole stderr). Idempotent."""
        if self._result is not None:
            return self._result
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        interrupted = False
        while True:             # a Ctrl-C while the server shuts down is held until it has exited
            try:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
                break
            except KeyboardInterrupt:
                interrupted = True
            except subprocess.TimeoutExpired:
                self._kill()
                err = self.stderr()
                self._finish(err)
                raise ServerError("rpcsrv did not stop within %g s: %s" % (timeout, err[-1500:].strip())) from None
        err = self.stderr()
        self._finish(err)
        if interrupted:
            raise KeyboardInterrupt
        return self._result

    def _finish(self, err):
        self._result = (self.proc.returncode, err)
        self._close_errf()
        if self.proc.stdout:
            self.proc.stdout.close()

    def _close_errf(self):
        if self._errf is not None:
            self._errf.close()
            self._errf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._result is None:
            self.stop()

    def __del__(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        except Exception:
            pass
