"""rpcsrv.xprt.metrics_http: the /metrics listener's own connection rules (a cap on connections
held at once, a deadline on the request, a scraper that leaves mid-reply), on 127.0.0.1:0 in
this process. Its accept() backoff is tested on a real server out of descriptors
(tests/server/test_limits.py)."""
import socket
import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from rpcsrv.xprt.metrics_http import serve_metrics


def _server(**kw):
    reg = CollectorRegistry()
    Counter("nfsbulk_test_things", "things", registry=reg).inc(3)
    httpd, thread = serve_metrics(0, "127.0.0.1", registry=reg, **kw)
    return httpd, thread, "http://127.0.0.1:%d/metrics" % httpd.server_address[1]


def _scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def _closed_by_peer(sock, timeout=10):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_serves_the_registry():
    httpd, thread, url = _server()
    try:
        status, text = _scrape(url)
        assert status == 200 and "nfsbulk_test_things_total 3.0" in text
    finally:
        httpd.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_connections_beyond_the_cap_are_closed_and_the_cap_frees():
    """With 3 connections held silent (cap 3), a fourth is closed on accept; once they go, a
    scrape is served."""
    httpd, thread, url = _server(max_connections=3, timeout=30)
    port = httpd.server_address[1]
    held = []
    try:
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            assert _closed_by_peer(extra)
        finally:
            extra.close()
        for s in held:
            s.close()
        held = []
        deadline = time.monotonic() + 10
        while True:                 # the handler threads notice the closed connections and free their slots
            try:
                status, _ = _scrape(url)
                break
            except OSError:
                assert time.monotonic() < deadline, "no scrape served after the held connections went"
                time.sleep(0.05)
        assert status == 200
    finally:
        for s in held:
            s.close()
        httpd.stop()


def test_a_connection_that_sends_no_request_is_closed_at_the_deadline():
    httpd, thread, url = _server(timeout=0.3)
    port = httpd.server_address[1]
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.monotonic()
        try:
            assert _closed_by_peer(s)
        finally:
            s.close()
        assert 0.25 <= time.monotonic() - t0 < 5
        assert _scrape(url)[0] == 200
    finally:
        httpd.stop()


def test_a_scraper_leaving_mid_reply_leaves_no_traceback(capfd):
    httpd, thread, url = _server()
    port = httpd.server_address[1]
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            s.close()               # a reset, as the reply is sent
        assert _scrape(url)[0] == 200
    finally:
        httpd.stop()
    assert "Traceback" not in capfd.readouterr().err
