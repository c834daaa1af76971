#!/usr/bin/env python3
"""Generate nfsbulk's Grafana dashboards (grafana/dashboards/*.json).

    python grafana/generate.py           write the JSON files
    python grafana/generate.py --check   exit 1 if the committed JSON differs

The dashboards are built with grafana-foundation-sdk; the committed JSON is
exactly this script's output (tests/grafana regenerates and compares). Metric
names and labels follow docs/metrics.md and the exposition of
rpcsrv/svc/metrics.py, alloc/metrics.py and loadgen/run/metrics.py.

Conventions every dashboard keeps (checked by tests/grafana/test_dashboard_lint.py):
  * a stable uid (UIDS below), a datasource variable `datasource` (Prometheus)
    used by every panel and every target, `job` and `instance` variables that
    every query filters on;
  * a unit on every panel; `$__rate_interval` in every rate/irate/increase;
  * panel ids unique within the dashboard, assigned in order.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import (ReduceDataOptions, ScaleDistributionConfig, StackingConfig,
                                                    VizLegendOptions)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync, DataSourceRef, DynamicConfigValue, VariableOption,
    VariableRefresh, VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "dashboards")

#: uid of the provisioned datasource (grafana/provisioning/datasources/prometheus.yaml)
DATASOURCE_UID = "nfsbulk-prometheus"
#: dashboard uids: stable, never derived from titles
UIDS = {
    "svc_alloc_arg": "nfsbulk-svc-alloc-arg",
    "allocator": "nfsbulk-allocator",
    "rpc_server": "nfsbulk-rpc-server",
    "loadgen": "nfsbulk-loadgen",
    "page_pool": "nfsbulk-page-pool",
}

#: Chuck Lever's svc_alloc_arg measurement on the 5.13 bulk allocator series (v6 6/9):
#: NFSv3 256 KB read/write, mean per call (Chuck Lever's figures in the 5.13 bulk allocator series).
KERNEL_SVC_ALLOC_ARG_US = (
    ("single", "alloc_page loop", 25.007),
    ("list", "bulk list API", 6.258),
    ("array", "bulk array API", 4.590),
)

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
RI = "$__rate_interval"
#: label matchers every query carries
SEL = 'job=~"$job", instance=~"$instance"'


def sel(extra: str = "") -> str:
    return "{" + SEL + (", " + extra if extra else "") + "}"


# -- variables ---------------------------------------------------------------

def variables(probe_metric: str) -> list:
    """datasource, job and instance; `probe_metric` is a series every target of the dashboard exports."""
    ds = (dash.DatasourceVariable("datasource")
          .label("Data source")
          .type("prometheus")
          .current(VariableOption(selected=True, text="Prometheus", value=DATASOURCE_UID)))
    job = (dash.QueryVariable("job")
           .label("job")
           .datasource(DS)
           .query({"query": "label_values(%s, job)" % probe_metric, "refId": "job"})
           .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
           .sort(VariableSort.ALPHABETICAL_ASC)
           .multi(True).include_all(True).all_value(".*")
           .current(VariableOption(selected=True, text="All", value="$__all")))
    inst = (dash.QueryVariable("instance")
            .label("instance")
            .datasource(DS)
            .query({"query": 'label_values(%s{job=~"$job"}, instance)' % probe_metric, "refId": "instance"})
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all")))
    return [ds, job, inst]


# -- panels ------------------------------------------------------------------

def q(expr: str, legend: str, ref: str, fmt: PromQueryFormat | None = None, instant: bool = False):
    t = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    if fmt is not None:
        t = t.format(fmt)
    if instant:
        t = t.instant()
    else:
        t = t.range()
    return t


def _refs():
    return iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ts(title: str, unit: str, desc: str, queries: list, *, w: int = 12, h: int = 8,
       stack: bool = False, dashed: tuple = (), min0: bool = True, log: bool = False):
    """A time series panel; `queries` are (expr, legend) pairs; series whose legend
    is in `dashed` are drawn as dashed reference lines; log: a log10 y axis (no 0 floor)."""
    p = (timeseries.Panel().title(title).description(desc).unit(unit).datasource(DS)
         .span(w).height(h).line_width(1).fill_opacity(10 if not stack else 40).show_points(common.VisibilityMode.NEVER)
         .legend(VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                 .placement(common.LegendPlacement.BOTTOM).calcs(["mean", "max", "lastNotNull"])))
    if log:
        p = p.scale_distribution(ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10))
    elif min0:
        p = p.min(0)
    if stack:
        p = p.stacking(StackingConfig().mode(common.StackingMode.NORMAL))
    refs = _refs()
    for expr, legend in queries:
        p = p.with_target(q(expr, legend, next(refs)))
    for legend in dashed:
        p = p.override_by_name(legend, [
            DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
            DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            DynamicConfigValue(id_val="custom.lineWidth", value=2),
        ])
    return p


def hm(title: str, desc: str, bucket_metric: str, *, w: int = 12, h: int = 8):
    """A heatmap of a classic histogram: bucket increases per interval, le on the y axis (seconds)."""
    expr = "sum by (le) (increase(%s%s[%s]))" % (bucket_metric, sel(), RI)
    return (heatmap.Panel().title(title).description(desc).datasource(DS).span(w).height(h)
            .unit("short")
            .calculate(False)
            .y_axis(heatmap.YAxisConfig().unit("s"))
            .cell_values(heatmap.CellValues().unit("short"))
            .color(heatmap.HeatmapColorOptions().mode(heatmap_model.HeatmapColorMode.SCHEME)
                   .scheme("Oranges").scale(heatmap_model.HeatmapColorScale.EXPONENTIAL).exponent(0.5)
                   .fill("dark-orange").reverse(False).steps(64))
            .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
            .show_value(common.VisibilityMode.NEVER)
            .with_target(q(expr, "{{le}}", "A", fmt=PromQueryFormat.HEATMAP)))


def info_stat(title: str, desc: str, expr: str, legend: str, unit: str = "none", *, w: int = 6, h: int = 4):
    return (stat.Panel().title(title).description(desc).datasource(DS).unit(unit).span(w).height(h)
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
            .graph_mode(common.BigValueGraphMode.NONE)
            .color_mode(common.BigValueColorMode.NONE)
            .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .with_target(q(expr, legend, "A", instant=True)))


def quantiles(metric: str, by: str, scale: str = "") -> list:
    """p50 and p99 of a classic histogram `metric` (name without _bucket), grouped by `by`."""
    by_le = (by + ", le") if by else "le"
    legend = "{{%s}}" % by if by else ""
    out = []
    for qq, name in ((0.5, "p50"), (0.99, "p99")):
        expr = "%shistogram_quantile(%s, sum by (%s) (rate(%s_bucket%s[%s])))" % (
            scale, qq, by_le, metric, sel(), RI)
        out.append((expr, (legend + " " + name).strip()))
    return out


def per_call_mean(metric: str, by: str, scale: str = "") -> str:
    return "%ssum by (%s) (rate(%s_sum%s[%s])) / sum by (%s) (rate(%s_count%s[%s]))" % (
        scale, by, metric, sel(), RI, by, metric, sel(), RI)


def rate(metric: str, by: str | None, extra: str = "", scale: str = "") -> str:
    agg = "sum by (%s) " % by if by else "sum "
    return "%s%s(rate(%s%s[%s]))" % (scale, agg, metric, sel(extra), RI)


def dashboard(key: str, title: str, desc: str, tags: list, probe_metric: str, panels: list):
    d = (dash.Dashboard(title).uid(UIDS[key]).description(desc).tags(["nfsbulk"] + tags)
         .editable().tooltip(DashboardCursorSync.CROSSHAIR).refresh("10s").time("now-15m", "now")
         .timezone("browser").variables(variables(probe_metric)))
    for i, p in enumerate(panels, 1):
        d = d.with_panel(p.id(i))
    return d.build()


# -- the five dashboards -----------------------------------------------------

def svc_alloc_arg_dashboard():
    m = "nfsbulk_svc_alloc_arg_seconds"
    ref_legends = tuple("kernel %s (%s): %.3f µs" % (s, api, v) for s, api, v in KERNEL_SVC_ALLOC_ARG_US)
    refs = [("vector(%.3f)" % v, legend) for (s, api, v), legend in zip(KERNEL_SVC_ALLOC_ARG_US, ref_legends)]
    panels = [
        ts("µs per svc_alloc_arg call by strategy", "µs",
           "Mean time of one svc_alloc_arg call (refilling the request's page array), from the histogram's "
           "_sum and _count. Dashed: the kernel's figures from Chuck Lever's measurement on the 5.13 bulk "
           "allocator series (NFSv3 256 KB read/write): single 25.007 µs, list 6.258 µs, array 4.590 µs. "
           "Log axis: the kernel's 25 µs beside live sub-microsecond calls.",
           [(per_call_mean(m, "strategy", "1e6 * "), "{{strategy}} mean")] + refs,
           w=16, h=9, dashed=ref_legends, log=True),
        info_stat("Running", "nfsbulk_build_info: version and svc_alloc_arg strategy of each server.",
                  "max by (instance, version, strategy) (nfsbulk_build_info%s)" % sel(),
                  "{{instance}} v{{version}} {{strategy}}", w=8, h=9),
        ts("svc_alloc_arg p50 / p99 by strategy", "µs",
           "Quantiles of the call time (histogram_quantile over nfsbulk_svc_alloc_arg_seconds; buckets from "
           "250 ns, doubling).", quantiles(m, "strategy", "1e6 * "), w=12),
        hm("svc_alloc_arg call time", "Distribution of svc_alloc_arg call times: calls per bucket per "
           "interval (nfsbulk_svc_alloc_arg_seconds_bucket).", m + "_bucket", w=12),
        ts("Pages refilled per call", "short",
           "Mean pages refilled by one svc_alloc_arg call (the holes the last reply left), and the p99.",
           [(per_call_mean("nfsbulk_svc_alloc_arg_pages", "strategy"), "{{strategy}} mean"),
            ("histogram_quantile(0.99, sum by (strategy, le) (rate(nfsbulk_svc_alloc_arg_pages_bucket%s[%s])))"
             % (sel(), RI), "{{strategy}} p99")], w=8),
        ts("Slots visited per call", "short",
           "Mean page-array slots one svc_alloc_arg call visited (nfsbulk_svc_alloc_arg_slots_scanned): "
           "every slot for single, list (twice) and array, so it grows with --max-block-size (260 slots for "
           "1 MiB, 1028 for 4 MiB); only the holes' windows for range and nfree (the 2026 kernel's refill).",
           [(per_call_mean("nfsbulk_svc_alloc_arg_slots_scanned", "strategy"), "{{strategy}} mean")], w=8),
        ts("svc_alloc_arg calls per second", "ops",
           "svc_alloc_arg calls per second (one per request a worker takes).",
           [(rate(m + "_count", "strategy"), "{{strategy}}")], w=8),
        ts("Waits for memory", "cps",
           "svc_alloc_arg calls per second that made no progress and had to wait for a page to be freed "
           "(nfsbulk_svc_alloc_arg_waits_total). Non-zero only under memory pressure.",
           [(rate("nfsbulk_svc_alloc_arg_waits_total", "strategy"), "{{strategy}}")], w=8),
        ts("Bulk fallbacks by reason", "cps",
           "Bulk allocator calls per second that took the single-page path, by reason: last_page (one hole "
           "left), watermark (no zone above LOW + n), pcp_empty (nothing on the lists before any page).",
           [(rate("nfsbulk_alloc_bulk_fallbacks_total", "reason"), "{{reason}}")], w=8),
        ts("Allocator calls per svc_alloc_arg call", "short",
           "Allocator calls (any API) per svc_alloc_arg call: 1 for one bulk call, the hole count for single.",
           [("sum(rate(nfsbulk_alloc_calls_total%s[%s])) / sum(rate(%s_count%s[%s]))"
             % (sel(), RI, m, sel(), RI), "calls per svc_alloc_arg")], w=8),
    ]
    return dashboard("svc_alloc_arg", "nfsbulk / svc_alloc_arg",
                     "Cost of refilling the RPC request page array (svc_alloc_arg) per strategy, "
                     "against the kernel's 5.13 figures.", ["svc"], "nfsbulk_build_info", panels)


def allocator_dashboard():
    panels = [
        ts("Free pages vs watermarks per zone", "short",
           "Pages on the buddy free lists per zone (solid) against the zone's min/low/high watermarks "
           "(dashed). Below low the bulk calls fall back; below min only the slow path allocates.",
           [("sum by (zone) (nfsbulk_alloc_free_pages%s)" % sel(), "{{zone}} free"),
            ("max by (zone, mark) (nfsbulk_alloc_watermark_pages%s)" % sel(), "{{zone}} {{mark}}")],
           w=12, h=9),
        ts("Pages on per-thread lists", "short",
           "Pages held on the per-thread lists (the pcp lists), per zone, stacked; and pages handed out.",
           [("sum by (zone) (nfsbulk_alloc_pcp_pages%s)" % sel(), "{{zone}} per-thread lists"),
            ("sum(nfsbulk_alloc_allocated_pages%s)" % sel(), "allocated")], w=12, h=9),
        ts("Per-thread list refills and drains", "cps",
           "Batch transfers per second between the buddy lists and the per-thread lists.",
           [(rate("nfsbulk_alloc_pcp_refills_total", "zone"), "{{zone}} refills"),
            (rate("nfsbulk_alloc_pcp_drains_total", "zone"), "{{zone}} drains")], w=12),
        ts("Pages per second by API", "cps",
           "Pages handed out per second by API (single, bulk_list, bulk_array), and pages freed.",
           [(rate("nfsbulk_alloc_pages_total", "api"), "{{api}}"),
            (rate("nfsbulk_alloc_freed_pages_total", None), "freed")], w=12),
        ts("Allocator calls per second by API", "ops",
           "Allocator calls per second (bulk calls counted when they had work to do).",
           [(rate("nfsbulk_alloc_calls_total", "api"), "{{api}}")], w=8),
        ts("Failures by API", "cps",
           "Calls per second that returned no page at all. Non-zero only when the arena is exhausted.",
           [(rate("nfsbulk_alloc_failures_total", "api"), "{{api}}")], w=8),
        ts("Slow path and drain-all", "cps",
           "Single-page allocations per second that missed the LOW watermark in every zone (slow path), "
           "and times per second a thread drained every per-thread list to reclaim pages.",
           [(rate("nfsbulk_alloc_slowpath_total", None), "slow path"),
            (rate("nfsbulk_alloc_drain_all_total", None), "drain all")], w=8),
        ts("Free buddy blocks by order", "short",
           "Free blocks on the buddy lists by order (2^order pages each), all zones.",
           [("sum by (order) (nfsbulk_alloc_free_blocks%s)" % sel(), "order {{order}}")], w=12),
        ts("Managed pages and threads", "short",
           "Pages each zone manages, and threads with their own per-thread lists.",
           [("sum by (zone) (nfsbulk_alloc_managed_pages%s)" % sel(), "{{zone}} managed"),
            ("sum(nfsbulk_alloc_threads%s)" % sel(), "threads")], w=12),
    ]
    return dashboard("allocator", "nfsbulk / Allocator",
                     "nfsbulk's page allocator: zones and watermarks, per-thread lists, APIs and failures.",
                     ["alloc"], "nfsbulk_alloc_managed_pages", panels)


def rpc_server_dashboard():
    d = "nfsbulk_rpc_request_duration_seconds"
    qw = "nfsbulk_rpc_queue_wait_seconds"
    panels = [
        ts("Requests per second by procedure", "reqps",
           "RPC calls handled per second, by program and procedure (nfsbulk_rpc_requests_total).",
           [(rate("nfsbulk_rpc_requests_total", "program, procedure"), "{{program}} {{procedure}}")],
           w=12, h=9, stack=True),
        ts("Requests per second by status", "reqps",
           "RPC calls per second by RPC accept/reject or NFS status (ok, noent, garbage_args, ...).",
           [(rate("nfsbulk_rpc_requests_total", "status"), "{{status}}")], w=12, h=9),
        ts("Latency p50 by procedure", "s",
           "Median time from record received to reply sent, per procedure.",
           [quantiles(d, "procedure")[0]], w=12),
        ts("Latency p99 by procedure", "s",
           "99th percentile of the time from record received to reply sent, per procedure.",
           [quantiles(d, "procedure")[1]], w=12),
        hm("Request latency", "Distribution of request times, all procedures: requests per bucket per "
           "interval (nfsbulk_rpc_request_duration_seconds_bucket).", d + "_bucket", w=12),
        ts("Queue wait", "s",
           "From data ready on a connection to a worker picking it up: p50, p99 and mean.",
           quantiles(qw, "") + [(per_call_mean(qw, "instance"), "{{instance}} mean")], w=12),
        ts("Errors by reason", "cps",
           "RPC-level faults per second by reason (badfmt, badauth, prog_unavail, proc_unavail, "
           "garbage_args, record_too_large, truncated_record, ...). Clients that simply go away are "
           "disconnects, in the next panel.",
           [(rate("nfsbulk_rpc_errors_total", "reason"), "{{reason}}")], w=8),
        ts("Disconnects by reason", "cps",
           "Connections that ended per second by reason: eof and reset (the client went away between "
           "records, an ordinary exit), idle (closed after --idle-timeout), limit (refused for "
           "--max-connections). Not errors (nfsbulk_rpc_disconnects_total).",
           [(rate("nfsbulk_rpc_disconnects_total", "reason"), "{{reason}}")], w=8),
        ts("In-flight requests", "short", "Requests being processed (nfsbulk_rpc_in_flight).",
           [("sum(nfsbulk_rpc_in_flight%s)" % sel(), "in flight")], w=8),
        ts("Connections", "short", "Open client connections (nfsbulk_connections).",
           [("sum(nfsbulk_connections%s)" % sel(), "connections")], w=8),
        ts("NFS read / write throughput", "Bps",
           "READ payload bytes sent and WRITE payload bytes received per second (MB/s).",
           [(rate("nfsbulk_nfs_read_bytes_total", None), "read"),
            (rate("nfsbulk_nfs_write_bytes_total", None), "write")], w=8),
        ts("Duplicate request cache", "cps",
           "Duplicate request cache lookups per second for non-idempotent calls, by result: a hit replays "
           "a cached reply to a retransmission; in_progress drops a retransmission still being served.",
           [(rate("nfsbulk_rpc_drc_total", "result"), "{{result}}")], w=8),
    ]
    return dashboard("rpc_server", "nfsbulk / RPC server",
                     "rpcsrv: NFSv3 and MOUNT v3 calls, latency, queueing, errors, disconnects, connections, "
                     "throughput.",
                     ["rpc", "nfs"], "nfsbulk_build_info", panels)


def loadgen_dashboard():
    d = "nfsbulk_loadgen_op_duration_seconds"
    panels = [
        ts("Operations per second by op", "ops",
           "Loadfile operations executed per second, all statuses, by op.",
           [(rate("nfsbulk_loadgen_ops_total", "op"), "{{op}}")], w=12, h=9, stack=True),
        ts("Throughput", "Bps", "Payload bytes per second read and written by the clients (MB/s).",
           [(rate("nfsbulk_loadgen_bytes_total", "direction"), "{{direction}}")], w=12, h=9),
        ts("Client latency p50 by op", "s", "Median client-side latency per operation.",
           [quantiles(d, "op")[0]], w=12),
        ts("Client latency p99 by op", "s", "99th percentile of client-side latency per operation.",
           [quantiles(d, "op")[1]], w=12),
        hm("Client latency", "Distribution of client-side op latency, all ops "
           "(nfsbulk_loadgen_op_duration_seconds_bucket).", d + "_bucket", w=12),
        ts("Unexpected and error statuses", "ops",
           "Operations per second whose status was not the one the loadfile expects (unexpected) or that "
           "failed outright (error), by op.",
           [(rate("nfsbulk_loadgen_ops_total", "op, status", 'status!="ok"'), "{{op}} {{status}}")], w=6),
        ts("Clients", "short", "Client processes running (nfsbulk_loadgen_clients).",
           [("sum(nfsbulk_loadgen_clients%s)" % sel(), "clients")], w=6),
        ts("Open-loop latency by op", "s",
           "loadgen run --rate only: p50 and p99 of each operation's latency counted from its intended "
           "start (corrected for coordinated omission: a server stall shows here, not only in one call); "
           "the service time is the client latency panels' figure.",
           quantiles("nfsbulk_loadgen_open_loop_latency_seconds", "op"), w=12),
        ts("Schedule: offered, achieved and lag", "short",
           "loadgen run --rate only: the rate asked for and the operations started per second, and the "
           "schedule lag (how late operations started, p50 and p99, in seconds on the same axis). A lag "
           "that keeps growing means the rate is above what the clients and the server sustain.",
           [("sum(nfsbulk_loadgen_offered_rate_ops_per_second%s)" % sel(), "offered ops/s"),
            (rate("nfsbulk_loadgen_schedule_lag_seconds_count", None), "started ops/s")]
           + [(q, "lag " + leg + " (s)") for q, leg in quantiles("nfsbulk_loadgen_schedule_lag_seconds", "")],
           w=12),
    ]
    return dashboard("loadgen", "nfsbulk / Load generator",
                     "loadgen: operations, client-side latency, throughput and status mismatches.",
                     ["loadgen"], "nfsbulk_loadgen_clients", panels)


def page_pool_dashboard():
    x = "nfsbulk_udp_xdp_"
    panels = [
        ts("Pool cache hits vs slow-path refills", "cps",
           "Pages served per second from the pool's cache (nfsbulk_pool_alloc_fast_total), and slow-path "
           "refills per second from the page allocator (nfsbulk_pool_alloc_slow_total), by refill strategy: "
           "single refills one page per call, list and array 64.",
           [(rate("nfsbulk_pool_alloc_fast_total", "strategy"), "{{strategy}} cache hits"),
            (rate("nfsbulk_pool_alloc_slow_total", "strategy"), "{{strategy}} refills")], w=12, h=9),
        ts("Pages from the allocator per second", "cps",
           "Pages the pools took from the page allocator per second (nfsbulk_pool_pages_from_allocator_total). "
           "With --udp-recycle release every datagram needs one (the XDP_REDIRECT case of the 5.13 figures).",
           [(rate("nfsbulk_pool_pages_from_allocator_total", "strategy"), "{{strategy}}")], w=12, h=9),
        ts("Pages per refill", "short",
           "Pages one slow-path refill brought: 1 for single, up to 64 for list and array.",
           [("sum by (strategy) (rate(nfsbulk_pool_pages_from_allocator_total%s[%s])) / "
             "sum by (strategy) (rate(nfsbulk_pool_alloc_slow_total%s[%s]))" % (sel(), RI, sel(), RI),
             "{{strategy}}")], w=8),
        ts("Recycled vs released", "cps",
           "Pages recycled into the pool per second, by path (cache: direct from the receive loop; ring: "
           "through the recycle ring), cache refills from the ring, and recycles that found the ring full "
           "(the page went back to the allocator).",
           [(rate("nfsbulk_pool_recycled_total", "strategy, path"), "{{strategy}} recycled ({{path}})"),
            (rate("nfsbulk_pool_ring_refills_total", "strategy"), "{{strategy}} cache refills from the ring"),
            (rate("nfsbulk_pool_ring_full_total", "strategy"), "{{strategy}} ring full (released)")], w=8),
        ts("Released to the allocator", "cps",
           "Pages the pools gave back to the page allocator per second (nfsbulk_pool_released_total).",
           [(rate("nfsbulk_pool_released_total", "strategy"), "{{strategy}} released")], w=8),
        ts("Pool pages now", "short",
           "Pages in the pools' caches, and pages handed out (in flight: the compiled loop's receive ring "
           "holds up to 64 per receive thread), now.",
           [("sum by (strategy) (nfsbulk_pool_cache_pages%s)" % sel(), "{{strategy}} cache"),
            ("sum by (strategy) (nfsbulk_pool_inflight_pages%s)" % sel(), "{{strategy}} in flight")], w=8),
        ts("Recycle ring pages now", "short",
           "Pages waiting in the pools' recycle rings (--udp-recycle ring, or direct recycles that found the "
           "cache full).",
           [("sum by (strategy) (nfsbulk_pool_ring_pages%s)" % sel(), "{{strategy}} ring")], w=4),
        ts("Datagrams by verdict (compiled loop)", "cps",
           "Datagrams per second through the compiled receive loop (--udp-xdp), by verdict: tx (answered "
           "from C, XDP_TX), drop (XDP_DROP), pass (handed to the Python path, XDP_PASS).",
           [(rate(x + "datagrams_total", "verdict"), "{{verdict}}")], w=12),
        ts("Receive CPU per datagram", "ns",
           "The receive threads' CPU time (CLOCK_THREAD_CPUTIME_ID around the compiled loop) per datagram, "
           "by the refill strategy in use. Where the strategy shows: a few hundred ns per datagram, of which "
           "a page refill is a visible share.",
           [("1e9 * sum by (strategy) (rate(%srx_cpu_seconds_total%s[%s])) / "
             "sum by (strategy) (rate(%sdatagrams_total%s[%s]))" % (x, sel(), RI, x, sel(), RI), "{{strategy}}")],
           w=12),
        ts("Drops for want of a page", "cps",
           "Datagrams dropped because the pool had no page (nfsbulk_pool_alloc_empty_total: slow-path calls "
           "that got nothing; nfsbulk_udp_xdp_no_page_total: datagrams the compiled loop dropped for it), "
           "and XDP_TX replies a full socket buffer dropped.",
           [(rate("nfsbulk_pool_alloc_empty_total", "strategy"), "{{strategy}} refill got nothing"),
            (rate(x + "no_page_total", "strategy"), "{{strategy}} dropped, no page"),
            (rate(x + "tx_failed_total", "strategy"), "{{strategy}} TX reply dropped")], w=12),
        ts("svc_alloc_arg stalls", "cps",
           "The other page consumer on the same allocator: svc_alloc_arg calls per second that had to wait "
           "for a page to be freed (nfsbulk_svc_alloc_arg_waits_total), and single-page allocations that took "
           "the allocator's slow path (nfsbulk_alloc_slowpath_total). Non-zero only under memory pressure.",
           [(rate("nfsbulk_svc_alloc_arg_waits_total", "strategy"), "{{strategy}} svc_alloc_arg waits"),
            (rate("nfsbulk_alloc_slowpath_total", None), "allocator slow path")], w=12),
    ]
    return dashboard("page_pool", "nfsbulk / page_pool",
                     "page_pool on the RPC-over-UDP receive path: cache hits against refills, pages from the "
                     "allocator, recycled against released, the compiled loop's verdicts and CPU per datagram, "
                     "and svc_alloc_arg's stalls on the same allocator.", ["pool"], "nfsbulk_pool_cache_pages",
                     panels)


DASHBOARDS = {
    "svc_alloc_arg.json": svc_alloc_arg_dashboard,
    "allocator.json": allocator_dashboard,
    "rpc_server.json": rpc_server_dashboard,
    "loadgen.json": loadgen_dashboard,
    "page_pool.json": page_pool_dashboard,
}


def render(build) -> str:
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict:
    """{file name: JSON text} for every dashboard."""
    return {name: render(build) for name, build in DASHBOARDS.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed JSON differs from the output")
    ap.add_argument("--out", default=OUT_DIR, help="directory to write (default grafana/dashboards)")
    args = ap.parse_args(argv)
    out = rendered()
    if args.check:
        bad = 0
        for name, text in out.items():
            path = os.path.join(args.out, name)
            try:
                with open(path, encoding="utf-8") as f:
                    old = f.read()
            except FileNotFoundError:
                old = ""
            if old != text:
                bad += 1
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), path, path + " (generated)", n=2))
        extra = sorted(set(n for n in os.listdir(args.out) if n.endswith(".json")) - set(out)) \
            if os.path.isdir(args.out) else []
        for name in extra:
            print("%s: not generated by grafana/generate.py" % os.path.join(args.out, name))
        if bad or extra:
            print("dashboards out of date: run python grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    os.makedirs(args.out, exist_ok=True)
    for name, text in out.items():
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote %s" % os.path.join(args.out, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
