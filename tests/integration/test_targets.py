"""Targeting nodes by name, end to end with real agents and the real CLI (issue 9, item 8):
``corral nodes list --targets`` previews exactly what ``corral run --targets`` reaches, and a
tag-scoped token is refused a ``name:`` glob that reaches a node outside its scope."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Agent, Server, wait_for
from tests.integration.test_run_output import Corral, login, make_token
from tests.unit.test_targets_api import WEB_TEAM

pytestmark = pytest.mark.integration


@pytest.fixture
def corral(tmp_path: Path, server: Server) -> Corral:
    return login(tmp_path, server, server.token)


def named_agents(make_agent: Callable[..., Agent], server: Server) -> dict[str, Agent]:
    """web-1 and web-2 (tag team=web) and db-1 (team=db), named at registration."""
    started = {}
    for team, names in (("web", ("web-1", "web-2")), ("db", ("db-1",))):
        activation = server.activation(registration_limit=len(names), tags={"team": team})
        for name in names:
            agent = make_agent(name)
            with (agent.state_dir / "agent.toml").open("a") as fh:
                fh.write("poll_wait_seconds = 5\n")
            assert agent.register(activation, name=name).returncode == 0
            agent.start()
            started[name] = agent
    for agent in started.values():
        wait_for(lambda a=agent: server.node(a.node_id)["status"] == "Online", 30, "Online")
    return started


def listed(corral: Corral, *specs: str) -> list[str]:
    args = [arg for spec in specs for arg in ("--targets", spec)]
    code, out, err = corral("nodes", "list", *args, "--output", "json")
    assert code == 0, err
    return sorted(n["name"] for n in json.loads(out))


def test_targets_by_name_through_the_cli(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    nodes = named_agents(make_agent, server)

    assert listed(corral, "name:web-*") == ["web-1", "web-2"]
    assert listed(corral, "name:db-1", "name:web-2") == ["db-1", "web-2"]
    assert listed(corral, "platform:linux") == ["db-1", "web-1", "web-2"]
    # The three agents run on this host: they report its addresses (IPv4 and IPv6).
    for address in server.node(nodes["db-1"].node_id)["ip_addresses"]:
        assert listed(corral, f"ip:{address}") == ["db-1", "web-1", "web-2"], address
    code, _, err = corral("groups", "create", "webs", "--targets", "name:web-?")
    assert code == 0, err
    assert listed(corral, "group:webs") == ["web-1", "web-2"]
    code, out, err = corral("nodes", "list", "--filter", "tag:team=web", "--output", "json")
    assert code == 0 and sorted(n["name"] for n in json.loads(out)) == ["web-1", "web-2"], err

    code, out, err = corral(
        "run", "--targets", "name:db-1", "--wait", "--output", "json", "--", "echo on-db"
    )
    assert code == 0, err
    result = json.loads(out)
    assert [i["node_id"] for i in result["invocations"]] == [nodes["db-1"].node_id]
    assert result["invocations"][0]["steps"][0]["stdout"] == "on-db\n"

    for bad in ("ip:300.1.1.1", "name:", "platform:Solaris"):
        for command in (
            ("nodes", "list", "--targets", bad),
            ("run", "--targets", bad, "--wait", "--", "true"),
            ("groups", "create", "bad", "--targets", bad),
        ):
            code, _, err = corral(*command)
            assert code == 1 and f"{bad!r}" in err and len(err.strip().splitlines()) == 1, err


def test_a_scoped_token_is_refused_a_name_that_reaches_outside_its_scope(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    nodes = named_agents(make_agent, server)
    web = login(tmp_path, server, make_token(server, "web-team", policy=WEB_TEAM), name="web")

    assert listed(web, "name:*") == ["web-1", "web-2"]  # the preview shows only its nodes
    code, before, _ = corral("commands", "list", "--output", "json")
    assert code == 0
    code, _, err = web("run", "--targets", "name:*-1", "--", "true")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert nodes["db-1"].node_id in err and nodes["web-1"].node_id not in err
    code, after, _ = corral("commands", "list", "--output", "json")
    assert json.loads(after) == json.loads(before)  # nothing stored, nothing sent

    code, out, err = web("run", "--targets", "name:web-*", "--output", "json", "--", "true")
    assert code == 0, err
    assert json.loads(out)["target_count"] == 2
