"""`corral activations ...`: request bodies, the one-time code, table and JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile

URL = "https://corral.test:8443"
ACTIVATION: dict[str, Any] = {
    "activation_id": "3f1c2a4e-0000-4000-8000-000000000001",
    "name": "web",
    "description": "",
    "registration_limit": 10,
    "registrations_count": 3,
    "expires_at": "2026-11-29T03:45:00Z",
    "expired": False,
    "created_at": "2026-11-28T03:45:00Z",
    "tags": {"env": "prod"},
}
CREATED = {**ACTIVATION, "registrations_count": 0, "activation_code": "CODE-only-once"}


@pytest.fixture(autouse=True)
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file=str(tmp_path / "missing.pem"), path=path)


class Server:
    def __init__(self, reply: Any, status: int = 200) -> None:
        self.reply, self.status = reply, status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.reply)


def run(server: Server, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=Runtime(transport=httpx.MockTransport(server)))


def test_create_sends_the_documented_body_with_defaults() -> None:
    server = Server(CREATED, 201)
    result = run(server, "activations", "create")

    assert result.exit_code == 0, result.output
    request = server.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/activations")
    assert json.loads(request.read()) == {
        "name": "",
        "description": "",
        "registration_limit": 1,
        "expires_in_seconds": 86400,
        "tags": {},
    }


def test_create_sends_every_option() -> None:
    server = Server(CREATED, 201)
    args = ["--name", "web", "--description", "web tier", "--limit", "1000", "--expires", "30d"]
    result = run(server, "activations", "create", *args, "--tag", "env=prod", "--tag", "team=")

    assert result.exit_code == 0, result.output
    assert json.loads(server.requests[0].read()) == {
        "name": "web",
        "description": "web tier",
        "registration_limit": 1000,
        "expires_in_seconds": 30 * 86400,
        "tags": {"env": "prod", "team": ""},
    }


def test_create_table_shows_the_code_and_how_to_register() -> None:
    result = run(Server(CREATED, 201), "activations", "create", "--name", "web")

    assert result.exit_code == 0, result.output
    assert "activation code:  CODE-only-once" in result.stdout
    # The profile's CA file is missing here: the code must still be printed, with a placeholder.
    assert (
        f"corral-agent register --url {URL} --id {CREATED['activation_id']} "
        "--code CODE-only-once --ca-hash sha256:<hash of the server CA>"
    ) in result.stdout


def test_create_json_is_exactly_the_response_object() -> None:
    result = run(Server(CREATED, 201), "activations", "create", "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == CREATED


def test_list_table_columns() -> None:
    expired = {**ACTIVATION, "activation_id": "old", "name": "", "expired": True}
    result = run(Server({"activations": [ACTIVATION, expired]}), "activations", "list")

    assert result.exit_code == 0, result.output
    header, _rule, first, second = result.stdout.splitlines()
    assert header.split() == ["id", "name", "registrations", "expires_at", "expired"]
    assert first.split() == [
        ACTIVATION["activation_id"],
        "web",
        "3/10",
        "2026-11-29T03:45:00Z",
        "no",
    ]
    assert second.split() == ["old", "-", "3/10", "2026-11-29T03:45:00Z", "yes"]


def test_list_json_is_an_array() -> None:
    server = Server({"activations": [ACTIVATION]})
    result = run(server, "activations", "list", "-o", "json")
    assert json.loads(result.stdout) == [ACTIVATION]
    assert server.requests[0].url.path == "/v1/activations"


def test_show() -> None:
    server = Server(ACTIVATION)
    result = run(server, "activations", "show", "3f1c", "-o", "json")
    assert server.requests[0].url.path == "/v1/activations/3f1c"
    assert json.loads(result.stdout) == ACTIVATION

    table = run(Server(ACTIVATION), "activations", "show", "3f1c")
    assert table.stdout.splitlines()[2].split() == ["activation_id", ACTIVATION["activation_id"]]


def test_delete() -> None:
    server = Server({"deleted": "3f1c"})
    result = run(server, "activations", "delete", "3f1c")
    assert result.exit_code == 0, result.output
    assert (server.requests[0].method, server.requests[0].url.path) == (
        "DELETE",
        "/v1/activations/3f1c",
    )
    assert result.stdout == "deleted activation 3f1c\n"
    assert json.loads(run(server, "activations", "delete", "3f1c", "-o", "json").stdout) == {
        "deleted": "3f1c"
    }


def test_delete_unknown_is_exit_1_with_the_server_message() -> None:
    server = Server({"error": {"code": "not_found", "message": "activation x not found"}}, 404)
    result = run(server, "activations", "delete", "x")
    assert result.exit_code == 1
    assert result.stderr == "error: activation x not found (not_found)\n"
