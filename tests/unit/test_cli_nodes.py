"""`corral nodes ...`: the requests sent and the table / JSON printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile

URL = "https://corral.test:8443"
NODE: dict[str, Any] = {
    "node_id": "mi-0123456789abcdef0",
    "name": "web-1",
    "status": "Online",
    "platform": "Ubuntu",
    "platform_version": "24.04",
    "agent_version": "0.1.0",
    "hostname": "web-1.example",
    "ip_addresses": ["10.0.0.5", "fe80::1"],
    "tags": {"env": "prod", "note": "[red]not markup"},
    "registered_at": "2026-11-28T03:45:00Z",
    "last_seen": None,
    "activation_id": "3f1c",
}
LOST = {**NODE, "node_id": "mi-0000000000000000a", "status": "ConnectionLost", "ip_addresses": []}
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file="/ca.pem", path=path)


class Server:
    """Answers every request with ``reply`` and remembers what it was asked."""

    def __init__(self, reply: Any, status: int = 200) -> None:
        self.reply, self.status = reply, status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.reply)

    def body(self) -> Any:
        return json.loads(self.requests[-1].read())


def run(server: Handler, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=Runtime(transport=httpx.MockTransport(server)))


def test_list_table_has_the_documented_columns_and_first_ip() -> None:
    server = Server({"nodes": [NODE, LOST]})
    result = run(server, "nodes", "list")

    assert result.exit_code == 0, result.output
    header, _rule, first, second = result.stdout.splitlines()
    assert header.split() == [
        "node_id", "name", "status", "platform", "platform_version", "agent_version", "ip",
        "last_seen",
    ]  # fmt: skip
    assert first.split() == [
        "mi-0123456789abcdef0", "web-1", "Online", "Ubuntu", "24.04", "0.1.0", "10.0.0.5", "-",
    ]  # fmt: skip
    assert second.split()[2] == "ConnectionLost"
    assert second.split()[6] == "-"  # no address
    assert server.requests[0].method == "GET"
    assert server.requests[0].url.path == "/v1/nodes"


def test_list_json_is_an_array_of_the_server_objects() -> None:
    result = run(Server({"nodes": [NODE, LOST]}), "nodes", "list", "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [NODE, LOST]
    assert result.stdout.startswith("[\n  {\n")  # pretty-printed


def test_list_json_of_no_nodes_is_an_empty_array() -> None:
    result = run(Server({"nodes": []}), "nodes", "list", "-o", "json")
    assert json.loads(result.stdout) == []


def test_list_filters_are_repeated_query_parameters() -> None:
    server = Server({"nodes": []})
    result = run(server, "nodes", "list", "--filter", "tag:env=prod", "--filter", "tag:team=web")
    assert result.exit_code == 0, result.output
    params = server.requests[0].url.params
    assert params.get_list("filter") == ["tag:env=prod", "tag:team=web"]


def test_show_table_lists_every_field_and_prints_values_literally() -> None:
    server = Server(NODE)
    result = run(server, "nodes", "show", "mi-0123456789abcdef0")

    assert result.exit_code == 0, result.output
    rows = {
        line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1]
        for line in result.stdout.splitlines()[2:]
    }
    assert set(rows) == set(NODE)
    assert rows["ip_addresses"] == "10.0.0.5, fe80::1"
    assert rows["tags"] == "env=prod, note=[red]not markup"
    assert rows["last_seen"] == "-"
    assert server.requests[0].url.path == "/v1/nodes/mi-0123456789abcdef0"


def test_show_json_is_the_object() -> None:
    result = run(Server(NODE), "nodes", "show", "mi-0123456789abcdef0", "-o", "json")
    assert json.loads(result.stdout) == NODE


def test_ids_cannot_escape_their_path_segment() -> None:
    server = Server(NODE)
    run(server, "nodes", "show", "../activations?x=1")
    assert server.requests[0].url.raw_path == b"/v1/nodes/..%2Factivations%3Fx%3D1"


def test_tag_posts_the_tags_and_prints_the_node() -> None:
    server = Server({**NODE, "tags": {"env": "prod", "team": "web"}})
    result = run(server, "nodes", "tag", "mi-1", "team=web", "-o", "json")

    assert result.exit_code == 0, result.output
    assert server.requests[0].method == "POST"
    assert server.requests[0].url.path == "/v1/nodes/mi-1/tags"
    assert server.body() == {"tags": {"team": "web"}}
    assert json.loads(result.stdout)["tags"] == {"env": "prod", "team": "web"}


def test_untag_posts_the_keys() -> None:
    server = Server(NODE)
    result = run(server, "nodes", "untag", "mi-1", "env", "team")
    assert result.exit_code == 0, result.output
    assert server.requests[0].url.path == "/v1/nodes/mi-1/untag"
    assert server.body() == {"keys": ["env", "team"]}
    assert "mi-0123456789abcdef0" in result.stdout


def test_tag_needs_at_least_one_tag() -> None:
    result = run(Server(NODE), "nodes", "tag", "mi-1")
    assert result.exit_code == 2


def test_ping_prints_pong_with_rtt() -> None:
    server = Server({"node_id": "mi-0123456789abcdef0", "rtt_ms": 12.34})
    result = run(server, "nodes", "ping", "mi-0123456789abcdef0", "--timeout", "5")

    assert result.exit_code == 0, result.output
    assert result.stdout == "pong from mi-0123456789abcdef0 in 12.3 ms\n"
    assert server.body() == {"timeout_seconds": 5}
    assert server.requests[0].url.path == "/v1/nodes/mi-0123456789abcdef0/ping"


def test_ping_default_timeout_and_json() -> None:
    server = Server({"node_id": "mi-1", "rtt_ms": 3})
    result = run(server, "nodes", "ping", "mi-1", "-o", "json")
    assert server.body() == {"timeout_seconds": 30}
    assert json.loads(result.stdout) == {"node_id": "mi-1", "rtt_ms": 3}


def test_ping_timeout_from_the_server_is_an_error() -> None:
    server = Server({"error": {"code": "timeout", "message": "mi-1 did not answer in 5 s"}}, 504)
    result = run(server, "nodes", "ping", "mi-1", "--timeout", "5")
    assert result.exit_code == 1
    assert result.stderr == "error: mi-1 did not answer in 5 s (timeout)\n"


def test_ping_without_rtt_is_a_bad_response() -> None:
    result = run(Server({"node_id": "mi-1"}), "nodes", "ping", "mi-1")
    assert result.exit_code == 1
    assert "rtt_ms" in result.stderr


@pytest.mark.parametrize("timeout", ["0", "301", "x"])
def test_ping_rejects_bad_timeouts(timeout: str) -> None:
    assert run(Server({}), "nodes", "ping", "mi-1", "--timeout", timeout).exit_code == 2


def test_deregister_posts_and_prints_the_node() -> None:
    server = Server({**NODE, "status": "Deregistered"})
    result = run(server, "nodes", "deregister", "mi-1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert server.requests[0].method == "POST"
    assert server.requests[0].url.path == "/v1/nodes/mi-1/deregister"
    shown = json.loads(result.stdout)
    assert shown["status"] == "Deregistered" and shown["node_id"] == NODE["node_id"]
    assert shown["deregistered"] is True
    assert (
        shown["message"]
        == f"deregistered {NODE['node_id']} (web-1): its credentials no longer work"
    )


def test_deregister_says_what_it_did() -> None:
    result = run(Server({**NODE, "status": "Deregistered"}), "nodes", "deregister", "mi-1")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"deregistered {NODE['node_id']} (web-1): its credentials no longer work\n"
    )


def test_list_of_the_wrong_shape_is_a_bad_response() -> None:
    result = run(Server({"items": []}), "nodes", "list")
    assert result.exit_code == 1
    assert "'nodes'" in result.stderr
