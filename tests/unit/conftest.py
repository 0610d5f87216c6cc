"""Shared unit-test fixtures.

Server-side tests run the real FastAPI app in-process (``httpx.ASGITransport``, lifespan
included) against a data dir made by ``init_data_dir``, with a clock the test advances instead
of sleeping.  ``init`` runs once per session; every test gets its own copy of that data dir.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from agent import wire
from agent.identity import NodeKey
from control_plane.api.app import create_app
from control_plane.config import load_config
from control_plane.datadir import init_data_dir
from control_plane.services.hub import ControlPlane
from control_plane.services.ratelimit import RateLimits
from tests.unit import sqlite_leaks

T = TypeVar("T")
sqlite_leaks.install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    sqlite_leaks.current_test[0] = item.nodeid
    return (yield)


RunApi = Callable[[Callable[["Api"], Awaitable[Any]]], Any]


class FakeClock:
    """The control plane's clock; starts at the real time so certificates stay valid."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class ServerDir:
    path: Path
    admin_token: str
    ca_hash: str


@dataclass
class Node:
    node_id: str
    key: NodeKey
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


class Api:
    """An HTTP client on the in-process app, with the steps most tests need."""

    def __init__(
        self, client: httpx.AsyncClient, cp: ControlPlane, clock: FakeClock, admin_token: str
    ) -> None:
        self.client = client
        self.cp = cp
        self.clock = clock
        self.admin = {"authorization": f"Bearer {admin_token}"}

    async def create_activation(self, **fields: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/activations", json=fields, headers=self.admin)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def register(
        self, activation: dict[str, Any], key: NodeKey | None = None, **fields: Any
    ) -> httpx.Response:
        body = {
            "activation_id": activation["activation_id"],
            "activation_code": activation["activation_code"],
            "public_key": (key or NodeKey.generate()).public_key_b64,
            "name": "",
            "hostname": "host-1",
            **fields,
        }
        return await self.client.post(wire.ROUTE_REGISTER, json=body)

    async def challenge(self, node_id: str) -> httpx.Response:
        return await self.client.post(wire.ROUTE_CHALLENGE, json={"node_id": node_id})

    async def token_request(self, node_id: str, key: NodeKey, nonce: str) -> httpx.Response:
        stamp = int(time.time())
        signature = key.sign_b64(wire.token_signing_payload(node_id, nonce, stamp))
        return await self.client.post(
            wire.ROUTE_TOKEN,
            json={"node_id": node_id, "nonce": nonce, "timestamp": stamp, "signature": signature},
        )

    async def node_token(self, node_id: str, key: NodeKey) -> str:
        challenge = await self.challenge(node_id)
        assert challenge.status_code == 200, challenge.text
        answer = await self.token_request(node_id, key, challenge.json()["nonce"])
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    async def new_node(self, **activation_fields: Any) -> Node:
        """Register a node through a fresh activation and buy it an access token."""
        activation = await self.create_activation(**activation_fields)
        key = NodeKey.generate()
        response = await self.register(activation, key)
        assert response.status_code == 201, response.text
        node = Node(node_id=response.json()["node_id"], key=key)
        node.token = await self.node_token(node.node_id, key)
        return node

    async def node(self, node_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/nodes/{node_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        shown: dict[str, Any] = response.json()
        return shown

    async def send(self, node: Node, messages: list[Any]) -> httpx.Response:
        return await self.client.post(
            wire.ROUTE_MESSAGES, json={"messages": messages}, headers=node.auth
        )


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """The response is the API's error shape with this status and code; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    message: str = error["message"]
    return message


@pytest.fixture(scope="session")
def _server_template(tmp_path_factory: pytest.TempPathFactory) -> ServerDir:
    path = tmp_path_factory.mktemp("template") / "srv"
    result = init_data_dir(path, [])
    return ServerDir(path=path, admin_token=result.admin_token, ca_hash=result.ca_hash)


@pytest.fixture
def server_dir(_server_template: ServerDir, tmp_path: Path) -> ServerDir:
    """A data dir made by ``init_data_dir``, private to this test."""
    path = tmp_path / "srv"
    shutil.copytree(_server_template.path, path)
    return ServerDir(
        path=path, admin_token=_server_template.admin_token, ca_hash=_server_template.ca_hash
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run_api(server_dir: ServerDir, clock: FakeClock) -> Iterator[RunApi]:
    """``run_api(scenario)`` runs ``await scenario(api)`` against a started control plane."""

    def run(scenario: Callable[[Api], Awaitable[T]]) -> T:
        async def main() -> T:
            cp = ControlPlane(load_config(server_dir.path), clock=clock)
            # Tests send many bad tokens in a row; test_authz_limits.py turns the slow-down on.
            cp.rate_limits = RateLimits(auth_base_delay=0, clock=clock)
            app = create_app(cp)
            failure: Exception | None = None
            async with app.router.lifespan_context(app):
                # A server bug shows as the 500 a client would get, not as a test crash.
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(
                    transport=transport, base_url="https://corral.test"
                ) as client:
                    try:
                        result = await scenario(Api(client, cp, clock, server_dir.admin_token))
                    except Exception as exc:  # re-raised below, outside the lifespan's task group
                        failure = exc
            if failure is not None:
                raise failure
            return result

        return asyncio.run(main())

    yield run
