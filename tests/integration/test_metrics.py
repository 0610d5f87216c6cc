"""``GET /metrics`` of a real server with a real agent (issue 15): what Prometheus would
scrape, with a scraper token made as docs/monitoring.md says, over the server's TLS pinned to
its CA; the agent's own figures (running workers, RSS) arrive with its heartbeat; every name
the dashboard and the rules use is in the scrape; no token, or a token without
``metrics:Read``, is refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent import __version__
from tests.integration.harness import BIN, Agent, Proc, Server, free_port, run, wait_for
from tests.unit.test_metrics import Samples, parse
from tests.unit.test_metrics_packaging import (
    RULES,
    SCRAPER_POLICY,
    dashboard_exprs,
    referenced,
    rules,
)

pytestmark = pytest.mark.integration


def scraper_token(tmp_path: Path, server: Server, policy: Path) -> str:
    """``corral tokens create --policy FILE`` (the CLI as an operator runs it)."""
    env = {"CORRAL_CONFIG": str(tmp_path / "cli.toml")}
    login = ("login", "--url", server.url, "--token", server.token, "--ca-hash", server.ca_hash)
    assert run(BIN / "corral", *login, env=env).returncode == 0
    made = run(
        BIN / "corral", "tokens", "create", "--name", "prometheus", "--expires", "never",
        "--policy", str(policy), "--output", "json", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret: str = json.loads(made.stdout)["secret"]
    return secret


def get_metrics(server: Server, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(server.url + "/metrics", headers=headers, verify=server.tls(), timeout=30)


def test_a_real_scrape_follows_the_agent_and_its_command(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent]
) -> None:
    token = scraper_token(tmp_path, server, SCRAPER_POLICY)
    agent = make_agent("m")
    with (agent.state_dir / "agent.toml").open("a") as fh:
        fh.write("heartbeat_interval_seconds = 0.5\n")
    assert agent.register().returncode == 0
    agent.start()
    node = agent.node_id
    last: Samples = {}

    def scraped(check: Callable[[Samples], bool]) -> bool:
        nonlocal last
        response = get_metrics(server, token)
        assert response.status_code == 200, response.text
        last = parse(response.text)
        return check(last)

    def get(name: str, **labels: str) -> float | None:
        return last.get((name, tuple(sorted(labels.items()))))

    wait_for(
        lambda: scraped(lambda _s: get("corral_node_rss_bytes", node_id=node) is not None),
        30,
        "the agent's RSS in a scrape",
    )
    assert get("corral_nodes", status="Online", platform="Linux") == 1
    assert get("corral_agent_versions", version=__version__) == 1
    rss = get("corral_node_rss_bytes", node_id=node)
    assert rss is not None and 5 * 2**20 < rss < 2**30
    connections = [get("corral_agent_connections", transport=t) for t in ("poll", "websocket")]
    assert sum(c or 0 for c in connections) == 1

    flag = tmp_path / "go-on"
    with httpx.Client(
        base_url=server.url,
        verify=server.tls(),
        headers={"authorization": f"Bearer {server.token}"},
        timeout=30,
    ) as api:
        # The script waits for the test: its worker is running while the test looks.
        script = f"while [ ! -e {flag} ]; do sleep 0.05; done; echo done"
        sent = api.post(
            "/v1/commands", json={"targets": [node], "parameters": {"commands": [script]}}
        )
        assert sent.status_code == 201, sent.text
        wait_for(
            lambda: scraped(
                lambda _s: (
                    get("corral_node_workers", node_id=node) == 1
                    and get("corral_invocations", status="InProgress") == 1
                    and get("corral_commands", status="InProgress") == 1
                )
            ),
            30,
            "a running worker and its command InProgress in a scrape",
        )
        assert get("corral_dispatch_latency_seconds_count") == 1
        flag.touch()
        wait_for(
            lambda: scraped(
                lambda _s: (
                    get("corral_invocations_total", status="Success") == 1
                    and get("corral_commands", status="Success") == 1
                    and get("corral_node_workers", node_id=node) == 0
                )
            ),
            30,
            "the command's success and no worker left in a scrape",
        )
    assert get("corral_invocations", status="InProgress") == 0
    assert get("corral_dispatch_latency_seconds_count") == 1  # delivered once
    exported = {name for name, _ in last}
    wanted = referenced(dashboard_exprs() + [r["expr"] for r in rules()])
    assert sorted(wanted - exported) == []


def test_a_scrape_without_the_right_token_is_refused(tmp_path: Path, server: Server) -> None:
    assert get_metrics(server, None).status_code == 401
    assert get_metrics(server, "crl_" + "0" * 43).status_code == 401
    policy = tmp_path / "nodes-only.json"
    policy.write_text(
        json.dumps(
            {
                "Version": "2026-01-01",
                "Statement": [{"Effect": "Allow", "Action": "nodes:List", "Resource": "*"}],
            }
        )
    )
    refused = get_metrics(server, scraper_token(tmp_path, server, policy))
    assert refused.status_code == 403
    assert "metrics:Read" in refused.json()["error"]["message"]


PROMETHEUS_YML = Path(__file__).resolve().parents[2] / "packaging" / "prometheus" / "prometheus.yml"


def test_a_real_prometheus_scrapes_with_the_shipped_config_and_rules(
    tmp_path: Path, server: Server
) -> None:
    """Prometheus itself (Debian's package), with packaging/prometheus/prometheus.yml as
    shipped but for its paths and target: it scrapes over TLS pinned to the CA with a scraper
    token, and evaluates every shipped rule without an error."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        pytest.skip(
            "prometheus and promtool are not installed (Debian: apt-get install prometheus)"
        )
    token_file = tmp_path / "corral-scraper.token"
    token_file.write_text(scraper_token(tmp_path, server, SCRAPER_POLICY) + "\n")
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    job["tls_config"]["ca_file"] = server.ca_file
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [server.listen]}]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    checked = run(promtool, "check", "config", str(config_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    port = free_port()
    proc = Proc(
        [
            prometheus,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path,
        "prometheus",
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def get(path: str, **params: str) -> Any:
        try:
            response = httpx.get(api + path, params=params, timeout=5)
        except httpx.TransportError:
            return None
        return response.json()["data"] if response.status_code == 200 else None

    try:

        def target_up() -> dict[str, Any] | None:
            data = get("/targets")
            targets = data["activeTargets"] if data else []
            return targets[0] if targets and targets[0]["health"] == "up" else None

        target = wait_for(target_up, 60, f"Prometheus to scrape the server ({proc.stderr[-500:]})")
        assert target["labels"]["job"] == "corral"

        def nodes_series() -> list[Any] | None:
            data = get(
                "/query", query='corral_http_request_duration_seconds_count{route="/metrics"}'
            )
            return data["result"] if data and data["result"] else None

        assert wait_for(nodes_series, 30, "the scraped series to be queryable")

        def every_rule_evaluated() -> list[dict[str, Any]] | None:
            data = get("/rules")
            found = [rule for group in (data or {}).get("groups", []) for rule in group["rules"]]
            evaluated = [r for r in found if r.get("lastEvaluation", "").startswith("20")]
            return found if found and len(evaluated) == len(found) else None

        evaluated = wait_for(every_rule_evaluated, 60, "every rule to be evaluated")
        assert len(evaluated) == len(rules()), "Prometheus loaded every shipped rule"
        broken = [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"]
        assert broken == []
    finally:
        proc.stop()
