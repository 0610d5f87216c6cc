"""The Grafana dashboard and the Prometheus rules in packaging/ (issue 15): they parse, have
the shape their tools load, and every metric they name is in a real scrape of the server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.conftest import Api, RunApi
from tests.unit.test_metrics import heartbeat, run_command, scrape

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "packaging" / "grafana" / "corral-dashboard.json"
RULES = ROOT / "packaging" / "prometheus" / "corral-rules.yml"
SCRAPE_CONFIG = ROOT / "packaging" / "prometheus" / "prometheus.yml"
SCRAPER_POLICY = ROOT / "packaging" / "prometheus" / "metrics-reader-policy.json"
# Names a server exports (recording rules' names have colons and are not matched).
NAME = re.compile(r"\b((?:corral|process)_[a-z0-9_]+)\b")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def referenced(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in NAME.findall(expr)}


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("status", "versions", "dispatch latency", "request latency", "connections",
                  "checkpoint", "outbox"):  # fmt: skip
        assert topic in titles, topic
    exprs = " ".join(dashboard_exprs())
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def test_the_rules_are_prometheus_rules() -> None:
    loaded = yaml.safe_load(RULES.read_text())
    assert {g["name"] for g in loaded["groups"]} == {"corral.recording", "corral.alerts"}
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    for name in ("CorralNodesConnectionLost", "CorralCommandsFailing",
                 "CorralAuditCheckpointOverdue", "CorralAgentOutboxGrowing"):  # fmt: skip
        assert name in alerts
    for rule in rules():
        assert ("alert" in rule) != ("record" in rule)
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        else:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"])
    recorded = {r["record"] for r in rules() if "record" in r}
    used = {n for r in rules() for n in re.findall(r"\bcorral:[a-z0-9_:]+", r["expr"])}
    assert used <= recorded


def test_the_scrape_config_uses_the_ca_and_a_token_file() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    job = config["scrape_configs"][0]
    assert job["scheme"] == "https" and job["metrics_path"] == "/metrics"
    assert job["tls_config"]["ca_file"].endswith("ca.pem")
    assert job["authorization"]["credentials_file"]
    assert config["rule_files"] == ["corral-rules.yml"]
    policy = json.loads(SCRAPER_POLICY.read_text())
    assert policy["Statement"][0]["Action"] == "metrics:Read"


def test_every_metric_the_dashboard_and_rules_name_is_scraped(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await heartbeat(api, node, outbox_depth=0, workers=0, rss_bytes=1)
        await run_command(api, node)
        exported = {name for name, _ in await scrape(api)}
        wanted = referenced(dashboard_exprs() + [r["expr"] for r in rules()])
        assert len(wanted) >= 15
        assert sorted(wanted - exported) == []

    run_api(scenario)
