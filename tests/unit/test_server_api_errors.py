"""The API's error surface: every failure is ``{"error": {"code", "message"}}`` with a stable
code: missing or bad credentials, unknown routes, oversized and malformed bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from agent import wire
from tests.unit.conftest import assert_error

if TYPE_CHECKING:
    from tests.unit.conftest import Api, RunApi


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer    ",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer crl_not-a-real-token",
        "Bearer not-even-the-prefix",
        "crl_token-without-scheme",
    ],
)
def test_operator_routes_need_a_valid_token(run_api: RunApi, header: str | None) -> None:
    async def scenario(api: Api) -> None:
        headers = {} if header is None else {"authorization": header}
        for method, path in [
            ("GET", "/v1/activations"),
            ("POST", "/v1/activations"),
            ("GET", "/v1/nodes"),
            ("POST", "/v1/nodes/mi-0123456789abcdef0/deregister"),
        ]:
            response = await api.client.request(method, path, headers=headers, json={})
            assert_error(response, 401, "unauthorized")
        # Nothing was created by the refused calls.
        listed = await api.client.get("/v1/activations", headers=api.admin)
        assert listed.json() == {"activations": [], "next_token": None}

    run_api(scenario)


def test_node_token_is_not_an_operator_token_and_back(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        as_operator = await api.client.get("/v1/nodes", headers=node.auth)
        assert_error(as_operator, 401, "unauthorized")
        as_node = await api.client.post(
            wire.ROUTE_POLL, json={"wait_seconds": 0}, headers=api.admin
        )
        assert_error(as_node, 401, "unauthorized")

    run_api(scenario)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer nat.garbage", "Bearer nat.e30.AAAA", "Bearer chl.e30.AAAA", "Bearer "],
)
def test_agent_routes_need_a_valid_node_token(run_api: RunApi, header: str | None) -> None:
    async def scenario(api: Api) -> None:
        headers = {} if header is None else {"authorization": header}
        for path, body in [
            (wire.ROUTE_POLL, {"wait_seconds": 0}),
            (wire.ROUTE_MESSAGES, {"messages": []}),
            (wire.ROUTE_RENEW, {"public_key": "x", "proof": "y"}),
        ]:
            response = await api.client.post(path, json=body, headers=headers)
            assert_error(response, 401, "unauthorized")

    run_api(scenario)


def test_non_ascii_node_token_is_401_not_500(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        header = "Bearer nat.e30.\u00e9".encode()
        response = await api.client.post(
            wire.ROUTE_POLL, json={"wait_seconds": 0}, headers={"authorization": header}
        )
        assert_error(response, 401, "unauthorized")
        # The same check guards the challenge nonce of POST /v1/agent/token.
        node = await api.new_node()
        response = await api.token_request(node.node_id, node.key, "chl.e30.\u00e9")
        assert_error(response, 401, "unauthorized")

    run_api(scenario)


def test_unknown_route_is_a_json_404(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for path in ("/v1/nope", "/", "/v2/activations", "/v1/agent/nope"):
            response = await api.client.get(path, headers=api.admin)
            assert_error(response, 404, "not_found")

    run_api(scenario)


def test_unknown_ids_are_a_json_404(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for path in ("/v1/nodes/mi-0123456789abcdef0", "/v1/activations/no-such-activation"):
            response = await api.client.get(path, headers=api.admin)
            message = assert_error(response, 404, "not_found")
            assert path.rsplit("/", 1)[1] in message

    run_api(scenario)


def test_wrong_method_is_a_json_405(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.delete("/v1/activations", headers=api.admin)
        assert_error(response, 405, "method_not_allowed")

    run_api(scenario)


def test_body_over_1_mib_is_413(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        body = b"{" + b" " * (wire.MAX_REQUEST_BYTES) + b"}"
        response = await api.client.post(
            "/v1/activations",
            content=body,
            headers={**api.admin, "content-type": "application/json"},
        )
        message = assert_error(response, 413, "payload_too_large")
        assert str(wire.MAX_REQUEST_BYTES) in message
        # Also for an unauthenticated caller, and on the agent routes.
        response = await api.client.post(wire.ROUTE_REGISTER, content=body)
        assert_error(response, 413, "payload_too_large")

    run_api(scenario)


def test_body_of_exactly_1_mib_is_read(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        body = b"{" + b" " * (wire.MAX_REQUEST_BYTES - 2) + b"}"
        assert len(body) == wire.MAX_REQUEST_BYTES
        response = await api.client.post(
            "/v1/activations",
            content=body,
            headers={**api.admin, "content-type": "application/json"},
        )
        assert response.status_code == 201, response.text

    run_api(scenario)


def test_chunked_body_over_1_mib_is_413(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(20):
                yield b" " * 65536

        response = await api.client.post(
            "/v1/activations",
            content=chunks(),
            headers={**api.admin, "content-type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")

    run_api(scenario)


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"[1, 2", b"\xff\xfe", b'{"name": "x",}'], ids=repr
)
def test_malformed_json_is_400(run_api: RunApi, body: bytes) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.post(
            "/v1/activations",
            content=body,
            headers={**api.admin, "content-type": "application/json"},
        )
        assert_error(response, 400, "invalid_request")
        response = await api.client.post(
            wire.ROUTE_REGISTER, content=body, headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_a_json_body_that_is_not_an_object_is_400(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for body in ([], "text", 5, None):
            response = await api.client.post("/v1/activations", json=body, headers=api.admin)
            assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_health_probes(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        assert (await api.client.get("/healthz")).json() == {"status": "ok"}
        assert (await api.client.get("/readyz")).json() == {"status": "ready"}
        api.cp.begin_shutdown()
        assert_error(await api.client.get("/readyz"), 503, "not_ready")

    run_api(scenario)
