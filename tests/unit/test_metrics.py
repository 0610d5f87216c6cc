"""``GET /metrics`` (issue 15, "Metrics"): what a Prometheus scrape shows after a node
registered, sent its heartbeat and ran a command; who may scrape; the agent's own figures
from its heartbeat, bounded.  Every scrape is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__, wire
from tests.unit.conftest import Api, Node, RunApi, assert_error
from tests.unit.test_authz_api import hdr, token
from tests.unit.test_output_visibility import report
from tests.unit.test_server_api_messages import poll

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition, by (name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(api: Api, headers: dict[str, str] | None = None) -> Samples:
    response = await api.client.get("/metrics", headers=headers or api.admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def beat(**fields: Any) -> dict[str, Any]:
    body = {
        "agent_version": "0.1.0",
        "hostname": "web-1",
        "platform": "Linux",
        "platform_name": "Debian GNU/Linux",
        "platform_version": "12",
        "ip_addresses": ["192.0.2.10"],
        "boot_time": 1.0,
        **fields,
    }
    return dict(wire.make_message(wire.MSG_HEARTBEAT, body))


async def heartbeat(api: Api, node: Node, **fields: Any) -> None:
    response = await api.send(node, [beat(**fields)])
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == wire.RESULT_ACCEPTED


async def run_command(api: Api, node: Node) -> str:
    sent = await api.client.post(
        "/v1/commands",
        json={"targets": [node.node_id], "parameters": {"commands": ["true"]}},
        headers=api.admin,
    )
    assert sent.status_code == 201, sent.text
    command_id: str = sent.json()["command_id"]
    for _ in range(100):
        messages = await poll(api, node, [], 0.05)
        if any(m["body"].get("command_id") == command_id for m in messages):
            stored = await api.send(node, [report(node, command_id)])
            assert stored.status_code == 200, stored.text
            break
    else:
        raise AssertionError(f"command {command_id} never reached {node.node_id}")
    for _ in range(200):
        shown = await api.client.get(f"/v1/commands/{command_id}", headers=api.admin)
        if shown.json()["status"] == wire.ST_SUCCESS:
            return command_id
        await poll(api, node, [], 0.05)  # lets the dispatcher's round go by
    raise AssertionError(f"command {command_id} never ended")


def test_a_scrape_shows_the_fleet_the_commands_and_the_agent_figures(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        empty = await scrape(api)
        assert value(empty, "corral_build_info", version=__version__) == 1
        assert value(empty, "corral_invocations_total", status="Success") == 0
        assert value(empty, "corral_dispatch_latency_seconds_count") == 0

        node = await api.new_node()
        other = await api.new_node()
        await heartbeat(api, node, outbox_depth=3, outbox_dead=1, workers=2, rss_bytes=31_000_000)
        deregistered = await api.client.post(
            f"/v1/nodes/{other.node_id}/deregister", headers=api.admin
        )
        assert deregistered.status_code == 200, deregistered.text
        await run_command(api, node)

        samples = await scrape(api)
        assert value(samples, "corral_nodes", status="Online", platform="Linux") == 1
        assert value(samples, "corral_nodes", status="ConnectionLost", platform="Linux") == 0
        assert value(samples, "corral_nodes", status="Deregistered", platform="Unknown") == 1
        assert value(samples, "corral_agent_versions", version="0.1.0") == 1
        assert ("corral_agent_versions", (("version", "unknown"),)) not in samples
        assert value(samples, "corral_commands", status="Success") == 1
        assert value(samples, "corral_commands", status="InProgress") == 0
        assert value(samples, "corral_invocations", status="Success") == 1
        assert value(samples, "corral_invocations_total", status="Success") == 1
        assert value(samples, "corral_invocations_total", status="Failed") == 0
        # Delivered once (the polls that came back with it again count nothing more).
        assert value(samples, "corral_dispatch_latency_seconds_count") == 1
        assert value(samples, "corral_node_outbox_depth", node_id=node.node_id) == 3
        assert value(samples, "corral_node_outbox_dead", node_id=node.node_id) == 1
        assert value(samples, "corral_node_workers", node_id=node.node_id) == 2
        assert value(samples, "corral_node_rss_bytes", node_id=node.node_id) == 31_000_000
        # A deregistered node has no per-node series.
        assert not [k for k in samples if ("node_id", other.node_id) in k[1]]
        assert value(samples, "corral_agent_connections", transport="poll") == 0
        assert value(samples, "corral_agent_connections", transport="websocket") == 0
        assert value(samples, "corral_audit_chain_length") > 0
        assert value(samples, "corral_audit_unsigned_entries") > 0
        assert value(samples, "corral_audit_sign_interval_seconds") == 3600
        assert value(samples, "corral_database_size_bytes") > 0
        for limit in ("operator", "node", "auth"):
            assert value(samples, "corral_rate_limited_total", limit=limit) == 0
        assert "process_resident_memory_bytes" in {name for name, _ in samples}

    run_api(scenario)


def test_request_latency_is_labelled_by_route_template_not_url(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        for _ in range(2):
            shown = await api.client.get(f"/v1/nodes/{node.node_id}", headers=api.admin)
            assert shown.status_code == 200
        missing = await api.client.get("/v1/nodes/mi-00000000000000000", headers=api.admin)
        assert missing.status_code == 404
        nowhere = await api.client.get("/no/such/path/12345", headers=api.admin)
        assert nowhere.status_code == 404
        samples = await scrape(api)
        name = "corral_http_request_duration_seconds_count"
        route = "/v1/nodes/{node_id}"
        assert value(samples, name, method="GET", route=route, status="200") == 2
        assert value(samples, name, method="GET", route=route, status="404") == 1
        assert value(samples, name, method="GET", route="<unmatched>", status="404") == 1
        routes = {dict(labels).get("route") for n, labels in samples if n == name}
        assert not [r for r in routes if r and (node.node_id in r or "12345" in r)]

    run_api(scenario)


def test_the_heartbeat_figures_are_bounded_and_optional(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await heartbeat(api, node, workers=1, rss_bytes=1000)
        await heartbeat(api, node, workers=-1, rss_bytes=2**48)  # out of bounds: dropped
        samples = await scrape(api)
        assert ("corral_node_workers", (("node_id", node.node_id),)) not in samples
        assert ("corral_node_rss_bytes", (("node_id", node.node_id),)) not in samples
        await heartbeat(api, node, workers=True, rss_bytes="12")  # wrong types: dropped
        samples = await scrape(api)
        assert ("corral_node_workers", (("node_id", node.node_id),)) not in samples
        await heartbeat(api, node)  # an older agent sends none
        samples = await scrape(api)
        assert ("corral_node_rss_bytes", (("node_id", node.node_id),)) not in samples
        assert value(samples, "corral_nodes", status="Online", platform="Linux") == 1
        await heartbeat(api, node, workers=0, rss_bytes=2**48 - 1)
        samples = await scrape(api)
        assert value(samples, "corral_node_workers", node_id=node.node_id) == 0
        assert value(samples, "corral_node_rss_bytes", node_id=node.node_id) == 2**48 - 1

    run_api(scenario)


def test_without_a_token_401_without_the_action_403(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        assert_error(await api.client.get("/metrics"), 401, "unauthorized")
        bad = {"authorization": "Bearer crl_not-a-token"}
        assert_error(await api.client.get("/metrics", headers=bad), 401, "unauthorized")
        nodes_only = {
            "Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": "nodes:*", "Resource": "*"}],
        }
        lacking = await token(api, "no-metrics", policy=nodes_only)
        message = assert_error(
            await api.client.get("/metrics", headers=hdr(lacking)), 403, "forbidden"
        )
        assert "metrics:Read" in message
        scraper_policy = {
            "Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": "metrics:Read", "Resource": "*"}],
        }
        scraper = await token(api, "prometheus", policy=scraper_policy)
        samples = await scrape(api, hdr(scraper))
        assert value(samples, "corral_build_info", version=__version__) == 1
        viewer = await token(api, "dashboards", role="viewer")
        await scrape(api, hdr(viewer))
        # The scraper's token may read nothing else.
        await api.new_node()
        listed = await api.client.get("/v1/nodes", headers=hdr(scraper))
        assert listed.status_code == 200, listed.text
        assert listed.json()["nodes"] == []
        tokens = await api.client.get("/v1/tokens/" + scraper["id"], headers=hdr(scraper))
        assert_error(tokens, 403, "forbidden")

    run_api(scenario)


def test_rate_limit_refusals_are_counted(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        from control_plane.services.ratelimit import RateLimits

        api.cp.rate_limits = RateLimits(node_rate=1, node_burst=1, clock=api.clock)
        node = await api.new_node()
        first = await api.client.post(wire.ROUTE_POLL, json={"wait_seconds": 0}, headers=node.auth)
        assert first.status_code == 200
        refused = await api.client.post(
            wire.ROUTE_POLL, json={"wait_seconds": 0}, headers=node.auth
        )
        assert refused.status_code == 429
        samples = await scrape(api)
        assert value(samples, "corral_rate_limited_total", limit="node") == 1
        assert value(samples, "corral_rate_limited_total", limit="operator") == 0

    run_api(scenario)


@pytest.mark.parametrize("query", ["?format=json", "?x=1"])
def test_unknown_query_parameters_are_refused(run_api: RunApi, query: str) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.get("/metrics" + query, headers=api.admin)
        assert response.status_code == 400, response.text

    run_api(scenario)


def test_scrapes_at_the_same_time_share_one_read(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.services.metrics import fleet

    reads: list[asyncio.Event] = []
    real = fleet.read_fleet

    async def counted(*args: Any) -> fleet.Fleet:
        gate = asyncio.Event()
        reads.append(gate)
        await gate.wait()  # held until every scrape is waiting
        return await real(*args)

    monkeypatch.setattr(fleet, "read_fleet", counted)

    async def scenario(api: Api) -> None:
        scrapes = [asyncio.ensure_future(scrape(api)) for _ in range(3)]
        async with asyncio.timeout(10):
            while not reads:
                await asyncio.sleep(0.01)
        for _ in range(20):  # the other scrapes reach the shared read
            await asyncio.sleep(0)
        for gate in reads:
            gate.set()
        async with asyncio.timeout(10):  # a scrape that read on its own waits forever
            done = await asyncio.gather(*scrapes)
        assert len(reads) == 1
        assert all(value(s, "corral_build_info", version=__version__) == 1 for s in done)
        reads.clear()
        later = asyncio.ensure_future(scrape(api))  # a later scrape reads again
        async with asyncio.timeout(10):
            while not reads:
                await asyncio.sleep(0.01)
        reads[0].set()
        await later
        assert len(reads) == 1

    run_api(scenario)
