"""The committed dashboards are exactly grafana/generate.py's output."""
from __future__ import annotations

import json
import subprocess
import sys

from grafana_testlib import DASH_DIR, GRAFANA, ROOT, load_generate_module


def test_committed_json_is_the_generator_output():
    gen = load_generate_module()
    out = gen.rendered()
    committed = {p.name for p in DASH_DIR.glob("*.json")}
    assert committed == set(out), "dashboards/ holds files the generator does not write (or misses some)"
    for name, text in out.items():
        assert (DASH_DIR / name).read_text(encoding="utf-8") == text, \
            "%s differs from the generator output: run python grafana/generate.py" % name
        json.loads(text)


def test_generation_is_deterministic():
    gen = load_generate_module()
    assert gen.rendered() == gen.rendered()


def test_check_mode_passes_on_the_committed_tree():
    r = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_mode_fails_on_a_stale_file(tmp_path):
    r = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    check = [sys.executable, str(GRAFANA / "generate.py"), "--check", "--out", str(tmp_path)]
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 0
    victim = tmp_path / "rpc_server.json"
    doc = json.loads(victim.read_text())
    doc["title"] += " (edited by hand)"
    victim.write_text(json.dumps(doc, indent=2))
    r = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "rpc_server.json" in r.stdout and "edited by hand" in r.stdout
    victim.unlink()
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 1
