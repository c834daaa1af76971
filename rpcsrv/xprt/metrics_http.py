"""The /metrics endpoint's HTTP listener: prometheus_client's WSGI app behind a listener that
follows the same connection rules as the NFS one.

prometheus_client's own start_http_server re-arms its listener at once when accept() fails, so a
process out of descriptors with a scraper waiting spins a core, and it gives every connection a
thread with no timeout, so a local user holding connections to the metrics port takes the
descriptors the NFS listener needs. Here:

- accept() errors go through xprt.tcp.AcceptBackoff: a lack of resources (EMFILE, ENFILE,
  ENOBUFS, ENOMEM) rests the listener 50 ms, doubling to 1 s; one log line per interval with a
  count; each failure goes to on_accept_error(label) (the caller counts it in
  nfsbulk_rpc_accept_errors_total{listener="metrics", errno}, beside the NFS listener's).
- At most `max_connections` scrapes are served at once; a connection beyond that is closed on
  accept.
- A connection that sends no complete request within `timeout` seconds is closed.

Threads: serve_forever runs in one daemon thread (the only one that accepts, so the backoff has
one user); each scrape runs in a daemon thread of its own. stop() ends the rest early.
"""
from __future__ import annotations

import logging
import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .tcp import AcceptBackoff

log = logging.getLogger("rpcsrv.metrics")

#: scrapes served at once (Prometheus scrapes a target with one connection at a time)
METRICS_MAX_CONNECTIONS = 16
#: seconds a metrics connection may take to send its request
METRICS_TIMEOUT = 10.0


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr; a deadline on reading the request."""

    timeout = METRICS_TIMEOUT

    def log_message(self, format, *args):
        pass


class MetricsHTTPServer(ThreadingWSGIServer):
    """A thread per scrape, up to max_connections at once; accept() errors rest the listener."""

    max_connections = METRICS_MAX_CONNECTIONS

    def __init__(self, *args, **kw):
        self.backoff = AcceptBackoff(what="metrics: ")
        self._woken = threading.Event()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(*args, **kw)

    def get_request(self):
        try:
            pair = super().get_request()
        except OSError as e:
            self.backoff.failed(e)
            if self.backoff.resting():
                # this thread is the only one accepting: resting here disarms the listener
                self._woken.wait(max(0.0, self.backoff.resume_at - self.backoff.clock()))
            raise                       # socketserver drops the round and selects again
        self.backoff.accepted()
        return pair

    def verify_request(self, request, client_address):
        if self._slots.acquire(blocking=False):
            return True
        log.debug("metrics: %s refused, %d scrapes in progress", client_address, self.max_connections)
        return False                    # socketserver closes the connection

    def process_request(self, request, client_address):
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()       # no thread took the slot (e.g. threads exhausted)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        # a scraper that goes away mid-reply is not the server's error; no traceback on stderr
        log.debug("metrics: connection from %s ended with an error", client_address, exc_info=True)

    def stop(self) -> None:
        """Stop serving: ends a rest at once, then the serve_forever loop; closes the listener."""
        self._woken.set()
        self.shutdown()
        self.server_close()


def serve_metrics(port: int, addr: str = "127.0.0.1", registry=REGISTRY, on_accept_error=None,
                  max_connections: int = METRICS_MAX_CONNECTIONS, timeout: float = METRICS_TIMEOUT
                  ) -> tuple[MetricsHTTPServer, threading.Thread]:
    """Serve `registry` at http://addr:port/metrics (port 0: a free one, see
    server.server_address) from a daemon thread, at most `max_connections` at once, each closed
    if its request is not in after `timeout` seconds. Raises OSError if the address cannot be
    bound."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    class Handler(_QuietHandler):
        pass

    class Server(MetricsHTTPServer):
        address_family = family

    Handler.timeout = timeout
    Server.max_connections = max_connections
    httpd = make_server(addr, port, make_wsgi_app(registry), Server, handler_class=Handler)
    if on_accept_error is not None:
        httpd.backoff.on_error = on_accept_error
    t = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    t.start()
    return httpd, t
