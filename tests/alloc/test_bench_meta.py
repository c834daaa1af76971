"""The allocator's benchmarks put the same `meta` object in their JSON as loadgen's result files."""
import json
import subprocess
import sys

from nfsbulk_testlib import ROOT

KEYS = {"timestamp", "hostname", "kernel", "cpu_model", "cpus", "python", "nfsbulk_version", "git_commit", "argv"}


def test_alloc_bench_json_has_meta(tmp_path):
    out = tmp_path / "a.json"
    r = subprocess.run([sys.executable, "-m", "alloc.bench", "--rounds", "3", "--holes", "16",
                        "--strategies", "single,array", "--json", str(out)], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(out.read_text())
    assert doc["schema"].startswith("nfsbulk-alloc-bench/") and KEYS <= set(doc["meta"])
    assert doc["meta"]["timestamp"].endswith("+00:00") and "--rounds" in doc["meta"]["argv"]


def test_poolbench_json_has_meta():
    r = subprocess.run([sys.executable, "-m", "alloc.poolbench", "--json", "--pages", "20000", "--rounds", "1"],
                       cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["schema"].startswith("nfsbulk-poolbench/") and KEYS <= set(doc["meta"])
