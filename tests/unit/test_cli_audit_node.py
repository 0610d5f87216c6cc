"""`corral audit list --node ID|NAME`: "what was run on web-3 this week" in one command.  An id
is used as is; a name is looked up (exactly one registered node), then the audit trail is
asked for ``resource=node/ID``, which also matches the commands sent to that node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile

URL = "https://corral.test:8443"
WEB3 = "mi-0b1c2d3e4f5061728"
OTHER = "mi-00000000000000abc"
SENT = {"seq": 7, "time": 1_796_119_200.0, "identity_name": "ci", "source_ip": "10.0.0.9",
        "action": "commands:Send", "resource": "command/8f4c", "outcome": "allowed",
        "error": None}  # fmt: skip


@pytest.fixture(autouse=True)
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file="/ca.pem", path=path)


class Server:
    def __init__(self, nodes: list[str] | None = None, nodes_status: int = 200) -> None:
        self.nodes = nodes or []
        self.nodes_status = nodes_status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/nodes":
            if self.nodes_status != 200:
                error = {"code": "forbidden", "message": "auditor may not nodes:List on node/*"}
                return httpx.Response(self.nodes_status, json={"error": error})
            rows = [{"node_id": n, "name": "web-3"} for n in self.nodes]
            return httpx.Response(200, json={"nodes": rows, "next_token": None})
        return httpx.Response(200, json={"entries": [SENT], "next_token": None})

    def asked(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.url.path, dict(r.url.params.multi_items())) for r in self.requests]


def run(server: Server, *args: str) -> Result:
    runtime = Runtime(transport=httpx.MockTransport(server))
    return CliRunner().invoke(cli, ["audit", "list", *args], obj=runtime)


def test_a_node_id_is_used_as_is() -> None:
    server = Server()
    result = run(server, "--node", WEB3, "--action", "commands:Send")

    assert result.exit_code == 0, result.stderr
    assert server.asked() == [
        ("/v1/audit", {"resource": f"node/{WEB3}", "action": "commands:Send", "limit": "100"})
    ]
    assert "command/8f4c" in result.stdout


def test_a_name_is_looked_up_then_the_trail_is_searched_by_its_id() -> None:
    server = Server([WEB3])
    result = run(server, "--node", "web-3", "--since", "7d")

    assert result.exit_code == 0, result.stderr
    (nodes, audit) = server.asked()
    assert nodes == ("/v1/nodes", {"targets": "name:web-3", "limit": "1000"})
    assert audit[0] == "/v1/audit" and audit[1]["resource"] == f"node/{WEB3}"


@pytest.mark.parametrize(
    ("server", "fragment"),
    [
        (Server([]), "no registered node is named 'web-3': give its id"),
        (Server([WEB3, OTHER]), f"2 nodes are named 'web-3' ({OTHER}, {WEB3}): give one id"),
        (Server(nodes_status=403), "cannot look up node 'web-3' (auditor may not nodes:List"),
    ],
)
def test_a_name_that_is_not_one_node_is_an_error_before_searching(
    server: Server, fragment: str
) -> None:
    result = run(server, "--node", "web-3")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {fragment}"), result.stderr
    assert [path for path, _ in server.asked()] == ["/v1/nodes"]


@pytest.mark.parametrize(
    "args",
    [["--node", WEB3, "--resource", "node/*"], ["--node", "web-*"], ["--node", " "]],
)
def test_bad_node_usage_exits_2_before_sending(args: list[str]) -> None:
    server = Server()
    result = run(server, *args)

    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert server.requests == []
