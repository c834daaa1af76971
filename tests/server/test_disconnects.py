"""Connection ends: a client that goes away between records (EOF, or a reset) is a disconnect,
counted in nfsbulk_rpc_disconnects_total{reason}; a record cut short is still an error. Both
request paths (the compiled fast path and the Python one) account alike."""
from __future__ import annotations

import socket
import struct
import time

import pytest
from prometheus_client import generate_latest

from nfsbulk_testlib import RpcClient, in_process_server
from rpcsrv.proto import rpcmsg


def _wait_for(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.01)


def _null(port):
    rpc = RpcClient(port)
    h, _ = rpc.call(1, 100003, 3, 0)
    assert h.accept_stat == rpcmsg.SUCCESS
    return rpc


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "python"])
def test_disconnects_are_not_errors(tmp_path, fast_path):
    with in_process_server(tmp_path, fast_path=fast_path) as srv:
        assert (srv.fast is not None) == fast_path
        m = srv.metrics
        _null(srv.port).close()                                     # a clean close: EOF
        _wait_for(lambda: m.disconnect_count("eof") == 1, "the eof disconnect")
        rpc = _null(srv.port)                                       # an abortive close: RST
        rpc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rpc.close()
        _wait_for(lambda: m.disconnect_count("reset") == 1, "the reset disconnect")
        rpc = _null(srv.port)                                       # a record cut short: an error
        rpc.send_raw(struct.pack(">I", 0x80000000 | 100) + b"\0" * 10)
        rpc.close()
        _wait_for(lambda: m.error_count("truncated_record") == 1, "the truncated record")
        text = generate_latest(srv.registry).decode()
        assert 'nfsbulk_rpc_disconnects_total{reason="eof"} 1.0' in text
        assert 'nfsbulk_rpc_disconnects_total{reason="reset"} 1.0' in text
        assert 'nfsbulk_rpc_errors_total{reason="truncated_record"} 1.0' in text
        assert "econnreset" not in text
        assert "_created" not in text


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "python"])
def test_an_eviction_at_the_limit_is_a_disconnect(tmp_path, fast_path):
    with in_process_server(tmp_path, max_connections=1, fast_path=fast_path) as srv:
        assert (srv.fast is not None) == fast_path
        rpc = _null(srv.port)
        _null(srv.port).close()                                   # the newcomer is served ...
        try:                                                      # ... and the idle one was closed
            assert rpc.recv_record() is None                      # (a FIN, or a reset when the
        except ConnectionResetError:                              # compiled path's shutdown races)
            pass
        _wait_for(lambda: srv.metrics.disconnect_count("evicted") == 1, "the evicted disconnect")
        assert srv.metrics.error_count("too_many_connections") == 0
        assert srv.metrics.disconnect_count("limit") == 0
        rpc.close()


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "python"])
def test_empty_fragments_served_empty_records_refused(tmp_path, fast_path):
    """RFC 5531 allows empty fragments: a NULL call cut by empty ones and ended by an empty last
    fragment is answered. A record of no bytes, and more empty fragments than a record may carry
    (rpcsrv/proto/record.py MAX_EMPTY_FRAGMENTS), close the connection, each counted by reason."""
    with in_process_server(tmp_path, fast_path=fast_path) as srv:
        assert (srv.fast is not None) == fast_path
        m = srv.metrics
        rpc = RpcClient(srv.port)
        body = rpc.call_bytes(7, 100003, 3, 0)[4:]
        frag = lambda n, last=False: struct.pack(">I", (0x80000000 if last else 0) | n)  # noqa: E731
        rpc.send_raw(frag(0) + frag(8) + body[:8] + frag(0) + frag(len(body) - 8) + body[8:] + frag(0, True))
        rec = rpc.recv_record()
        assert rec is not None and struct.unpack_from(">II", rec) == (7, 1)      # the reply to xid 7
        _null(srv.port).close()
        for stream, reason in ((frag(0, True), "empty_record"), (frag(0) * 65, "zero_fragment")):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(stream)
                assert s.recv(1) == b""                                         # closed, no reply
            _wait_for(lambda reason=reason: m.error_count(reason) == 1, reason)
        rpc.close()
