"""``deploy/``: the Grafana dashboard asks only for metrics the gateway exports, and the example
Prometheus config scrapes ``/metrics``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway import make_config
from lockgate.telemetry.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported_names() -> set[str]:
    text = Metrics(make_config({})).exposition().decode()
    return {family.name + suffix for family in text_string_to_metric_families(text)
            for suffix in SUFFIXES[family.type]}


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_the_dashboard_asks_only_for_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "lockgate-dashboard.json").read_text())
    asked = {name for expr in expressions(dashboard) for name in re.findall(r"lockgate_\w+", expr)}
    exported = exported_names()
    assert asked - exported == set()
    # Every fixed family of §11 is on the dashboard.
    families = {n.removesuffix(s) for n in exported for s in ("_total", "_bucket") if n.endswith(s)}
    assert {n for n in families if any(a.startswith(n) for a in asked)} == families


def test_the_example_prometheus_config_scrapes_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert (job["job_name"], job["metrics_path"]) == ("lockgate", "/metrics")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:4000"]
