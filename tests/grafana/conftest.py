"""Fixtures for the dashboard tests; the helpers live in grafana_testlib.py.

`stack` (session): a live rpcsrv (also serving RPC over UDP through the
compiled receive loop, under two small bounded NULL floods), a second rpcsrv
under memory pressure, a loadgen run and Debian's prometheus scraping all
three every second.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from grafana_testlib import (  # noqa: E402
    PROM_CONFIG, ROOT, Poker, Stack, free_port, http_get, job_names, metrics_port, start_rpcsrv, stop, wait_for,
)

sys.path.insert(0, str(ROOT))
from loadgen.flood.xdpflood import XdpFlood, null_call  # noqa: E402
from loadgen.common.rpcwire import MOUNT_PROGRAM, MOUNT_V3, pack_call  # noqa: E402
from loadgen.common.serverproc import ServerError  # noqa: E402


def mount_null_call() -> bytes:
    """MOUNT v3 NULL: the compiled loop passes it to the Python path (XDP_PASS)."""
    return pack_call(0, MOUNT_PROGRAM, MOUNT_V3, 0)


def _announced_port(log) -> int | None:
    """The port in loadgen's "loadgen: metrics http://127.0.0.1:PORT/metrics" line, once written."""
    m = re.search(r"^loadgen: metrics http://127\.0\.0\.1:(\d+)/metrics$", log.read_text(errors="replace"), re.M)
    return int(m.group(1)) if m else None


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            pytest.skip("%s not installed (Debian package prometheus)" % tool)
    st = Stack()
    st.tmp = tmp_path_factory.mktemp("grafana-live")
    st.jobs = job_names()
    deadline = time.monotonic() + 60
    try:
        # the server under test and a second one whose 2 MiB arena cannot hold two
        # workers' 259-page arrays: it keeps failing, falling back, taking the slow path
        # ... with RPC over UDP through the compiled receive loop (the page_pool dashboard's series):
        # every datagram's page back to the allocator, NULL answered from C, MOUNT NULL passed to Python
        srv = st.servers["rpcsrv"] = start_rpcsrv(
            st.tmp / "export", deadline, threads=4, arena_mib=256,
            extra=["--udp", "--udp-xdp", "tx", "--udp-recycle", "release", "--pool-strategy", "array"])
        st.procs["rpcsrv"], st.url, st.server_metrics_port = srv.proc, srv.url, metrics_port(srv)
        nfsport = srv.port
        # Batches of 7 and 5, not the flood's default 32: the pool refills 64 pages when its
        # cache runs dry, so its cache holds (-pages taken) mod 64. Bursts of 32 that the loop
        # takes in pairs (a busy machine) keep it at 0 at every scrape; prime batch sizes make
        # the "Pool pages now" gauge move whatever the loop's timing.
        st.floods = [XdpFlood("127.0.0.1", nfsport, procs=1, duration=90, rate=rate, drain=True,
                              batch=batch, template=template).start()
                     for rate, batch, template in ((2000, 7, null_call()), (200, 5, mount_null_call()))]
        srv = st.servers["pressure"] = start_rpcsrv(
            st.tmp / "export-pressure", deadline, threads=2, arena_mib=2,
            extra=["--strategy", "array", "--pages-per-request", "259"])
        st.procs["pressure"], st.pressure_metrics_port = srv.proc, metrics_port(srv)
        # loadgen first, on a port it picks itself and announces (a probed port could be taken
        # before loadgen binds it); Prometheus's configuration then names that port
        with open(st.tmp / "loadgen.log", "wb") as log:
            st.procs["loadgen"] = subprocess.Popen(
                [sys.executable, "-m", "loadgen", "run", st.url, "--clients", "2", "--time", "30",
                 "--warmup", "1", "--metrics-port", "0", "--rate", "400", "--arrival", "poisson"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        st.loadgen_metrics_port = int(wait_for(
            "loadgen's metrics port", lambda: _announced_port(st.tmp / "loadgen.log"), deadline,
            procs=list(st.procs.items())))
        cfg = st.tmp / "prometheus.yml"
        cfg.write_text(PROM_CONFIG.format(server=st.server_metrics_port, pressure=st.pressure_metrics_port,
                                          loadgen_port=st.loadgen_metrics_port, **st.jobs))
        # Prometheus takes its listen address from the command line only: probe a port, and
        # start it again on another if something took that one before Prometheus bound it
        for attempt in range(1, 4):
            prom_port, tsdb = free_port(), st.tmp / ("tsdb-%d" % attempt)
            with open(st.tmp / "prometheus.log", "wb") as log:
                st.procs["prometheus"] = subprocess.Popen(
                    ["prometheus", "--config.file=%s" % cfg, "--storage.tsdb.path=%s" % tsdb,
                     "--web.listen-address=127.0.0.1:%d" % prom_port, "--storage.tsdb.retention.time=1h",
                     "--log.level=warn"],
                    cwd=st.tmp, stdout=log, stderr=subprocess.STDOUT)
            st.prom_url = "http://127.0.0.1:%d" % prom_port
            try:
                wait_for("prometheus ready", lambda: http_get(st.prom_url + "/-/ready"), deadline,
                         procs=list(st.procs.items()))
                break
            except AssertionError:
                if st.procs["prometheus"].poll() is None or attempt == 3 or \
                        "address already in use" not in st.log("prometheus"):
                    raise
        procs = list(st.procs.items())
        st.poker = Poker(int(re.search(r"nfsport=(\d+)", st.url).group(1)))
        st.poker.start()

        def targets_up():
            active = st.prom("/api/v1/targets", state="active")["activeTargets"]
            return len(active) == 3 and all(t["health"] == "up" for t in active)

        wait_for("all three scrape targets up", targets_up, deadline, procs=procs)
        # data for every kind of panel: load on the server and the client, the poker's
        # errors and cache hits, the pressure server's failures
        conditions = [
            'sum(rate(nfsbulk_loadgen_ops_total[30s])) > 0',
            'sum(rate(nfsbulk_loadgen_open_loop_latency_seconds_count[30s])) > 0',
            'sum(nfsbulk_loadgen_offered_rate_ops_per_second) == 400',
            'sum(rate(nfsbulk_loadgen_bytes_total{direction="read"}[30s])) > 0',
            'sum(rate(nfsbulk_loadgen_bytes_total{direction="write"}[30s])) > 0',
            'sum(rate(nfsbulk_rpc_requests_total{program="nfs"}[30s])) > 0',
            'sum(rate(nfsbulk_nfs_write_bytes_total[30s])) > 0',
            'sum(rate(nfsbulk_nfs_read_bytes_total[30s])) > 0',
            'sum(rate(nfsbulk_rpc_drc_total{result="hit"}[30s])) > 0',
            'sum(rate(nfsbulk_rpc_errors_total[30s])) > 0',
            'sum(rate(nfsbulk_rpc_disconnects_total{reason="eof"}[30s])) > 0',
            'sum(rate(nfsbulk_alloc_failures_total[30s])) > 0',
            'sum(rate(nfsbulk_svc_alloc_arg_seconds_count[30s])) > 0',
            'sum(rate(nfsbulk_udp_xdp_datagrams_total{verdict="tx"}[30s])) > 0',
            'sum(rate(nfsbulk_udp_xdp_datagrams_total{verdict="pass"}[30s])) > 0',
            'sum(rate(nfsbulk_pool_pages_from_allocator_total[30s])) > 0',
            'sum(nfsbulk_pool_cache_pages) > 0',
        ]
        # each must hold 3 s in the past already, so that a range query ending now
        # (its steps aligned to its start) has several steps with the data
        for c in conditions:
            wait_for("data: " + c, lambda c=c: st.query(c, at=time.time() - 3), deadline, interval=0.5, procs=procs)
        for name, port in (("rpcsrv", st.server_metrics_port), ("pressure", st.pressure_metrics_port),
                           ("loadgen", st.loadgen_metrics_port)):
            st.expositions[name] = http_get("http://127.0.0.1:%d/metrics" % port).decode()
        yield st
    except AssertionError as e:
        raise AssertionError("%s\n--- logs ---\n%s" % (e, "\n".join(
            "[%s]\n%s" % (n, st.log(n)) for n in ("rpcsrv", "pressure", "loadgen", "prometheus")))) from None
    finally:
        if st.poker is not None:
            st.poker.stopped.set()
            st.poker.join(10)
        for f in getattr(st, "floods", ()):
            f.stop()
        stop(st.procs.get("loadgen"), signal.SIGINT)
        unstopped = []
        for name, srv in st.servers.items():
            try:
                srv.stop()                   # SIGTERM; the launcher kills it after 60 s and says so
            except ServerError as e:
                unstopped.append("%s: %s" % (name, e))
        stop(st.procs.get("prometheus"))
        assert not unstopped, unstopped
