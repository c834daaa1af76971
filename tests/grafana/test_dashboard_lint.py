"""Lint rules for grafana/dashboards/*.json, as tests.

Every dashboard: a stable uid, a Prometheus datasource variable that every
panel and target uses, job and instance variables that every selector filters
on; every panel: a title, a description, a unit, a unique id, a place on the
grid; every range in a query is $__rate_interval.
"""
from __future__ import annotations

import re

import promql_parser
import pytest

from grafana_testlib import all_targets, data_panels, iter_panels, iter_targets, load_dashboards, substitute, \
    target_id

#: the uids are part of the interface (links, provisioning, bookmarks): changing one is a deliberate act
STABLE_UIDS = {
    "svc_alloc_arg.json": "nfsbulk-svc-alloc-arg",
    "allocator.json": "nfsbulk-allocator",
    "rpc_server.json": "nfsbulk-rpc-server",
    "loadgen.json": "nfsbulk-loadgen",
    "page_pool.json": "nfsbulk-page-pool",
}
DATASOURCE_UID = "nfsbulk-prometheus"
DS_REFS = ("${datasource}", "$datasource")
KNOWN_VARS = {"datasource", "job", "instance", "__rate_interval", "__interval", "__range"}
#: sentinels that make the variables visible in the parsed query
SENTINEL_RANGE = "7777s"
SENTINEL_SECONDS = 7777
SENTINEL_VARS = {"job": "JOB_VAR", "instance": "INSTANCE_VAR"}

DASHBOARDS = load_dashboards()
TARGETS = all_targets()


def parse(expr: str):
    vars_ = dict(SENTINEL_VARS)
    return promql_parser.parse(substitute(expr.replace("$__rate_interval", SENTINEL_RANGE), vars_))


def walk(ast):
    nodes = []
    promql_parser.walk(ast, lambda n: nodes.append(n))
    return nodes


def test_the_five_dashboards_exist_with_stable_uids():
    assert {n: d.get("uid") for n, d in DASHBOARDS.items()} == STABLE_UIDS
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), uid


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_header(name):
    d = DASHBOARDS[name]
    assert d.get("title", "").startswith("nfsbulk / ")
    assert d.get("description")
    assert "nfsbulk" in d.get("tags", [])
    assert "id" not in d or d["id"] is None, "a provisioned dashboard must not carry a database id"
    titles = [x["title"] for x in DASHBOARDS.values()]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables(name):
    d = DASHBOARDS[name]
    vars_ = {v["name"]: v for v in d["templating"]["list"]}
    assert list(vars_) == ["datasource", "job", "instance"]
    ds = vars_["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"]["value"] == DATASOURCE_UID
    for v in ("job", "instance"):
        var = vars_[v]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] in DS_REFS, "%s variable must query through $datasource" % v
        assert var["includeAll"] and var["allValue"] == ".*" and var["multi"]
        q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert re.fullmatch(r"label_values\(\w+(\{.*\})?, %s\)" % v, q), q
    assert 'job=~"$job"' in vars_["instance"]["query"]["query"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_use_the_datasource_variable(name):
    for p in data_panels(DASHBOARDS[name]):
        assert p.get("datasource", {}).get("uid") in DS_REFS, p.get("title")
        assert p.get("datasource", {}).get("type") == "prometheus", p.get("title")
        assert p.get("targets"), "panel %r has no query" % p.get("title")
        for t in p["targets"]:
            assert t.get("datasource", {}).get("uid") in DS_REFS, (p.get("title"), t.get("refId"))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_titles_descriptions_units(name):
    titles = []
    for p in data_panels(DASHBOARDS[name]):
        title = p.get("title", "")
        assert title.strip(), "panel %s has no title" % p.get("id")
        assert p.get("description", "").strip(), "panel %r has no description" % title
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit, "panel %r has no unit" % title
        if p["type"] == "heatmap":
            assert p.get("options", {}).get("yAxis", {}).get("unit"), "heatmap %r: no y axis unit" % title
            assert p["options"].get("calculate") is False, "heatmap %r must use the buckets as they are" % title
            assert all(t.get("format") == "heatmap" for t in p["targets"])
        titles.append(title)
    assert len(set(titles)) == len(titles), "duplicate panel titles"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panel_ids_unique_and_grid_sane(name):
    panels = list(iter_panels(DASHBOARDS[name]))
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids), ids
    assert len(set(ids)) == len(ids), "duplicate panel ids: %s" % ids
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["w"] > 0, (p["title"], g)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, "panels %r and %r overlap" % (cells[(x, y)], p["title"])
                cells[(x, y)] = p["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_targets_have_ref_ids_and_legends(name):
    for p in data_panels(DASHBOARDS[name]):
        refs = [t.get("refId") for t in p["targets"]]
        assert all(refs) and len(set(refs)) == len(refs), (p["title"], refs)
        for t in p["targets"]:
            assert t.get("legendFormat"), (p["title"], t.get("refId"))
            assert t.get("expr", "").strip(), (p["title"], t.get("refId"))


@pytest.mark.parametrize("item", TARGETS, ids=[target_id(i) for i in TARGETS])
def test_query_uses_only_known_variables(item):
    _, _, t = item
    used = set(re.findall(r"\$\{?(\w+)", t["expr"]))
    assert used <= KNOWN_VARS, used - KNOWN_VARS


@pytest.mark.parametrize("item", TARGETS, ids=[target_id(i) for i in TARGETS])
def test_every_range_is_the_rate_interval(item):
    _, p, t = item
    expr = t["expr"]
    if re.search(r"\b(rate|irate|increase|delta|idelta|deriv)\s*\(", expr):
        assert "$__rate_interval" in expr
    for rng in re.findall(r"\[([^\]]*)\]", expr):
        assert rng == "$__rate_interval", "range [%s] in %r" % (rng, p["title"])
    nodes = walk(parse(expr))
    for n in nodes:
        if isinstance(n, promql_parser.MatrixSelector):
            assert n.range.total_seconds() == SENTINEL_SECONDS
        assert not isinstance(n, promql_parser.SubqueryExpr), "subqueries ignore $__rate_interval"


@pytest.mark.parametrize("item", TARGETS, ids=[target_id(i) for i in TARGETS])
def test_every_selector_filters_on_job_and_instance(item):
    _, p, t = item
    for n in walk(parse(t["expr"])):
        if isinstance(n, promql_parser.VectorSelector):
            matchers = {(m.name, str(m.op), m.value) for m in n.matchers.matchers}
            assert ("job", "MatchOp.Re", SENTINEL_VARS["job"]) in matchers, (p["title"], n.name)
            assert ("instance", "MatchOp.Re", SENTINEL_VARS["instance"]) in matchers, (p["title"], n.name)
            assert n.name and n.name.startswith("nfsbulk_"), n.name


def test_dashboard_coverage_of_the_contract():
    """The panels the issue asks for are there (by the metrics they query)."""
    def exprs(name):
        return " ".join(t["expr"] for _, t in iter_targets(DASHBOARDS[name]))
    svc = exprs("svc_alloc_arg.json")
    for needle in ("nfsbulk_svc_alloc_arg_seconds_sum", "nfsbulk_svc_alloc_arg_seconds_count",
                   "histogram_quantile(0.5", "histogram_quantile(0.99", "nfsbulk_svc_alloc_arg_seconds_bucket",
                   "nfsbulk_svc_alloc_arg_pages", "nfsbulk_svc_alloc_arg_waits_total",
                   "nfsbulk_alloc_bulk_fallbacks_total", "vector(25.007)", "vector(6.258)", "vector(4.590)"):
        assert needle in svc, needle
    al = exprs("allocator.json")
    for needle in ("nfsbulk_alloc_free_pages", "nfsbulk_alloc_watermark_pages", "nfsbulk_alloc_pcp_pages",
                   "nfsbulk_alloc_pcp_refills_total", "nfsbulk_alloc_pcp_drains_total", "nfsbulk_alloc_pages_total",
                   "nfsbulk_alloc_failures_total"):
        assert needle in al, needle
    rpc = exprs("rpc_server.json")
    for needle in ("nfsbulk_rpc_requests_total", "nfsbulk_rpc_request_duration_seconds_bucket",
                   "nfsbulk_rpc_errors_total", "nfsbulk_rpc_disconnects_total", "nfsbulk_rpc_in_flight", "nfsbulk_rpc_queue_wait_seconds",
                   "nfsbulk_connections", "nfsbulk_nfs_read_bytes_total", "nfsbulk_nfs_write_bytes_total",
                   "nfsbulk_rpc_drc_total"):
        assert needle in rpc, needle
    lg = exprs("loadgen.json")
    for needle in ("nfsbulk_loadgen_ops_total", "nfsbulk_loadgen_op_duration_seconds_bucket",
                   "nfsbulk_loadgen_bytes_total", 'status!="ok"'):
        assert needle in lg, needle
    types = {p["type"] for d in DASHBOARDS.values() for p in data_panels(d)}
    assert "heatmap" in types
