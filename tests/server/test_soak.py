"""The 60-second soak: 64 client processes of mixed load, the server restarted in the middle;
no unexpected status, no client failure, both server stops clean with no page leaked, RSS flat."""
import json
import subprocess
import sys

from nfsbulk_testlib import ROOT


def test_soak_60s_with_restart(tmp_path):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, "-m", "loadgen", "soak", "--clients", "64", "--time", "60",
                        "--warmup", "3", "--sample", "3", "--threads", "8", "--json", str(out)],
                       cwd=ROOT, capture_output=True, timeout=600)
    rep = json.loads(out.read_text())
    tail = r.stdout.decode()[-3000:] + r.stderr.decode()[-3000:]
    assert r.returncode == 0, tail
    assert rep["ok"] and rep["restarts"] == 1, tail
    assert rep["unexpected"] == 0 and not rep["client_failures"], tail
    assert rep["pages_leaked"] == [0, 0] and rep["exit_statuses"] == [0, 0], tail
    assert rep["ops"] > 1000, tail
    # RSS flat: the last sample within 50% (+16 MiB) of the first after warmup, across a restart
    assert rep["rss_last_kib"] <= rep["rss_first_kib"] * 1.5 + 16384, rep["rss_kib"]
