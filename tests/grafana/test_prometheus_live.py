"""Every panel's queries return data from a real Prometheus.

The `stack` fixture runs rpcsrv, a second rpcsrv under memory pressure (2 MiB
arena, two workers), `loadgen run --clients 2 --time 20 --warmup 1` and
Debian's prometheus scraping all three every second, plus a poker that makes
RPC errors and duplicate-request-cache hits. The template variables are
resolved the way Grafana does it: through Prometheus's label API, with the
variable queries of the dashboard itself.
"""
from __future__ import annotations

import math
import re
import time

import pytest

from grafana_testlib import all_targets, load_dashboards, substitute, target_id

TARGETS = all_targets()
DASHBOARDS = load_dashboards()

#: panels whose queries return series (the counters and gauges are exported from
#: the start) but whose values can stay 0 in this test, with the reason. Every
#: other query must show a non-zero value.
MAY_BE_ZERO = {
    ("svc_alloc_arg.json", "Waits for memory"):
        "a wait is counted when an svc_alloc_arg call completes after waiting; the pressure server's "
        "starved worker never completes (nothing frees pages without requests it cannot take), and the "
        "main server never runs short",
    ("allocator.json", "Per-thread list refills and drains"):
        "after start-up each worker frees its reply pages to its own per-thread list and refills its "
        "holes from that same list, so no batch transfer is needed in steady state (refills happen at "
        "start-up, checked below; drains only when a list exceeds its high mark), and the pressure "
        "server's lists stay empty",
    ("page_pool.json", "Recycled vs released"):
        "the live server recycles with --udp-recycle release (every page back to the allocator, the "
        "bench's case), so nothing is recycled; the released side is its own panel and checked below",
    ("page_pool.json", "Recycle ring pages now"):
        "as 'Recycled vs released': with --udp-recycle release nothing goes through the ring",
    ("page_pool.json", "Drops for want of a page"):
        "the live server's arena never runs out of pages for its pool, and its floods are far below what "
        "fills a socket buffer; tests/pool covers these counters",
    ("page_pool.json", "svc_alloc_arg stalls"):
        "as 'Waits for memory': the pressure server's starved worker never completes a call, and the main "
        "server never runs short (the allocator slow path may or may not be taken)",
    ("rpc_server.json", "In-flight requests"):
        "a gauge sampled at scrape time; requests last milliseconds, so every sample can be 0",
}
#: any query that is legitimately empty in this test would be listed here with its reason
MAY_BE_EMPTY: dict = {}


def prom_escape(value: str) -> str:
    """A literal for a regex matcher inside a PromQL double-quoted string (as Grafana escapes it)."""
    return re.sub(r"([.+*?^$()\[\]{}|\\])", r"\\\\\1", value)


def _label_values(stack, query: str, values: dict) -> list:
    m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert m, query
    selector, label = substitute(m.group(1), values), m.group(2)
    return stack.prom("/api/v1/label/%s/values" % label, **{"match[]": selector})


@pytest.fixture(scope="module")
def variables(stack):
    """{dashboard file: {variable: regex}} resolved from each dashboard's variable queries."""
    out = {}
    for name, d in DASHBOARDS.items():
        values = {}
        for v in d["templating"]["list"]:
            if v["type"] != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            found = _label_values(stack, q, values)
            assert found, "%s: variable %s (%s) has no values" % (name, v["name"], q)
            values[v["name"]] = "(" + "|".join(prom_escape(x) for x in found) + ")"
        out[name] = values
    return out


def test_variables_resolve_to_the_scrape_jobs(stack, variables):
    assert variables["rpc_server.json"]["job"] == "(%s)" % prom_escape(stack.jobs["rpcsrv"])
    assert variables["loadgen.json"]["job"] == "(%s)" % prom_escape(stack.jobs["loadgen"])
    # both servers are instances of the server job
    assert variables["rpc_server.json"]["instance"].count("|") == 1


@pytest.mark.parametrize("item", TARGETS, ids=[target_id(i) for i in TARGETS])
def test_panel_query_has_data(stack, variables, item):
    name, p, t = item
    expr = substitute(t["expr"], variables[name])
    end = time.time()
    start = max(stack.started, end - 120)
    result = stack.query_range(expr, start, end, 1.0)
    key = (name, p["title"])
    if not result:
        metrics = sorted(set(re.findall(r"nfsbulk_\w+", expr)))
        seen = {m: len(stack.query("%s[2m]" % m)) for m in metrics}
        assert key in MAY_BE_EMPTY, "%s / %r / %s: no series for %s (series of the metrics: %s)" % (
            name, p["title"], t["refId"], expr, seen)
        return
    values = [float(v) for series in result for _, v in series["values"]]
    finite = [v for v in values if math.isfinite(v)]
    assert finite, "%s / %r: only NaN/Inf for %s" % (name, p["title"], expr)
    if key not in MAY_BE_ZERO:
        assert any(v != 0 for v in finite), "%s / %r / %s: all zero for %s" % (name, p["title"], t["refId"], expr)


def test_exemptions_name_real_panels():
    titles = {(n, p["title"]) for n, p, _ in TARGETS}
    for key in list(MAY_BE_ZERO) + list(MAY_BE_EMPTY):
        assert key in titles, key


def test_expected_conditions_were_created(stack):
    """The conditions the exemptions do not cover really happened (not just zeros)."""
    for expr in ('sum(nfsbulk_rpc_drc_total{result="hit"}) > 0',
                 'sum(nfsbulk_rpc_errors_total{reason="prog_unavail"}) > 0',
                 'sum(nfsbulk_alloc_failures_total) > 0',
                 'sum(nfsbulk_alloc_drain_all_total) > 0',
                 'sum(nfsbulk_alloc_pcp_refills_total) > 0',
                 'sum(nfsbulk_svc_alloc_arg_waits_total) >= 0',
                 'sum(nfsbulk_loadgen_clients) == 2',
                 'sum(nfsbulk_pool_released_total) > 0',
                 'sum(nfsbulk_udp_xdp_datagrams_total{verdict="tx"}) > 0',
                 'sum(nfsbulk_udp_xdp_datagrams_total{verdict="pass"}) > 0'):
        assert stack.query(expr), expr
    assert stack.poker.error is None, stack.poker.error
