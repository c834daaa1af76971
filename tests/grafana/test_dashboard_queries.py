"""Every dashboard query parses (promql-parser), and every metric and label it
names is in the real /metrics output of a running rpcsrv and loadgen (scraped
from the live processes of the `stack` fixture, not from a list)."""
from __future__ import annotations

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from grafana_testlib import all_targets, substitute, target_id

TARGETS = all_targets()
#: labels Prometheus attaches at scrape time, and the histogram bucket label
IMPLICIT_LABELS = {"job", "instance", "le"}


def parsed(expr: str):
    return promql_parser.parse(substitute(expr, {"job": ".*", "instance": ".*"}))


def nodes(ast):
    out = []
    promql_parser.walk(ast, lambda n: out.append(n))
    return out


@pytest.mark.parametrize("item", TARGETS, ids=[target_id(i) for i in TARGETS])
def test_query_parses(item):
    _, p, t = item
    ast = parsed(t["expr"])
    assert isinstance(ast, promql_parser.Expr)
    # a time series panel needs an instant vector, not a range vector
    assert not isinstance(ast, (promql_parser.MatrixSelector, promql_parser.SubqueryExpr)), p["title"]


def test_parser_rejects_what_grafana_would_not_substitute():
    with pytest.raises(ValueError):
        promql_parser.parse("rate(nfsbulk_rpc_requests_total[$__rate_interval])")
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (op (rate(x[30s]))")


@pytest.fixture(scope="module")
def exposed(stack):
    """{sample name: set of label names} from the live server and loadgen /metrics."""
    out = {}
    for source in ("rpcsrv", "loadgen"):
        for fam in text_string_to_metric_families(stack.expositions[source]):
            for s in fam.samples:
                out.setdefault(s.name, set()).update(s.labels)
    return out


def test_live_exposition_has_the_contract(exposed):
    for name in ("nfsbulk_build_info", "nfsbulk_svc_alloc_arg_seconds_bucket", "nfsbulk_rpc_requests_total",
                 "nfsbulk_alloc_free_pages", "nfsbulk_loadgen_ops_total", "nfsbulk_loadgen_clients",
                 "nfsbulk_pool_cache_pages", "nfsbulk_udp_xdp_datagrams_total",
                 "nfsbulk_udp_xdp_rx_cpu_seconds_total"):
        assert name in exposed, name


@pytest.mark.parametrize("item", TARGETS, ids=[target_id(i) for i in TARGETS])
def test_query_names_only_exposed_metrics_and_labels(item, exposed):
    _, p, t = item
    ast = parsed(t["expr"])
    names = set()
    for n in nodes(ast):
        if isinstance(n, promql_parser.VectorSelector):
            assert n.name in exposed, "%r: metric %s is not in the live /metrics output" % (p["title"], n.name)
            names.add(n.name)
            for m in n.matchers.matchers:
                assert m.name in exposed[n.name] | IMPLICIT_LABELS, \
                    "%r: %s has no label %s" % (p["title"], n.name, m.name)
    labels = set().union(*(exposed[n] for n in names)) | IMPLICIT_LABELS if names else IMPLICIT_LABELS
    for n in nodes(ast):
        if isinstance(n, promql_parser.AggregateExpr) and n.modifier is not None:
            for label in n.modifier.labels:
                assert label in labels, "%r: aggregates by %s, which none of %s has" % (p["title"], label, names)
    if not names:
        assert "vector(" in t["expr"], "%r: a query without metrics must be a constant reference line" % p["title"]
