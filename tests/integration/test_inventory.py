"""Inventory end to end: real agents gather this machine's inventory with
AWS-GatherSoftwareInventory through Run Command, upload it through their outbox, and the
server answers fleet-wide queries; an unchanged node uploads only its summary the second
time; a malformed custom inventory file is reported by name and the rest still uploads; a
custom type deleted on the server comes back when the node still has it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Agent, Server, wait_for
from tests.integration.test_run_command import Corral, agents, corral
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

__all__ = ["corral"]

QUIET = ("--param", "listeningPorts=Disabled")  # sockets come and go between two gatherings


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def gather(corral: Corral, *args: str) -> list[dict[str, Any]]:
    code, out, err = corral(
        "run", *args, "--document", "AWS-GatherSoftwareInventory", *QUIET, "--wait",
        "--output", "json",
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    assert code == 0 and result["status"] == "Success", (err, result)
    invocations: list[dict[str, Any]] = result["invocations"]
    return invocations


def api_get(server: Server, path: str, **params: Any) -> Any:
    with server.api() as api:
        response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def types_of(server: Server, node_id: str) -> dict[str, dict[str, Any]]:
    shown = api_get(server, f"/v1/inventory/nodes/{node_id}")
    return {t["type_name"]: t for t in shown["types"]}


def installed_packages() -> int:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sum(1 for line in out.splitlines() if line.startswith("ii"))


def test_a_fleet_gathers_uploads_deltas_and_answers_queries(
    server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    fleet = agents(make_agent, server, 2, env="test")
    custom = fleet[0].state_dir / "inventory" / "custom"
    custom.mkdir(parents=True)
    (custom / "rack.json").write_text(
        json.dumps(
            {"SchemaVersion": "1.0", "TypeName": "Custom:Rack",
             "Content": {"Location": "B/C/D", "Name": "r1"}}
        )
    )  # fmt: skip
    (custom / "broken.json").write_text("{not json")
    gather(corral, "--targets", "tag:env=test")
    for agent in fleet:
        wait_for(lambda a=agent: "AWS:Application" in types_of(server, a.node_id), 60, "upload")
    first = types_of(server, fleet[0].node_id)
    assert first["AWS:Application"]["item_count"] == installed_packages()
    for name in ("AWS:InstanceInformation", "AWS:Network", "Corral:User", "Custom:Rack"):
        assert name in first, sorted(first)
    errors = api_get(server, f"/v1/inventory/nodes/{fleet[0].node_id}")["errors"]
    assert any("broken.json" in e["reason"] for e in errors), errors
    info = api_get(
        server, f"/v1/inventory/nodes/{fleet[1].node_id}/items", type="AWS:InstanceInformation"
    )["items"]
    assert info[0]["InstanceId"] == fleet[1].node_id and info[0]["PlatformType"] == "Linux"

    # Fleet-wide: both nodes run dpkg, in the same version
    found = api_get(server, "/v1/inventory/items", type="AWS:Application", filter="Name=dpkg")
    assert sorted(i["node_id"] for i in found["items"]) == sorted(a.node_id for a in fleet)
    version = found["items"][0]["item"]["Version"]
    grouped = api_get(
        server, "/v1/inventory/summary", type="AWS:Application", group_by="Name,Version",
        filter="Name=dpkg",
    )  # fmt: skip
    assert grouped["groups"] == [
        {"values": {"Name": "dpkg", "Version": version}, "nodes": 2, "items": 2}
    ]
    older = api_get(
        server, "/v1/inventory/items", type="AWS:Application",
        filter=["Name=dpkg", f"Version<{version}"],
    )  # fmt: skip
    assert older["items"] == []

    # Nothing changed: the second gathering queues one small summary per node
    before = types_of(server, fleet[1].node_id)
    (second,) = gather(corral, "--node", fleet[1].node_id)
    report = second["steps"][0]["stdout"]
    assert "queued 1 message(s)" in report, report
    queued = int(report.rsplit("message(s), ", 1)[1].split(" bytes")[0].replace(",", ""))
    assert queued < 1024
    assert types_of(server, fleet[1].node_id) == before  # nothing rewritten

    # A custom type deleted on the server comes back: the node still has it
    with server.api() as api:
        assert api.delete("/v1/inventory/types/Custom:Rack").status_code == 200
    assert "Custom:Rack" not in types_of(server, fleet[0].node_id)
    gather(corral, "--node", fleet[0].node_id)  # its summary: the server asks for it
    gather(corral, "--node", fleet[0].node_id)  # sent whole
    wait_for(lambda: "Custom:Rack" in types_of(server, fleet[0].node_id), 60, "resent")
