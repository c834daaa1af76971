"""``loadgen worker``: the worker side of a distributed run (the master is :mod:`loadgen.distributed.distributed`).

A worker's ``--master`` host is resolved (:func:`resolve_problem`) before any worker process
starts.  Each worker process is one Locust WorkerRunner hosting one :class:`locustuser.NfsUser`
(one loadgen client); it says when it connected, when its client started and how it ended
(:func:`_end_line`); the retry for a master not yet up is bounded (``--connect-timeout``) and its
failure named by one plain TCP connect (refused, timed out, or a port where no master answers).
A master silent for ``--master-timeout`` is lost.  With ``--processes N`` a supervisor starts N
fresh interpreters (:func:`_supervise`).

Threads: each worker process is gevent's (Locust monkey-patches on import); the master's
messages are handled in the runner's greenlet and fill :class:`locustuser.WorkerState`, which
the user greenlet reads.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

__all__ = ["worker_main", "resolve_problem", "CONNECT_TIMEOUT", "MASTER_TIMEOUT"]

# the exit statuses are loadgen run's, so both kinds of run agree
from ..run.runner import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK  # noqa: E402
GROUP_ENV = "NFSBULK_WORKER_GROUP"


def resolve_problem(host: str, port: int) -> str | None:
    """None when `host` resolves (a worker's --master); else why not, in one line."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"cannot resolve host {host!r}: {e.strerror}"
    except UnicodeError:
        return f"{host!r} is not a host name"
    return None


#: how long a worker retries reaching its master (Locust's own bound: 60 tries of 5 s)
CONNECT_TIMEOUT = 300.0
#: how long a worker waits without a heartbeat before the master is lost (Locust's own bound)
MASTER_TIMEOUT = 60.0
_HELLO_EVERY = 5.0      # client_ready is sent again this often while no ack came (as Locust does)
_WAIT_NOTE = 1.0        # no ack after this long: say once that the worker is waiting
_STOP_REASONS = {       # nfsbulk_stop/nfsbulk_done reasons -> the end line's words
    "time": "the master ended the run (time up)",
    "stopped": "the master stopped the run early",
    "locust": "the master stopped the run (Locust stop)",
}


def _one_line(text: str) -> str:
    """A failure message as one line: a traceback's last line (the exception), else the first."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if not lines:
        return "no message"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _end_line(st) -> tuple[int, str]:
    """(exit status, the last line) of a worker process from what its WorkerState saw."""
    if st.refused is not None:
        return EXIT_FAIL, f"refused by the master ({st.refused}); exit {EXIT_FAIL}"
    if st.cid is None:
        who = ""
    elif st.began:
        who = f"client {st.cid} ended: {st.ops} ops measured, "
    else:
        who = f"client {st.cid} ended before the start: "
    if st.failure is not None:
        stage, message = st.failure
        return EXIT_FAIL, f"client {st.cid} ended: failed ({stage}): {_one_line(message)}; exit {EXIT_FAIL}"
    if st.master_lost is not None:
        return EXIT_FAIL, f"{who}master lost ({st.master_lost}); exit {EXIT_FAIL}"
    if st.interrupted is not None:
        return EXIT_INTERRUPTED, f"{who}interrupted ({st.interrupted}); exit {EXIT_INTERRUPTED}"
    if st.orphaned:
        return EXIT_FAIL, f"{who}the supervising `loadgen worker` process is gone; exit {EXIT_FAIL}"
    # the master said quit: the run is over, whatever part this worker had in it
    if st.cid is None:
        return EXIT_OK, f"the master ended the run before assigning a client; exit {EXIT_OK}"
    if not st.began:
        return EXIT_OK, f"{who}the master aborted the run; exit {EXIT_OK}"
    return EXIT_OK, f"{who}{_STOP_REASONS.get(st.end_reason or '', 'the master ended the run')}; exit {EXIT_OK}"


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def worker_main(master: tuple[str, int], processes: int, err=None, connect_timeout: float = CONNECT_TIMEOUT,
                master_timeout: float = MASTER_TIMEOUT) -> int:
    """``loadgen worker``: N worker processes, each one Locust WorkerRunner
    hosting one NfsUser.

    With N > 1 this process starts N fresh interpreters running
    ``loadgen worker --processes 1`` (not a fork: Locust's ``--processes``
    forks after gevent's monkey-patching, and a fresh interpreter per client
    is the same thing on one host as on many), forwards SIGINT/SIGTERM to
    them, says ``loadgen worker: N processes ended, exit S`` and exits with
    the worst status.  A child exits when its parent disappears.

    Each worker process says on `err`, one line each: ``connected to master
    H:P as NODE``; ``client N started: <workload>`` when the master starts
    the clients; and at its end ``client N ended: ...; exit S`` (or why no
    client ran).  Exit status: 0 the master ended the run (this worker's
    client finished, or never ran because the master aborted or quit); 1
    refused (connected after the start), the client failed, the master
    unreachable within `connect_timeout` or lost (no heartbeat for
    `master_timeout`); 130 interrupted.  Usage errors (2) are the CLI's.
    """
    err = err or sys.stderr
    if processes > 1:
        return _supervise(master, processes, err, connect_timeout, master_timeout)
    import gevent
    import locust
    from locust.env import Environment
    from locust.rpc import Message
    from locust.runners import WorkerRunner
    from locust.stats import RequestStats

    from .locustuser import NfsUser, WorkerState

    where = f"{master[0]}:{master[1]}"

    def say(msg):
        # one write: the --processes siblings share the supervisor's stderr, and print()'s two
        # writes (the text, then the newline) would interleave with theirs
        err.write(f"loadgen worker: {msg}\n")
        err.flush()

    parent = os.getppid()
    group = os.environ.get(GROUP_ENV) or f"{socket.gethostname()}:{os.getpid()}"
    st = WorkerState(group, say=say)
    holder: dict = {}                 # the runner, once its constructor has made its zmq client

    class _NoMaster(Exception):
        """No ack from the master: the deadline passed, or the worker was interrupted."""

    class _Worker(WorkerRunner):
        def connect_to_master(self):
            # Locust's own loop, bounded by connect_timeout and interruptible; the hello is sent
            # again every 5 s as Locust does (a master that restarts still gets one)
            holder["runner"] = self
            st.register(self)      # before the hello: the master may answer with nfsbulk_refused at once
            t0 = time.monotonic()
            deadline = t0 + connect_timeout
            next_hello = t0
            noted = False
            while not self.connection_event.is_set():
                now = time.monotonic()
                if st.interrupted is not None or now >= deadline:
                    raise _NoMaster()
                if now >= next_hello:
                    self.retry += 1
                    self.client.send(Message("client_ready", locust.__version__, self.client_id))
                    next_hello = now + _HELLO_EVERY
                if not noted and now - t0 >= _WAIT_NOTE:
                    say(f"waiting for the master at {where} (retrying for up to {connect_timeout:g} s)")
                    noted = True
                self.connection_event.wait(timeout=max(0.01, min(0.25, deadline - now, next_hello - now)))
            self.connected = True
            self.last_heartbeat_timestamp = time.time()   # a master gone before its first heartbeat is lost too
            say(f"connected to master {where} as {self.client_id}")

        def heartbeat_timeout_checker(self):
            # Locust's, with the worker's --master-timeout and the reason kept for the end line
            while True:
                gevent.sleep(min(1.0, master_timeout / 4))
                last = self.last_heartbeat_timestamp
                if last and last < time.time() - master_timeout:
                    st.master_lost = f"no heartbeat from it for {master_timeout:g} s"
                    self.quit()

    def leave(why):
        if why == "orphaned":
            st.orphaned = True
        elif st.interrupted is None:
            st.interrupted = why
        runner = holder.get("runner")
        if runner is None or not runner.connected:
            return                  # the connect loop sees the flag
        try:
            runner.client.send(Message("quit", None, runner.client_id))
        except Exception:
            pass
        runner.greenlet.kill(block=False)

    gevent.signal_handler(signal.SIGTERM, leave, "SIGTERM")
    gevent.signal_handler(signal.SIGINT, leave, "SIGINT")
    env = Environment(user_classes=[NfsUser], events=locust.events)
    env.nfsbulk = st
    try:
        env.stats = RequestStats(use_response_times_cache=False)    # as create_worker_runner does
        runner = _Worker(env, master_host=master[0], master_port=master[1])
        env.runner = runner
    except _NoMaster:
        r = holder.get("runner")
        if r is not None:
            r.greenlet.kill(block=False)
            r.client.close(linger=0)       # the unsent hellos must not hold the exit
        if st.interrupted is not None:
            say(f"interrupted ({st.interrupted}) while waiting for the master at {where}; exit {EXIT_INTERRUPTED}")
            return EXIT_INTERRUPTED
        say(f"cannot connect to master {where} within {connect_timeout:g} s: {_why_unreachable(master)}; "
            f"exit {EXIT_FAIL}")
        return EXIT_FAIL
    except Exception as e:        # RPC errors from zmq
        say(f"cannot connect to master {where}: {type(e).__name__}: {e}; exit {EXIT_FAIL}")
        return EXIT_FAIL

    def watch_parent():
        while os.getppid() == parent:
            gevent.sleep(1.0)
        leave("orphaned")
    if os.environ.get(GROUP_ENV):
        gevent.spawn(watch_parent)
    if st.refused is not None:
        # refused during the hello: Locust's quit handler ran before the runner spawned its
        # heartbeat and report greenlets, so they would live on; end them here
        runner.greenlet.kill(block=True)
    else:
        runner.greenlet.join()
    try:
        runner.client.close(linger=2000)   # bounded: a zmq context with unsent messages blocks exit
    except Exception:
        pass
    code, line = _end_line(st)
    say(line)
    return code


def _why_unreachable(master: tuple[str, int]) -> str:
    """Why HOST:PORT did not answer as a master: one plain TCP connect names the cause."""
    try:
        with socket.create_connection(master, timeout=3.0):
            pass
    except ConnectionRefusedError:
        return f"connection refused (nothing listens on port {master[1]} there; is the master started?)"
    except (socket.timeout, TimeoutError):
        return "timed out (no answer from that address: a firewall, or the wrong address?)"
    except OSError as e:
        return e.strerror or str(e)
    return "the port accepts connections but no loadgen master answered (another service on that port?)"


def _supervise(master, processes, err, connect_timeout, master_timeout) -> int:
    group = f"{socket.gethostname()}:{os.getpid()}"
    env = dict(os.environ, **{GROUP_ENV: group})
    cmd = [sys.executable, "-m", "loadgen", "worker", "--master", f"{master[0]}:{master[1]}", "--processes", "1",
           "--connect-timeout", repr(float(connect_timeout)), "--master-timeout", repr(float(master_timeout))]
    kids = [subprocess.Popen(cmd, env=env) for _ in range(processes)]

    def forward(signum, frame):
        for k in kids:
            if k.poll() is None:
                k.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [k.wait() for k in kids]
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for k in kids:
            if k.poll() is None:
                k.kill()
                k.wait()
    code = max((EXIT_FAIL if c < 0 else c) for c in codes)
    each = "" if len(set(codes)) == 1 and codes[0] >= 0 else " (" + ", ".join(
        str(c) if c >= 0 else f"killed by {_signame(-c)}" for c in codes) + ")"
    print(f"loadgen worker: {processes} processes ended, exit {code}{each}", file=err, flush=True)
    return code
