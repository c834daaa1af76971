"""RPC over TCP: the listener, its epoll set, accept (and its backoff), and the sweep.

This package (xprt) is the only one that touches sockets. It knows nothing of
RPC beyond record marking: the server's worker loop hands a received record
to svc.Svc.process and gives the reply back to send_reply(). One connection
(record reception into pages, parking a partial record, send_reply,
TcpPayloadIO) is rpcsrv/xprt/tcpconn.py; this module owns the table of them.

TcpListener owns the listening socket, the epoll set and the table of open
connections: accept (applying --allow and --max-connections), EPOLLONESHOT
re-arming, closing, the sweep of idle connections and of records that take
too long, and the budget of pages parked in partial records. Its methods are
thread-safe (one lock for the table and the budget; epoll calls are).

Each Connection is served by one worker at a time (EPOLLONESHOT: the poller
hands it out, rearm() puts it back when that worker is done); the listener
only closes it, or dooms it from the sweep (tcpconn.py's doc).

accept() errors go through AcceptBackoff: when accept runs out of a resource
(EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener is disarmed for an interval
that doubles from BACKOFF_FIRST to BACKOFF_MAX while the errors go on (the
waiting connections stay in the kernel's queue), one log line per
BACKOFF_LOG_EVERY seconds says how many failed, and every failure is counted
(nfsbulk_rpc_accept_errors_total{errno}). Re-arming at once would spin: the
queue stays readable while no descriptor is free.

Connection abuse (a client must not deny service to the others):
- a record that cannot be parked (the budget is spent) waits at most
  tcpconn.PARK_WAIT for its rest, then the connection is closed
  (parking_full): a worker is never held for --record-timeout by one
  connection; and the sweep after such a shortage closes parked records
  idle PARK_EVICT_IDLE or more, oldest first (parking_evicted), so the
  budget goes to senders that send;
- the sweep closes a record that stopped: nothing received for
  --record-stall (record_stalled), or less than --min-record-rate bytes per
  second on average once it is SLOW_GRACE old (slow_sender);
- at --max-connections a newcomer is let in and the least recently active
  connection not being served is closed instead (evicted), one with no record
  in progress first, as knfsd's svc_check_conn_limits does; only when every
  connection is being served is the newcomer refused.

A client that does not read its replies for `send_timeout` seconds is
dropped (tcpconn.send_reply). Errors here are the peer's: they end the
connection, never a worker.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import socket
import threading
import time

from .tcpconn import Connection

log = logging.getLogger("rpcsrv")

_ARM = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT


def listen(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket (IPv4 or IPv6 by the host's form), SO_REUSEADDR set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    s.setblocking(False)
    return s


def bound_address(sock: socket.socket) -> tuple[str, int]:
    """(host, port) a socket is bound to: the port the kernel chose for a listen on port 0."""
    return sock.getsockname()[:2]


#: after a parking shortage, the sweep closes parked records idle at least this long
PARK_EVICT_IDLE = 1.0
#: the average-rate rule (--min-record-rate) applies to records at least this old
SLOW_GRACE = 5.0

#: accept() errors meaning "out of a resource": the listener rests (AcceptBackoff)
ACCEPT_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: the first rest after such an error, and the longest (the interval doubles while errors go on)
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1.0
#: at most one log line about accept errors per this many seconds
BACKOFF_LOG_EVERY = 10.0


class AcceptBackoff:
    """When the listener rests after accept() failed (see the module doc), and the failures'
    accounting: on_error(label) per failure (label: the errno's name, lower case, e.g. "emfile").
    Used by the one thread that accepts at a time (the poller, or the fast path's worker that
    holds the one-shot listener)."""

    def __init__(self, on_error=None, clock=time.monotonic, what: str = ""):
        self.on_error = on_error or (lambda label: None)
        self.what = what            # the log line's prefix, e.g. "metrics: " (the RPC listener: "")
        self.clock = clock
        self.delay = 0.0            # the current rest; 0 after an accept that worked
        self.resume_at = 0.0        # the listener is disarmed until then
        self._since_log = 0
        self._last_log = float("-inf")

    def failed(self, e: OSError) -> None:
        label = errno.errorcode.get(e.errno, "error").lower()
        self.on_error(label)
        now = self.clock()
        if e.errno in ACCEPT_RESOURCE_ERRNOS:
            self.delay = min(BACKOFF_MAX, self.delay * 2 if self.delay else BACKOFF_FIRST)
            self.resume_at = now + self.delay
        self._since_log += 1
        if now - self._last_log >= BACKOFF_LOG_EVERY:
            log.warning("%saccept failed %d time(s) since the last report (last: %s)%s", self.what, self._since_log,
                        os.strerror(e.errno) if e.errno else e,
                        "; the listener rests %.2f s at a time until a descriptor is free" % self.delay
                        if e.errno in ACCEPT_RESOURCE_ERRNOS else "")
            self._since_log = 0
            self._last_log = now

    def accepted(self) -> None:
        self.delay = 0.0

    def resting(self, now: float | None = None) -> bool:
        """Whether the listener must stay disarmed now."""
        return (self.clock() if now is None else now) < self.resume_at


def accept_ready(listener: socket.socket, allow, max_connections: int, count, refused, backoff=None,
                 evict=None):
    """Yield (sock, peer) for each connection waiting on the non-blocking `listener` until none is left.

    A peer outside `allow` (networks; empty: everyone) or beyond `max_connections` (count() is the
    number open, read after the caller has taken the previous one) is closed at once and reported
    as refused("not_allowed" | "too_many_connections"). An accept error other than "none left"
    ends the round and goes to `backoff` (AcceptBackoff: counted, logged at most once per
    interval, and for a lack of resources a rest the caller honours), or is logged without one.
    """
    while True:
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if backoff is not None:
                backoff.failed(e)
            else:
                log.warning("accept failed: %s", e)
            return
        if backoff is not None:
            backoff.accepted()
        if allow and not any(ipaddress.ip_address(peer[0].split("%")[0]) in net for net in allow):
            reason = "not_allowed"
        elif count() >= max_connections and not (evict is not None and evict()):
            reason = "too_many_connections"
        else:
            yield sock, peer
            continue
        refused(reason)
        sock.close()


def eviction_victim(conns, now: float):
    """At the connection limit: the connection to end for a newcomer, or None. Not one being
    served; the least recently active of those with no record in progress, else of the rest."""
    idle = [c for c in conns if not c.busy and not c.closed]
    if not idle:
        return None
    quiet = [c for c in idle if not c.record_started]
    return min(quiet or idle, key=lambda c: c.last_active)


def stalled_reason(c, now: float, record_stall: float, min_rate: float):
    """Why the sweep ends connection `c`'s record in progress (record_stalled, slow_sender), or None.
    `c` has record_started, last_active (monotonic) and record_len (body bytes received)."""
    if not c.record_started:
        return None
    if record_stall > 0 and now - c.last_active > record_stall and now - c.record_started > record_stall:
        return "record_stalled"
    age = now - c.record_started
    if min_rate > 0 and age >= SLOW_GRACE and c.record_len < min_rate * age:
        return "slow_sender"
    return None


def close_connections(lock: threading.Lock, conns: dict) -> int:
    """Empty the table `conns` under `lock` and close every connection it held; returns how many."""
    with lock:
        victims = list(conns.values())
        conns.clear()
    for c in victims:
        c.close()
    return len(victims)


class TcpListener:
    """The listening socket, the epoll set and the open connections (see the module doc).

    on_close(reason) accounts for a connection that ends (or is refused at accept) with the
    reason it was given (see svc.metrics.ServerMetrics.closed: a client's ordinary exit, "eof"
    or "reset" between records, is a disconnect; a bad record is an error); on_connections(delta)
    follows the number of open connections (metrics, both from the server).
    """

    def __init__(self, host: str, port: int, *, max_record: int, allocator, allow=(),
                 max_connections: int = 1024, partial_budget: int = 0, on_close=None,
                 on_connections=None, on_accept_error=None):
        self.sock = listen(host, port)
        self.host, self.port = bound_address(self.sock)
        self.max_record = max_record
        self.allocator = allocator
        self.allow = allow
        self.max_connections = max_connections
        self.partial_budget = partial_budget
        self._on_close = on_close or (lambda reason: None)
        self._on_connections = on_connections or (lambda delta: None)
        self._conns = {}
        self._lock = threading.Lock()
        self._partial_pages = 0                 # pages parked in connections (under _lock)
        self._park_short = False                # a record could not be parked since the last sweep
        self.epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.epoll.register(self.sock.fileno(), select.EPOLLIN)
        self.epoll.register(self._wake_r, select.EPOLLIN)
        self.backoff = AcceptBackoff(on_accept_error)
        self._listener_armed = True

    # -- the poller's side
    def poll(self, timeout: float):
        """Wait for events; accept new connections; return the connections with data ready,
        taken out of the epoll set until rearm(). Raises OSError when the set is closed."""
        if not self._listener_armed:                # resting after accept() ran out of descriptors
            if self.backoff.resting():
                timeout = min(timeout, max(0.0, self.backoff.resume_at - time.monotonic()))
            else:
                try:
                    self.epoll.modify(self.sock.fileno(), select.EPOLLIN)
                    self._listener_armed = True
                except (OSError, ValueError):
                    pass
        try:
            events = self.epoll.poll(timeout)
        except InterruptedError:
            return []
        ready = []
        lfd = self.sock.fileno()
        for fd, ev in events:
            if fd == lfd:
                self._accept()
            elif fd == self._wake_r:
                try:
                    os.read(self._wake_r, 64)
                except BlockingIOError:
                    pass
            else:
                with self._lock:
                    conn = self._conns.get(fd)
                if conn is not None:
                    conn.busy = True
                    ready.append(conn)
        return ready

    def wake(self) -> None:
        """Make a poll() in progress return at once."""
        os.write(self._wake_w, b"x")

    def _evict(self) -> bool:
        """At the limit: close the least recently active connection not being served (poller
        thread, as the sweep)."""
        with self._lock:
            victim = eviction_victim(list(self._conns.values()), time.monotonic())
            if victim is not None:
                victim.busy = True              # ours now: no worker gets it
        if victim is None:
            return False
        victim.error_reason = "evicted"
        self.close(victim)
        return True

    def _accept(self) -> None:
        for sock, peer in accept_ready(self.sock, self.allow, self.max_connections, lambda: len(self._conns),
                                       self._on_close, self.backoff, self._evict):
            conn = Connection(sock, peer, self.max_record, self.allocator)
            with self._lock:
                self._conns[conn.fd] = conn
            self._on_connections(1)
            self.epoll.register(conn.fd, _ARM)
        if self.backoff.resting():
            try:
                self.epoll.modify(self.sock.fileno(), 0)     # disarmed: poll() re-arms it when the rest ends
                self._listener_armed = False
            except (OSError, ValueError):
                pass

    def sweep(self, now: float, idle_timeout: float, record_timeout: float, record_stall: float = 0.0,
              min_rate: float = 0.0) -> None:
        """Close connections idle too long, with a record that began too long ago, stopped or
        crawls (stalled_reason), and after a parking shortage parked records idle PARK_EVICT_IDLE."""
        with self._lock:
            short, self._park_short = self._park_short, False
            victims = []
            for c in self._conns.values():
                if c.busy:
                    continue
                if c.record_started and now - c.record_started > record_timeout:
                    why = "record_timeout"
                elif now - c.last_active > idle_timeout:
                    why = "idle_timeout"
                else:
                    why = stalled_reason(c, now, record_stall, min_rate)
                    if why is None and short and c.saved_slots and now - c.last_active >= PARK_EVICT_IDLE:
                        why = "parking_evicted"
                if why is not None:
                    c.busy = True               # ours now: no worker gets it
                    victims.append((c, why))
        for c, why in victims:
            c.error_reason = why
            self.close(c)

    # -- the workers' side
    def park(self, n: int) -> bool:
        """May n more pages be parked in a connection with a partial record?"""
        with self._lock:
            if self._partial_pages + n > self.partial_budget:
                self._park_short = True
                return False
            self._partial_pages += n
            return True

    def unpark(self, n: int) -> None:
        with self._lock:
            self._partial_pages -= n

    def rearm(self, conn: Connection) -> None:
        """Give a served connection back to the epoll set (one-shot)."""
        conn.busy = False
        try:
            self.epoll.modify(conn.fd, _ARM)
        except (OSError, ValueError):
            self.close(conn)

    def close(self, conn: Connection) -> None:
        """Take a connection out of the table, account for its end (on_close), close it. Idempotent."""
        with self._lock:
            if self._conns.get(conn.fd) is not conn:
                return
            del self._conns[conn.fd]
        try:
            self.epoll.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        if conn.error_reason:
            self._on_close(conn.error_reason)
        with self._lock:
            self._partial_pages -= conn.saved_slots
        conn.close()
        self._on_connections(-1)

    # -- shutdown
    def stop_accepting(self) -> None:
        try:
            self.epoll.unregister(self.sock.fileno())
        except (OSError, ValueError):
            pass
        self.sock.close()

    def close_all(self) -> None:
        """After the threads are joined: close every connection, the epoll set and the wake pipe."""
        self._on_connections(-close_connections(self._lock, self._conns))
        self.epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
