"""Provisioning files and docker-compose agree with the dashboards and each other."""
from __future__ import annotations

import re

from grafana_testlib import GRAFANA, load_dashboards

DS_YAML = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
DASH_YAML = GRAFANA / "provisioning" / "dashboards" / "nfsbulk.yaml"
COMPOSE = GRAFANA / "docker-compose.yml"


def _value(text: str, key: str) -> str:
    m = re.search(r"^\s*-?\s*%s:\s*['\"]?([^'\"\n#]+?)['\"]?\s*(#.*)?$" % key, text, re.M)
    assert m, key
    return m.group(1)


def test_datasource_uid_is_the_dashboards_default():
    text = DS_YAML.read_text()
    uid = _value(text, "uid")
    assert _value(text, "type") == "prometheus"
    assert _value(text, "apiVersion") == "1"
    for name, d in load_dashboards().items():
        ds = [v for v in d["templating"]["list"] if v["name"] == "datasource"][0]
        assert ds["current"]["value"] == uid, name


def test_dashboard_provider_path_is_mounted_in_compose():
    text = DASH_YAML.read_text()
    assert _value(text, "type") == "file"
    path = _value(text, "path")
    compose = COMPOSE.read_text()
    assert re.search(r"\./dashboards:%s(:ro)?\s*$" % re.escape(path), compose, re.M), path


def test_compose_mounts_existing_files():
    compose = COMPOSE.read_text()
    mounts = re.findall(r"^\s*-\s*(\./[^:\s]+):", compose, re.M)
    assert {"./prometheus.yml", "./provisioning/datasources", "./provisioning/dashboards", "./dashboards"} <= set(mounts)
    for m in mounts:
        assert (GRAFANA / m).exists(), m
    assert compose.count("network_mode: host") == 2
    for image in re.findall(r"image:\s*(\S+)", compose):
        assert ":" in image and not image.endswith(":latest"), "pin the image version: %s" % image


def test_readme_covers_both_ways():
    text = (GRAFANA / "README.md").read_text()
    for needle in ("docker compose", "apt", "prometheus", "generate.py", "promtool"):
        assert needle in text, needle
