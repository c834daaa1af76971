"""promtool (Debian's prometheus package) on the committed config and on the
live /metrics output of rpcsrv (both servers) and loadgen."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from grafana_testlib import GRAFANA, job_names

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt: prometheus)")


def test_promtool_check_config():
    r = subprocess.run(["promtool", "check", "config", str(GRAFANA / "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_prometheus_yml_scrapes_server_and_loadgen():
    text = (GRAFANA / "prometheus.yml").read_text()
    jobs = job_names()
    for job, port in ((jobs["rpcsrv"], 9410), (jobs["loadgen"], 9411)):
        block = text.split("job_name: " + job, 1)[1].split("job_name:", 1)[0]
        assert re.search(r"127\.0\.0\.1:%d\b" % port, block), (job, block)


@pytest.mark.parametrize("source", ["rpcsrv", "pressure", "loadgen"])
def test_promtool_check_metrics_on_live_output(stack, source):
    text = stack.expositions[source]
    assert "nfsbulk_" in text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "promtool check metrics on %s:\n%s%s" % (source, r.stdout, r.stderr)
