"""The soak: client processes of mixed load, the server restarted in the middle; no unexpected
status, no client failure, both server stops clean with no page leaked, RSS flat.

Two lengths: 16 clients for 10 s in `make test`, and the full 64 clients for 60 s behind the
`long` marker (`make test-long`, or `pytest -m long`)."""
import json
import subprocess
import sys

import pytest

from nfsbulk_testlib import ROOT


@pytest.mark.parametrize("clients, seconds, sample", [
    pytest.param(16, 10, 1, id="short"),
    pytest.param(64, 60, 3, id="60s", marks=pytest.mark.long),
])
def test_soak_with_restart(tmp_path, clients, seconds, sample):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, "-m", "loadgen", "soak", "--clients", str(clients), "--time", str(seconds),
                        "--warmup", "3", "--sample", str(sample), "--threads", "8", "--json", str(out)],
                       cwd=ROOT, capture_output=True, timeout=600)
    rep = json.loads(out.read_text())
    tail = r.stdout.decode()[-3000:] + r.stderr.decode()[-3000:]
    assert r.returncode == 0, tail
    # the restart in the middle of the measured time (soak's default: warmup + time / 2)
    assert rep["restart_at"] == 3 + seconds / 2, tail
    assert rep["ok"] and rep["restarts"] == 1, tail
    assert rep["unexpected"] == 0 and not rep["client_failures"], tail
    assert rep["pages_leaked"] == [0, 0] and rep["exit_statuses"] == [0, 0], tail
    assert rep["ops"] > 1000, tail
    # RSS flat: the last sample within 50% (+16 MiB) of the first after warmup, across a restart
    assert rep["rss_last_kib"] <= rep["rss_first_kib"] * 1.5 + 16384, rep["rss_kib"]
