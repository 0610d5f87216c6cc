"""Registering a node through an activation, and buying node access tokens."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING

import pytest
from cryptography import x509

from agent import wire
from agent.identity import NodeKey
from tests.unit.conftest import assert_error

if TYPE_CHECKING:
    from tests.unit.conftest import Api, RunApi


def test_register_issues_a_node_id_and_certificate(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(name="web", registration_limit=2)
        key = NodeKey.generate()
        response = await api.register(activation, key, name="web-1", hostname="host-1")
        assert response.status_code == 201, response.text
        answer = response.json()
        node_id = answer["node_id"]
        assert wire.NODE_ID_RE.match(node_id)
        cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
        assert cert.subject.rfc4514_string() == f"CN={node_id}"
        assert cert.public_key().public_bytes_raw() == base64.b64decode(key.public_key_b64)
        assert answer["credential_expires_at"].endswith("Z")

        node = await api.node(node_id)
        # Online only once its agent polls.
        assert (node["name"], node["hostname"], node["status"]) == (
            "web-1",
            "host-1",
            "ConnectionLost",
        )
        assert node["activation_id"] == activation["activation_id"]
        shown = await api.client.get(
            f"/v1/activations/{activation['activation_id']}", headers=api.admin
        )
        assert shown.json()["registrations_count"] == 1

    run_api(scenario)


def test_node_name_falls_back_to_activation_name_then_hostname(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        named = await api.create_activation(name="fleet")
        unnamed = await api.create_activation()
        a = await api.register(named, hostname="h-a")
        b = await api.register(unnamed, hostname="h-b")
        assert (await api.node(a.json()["node_id"]))["name"] == "fleet"
        assert (await api.node(b.json()["node_id"]))["name"] == "h-b"

    run_api(scenario)


def test_the_activation_tags_become_the_node_tags(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(
            registration_limit=2, tags={"env": "prod", "role": "web"}
        )
        first = (await api.register(activation)).json()["node_id"]
        second = (await api.register(activation)).json()["node_id"]
        for node_id in (first, second):
            assert (await api.node(node_id))["tags"] == {"env": "prod", "role": "web"}
        # Tagging one node does not touch the other or the activation.
        tagged = await api.client.post(
            f"/v1/nodes/{first}/tags", json={"tags": {"env": "dev"}}, headers=api.admin
        )
        assert tagged.json()["tags"] == {"env": "dev", "role": "web"}
        assert (await api.node(second))["tags"] == {"env": "prod", "role": "web"}
        shown = await api.client.get(
            f"/v1/activations/{activation['activation_id']}", headers=api.admin
        )
        assert shown.json()["tags"] == {"env": "prod", "role": "web"}
        filtered = await api.client.get(
            "/v1/nodes", params={"filter": "tag:env=prod"}, headers=api.admin
        )
        assert [n["node_id"] for n in filtered.json()["nodes"]] == [second]

    run_api(scenario)


def test_wrong_code_is_refused_and_uses_up_nothing(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(registration_limit=1)
        wrong = {**activation, "activation_code": activation["activation_code"][::-1]}
        for bad in (wrong, {**activation, "activation_code": ""}):
            response = await api.register(bad)
            assert "code is wrong" in assert_error(response, 403, wire.ERR_ACTIVATION_INVALID)
        nodes = await api.client.get("/v1/nodes", headers=api.admin)
        assert nodes.json() == {"nodes": [], "next_token": None}
        # The one registration the activation allows is still there.
        assert (await api.register(activation)).status_code == 201

    run_api(scenario)


def test_expired_activation_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(expires_in_seconds=60, registration_limit=5)
        api.clock.advance(59)
        assert (await api.register(activation)).status_code == 201
        api.clock.advance(2)
        response = await api.register(activation)
        assert "has expired" in assert_error(response, 403, wire.ERR_ACTIVATION_INVALID)

    run_api(scenario)


def test_exhausted_activation_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(registration_limit=2)
        assert (await api.register(activation)).status_code == 201
        assert (await api.register(activation)).status_code == 201
        response = await api.register(activation)
        message = assert_error(response, 403, wire.ERR_ACTIVATION_INVALID)
        assert "registration limit (2)" in message
        listed = await api.client.get("/v1/nodes", headers=api.admin)
        assert len(listed.json()["nodes"]) == 2

    run_api(scenario)


def test_deleted_activation_is_refused_and_its_nodes_stay(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(registration_limit=5)
        node_id = (await api.register(activation)).json()["node_id"]
        await api.client.delete(f"/v1/activations/{activation['activation_id']}", headers=api.admin)
        response = await api.register(activation)
        assert "does not exist" in assert_error(response, 403, wire.ERR_ACTIVATION_INVALID)
        assert (await api.node(node_id))["status"] == "ConnectionLost"

    run_api(scenario)


def test_unknown_activation_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        fake = {"activation_id": "00000000-0000-4000-8000-000000000000", "activation_code": "x"}
        assert_error(await api.register(fake), 403, wire.ERR_ACTIVATION_INVALID)

    run_api(scenario)


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("public_key", "not base64!", "public_key must be base64"),
        ("public_key", base64.b64encode(b"x" * 16).decode(), "32-byte"),
        ("public_key", "", "32-byte"),
        ("name", "bad\nname", "control characters"),
        ("hostname", "h" * 257, "hostname"),
        ("surprise", 1, "surprise"),
    ],
)
def test_bad_register_input_is_400_and_uses_up_nothing(
    run_api: RunApi, field: str, value: object, hint: str
) -> None:
    async def scenario(api: Api) -> None:
        activation = await api.create_activation(registration_limit=1)
        response = await api.register(activation, **{field: value})
        assert hint in assert_error(response, 400, "invalid_request")
        assert (await api.register(activation)).status_code == 201

    run_api(scenario)


def test_missing_register_field_is_400(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.post(wire.ROUTE_REGISTER, json={"activation_id": "x"})
        assert_error(response, 400, "invalid_request")

    run_api(scenario)


# Tokens ---------------------------------------------------------------------------------------


def test_signed_challenge_buys_a_token_that_works(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        assert node.token.startswith("nat.")
        polled = await api.client.post(
            wire.ROUTE_POLL, json={"acks": [], "wait_seconds": 0}, headers=node.auth
        )
        assert (polled.status_code, polled.json()["messages"]) == (200, [])

    run_api(scenario)


def test_a_challenge_buys_one_token_only(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        nonce = (await api.challenge(node.node_id)).json()["nonce"]
        assert (await api.token_request(node.node_id, node.key, nonce)).status_code == 200
        again = await api.token_request(node.node_id, node.key, nonce)
        assert "already used" in assert_error(again, 401, wire.ERR_UNAUTHORIZED)

    run_api(scenario)


def test_another_key_cannot_buy_the_node_a_token(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        nonce = (await api.challenge(node.node_id)).json()["nonce"]
        thief = await api.token_request(node.node_id, NodeKey.generate(), nonce)
        assert "does not match" in assert_error(thief, 401, wire.ERR_UNAUTHORIZED)

    run_api(scenario)


def test_a_challenge_for_one_node_cannot_buy_another_a_token(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        first = await api.new_node()
        second = await api.new_node()
        nonce = (await api.challenge(first.node_id)).json()["nonce"]
        response = await api.token_request(second.node_id, second.key, nonce)
        assert "another node" in assert_error(response, 401, wire.ERR_UNAUTHORIZED)

    run_api(scenario)


def test_token_request_checks(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        nonce = (await api.challenge(node.node_id)).json()["nonce"]
        unknown = await api.challenge("mi-00000000000000000")
        assert "not registered here" in assert_error(unknown, 401, wire.ERR_UNAUTHORIZED)
        malformed = await api.challenge("node-1")
        assert_error(malformed, 400, "invalid_request")
        not_b64 = await api.client.post(
            wire.ROUTE_TOKEN,
            json={
                "node_id": node.node_id,
                "nonce": nonce,
                "timestamp": int(time.time()),
                "signature": "***",
            },
        )
        assert "base64" in assert_error(not_b64, 400, "invalid_request")

    run_api(scenario)
