"""Output: dbench-style per-second lines, the final table, the JSON document.

Pure formatting over :class:`stats.PhaseStats` values; no I/O except the
``write_json`` helper.  MB is 10^6 bytes of READ and WRITE payload.
JSON schema (``"schema": "nfsbulk-loadgen/2"``): ``meta`` (host, commit, argv:
loadgen/common/meta.py), run parameters, the run
phase's totals and per-op stats with the contract histogram (non-cumulative
counts per upper bound in ``bucket_bounds_seconds`` plus a final +Inf count)
so documents from several runs or hosts merge by adding ``buckets``; per op
p50/p90/p99/p999_seconds from the fine histogram (``fine_buckets``, see stats.py).
``ops`` is always the service time (send to reply); an open-loop run adds
``open_loop`` (:func:`open_loop_doc`): the schedule and the latencies from
the intended start, per op and over all ops.
"""
from __future__ import annotations

import json
import math

from ..common.meta import SCHEMA_RUN, build_meta
from .stats import BOUNDS, PhaseStats

__all__ = ["second_line", "final_table", "build_json", "write_json", "MB", "open_loop_doc", "open_loop_lines",
           "BEHIND_LAG_SECONDS", "BEHIND_UNSENT_SHARE"]

#: an open-loop schedule counts as fallen behind when, at the end, it lags by more than this ...
BEHIND_LAG_SECONDS = 0.05
#: ... or more than this share of its intended starts in the measured window never started
BEHIND_UNSENT_SHARE = 0.01

MB = 1e6


def second_line(clients: int, ops: int, nbytes: int, phase: str, secs: float, max_lat: float) -> str:
    mbps = nbytes / MB / secs if secs > 0 else 0.0
    return (f"{clients:4d} {ops:9d} {mbps:9.2f} MB/sec  {phase:<7s} {int(round(secs)):4d} sec  "
            f"latency {max_lat * 1e3:.3f} ms")


def second_report(clients: int, phases: dict, tick: float, t0: float, warmup_end: float, warmup: float,
                  interval_max: list, open_loop: bool = False) -> tuple[str, dict]:
    """The dbench-style line and the JSON row of the second ending at `tick` (monotonic), from the
    phases' running stats: ops counted as completed (failures apart, as the final table does),
    bytes, and the largest latency since the last line (interval_max[0], reset here). Open loop:
    the latency is from the intended start, and the largest schedule lag (interval_max[1]) follows."""
    phase = "warmup" if tick <= warmup_end + 1e-9 and warmup > 0 else "run"
    st = phases[phase]
    secs = (tick - t0) if phase == "warmup" else (tick - warmup_end)
    lat = interval_max[0]
    lag = interval_max[1] if len(interval_max) > 1 else 0.0
    interval_max[0] = 0.0
    if len(interval_max) > 1:
        interval_max[1] = 0.0
    nbytes = st.read_bytes + st.write_bytes
    line = second_line(clients, st.completed, nbytes, "warmup" if phase == "warmup" else "execute", secs, lat)
    row = {"t": round(tick - t0, 3), "phase": phase, "ops": st.completed, "bytes": nbytes,
           "max_latency_seconds": lat}
    if open_loop:
        line += f"  lag {lag * 1e3:.3f} ms"
        row["max_lag_seconds"] = lag
    return line, row


def _ms(x: float) -> str:
    return f"{x * 1e3:9.3f}"


def reported_phase(phases: dict, end_of_run: float, warmup_end: float, t0: float) -> tuple:
    """(phase, its PhaseStats, seconds) the final table reports: the measured phase once it began
    (it has operations or its time started), else the warmup a run stopped in (Ctrl-C, a failure)."""
    if phases["run"].count or end_of_run > warmup_end:
        return "run", phases["run"], max(0.0, end_of_run - warmup_end)
    return "warmup", phases["warmup"], max(0.0, end_of_run - t0)


def keep_mismatch(mismatches: list, line: str, limit: int, say) -> None:
    """Keep (and say) the first `limit` unexpected-status lines; after them one marker line, then
    nothing: the caller counts them all."""
    if len(mismatches) < limit:
        mismatches.append(line)
        say(line)
    elif len(mismatches) == limit:
        mismatches.append("... further mismatches not shown")
        say("loadgen: further mismatches counted but not shown")


def _op_rows(st: PhaseStats) -> list:
    rows = []
    for name in sorted(st.ops):
        s = st.ops[name]
        n = s.count
        mean = s.sum / n if n else 0.0
        rows.append(f" {name:<24s}{n:>10d} {_ms(mean)} {_ms(s.quantile(0.5))} {_ms(s.quantile(0.9))}"
                    f" {_ms(s.quantile(0.99))} {_ms(s.quantile(0.999))} {_ms(s.max)}{s.error:>8d}{s.unexpected:>7d}")
    return rows


def final_table(st: PhaseStats, elapsed: float, clients: int, phase: str = "run",
                cpu_seconds: float | None = None, degraded: str | None = None,
                service: PhaseStats | None = None) -> str:
    """The per-operation table and the headline. Operations and ops/sec count what completed as
    the workload expects; unexpected statuses are failures, reported beside them. `degraded`
    (why the figures are not a clean run's) adds a DEGRADED line. `service` (an open-loop run,
    `st` then holding the latencies from the intended start): a second block of rows with the
    service times."""
    lines = []
    lines.append("")
    if service is not None:
        lines.append(" Latency from the intended start (open loop, corrected for coordinated omission):")
    lines.append(f" {'Operation':<24s}{'Count':>10s}{'Mean ms':>10s}{'p50 ms':>10s}{'p90 ms':>10s}"
                 f"{'p99 ms':>10s}{'p99.9 ms':>10s}{'Max ms':>10s}{'Errors':>8s}{'Unexp':>7s}")
    lines.append(" " + "-" * 108)
    lines += _op_rows(st)
    if service is not None:
        lines.append(" Service time (start to reply, not corrected):")
        lines += _op_rows(service)
    done = st.completed
    errors = sum(s.error for s in st.ops.values())
    unexpected = st.failed
    lines.append(" " + "-" * 108)
    tput = (st.read_bytes + st.write_bytes) / MB / elapsed if elapsed > 0 else 0.0
    ops_s = done / elapsed if elapsed > 0 else 0.0
    lines.append(f"Throughput {tput:.2f} MB/sec (read {st.read_bytes / MB / elapsed if elapsed else 0:.2f}, "
                 f"write {st.write_bytes / MB / elapsed if elapsed else 0:.2f})  {ops_s:.1f} ops/sec  "
                 f"{clients} clients  {elapsed:.2f} s {phase}")
    extra = f"Operations {done}  errors (expected failures) {errors}  unexpected statuses {unexpected}"
    if unexpected:
        extra += " (failures: not in Operations or ops/sec)"
    if cpu_seconds is not None and done:
        extra += f"  client CPU {cpu_seconds:.2f} s = {cpu_seconds / done * 1e6:.1f} us/op"
    lines.append(extra)
    if degraded:
        lines.append(f"DEGRADED: {degraded}")
    return "\n".join(lines)


def build_json(*, cfg: dict, workload: str, st: PhaseStats, elapsed: float, phase: str,
               clients: int, per_second: list, mismatches: list, mismatch_count: int,
               failures: list, interrupted: bool, cpu_seconds: float | None,
               server_limits: dict, degraded: str | None = None, first_failure: str | None = None) -> dict:
    total = st.completed
    return {
        "schema": SCHEMA_RUN,
        "meta": build_meta(),
        "settings": {"load": {k: cfg.get(k) for k in ("clients", "time", "warmup", "profile", "loadfile", "rw_files",
                                                      "rw_file_size", "seed", "ignore_timestamps", "rpc_timeout",
                                                      "rate", "arrival")}},
        "url": cfg["url"],
        "workload": workload,
        "clients": clients,
        "warmup_seconds": cfg["warmup"],
        "time_seconds": cfg["time"],
        "phase_reported": phase,
        "elapsed_seconds": elapsed,
        "interrupted": interrupted,
        "ops_total": total,
        "ops_per_second": total / elapsed if elapsed > 0 else 0.0,
        "bytes": {"read": st.read_bytes, "write": st.write_bytes},
        "mb_per_second": (st.read_bytes + st.write_bytes) / MB / elapsed if elapsed > 0 else 0.0,
        "errors": sum(s.error for s in st.ops.values()),
        "unexpected": sum(s.unexpected for s in st.ops.values()),
        "failed_ops": st.failed,
        "degraded": degraded,
        "first_failure": first_failure,
        "mismatch_count": mismatch_count,
        "mismatches": mismatches,
        "client_failures": failures,
        "client_cpu_seconds": cpu_seconds,
        "cpu_us_per_op": (cpu_seconds / total * 1e6) if (cpu_seconds is not None and total) else None,
        "server_limits": server_limits,
        "bucket_bounds_seconds": list(BOUNDS),
        "ops": {name: st.ops[name].to_json() for name in sorted(st.ops)},
        "per_second": per_second,
    }


def open_loop_doc(cfg: dict, st: PhaseStats, elapsed: float, ends: list) -> dict:
    """The ``open_loop`` section of an open-loop run: `st` the reported phase, `ends` the
    clients' schedule figures at the end (client.py's "done")."""
    scheduled = sum(e["scheduled"] for e in ends)
    unsent = sum(e["unsent"] for e in ends)
    lag_end = max((e["lag_end"] for e in ends), default=0.0)
    achieved = st.completed / elapsed if elapsed > 0 else 0.0
    service = st.all_ops("service")
    mean_service = service.sum / service.count if service.count else None
    behind = lag_end > BEHIND_LAG_SECONDS or (scheduled > 0 and unsent > BEHIND_UNSENT_SHARE * scheduled)
    return {
        "rate": cfg["rate"], "arrival": cfg.get("arrival") or "fixed", "clients": cfg["clients"],
        "rate_per_client": cfg["rate"] / cfg["clients"],
        "offered_ops_per_second": scheduled / elapsed if elapsed > 0 else 0.0,
        "achieved_ops_per_second": achieved,
        "scheduled": scheduled, "started": sum(e["started"] for e in ends), "unsent": unsent,
        "lag_end_seconds": lag_end, "behind": behind,
        "mean_service_seconds": mean_service,
        # one call in flight per client: N clients offer at most N / (mean service time) ops/s
        "clients_needed": math.ceil(cfg["rate"] * mean_service) if mean_service else None,
        "lag": st.lag.to_json(),
        "all": st.all_ops("intended").to_json(),
        "service_all": service.to_json(),
        "ops": {name: st.intended[name].to_json() for name in sorted(st.intended)},
    }


def open_loop_lines(ol: dict, clients: int) -> list:
    """The schedule line of the table and, when the schedule fell behind, the plain statement
    (for stderr) of what the rate would need."""
    lag = ol["lag"]
    out = [f"Open loop: offered {ol['offered_ops_per_second']:.1f} ops/s ({ol['arrival']} arrivals at "
           f"{ol['rate']:g} ops/s), achieved {ol['achieved_ops_per_second']:.1f} ops/s; schedule lag "
           f"p50 {lag['p50_seconds'] * 1e3:.3f} ms p99 {lag['p99_seconds'] * 1e3:.3f} ms max "
           f"{lag['max_seconds'] * 1e3:.3f} ms, {ol['lag_end_seconds'] * 1e3:.1f} ms at the end; "
           f"{ol['unsent']} of {ol['scheduled']} intended starts never started"]
    if ol["behind"]:
        need = ol["clients_needed"]
        svc = ol["mean_service_seconds"]
        out.append(f"loadgen: the schedule fell behind: {clients} client(s) achieved "
                   f"{ol['achieved_ops_per_second']:.0f} of {ol['rate']:g} ops/s. Each client has one call in "
                   f"flight, so at the measured mean service time of "
                   + (f"{svc * 1e3:.3f} ms the rate needs at least {need} clients" if need else "(none measured)")
                   + "; if more clients do not raise the achieved rate, the server is the limit")
    return out


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
