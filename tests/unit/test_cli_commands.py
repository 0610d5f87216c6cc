"""`corral commands watch` and `corral run`: what they print and the status they exit with.

``watch`` ends as ``run --wait`` does: 0 for Success, 1 for any other end (Failed, TimedOut,
Cancelled), in both output formats; ``run`` without ``--wait`` says how to follow what it sent.
"""

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
CMD = "0b7f7bde-9d1c-4a4e-9f39-3f1b1f0c2a10"
NODE = "mi-0123456789abcdef0"


@pytest.fixture(autouse=True)
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file="/ca.pem", path=path)


def invocation(status: str) -> dict[str, Any]:
    return {
        "command_id": CMD,
        "node_id": NODE,
        "node_name": "web-1",
        "status": status,
        "status_details": status,
        "response_code": 0 if status == "Success" else 1,
        "steps": [{"name": "s", "status": status, "stdout": "hello\n", "stderr": ""}],
    }


class Server:
    """A command that is InProgress until the follower first asks for its invocations; then
    it has ended with ``final``."""

    def __init__(self, final: str, *, running: bool = True) -> None:
        self.final = final
        self.ended = not running
        self.paths: list[str] = []

    def view(self) -> dict[str, Any]:
        status = self.final if self.ended else "InProgress"
        return {
            "command_id": CMD,
            "document_name": "AWS-RunShellScript",
            "status": status,
            "status_details": status,
            "target_count": 1,
            "completed_count": 1 if self.ended else 0,
            "error_count": 0 if status in ("Success", "InProgress") else 1,
            "completed_at": "2026-12-04T05:00:00Z" if self.ended else None,
            "invocations": [invocation(status)],
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(path)
        if path == "/v1/events":
            return httpx.Response(200, content=b": connected\n\n")
        if path == f"/v1/commands/{CMD}/invocations":
            self.ended = True
            return httpx.Response(
                200, json={"invocations": [invocation(self.final)], "next_token": None}
            )
        if path == f"/v1/commands/{CMD}":
            return httpx.Response(200, json=self.view())
        if path == "/v1/commands" and request.method == "POST":
            sent = {k: v for k, v in self.view().items() if k != "invocations"}
            return httpx.Response(201, json={**sent, "status": "Pending", "document_version": "1"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


def run(server: Server, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=Runtime(transport=httpx.MockTransport(server)))


@pytest.mark.parametrize(("final", "code"), [("Success", 0), ("Failed", 1), ("TimedOut", 1),
                                             ("Cancelled", 1)])  # fmt: skip
def test_watch_exits_as_run_wait_does(final: str, code: int) -> None:
    server = Server(final)
    result = run(server, "commands", "watch", CMD)

    assert result.exit_code == code, (result.stdout, result.stderr)
    assert f"{NODE} web-1 | {final}" in result.stdout  # the node's result as it finished
    assert "hello" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"command {CMD}: {final}")
    if code:
        assert result.stderr == f"error: command {CMD} ended {final} ({final})\n"
    assert "/v1/events" in server.paths  # it did follow


@pytest.mark.parametrize(("final", "code"), [("Success", 0), ("Failed", 1)])
def test_watch_json_prints_the_final_view_only_and_exits_as_run_wait(final: str, code: int) -> None:
    result = run(Server(final), "commands", "watch", CMD, "--output", "json")

    assert result.exit_code == code
    view = json.loads(result.stdout)  # one JSON document, no progress lines
    assert view["status"] == final and view["invocations"][0]["steps"][0]["stdout"] == "hello\n"


def test_watch_json_no_output_leaves_the_output_out() -> None:
    result = run(Server("Success"), "commands", "watch", CMD, "-o", "json", "--no-output")

    assert result.exit_code == 0
    step = json.loads(result.stdout)["invocations"][0]["steps"][0]
    assert "stdout" not in step and step["status"] == "Success"


def test_watch_of_a_command_that_already_ended_prints_its_summary_and_status() -> None:
    server = Server("Cancelled", running=False)
    result = run(server, "commands", "watch", CMD)

    assert result.exit_code == 1
    assert result.stdout.startswith(f"command {CMD}: Cancelled (Cancelled), 1/1 done, 1 errors")
    assert "/v1/events" not in server.paths


def test_run_without_wait_prints_the_id_and_how_to_follow_it() -> None:
    result = run(Server("Success"), "run", "--targets", "all", "--", "uptime")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"command {CMD} sent: AWS-RunShellScript (version 1) on 1 node",
        f"follow it with: corral commands watch {CMD}",
    ]


def test_run_without_wait_names_the_profile_in_the_follow_command() -> None:
    result = run(Server("Success"), "--profile", "dev", "run", "--node", NODE, "--", "true")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"follow it with: corral --profile dev commands watch {CMD}"
    )


def test_run_without_wait_json_is_the_servers_object() -> None:
    result = run(Server("Success"), "run", "--targets", "all", "-o", "json", "--", "uptime")

    assert result.exit_code == 0
    sent = json.loads(result.stdout)
    assert sent["command_id"] == CMD and sent["status"] == "Pending" and sent["target_count"] == 1


def test_run_wait_still_exits_1_on_failure() -> None:
    result = run(Server("Failed"), "run", "--targets", "all", "--wait", "--", "false")

    assert result.exit_code == 1
    assert result.stderr == f"error: command {CMD} ended Failed (Failed)\n"
