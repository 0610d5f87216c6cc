"""`corral inventory` against the real control plane, in process (the bridge of
test_cli_parameters.py), with inventory uploaded as agents send it: the three questions of
docs/inventory.md (which nodes run openssl 3.0.2? which have port 5432 open? what changed on a
node?), the schema, deleting a custom type, and enable creating then changing its
association."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.unit.conftest import Node
from tests.unit.test_cli_parameters import Live, live
from tests.unit.test_inventory_api import APP, pkg, send_ok, upload

__all__ = ["live"]

PORTS = "Corral:ListeningPort"


def on_server(live: Live, coroutine: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coroutine, live.bridge._loop).result(60)


def new_node(live: Live) -> Node:
    node: Node = on_server(live, live.api.new_node())
    return node


def send(live: Live, node: Node, messages: list[dict[str, Any]]) -> None:
    on_server(live, send_ok(live.api, node, messages))


def port(number: str) -> dict[str, str]:
    return {"Protocol": "tcp", "Address": "0.0.0.0", "Port": number, "ProcessName": "postgres"}


def test_the_questions_of_the_docs(live: Live) -> None:
    web, db = new_node(live), new_node(live)
    two_days_ago = time.time() - 2 * 86400  # when the first capture is said to be made
    first = [pkg("openssl", "3.0.2-0ubuntu1.10"), pkg("curl", "7.81.0-1")]
    send(live, web, upload(APP, first, capture=two_days_ago))
    send(live, db, upload(APP, [pkg("openssl", "3.0.13-0ubuntu3"), pkg("curl", "7.81.0-1")]))
    send(live, db, upload(PORTS, [port("5432"), port("22")]))

    # Which nodes run openssl 3.0.2 (any Ubuntu revision)? Which run one older than 3.0.8?
    found = live.json("inventory", "list", "--type", APP, "--filter", "Name=openssl",
                      "--filter", "Version^=3.0.2")  # fmt: skip
    assert [r["node_id"] for r in found] == [web.node_id]
    older = live.ok("inventory", "list", "--type", APP, "--filter", "Name=openssl",
                    "--filter", "Version<3.0.8", "--attributes", "Name,Version").stdout  # fmt: skip
    assert web.node_id in older and db.node_id not in older and "3.0.2-0ubuntu1.10" in older
    # Which have port 5432 open?
    open_ = live.json("inventory", "list", "--type", PORTS, "--filter", "Port=5432")
    assert [(r["node_id"], r["item"]["ProcessName"]) for r in open_] == [(db.node_id, "postgres")]
    # How many nodes per openssl version?
    groups = live.json("inventory", "summary", "--type", APP, "--group-by", "Name,Version",
                       "--filter", "Name=openssl")  # fmt: skip
    assert sorted((g["values"]["Version"], g["nodes"]) for g in groups) == [
        ("3.0.13-0ubuntu3", 1),
        ("3.0.2-0ubuntu1.10", 1),
    ]
    table = live.ok("inventory", "summary", "--type", APP, "--group-by", "Name").stdout
    assert table.splitlines()[0].split() == ["Name", "nodes", "items"]
    assert ["curl", "2", "2"] in [line.split() for line in table.splitlines()]

    # What changed on web in the last day (the first capture is older)?
    later = [pkg("openssl", "3.0.2-0ubuntu1.12"), pkg("jq", "1.6-2")]
    send(live, web, upload(APP, later, capture=time.time() - 600))
    (web_name,) = [n["name"] for n in live.json("nodes", "list") if n["node_id"] == web.node_id]
    changes = live.json("inventory", "changes", web_name, "--since", "1d", "--type", APP)
    kinds = sorted((c["change"], c["key"].get("Name")) for c in changes)
    assert kinds == [("added", "jq"), ("changed", "openssl"), ("removed", "curl")]
    table = live.ok("inventory", "changes", web.node_id).stdout
    assert "Version: 3.0.2-0ubuntu1.10 -> 3.0.2-0ubuntu1.12" in table
    assert "first capture: 2 items" in table

    shown = live.ok("inventory", "show", db.node_id).stdout
    assert APP in shown and PORTS in shown
    items = live.ok("inventory", "show", db.node_id, "--type", PORTS).stdout
    assert items.splitlines()[0].split() == ["Protocol", "Address", "Port", "ProcessName"]


def test_schema_delete_and_a_refusal(live: Live) -> None:
    node = new_node(live)
    rack = [{"Name": "r12", "RackLocation": "B/C/D"}]
    send(live, node, upload("Custom:RackInfo", rack, custom_complete=True))
    types = {t["type_name"]: t for t in live.json("inventory", "schema")}
    assert APP in types and PORTS in types
    assert [a["name"] for a in types["Custom:RackInfo"]["attributes"]] == ["Name", "RackLocation"]
    one = live.ok("inventory", "schema", "--type", PORTS).stdout
    assert ["Port", "NUMBER", "yes"] in [line.split() for line in one.splitlines()]

    deleted = live.ok("inventory", "delete", "--type", "Custom:RackInfo", "--yes").stdout
    assert deleted == "deleted Custom:RackInfo: 1 items on 1 nodes\n"
    again = live.run("inventory", "delete", "--type", "Custom:RackInfo", "--yes")
    assert again.exit_code == 1 and again.stderr.count("\n") == 1
    bad = live.run("inventory", "list", "--type", APP, "--filter", "Colour=red")
    assert bad.exit_code == 1 and "has no attribute 'Colour'" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_enable_creates_then_changes_the_inventory_association(live: Live) -> None:
    typo = live.run("inventory", "enable", "--param", "application=Disabled")
    assert typo.exit_code == 1 and "unknown parameter" in typo.stderr
    assert live.json("associations", "list") == []
    made = live.ok("inventory", "enable").stdout
    assert made.startswith("inventory created: association corral-inventory")
    (association,) = live.json("associations", "list")
    assert association["name"] == "corral-inventory"
    assert association["document"] == "AWS-GatherSoftwareInventory"
    assert (association["targets"], association["schedule"]) == (["all"], "rate(30 minutes)")
    assert live.ok("inventory", "enable").stdout.startswith("inventory unchanged")
    changed = live.json(
        "inventory", "enable", "--schedule", "rate(1 hour)", "--param", "users=Disabled",
        "--targets", "Key=tag:role,Values=web",
    )  # fmt: skip
    assert changed["version"] == 2 and changed["schedule"] == "rate(1 hour)"
    assert changed["targets"] == ["tag:role=web"]
    assert changed["parameters"] == {"users": "Disabled"}
    bad = live.run("inventory", "enable", "--schedule", "rate(1 minutes)")
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    assert live.json("associations", "show", association["association_id"])["version"] == 2
