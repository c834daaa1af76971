"""What the documentation says about the code is what the code does: every metric named with
labels in README.md or grafana/README.md has those labels in docs/metrics.md, every metric named
anywhere in them is in docs/metrics.md, and grafana/README.md lists exactly the dashboards that
exist (file, uid and their number in words)."""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: names of the nfsbulk_ form that are not metrics (a JSON field of the bench's meta block)
NOT_METRICS = {"nfsbulk_version"}
NUMBERS = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight"}


def _read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def _documented():
    """{metric name: set of label names} from docs/metrics.md's tables."""
    out = {}
    for line in _read("docs/metrics.md").splitlines():
        m = re.match(r"\|\s*`(nfsbulk_\w+)`\s*\|[^|]*\|([^|]*)\|", line)
        if m:
            labels = set(re.findall(r"(?:^|[,(]\s*|\s)([a-z_]+)(?=\s*(?:\(|,|$))", m.group(2).strip()))
            out[m.group(1)] = labels | set(re.findall(r"\b([a-z_]+)\s*\(", m.group(2)))
    return out


def _base(name):
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[: -len(suffix)] not in ("",):
            return name[: -len(suffix)], name
    return name, name


def test_metric_names_and_labels_in_the_readmes_are_documented():
    doc = _documented()
    assert len(doc) > 30, "docs/metrics.md not parsed"
    bad = []
    for rel in ("README.md", "grafana/README.md"):
        for m in re.finditer(r"`(nfsbulk_\w+)(?:\{([^}`]*)\})?", _read(rel)):
            name, labels = m.group(1), m.group(2)
            if name in NOT_METRICS:
                continue
            base, full = _base(name)
            known = doc.get(full) or doc.get(base + "_total") or doc.get(base) or doc.get(name)
            if known is None and not any(k.startswith(name) for k in doc):
                bad.append("%s: %s not in docs/metrics.md" % (rel, name))
                continue
            for part in (labels or "").split(","):
                label = part.split("=")[0].strip()
                if label and known is not None and label not in known:
                    bad.append("%s: %s has no label %r (docs/metrics.md: %s)" % (rel, name, label, sorted(known)))
    assert bad == []


def test_grafana_readme_lists_every_dashboard():
    text = _read("grafana/README.md")
    files = sorted(f for f in os.listdir(os.path.join(ROOT, "grafana", "dashboards")) if f.endswith(".json"))
    for f in files:
        uid = json.loads(_read("grafana/dashboards/" + f))["uid"]
        assert "| `dashboards/%s` | `%s` |" % (f, uid) in text, f
    listed = re.findall(r"^\| `dashboards/([\w.]+)`", text, re.M)
    assert sorted(listed) == files
    assert text.split("\n", 3)[2].startswith("%s Grafana dashboards" % NUMBERS[len(files)])


def test_readme_results_are_the_committed_runs():
    """README's results (the Quickstart excerpt and "Results") are that run's output: every table row
    and verdict line shown is a line bench's own formatters print from docs/bench-2core.json.gz (the
    run's JSON, which docs/bench-2core.png was drawn from), and the PNG is there."""
    import gzip
    import json

    from loadgen.bench.benchreport import format_profile, verdict_lines

    with gzip.open(os.path.join(ROOT, "docs", "bench-2core.json.gz"), "rt") as f:
        doc = json.load(f)
    printed = set()
    for prof, res in doc["profiles"].items():
        printed.update(ln.rstrip() for ln in format_profile(prof, res, doc["settings"], doc["kernel"]).splitlines())
        printed.update(verdict_lines(prof, res, doc["settings"]["baseline"]))
    readme = _read("README.md")
    results = readme[readme.index("## Results ("):readme.index("## Payloads past 1 MiB")]
    quick = readme[readme.index("## Quickstart"):readme.index("## What is in it")]
    shown = []
    for part in (quick, results):
        for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", part, re.S | re.M):
            shown += [ln.rstrip() for ln in block.splitlines()
                      if ln.startswith("verdict ") or re.match(r"  \S.* (us per call|\[\d|WRITE3|READ3)", ln)]
    assert len(shown) >= 20, shown
    for ln in shown:
        if "holes" in ln or ln.startswith(("single ", "list ", "array ")):
            continue                                   # the allocator's table (alloc.bench), not bench's
        assert ln in printed, "README shows a line the committed run did not print: %r" % ln
    # the seed, commit and date README names are the run's
    assert "seed %d)" % doc["settings"]["seed"] in results
    assert doc["meta"]["git_commit"][:7] in results and doc["meta"]["timestamp"][:10] in results
    assert os.path.getsize(os.path.join(ROOT, "docs", "bench-2core.png")) > 50_000


def test_readme_ganesha_table_is_the_committed_runs():
    """The rpcsrv/ganesha table: each row's medians, and the inverses of bench's paired ganesha/array
    ratios with their CIs, as docs/vs-ganesha-2core.json.gz (the run behind vs-ganesha-2core.png) has them."""
    import gzip
    import json

    with gzip.open(os.path.join(ROOT, "docs", "vs-ganesha-2core.json.gz"), "rt") as f:
        doc = json.load(f)
    readme = _read("README.md")
    rows = {}
    for line in readme[readme.index("| workload | rpcsrv ops/s | ganesha ops/s"):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split()[0]] = cells[1:]
    names = {"rw256k": "rw256k", "nfs3": "dbench's", "dbench": "client.txt"}
    assert set(rows) == set(names.values()) and set(doc["profiles"]) == set(names)

    def inv(c):
        return "%.2f [%.2f, %.2f]" % (1 / c["ratio"], 1 / c["ci95"][1], 1 / c["ci95"][0])
    for prof, res in doc["profiles"].items():
        a, g, c = res["strategies"]["array"], res["peers"]["ganesha"], res["comparisons"]["ganesha"]
        assert rows[names[prof]] == [format(round(a["ops_per_s"]), ","), format(round(g["ops_per_s"]), ","),
                                     inv(c["ops_per_s"]),
                                     "%.1f / %.1f" % (a["server_cpu_us_per_op"], g["server_cpu_us_per_op"]),
                                     inv(c["server_cpu_us_per_op"])], prof
    assert doc["meta"]["git_commit"][:7] in readme and doc["settings"]["seed"] == 1314


#: source and doc files whose comments name repository paths (tests/test_layers.py builds a
#: synthetic tree of made-up paths, so it is not read)
_PATH_RE = re.compile(r"\b((?:rpcsrv|alloc|loadgen|clikit|tests|grafana|docs)/[\w/.-]*\.(?:py|pyx|pxi|pxd|h|md|json\.gz|json|png))\b(?!\.\w)")


def test_paths_named_in_comments_and_docs_exist():
    """A file a comment, docstring or doc names (rpcsrv/xprt/udp.py, docs/metrics.md, ...) is there:
    renames leave no stale pointers behind."""
    stale = []
    for top in ("rpcsrv", "alloc", "loadgen", "clikit", "tests", "grafana", "docs"):
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                if rel == "tests/test_layers.py" or not name.endswith((".py", ".pyx", ".pxi", ".pxd", ".h", ".md")):
                    continue
                for path in set(_PATH_RE.findall(_read(rel))):
                    if not os.path.exists(os.path.join(ROOT, path)):
                        stale.append("%s names %s" % (rel, path))
    for path in set(_PATH_RE.findall(_read("README.md"))):
        if not os.path.exists(os.path.join(ROOT, path)):
            stale.append("README.md names %s" % path)
    assert not stale, "\n".join(stale)
