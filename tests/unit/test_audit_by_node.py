"""`corral audit list --resource node/mi-...` finds the commands sent to that node: a send's
entry names the nodes it resolved to (hashed, in ``request.nodes``), and a search index
derived from that answers "what was run on web-3 this week" in one query.  The chain is
untouched: entries verify, old ones too, and the migration indexes entries written before it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command

from agent.identity import NodeKey
from control_plane.config import load_config
from control_plane.security.audit_chain import GENESIS_HASH, entry_hash
from control_plane.services.audit import AuditEvent, AuditService, concerned_resources
from control_plane.store.db import Database
from control_plane.store.migrate import alembic_config
from tests.unit.conftest import Api, FakeClock, RunApi, ServerDir

SEND = {"parameters": {"commands": ["true"]}}


async def register(api: Api, activation: dict[str, Any], name: str) -> str:
    response = await api.register(activation, NodeKey.generate(), name=name)
    assert response.status_code == 201, response.text
    node_id: str = response.json()["node_id"]
    return node_id


async def send(api: Api, *targets: str) -> str:
    body = {**SEND, "targets": list(targets)}
    response = await api.client.post("/v1/commands", json=body, headers=api.admin)
    assert response.status_code == 201, response.text
    command_id: str = response.json()["command_id"]
    return command_id


async def audit(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get("/v1/audit", params=params, headers=api.admin)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def sent(entries: list[dict[str, Any]]) -> list[str]:
    """The command ids of the commands:Send entries, newest first."""
    return [e["resource"] for e in entries if e["action"] == "commands:Send"]


def test_a_node_finds_the_commands_sent_to_it_by_any_target_spec(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(registration_limit=3)
        web1 = await register(api, activation, "web-1")
        web3 = await register(api, activation, "web-3")
        db1 = await register(api, activation, "db-1")
        by_name = await send(api, "name:web-*")
        by_id = await send(api, db1)
        to_all = await send(api, "all")
        api.clock.advance(8 * 86400)
        this_week = await send(api, web3)

        assert sent(await audit(api, resource=f"node/{web3}")) == [
            f"command/{c}" for c in (this_week, to_all, by_name)
        ]
        assert sent(await audit(api, resource=f"node/{db1}")) == [
            f"command/{c}" for c in (to_all, by_id)
        ]
        # "What was run on web-3 this week": one query.
        week = await audit(
            api,
            resource=f"node/{web3}",
            action="commands:Send",
            since=api.clock() - 7 * 86400,
        )
        assert [e["resource"] for e in week] == [f"command/{this_week}"]
        entry = week[0]
        assert entry["request"]["nodes"] == [web3] and entry["request"]["node_count"] == 1
        # Wildcards reach the named nodes too; an entry is listed once however many match.
        everything = sent(await audit(api, resource="node/mi-*"))
        assert len(everything) == len(set(everything)) == 4
        # An entry whose own resource is the node (a tag) is still found as before.
        tagged = await api.client.post(
            f"/v1/nodes/{web1}/tags", json={"tags": {"k": "v"}}, headers=api.admin
        )
        assert tagged.status_code == 200
        actions = [e["action"] for e in await audit(api, resource=f"node/{web1}")]
        assert actions == ["nodes:Tag", "commands:Send", "commands:Send"]
        verified = await api.client.get("/v1/audit/verify", headers=api.admin)
        assert verified.json()["ok"] is True, verified.json()

    run_api(scenario)


def test_a_refused_send_does_not_name_the_nodes_it_was_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation()
        node = await register(api, activation, "web-1")
        bad = await api.client.post(
            "/v1/commands",
            json={**SEND, "targets": [node], "document": "No-Such-Doc"},
            headers=api.admin,
        )
        assert bad.status_code == 404, bad.text
        assert sent(await audit(api, resource=f"node/{node}")) == []

    run_api(scenario)


def test_a_send_refused_for_out_of_scope_nodes_is_found_by_those_nodes(run_api: RunApi) -> None:
    policy = {
        "Version": "2026-01-01",
        "Statement": [
            {"Effect": "Allow", "Action": "commands:Send", "Resource": "node/*",
             "Condition": {"StringEquals": {"node:tag/team": "web"}}},
            {"Effect": "Allow", "Action": "commands:Send", "Resource": "document/*"},
        ],
    }  # fmt: skip

    async def scenario(api: Api) -> None:
        web = await register(api, await api.create_activation(tags={"team": "web"}), "web-1")
        databases = await api.create_activation(tags={"team": "db"}, registration_limit=2)
        db1 = await register(api, databases, "db-1")
        db2 = await register(api, databases, "db-2")
        made = await api.client.post(
            "/v1/tokens", json={"name": "web-team", "policy": policy}, headers=api.admin
        )
        assert made.status_code == 201, made.text
        team = {"authorization": f"Bearer {made.json()['secret']}"}
        refused = await api.client.post(
            "/v1/commands", json={**SEND, "targets": ["all"]}, headers=team
        )
        assert refused.status_code == 403, refused.text

        for db in (db1, db2):  # the entry is about node/*: found by each node it names
            (entry,) = await audit(api, resource=f"node/{db}", outcome="denied")
            assert (entry["action"], entry["resource"], entry["identity_name"]) == (
                "commands:Send",
                "node/*",
                "web-team",
            )
            assert entry["request"]["nodes"] == sorted([db1, db2])
            assert entry["request"]["node_count"] == 2
        assert await audit(api, resource=f"node/{web}", outcome="denied") == []

    run_api(scenario)


def test_the_index_says_no_more_than_the_entry() -> None:
    node = "mi-0123456789abcdef0"
    assert concerned_resources({"request": {"nodes": [node, node, "x", 3]}}) == [f"node/{node}"]
    assert concerned_resources({"request": {"body": {"nodes": [node]}}}) == []
    assert concerned_resources({"request": None}) == []
    many = [f"mi-{n:017x}" for n in range(1500)]
    assert len(concerned_resources({"request": {"nodes": many}})) == 1000


def _db(server_dir: ServerDir) -> sqlite3.Connection:
    return sqlite3.connect(server_dir.path / "corral.db", isolation_level=None)


def test_pruning_drops_the_index_rows_of_the_entries_it_deletes(
    server_dir: ServerDir, clock: FakeClock
) -> None:
    node = "mi-0123456789abcdef0"

    async def main() -> None:
        db = Database(load_config(server_dir.path).async_database_url)
        try:
            service = AuditService(db, clock, server_dir.path)
            for n in range(3):
                await service.record_standalone(
                    AuditEvent(
                        action="commands:Send",
                        resource=f"command/c-{n}",
                        outcome="allowed",
                        request={"nodes": [node]},
                    )
                )
                clock.advance(60)
            assert await service.prune(90) == 2
            page = await service.list_entries(resource=f"node/{node}")
            assert [e["resource"] for e in page.entries] == ["command/c-2"]
        finally:
            await db.close()

    asyncio.run(main())
    conn = _db(server_dir)
    try:
        assert conn.execute("SELECT seq FROM audit_entry_resources").fetchall() == [(3,)]
    finally:
        conn.close()


def test_the_migration_indexes_entries_written_before_it(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "0009")
    node = "mi-00000000000000abc"
    engine = sa.create_engine(url)
    prev = GENESIS_HASH
    with engine.begin() as conn:
        for seq, (action, request) in enumerate(
            [
                ("commands:Send", {"nodes": [node], "documents": ["AWS-RunShellScript:1"]}),
                ("nodes:Tag", {"nodes": [node]}),  # not a send: written by no one, not indexed
                ("commands:Send", {"nodes": ["mi-00000000000000def"]}),
            ],
            start=1,
        ):
            entry: dict[str, Any] = {
                "seq": seq, "id": f"id-{seq}", "time": clock() + seq, "identity_type": "token",
                "identity_id": "tok-1", "identity_name": "admin", "source_ip": "10.0.0.1",
                "action": action, "resource": f"command/c-{seq}", "request": request,
                "outcome": "allowed", "error": None, "request_id": None, "prev_hash": prev,
            }  # fmt: skip
            entry["hash"] = prev = entry_hash(entry)
            table = sa.table("audit_entries", *(sa.column(k) for k in entry))
            conn.execute(
                table.insert().values(**{**entry, "request": sa.func.json(_json(request))})
            )
        conn.execute(sa.text("UPDATE audit_head SET seq = 3, hash = :h"), {"h": prev})
    engine.dispose()

    command.upgrade(cfg, "head")

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        try:
            service = AuditService(db, clock, tmp_path)
            page = await service.list_entries(resource=f"node/{node}")
            assert [e["resource"] for e in page.entries] == ["command/c-1"]
            result = await service.verify()
            assert result.ok and result.checked == 3, result.reason
        finally:
            await db.close()

    asyncio.run(main())


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
