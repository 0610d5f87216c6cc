"""How the agent reads the server's answers: what to retry, what to give up on, when to stop."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agent import wire
from agent.errors import CredentialRevoked, ServerRejected, TransportError
from agent.http import check_response

REQUEST = httpx.Request("POST", "https://corral.test" + wire.ROUTE_POLL)


def answer(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=REQUEST, **kwargs)


def error(status: int, code: str, message: str = "why") -> httpx.Response:
    return answer(status, json={"error": {"code": code, "message": message}})


def test_success_returns_the_json_body() -> None:
    assert check_response(answer(200, json={"messages": []})) == {"messages": []}


def test_success_with_invalid_json_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="invalid JSON from /v1/agent/poll") as caught:
        check_response(answer(200, content=b"<html>"))
    assert not isinstance(caught.value, ServerRejected)


@pytest.mark.parametrize("code", [wire.ERR_NODE_DEREGISTERED, wire.ERR_CREDENTIAL_EXPIRED])
def test_deregistered_or_expired_credential_stops_the_agent(code: str) -> None:
    with pytest.raises(CredentialRevoked) as caught:
        check_response(error(401, code, "node mi-x is deregistered"))
    assert caught.value.exit_code == 3
    assert (caught.value.status, caught.value.code) == (401, code)
    assert caught.value.message == "node mi-x is deregistered"


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, wire.ERR_TOKEN_EXPIRED), (401, wire.ERR_UNAUTHORIZED), (400, "invalid_request")],
)
def test_other_4xx_is_rejected_but_not_revoked(status: int, code: str) -> None:
    with pytest.raises(ServerRejected) as caught:
        check_response(error(status, code))
    assert not isinstance(caught.value, CredentialRevoked)
    assert (caught.value.status, caught.value.code) == (status, code)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_retried(status: int) -> None:
    with pytest.raises(TransportError, match=f"server error {status}") as caught:
        check_response(error(status, "internal"))
    assert not isinstance(caught.value, ServerRejected)


def test_a_4xx_without_the_error_shape_keeps_the_status() -> None:
    with pytest.raises(ServerRejected) as caught:
        check_response(answer(404, content=b"not here"))
    assert (caught.value.status, caught.value.code) == (404, "http_404")
    assert caught.value.message == "Not Found"
