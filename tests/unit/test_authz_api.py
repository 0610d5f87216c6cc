"""Scoped tokens, roles, per-node checks, rate limits and the audit trail through the API."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx

from agent import wire
from agent.identity import NodeKey
from control_plane.services.ratelimit import RateLimits
from tests.unit.conftest import Api, RunApi, ServerDir, assert_error

WEB_ONLY = {
    "Version": "2026-01-01",
    "Statement": [
        {
            "Sid": "ReadAll",
            "Effect": "Allow",
            "Action": ["nodes:Get", "documents:*", "commands:List", "commands:Get"],
            "Resource": "*",
        },
        {
            "Sid": "RunOnWeb",
            "Effect": "Allow",
            "Action": ["commands:Send", "nodes:List"],
            "Resource": ["node/*", "document/AWS-*"],
            "Condition": {"StringEquals": {"node:tag/team": "web"}},
        },
        {
            "Sid": "SendDocs",
            "Effect": "Allow",
            "Action": "commands:Send",
            "Resource": "document/AWS-*",
        },
    ],
}


async def token(api: Api, name: str, **body: Any) -> dict[str, str]:
    response = await api.client.post("/v1/tokens", json={"name": name, **body}, headers=api.admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["secret"].startswith("crl_")
    return {"authorization": f"Bearer {created['secret']}", "id": created["token_id"]}


def hdr(auth: dict[str, str]) -> dict[str, str]:
    return {"authorization": auth["authorization"]}


async def audit(api: Api, **query: Any) -> list[dict[str, Any]]:
    response = await api.client.get("/v1/audit", params=query, headers=api.admin)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def send(api: Api, auth: dict[str, str], *targets: str) -> httpx.Response:
    return await api.client.post(
        "/v1/commands",
        json={"targets": list(targets), "parameters": {"commands": ["true"]}},
        headers=hdr(auth),
    )


def test_roles(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"team": "web"})
        viewer = await token(api, "v", role="viewer")
        operator = await token(api, "o", role="operator")
        assert (await api.client.get("/v1/nodes", headers=hdr(viewer))).status_code == 200
        refused = await send(api, viewer, node.node_id)
        assert "may not commands:Send" in assert_error(refused, 403, "forbidden")
        sent = await send(api, operator, node.node_id)
        assert sent.status_code == 201, sent.text
        command_id = sent.json()["command_id"]
        output = await api.client.get(
            f"/v1/commands/{command_id}/invocations/{node.node_id}/output", headers=hdr(viewer)
        )
        assert_error(output, 403, "forbidden")
        made = await api.client.post(
            "/v1/tokens", json={"name": "x", "role": "viewer"}, headers=hdr(operator)
        )
        assert_error(made, 403, "forbidden")
        shown = await api.client.get("/v1/policies/admin", headers=hdr(viewer))
        assert shown.json()["document"]["Statement"][0]["Effect"] == "Allow"
        who = (await api.client.get("/v1/whoami", headers=hdr(viewer))).json()
        assert (who["name"], who["role"]) == ("v", "viewer")

        # exactly one: the viewer's refused send left a denial, not an "allowed" entry
        (sent_entry,) = await audit(api, action="commands:Send", outcome="allowed")
        assert sent_entry["resource"] == f"command/{command_id}"
        assert sent_entry["request"]["nodes"] == [node.node_id]
        made_entries = await audit(api, action="tokens:Create", outcome="allowed")
        assert f"token/{viewer['id']}" in {e["resource"] for e in made_entries}
        denied = await audit(api, outcome="denied")
        allowed_ids = {e["request_id"] for e in await audit(api, outcome="allowed")}
        assert not allowed_ids & {e["request_id"] for e in denied}, "a refused call also 'allowed'"
        assert {(e["identity_name"], e["action"]) for e in denied} >= {
            ("v", "commands:Send"),
            ("v", "commands:GetOutput"),
            ("o", "tokens:Create"),
        }

    run_api(scenario)


def test_a_tag_scoped_token_sends_only_to_its_nodes(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node(tags={"team": "web"})
        db = await api.new_node(tags={"team": "db"})
        scoped = await token(api, "web-team", policy=WEB_ONLY)

        listed = (await api.client.get("/v1/nodes", headers=hdr(scoped))).json()["nodes"]
        assert [n["node_id"] for n in listed] == [web.node_id]

        with sqlite3.connect(server_dir.path / "corral.db") as conn:
            before = conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
        refused = await send(api, scoped, "all")
        message = assert_error(refused, 403, "forbidden")
        assert db.node_id in message and web.node_id not in message
        with sqlite3.connect(server_dir.path / "corral.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == before

        assert (await send(api, scoped, "tag:team=web")).status_code == 201
        other_doc = await api.client.post(
            "/v1/commands",
            json={"targets": [web.node_id], "document": "Corral-RunDocument",
                  "parameters": {"documentName": "x"}},
            headers=hdr(scoped),
        )  # fmt: skip
        assert_error(other_doc, 403, "forbidden")

        simulated = await api.client.post(
            "/v1/policies/simulate",
            json={"token_id": scoped["id"], "action": "commands:Send",
                  "resource": f"node/{db.node_id}"},
            headers=api.admin,
        )  # fmt: skip
        answer = simulated.json()
        assert answer["allowed"] is False and answer["decision"] == "implicit-deny"
        simulated = await api.client.post(
            "/v1/policies/simulate",
            json={"token_id": scoped["id"], "action": "commands:Send",
                  "resource": f"node/{web.node_id}"},
            headers=api.admin,
        )  # fmt: skip
        assert simulated.json()["sid"] == "RunOnWeb"

        # It cannot make a token wider than itself.
        wider = await api.client.post(
            "/v1/tokens", json={"name": "w", "role": "operator"}, headers=hdr(scoped)
        )
        assert wider.status_code == 403

    run_api(scenario)


def test_bad_policies_and_tokens(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        bad = {
            "Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": ["comands:Send"], "Resource": "*"}],
        }
        response = await api.client.post(
            "/v1/tokens", json={"name": "b", "policy": bad}, headers=api.admin
        )
        message = assert_error(response, 400, "invalid_request")
        assert "Statement[0].Action[0]" in message and "comands:Send" in message
        both = await api.client.post(
            "/v1/tokens",
            json={"name": "b", "role": "viewer", "policy": WEB_ONLY},
            headers=api.admin,
        )
        assert_error(both, 400, "invalid_request")
        nothing = {
            "Version": "2026-01-01",
            "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
        }
        warned = await api.client.post(
            "/v1/tokens", json={"name": "n", "policy": nothing}, headers=api.admin
        )
        assert warned.status_code == 201 and warned.json()["warnings"]

        short = await token(api, "short", role="viewer", expires_in_seconds=60)
        revoked = await token(api, "gone", role="viewer")
        out = await api.client.post(f"/v1/tokens/{revoked['id']}/revoke", headers=api.admin)
        assert out.json()["state"] == "revoked"
        assert_error(await api.client.get("/v1/nodes", headers=hdr(revoked)), 401, "unauthorized")
        api.clock.advance(61)
        assert_error(await api.client.get("/v1/nodes", headers=hdr(short)), 401, "token_expired")
        denied = await audit(api, outcome="denied")
        errors = [e["error"] for e in denied if e["identity_type"] == "anonymous"]
        assert any("revoked" in e for e in errors) and any("expired" in e for e in errors)

    run_api(scenario)


def test_changes_are_audited_with_secrets_redacted_and_failures_leave_nothing(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        created = await api.client.post(
            "/v1/webhooks",
            json={"url": "https://hooks.example.net/x", "events": "command.*",
                  "secret": "hunter2-secret"},
            headers=api.admin,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        (entry,) = await audit(api, action="webhooks:*")
        assert entry["outcome"] == "allowed" and entry["identity_name"] == "admin"
        assert entry["request"]["body"]["secret"] == "****"
        assert "hunter2" not in str(await audit(api))

        failed = await api.client.post(
            "/v1/documents",
            json={"name": "aws-mine", "content": "{}"},
            headers=api.admin,
        )
        assert failed.status_code == 400
        assert await audit(api, action="documents:Create") == []
        activation = await api.create_activation()
        assert len(await audit(api, action="activations:Create")) == 1
        assert (await api.register(activation)).status_code == 201
        (registered,) = await audit(api, action="nodes:Register")
        assert "activation_code" not in str(registered["request"])

        verified = (await api.client.get("/v1/audit/verify", headers=api.admin)).json()
        assert verified["ok"] is True and verified["checked"] >= 3

    run_api(scenario)


def test_tampering_is_found(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        for _ in range(4):
            await api.create_activation()
        with sqlite3.connect(server_dir.path / "corral.db") as conn:
            conn.execute("UPDATE audit_entries SET source_ip = '10.9.9.9' WHERE seq = 2")
        verified = (await api.client.get("/v1/audit/verify", headers=api.admin)).json()
        assert verified["ok"] is False and verified["first_bad_seq"] == 2
        assert "entry 2" in verified["reason"]

    run_api(scenario)


def test_rate_limits_answer_429_with_retry_after(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        api.cp.rate_limits = RateLimits(operator_rate=1, operator_burst=3, clock=api.clock)
        codes = [(await api.client.get("/v1/nodes", headers=api.admin)).status_code for _ in "1234"]
        assert codes == [200, 200, 200, 429]
        limited = await api.client.get("/v1/nodes", headers=api.admin)
        assert limited.headers["retry-after"] == "1"
        api.clock.advance(1)
        assert (await api.client.get("/v1/nodes", headers=api.admin)).status_code == 200

        api.cp.rate_limits = RateLimits(auth_base_delay=2, clock=api.clock)
        assert (await api.client.get("/v1/nodes")).status_code == 401  # no token: no slow-down
        assert (await api.client.get("/v1/nodes", headers=api.admin)).status_code == 200
        bad = {"authorization": "Bearer crl_nope"}
        assert (await api.client.get("/v1/nodes", headers=bad)).status_code == 401
        slowed = await api.client.get("/v1/nodes", headers=bad)
        assert slowed.status_code == 429 and slowed.headers["retry-after"] == "2"
        # A known token from the same address is never held back (issue 9, item 3) ...
        assert (await api.client.get("/v1/nodes", headers=api.admin)).status_code == 200
        # ... nor does its success reset the attacker's count.
        api.clock.advance(2)
        assert (await api.client.get("/v1/nodes", headers=bad)).status_code == 401
        again = await api.client.get("/v1/nodes", headers=bad)
        assert again.status_code == 429 and again.headers["retry-after"] == "4"
        # A token made while the address waits is known at once.
        made = await token(api, "new-ci", role="viewer")
        assert (await api.client.get("/v1/nodes", headers=hdr(made))).status_code == 200
        # The refusals are counted into the next audited failure, not audited one by one.
        for _ in range(5):
            assert (await api.client.get("/v1/nodes", headers=bad)).status_code == 429
        api.clock.advance(4)
        assert (await api.client.get("/v1/nodes", headers=bad)).status_code == 401
        denied = await audit(api, outcome="denied")
        assert len([e for e in denied if e["identity_type"] == "anonymous"]) == 4  # 1 + 3 bad
        assert "(6 more attempts from this address refused unevaluated)" in denied[0]["error"]

    run_api(scenario)


def test_a_forged_node_proof_is_refused_and_audited(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        nonce = (await api.challenge(node.node_id)).json()["nonce"]
        forged = await api.token_request(node.node_id, NodeKey.generate(), nonce)
        assert forged.status_code == 401
        replayed = await api.token_request(node.node_id, node.key, nonce)
        assert replayed.status_code in (200, 401)
        again = await api.token_request(node.node_id, node.key, nonce)
        assert again.status_code == 401  # a nonce answers once
        entries = await audit(api, action="agent:Authenticate")
        assert len(entries) >= 2 and {e["resource"] for e in entries} == {f"node/{node.node_id}"}
        garbage = await api.client.post(
            wire.ROUTE_POLL, json={}, headers={"authorization": "Bearer not-a-node-token"}
        )
        assert garbage.status_code == 401
        assert await audit(api, action="agent:Authenticate", resource=wire.ROUTE_POLL)

    run_api(scenario)


def test_a_refused_registration_is_one_denied_entry(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation()
        refused = await api.register({**activation, "activation_code": "wrong-code-123"})
        assert refused.status_code == 403
        entries = await audit(api, action="nodes:Register")
        assert [e["outcome"] for e in entries] == ["denied"]
        assert "wrong-code" not in str(entries)

    run_api(scenario)


def test_a_token_made_by_another_replica_is_known_within_the_cache_period(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        from control_plane.security import secrets
        from control_plane.store import tokens as token_store

        operators = api.cp.operators
        admin = api.admin["authorization"].removeprefix("Bearer ")
        assert await operators.is_known(admin)
        assert not await operators.is_known("crl_" + "x" * 43)
        assert not await operators.is_known("not-a-token")
        secret = secrets.new_token()
        async with api.cp.db.transaction() as conn:  # as another replica would
            await token_store.insert(
                conn,
                {"id": "tok-elsewhere0000000", "name": "elsewhere", "role": "viewer",
                 "secret_digest": secrets.digest(secret), "created_at": api.clock.now},
            )  # fmt: skip
        assert not await operators.is_known(secret)
        api.clock.advance(30)
        assert await operators.is_known(secret)
        await operators.revoke("tok-elsewhere0000000")
        assert not await operators.is_known(secret)

    run_api(scenario)
