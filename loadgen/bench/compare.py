"""loadgen compare A.json B.json [C.json ...]: matching figures of result files side by side.

The first file is the reference; every other file's figures are given as a ratio to it. Files
are all `bench` documents (schema nfsbulk-bench/*) or all `run` documents (nfsbulk-loadgen/*).

* bench: per profile and strategy (or peer) present in both files: ops/s, MB/s, svc_alloc_arg us
  per call and server CPU us per op. The files' rounds are independent samples, so the ratio is
  of geometric means with a Welch t-interval on the logs (loadgen/bench/ci.py) and a verdict, when both
  files have at least two rounds; otherwise the ratio of medians, undetermined.
* run: ops/s, MB/s, client CPU us per op, and per operation the mean and p50/p90/p99/p99.9
  latency: one run each, so ratios without intervals.

For costs (us, latency) a ratio below 1 is "faster". Output: a text table, or with `--json`
(`-` for stdout) / `--output-format json` a document (schema nfsbulk-compare/1). Bad input is a
one-line message and exit 2. No threads.
"""

from __future__ import annotations

import json
import sys

from . import ci
from ..common.meta import SCHEMA_COMPARE, build_meta
from ..common.outputs import Outputs, check_path

__all__ = ["add_arguments", "main", "compare_docs"]

_BENCH_FIGS = (("ops_per_s", True), ("mb_per_s", True), ("svc_alloc_arg_us_per_call", False),
               ("server_cpu_us_per_op", False))
_RUN_FIGS = (("ops_per_second", True), ("mb_per_second", True), ("cpu_us_per_op", False))
_OP_FIGS = ("mean_seconds", "p50_seconds", "p90_seconds", "p99_seconds", "p999_seconds")


def add_arguments(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE.json",
                   help="two or more result files of `loadgen bench` or of `loadgen run`; the first is the reference")
    p.add_argument("--json", metavar="FILE", help="write the comparison as JSON (- for stdout)")
    p.add_argument("--output-format", choices=("text", "json"), default="text",
                   help="json: the JSON document on stdout, the table on stderr (default text)")


def _kind(doc) -> str | None:
    schema = str(doc.get("schema", ""))
    if schema.startswith("nfsbulk-bench/") and "profiles" in doc:
        return "bench"
    if schema.startswith("nfsbulk-loadgen/") and "ops" in doc:
        return "run"
    return None


def _row(profile, entry, figure, values, samples, higher):
    """One figure across files: values, and ratios of each later file to the first."""
    ratios = []
    for v, s in zip(values[1:], samples[1:]):
        if samples[0] is not None and s is not None and len(samples[0]) >= 2 and len(s) >= 2:
            r = ci.unpaired_ratio(s, samples[0])
            ratios.append({"ratio": r["ratio"], "ci95": r["ci95"], "verdict": ci.verdict(r["ci95"], higher)})
        else:
            ok = v is not None and values[0] not in (None, 0)
            ratios.append({"ratio": v / values[0] if ok else None, "ci95": None,
                           "verdict": ci.UNDETERMINED if ok else "n/a"})
    return {"profile": profile, "entry": entry, "figure": figure, "values": values, "ratios": ratios}


def _bench_rows(docs):
    rows = []
    first = docs[0]
    for prof, res in first["profiles"].items():
        for group in ("strategies", "peers"):
            for name in res.get(group, {}):
                per = [d["profiles"].get(prof, {}).get(group, {}).get(name) for d in docs]
                if any(p is None for p in per):
                    continue
                for fig, higher in _BENCH_FIGS:
                    if fig not in per[0]:
                        continue
                    values = [p.get(fig) for p in per]
                    samples = [[r.get(fig) for r in p.get("rounds", [])] or None for p in per]
                    rows.append(_row(prof, ("peer " if group == "peers" else "") + name, fig, values, samples,
                                     higher))
    return rows


def _run_rows(docs):
    rows = []
    for fig, higher in _RUN_FIGS:
        rows.append(_row("run", "all ops", fig, [d.get(fig) for d in docs], [None] * len(docs), higher))
    for op in docs[0]["ops"]:
        if not all(op in d["ops"] for d in docs):
            continue
        for fig in _OP_FIGS:
            rows.append(_row("run", op, fig, [d["ops"][op].get(fig) for d in docs], [None] * len(docs), False))
    return rows


def compare_docs(paths, docs) -> dict:
    """The comparison document of loaded result documents (all of one kind)."""
    kind = _kind(docs[0])
    return {
        "schema": SCHEMA_COMPARE, "meta": build_meta(), "kind": kind,
        "files": [{"path": p, "schema": d.get("schema"), "timestamp": (d.get("meta") or {}).get("timestamp"),
                   "git_commit": (d.get("meta") or {}).get("git_commit"),
                   "hostname": (d.get("meta") or {}).get("hostname")} for p, d in zip(paths, docs)],
        "rows": _bench_rows(docs) if kind == "bench" else _run_rows(docs),
    }


def _fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return format(round(v), ",")
    if abs(v) < 0.01:
        return "%.3g" % v
    return "%.3f" % v


def format_text(doc) -> str:
    letters = [chr(ord("A") + i) for i in range(len(doc["files"]))]
    lines = ["files:"]
    for L, f in zip(letters, doc["files"]):
        lines.append("  %s = %s (%s, %s, commit %s)" % (L, f["path"], f["timestamp"] or "no timestamp",
                                                      f["hostname"] or "?", (f["git_commit"] or "none")[:12]))
    head = "  %-8s %-14s %-26s" % ("profile", "entry", "figure") + "".join("%12s" % L for L in letters) + \
        "".join("  %-36s" % ("%s/A [95%% CI] verdict" % L) for L in letters[1:])
    lines += ["", head]
    for r in doc["rows"]:
        cells = "".join("%12s" % _fmt(v) for v in r["values"])
        for x in r["ratios"]:
            c = " [%.3f, %.3f]" % tuple(x["ci95"]) if x["ci95"] else ""
            cells += "  %-36s" % (("x%.3f%s %s" % (x["ratio"], c, x["verdict"])) if x["ratio"] is not None else "n/a")
        lines.append("  %-8s %-14s %-26s%s" % (r["profile"], r["entry"][:14], r["figure"], cells))
    return "\n".join(lines)


def main(args) -> int:
    def usage(msg):
        print("loadgen compare: %s" % msg, file=sys.stderr)
        return 2
    err = check_path("--json", args.json, allow_stdout=True)
    if err:
        return usage(err)
    if len(args.files) < 2:
        return usage("give two or more result files")
    docs = []
    for path in args.files:
        try:
            with open(path) as f:
                docs.append(json.load(f))
        except OSError as e:
            return usage("%s: %s" % (path, e.strerror or e))
        except ValueError as e:
            return usage("%s: not JSON (%s)" % (path, e))
        if not isinstance(docs[-1], dict) or _kind(docs[-1]) is None:
            return usage("%s: not a result file of loadgen bench or loadgen run" % path)
    kinds = {_kind(d) for d in docs}
    if len(kinds) > 1:
        return usage("the files mix bench and run results; compare files of one kind")
    doc = compare_docs(args.files, docs)
    outs = Outputs(args.json, args.output_format)
    outs.say(format_text(doc))
    outs.write(doc)
    return 0
