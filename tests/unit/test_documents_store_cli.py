"""`corral documents ...`: what is sent, checks made before sending, table and JSON output."""

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
SHOWN: dict[str, Any] = {
    "name": "hello",
    "owner": "self",
    "document_type": "Command",
    "version": "2",
    "version_name": None,
    "default_version": "1",
    "latest_version": "2",
    "schema_version": "2.2",
    "description": "Say hello",
    "format": "yaml",
    "size": 25,
    "sha256": "ab" * 32,
    "parameters": {},
    "created_at": "2026-11-28T03:45:00Z",
    "version_created_at": "2026-11-28T03:46:00Z",
    "tags": {"env": "prod"},
}
CONTENT = "schemaVersion: '2.2'\n# [red]not markup[/red]\n"


@pytest.fixture(autouse=True)
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file=str(tmp_path / "missing.pem"), path=path)


class Server:
    def __init__(self, reply: Any = None, status: int = 200) -> None:
        self.reply, self.status = reply, status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.reply)

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def run(server: Server, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(
        cli, list(args), obj=Runtime(transport=httpx.MockTransport(server)), input=stdin
    )


@pytest.mark.parametrize(
    ("filename", "fmt"), [("d.json", "json"), ("d.YAML", "yaml"), ("d.yml", "yaml"), ("d", None)]
)
def test_create_sends_the_text_as_is_with_the_format_of_its_extension(
    tmp_path: Path, filename: str, fmt: str | None
) -> None:
    path = tmp_path / filename
    path.write_text(CONTENT)
    server = Server(SHOWN, 201)
    result = run(
        server, "documents", "create", "--name", "hello", "--file", str(path), "--tag", "a=b"
    )
    assert result.exit_code == 0, result.output
    request = server.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/documents")
    expected = {"name": "hello", "content": CONTENT, "tags": {"a": "b"}}
    assert server.body == ({**expected, "format": fmt} if fmt else expected)
    assert "hello" in result.output and "Say hello" in result.output


def test_format_and_version_name_options_and_standard_input() -> None:
    server = Server(SHOWN, 201)
    result = run(
        server,
        "documents", "update", "--name", "my.doc", "--file", "-", "--format", "json",
        "--version-name", "v2", "--output", "json",
        stdin=b'\xef\xbb\xbf{"a": 1}',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert server.requests[0].url.path == "/v1/documents/my.doc/versions"
    # A UTF-8 byte order mark is not part of the text.
    assert server.body == {"content": '{"a": 1}', "format": "json", "version_name": "v2"}
    assert json.loads(result.output) == SHOWN


def test_a_file_over_64_kb_or_not_utf8_is_refused_before_sending(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (64 * 1024 + 1))
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"description: \xff\xfe\n")
    server = Server(SHOWN, 201)
    result = run(server, "documents", "create", "--name", "hello", "--file", str(big))
    assert result.exit_code == 2 and "64 KB" in result.output
    result = run(server, "documents", "update", "--name", "hello", "--file", str(bad))
    assert result.exit_code == 2 and "not UTF-8" in result.output
    result = run(server, "documents", "create", "--name", "x", "--file", str(tmp_path / "no"))
    assert result.exit_code == 2
    assert server.requests == []
    exact = tmp_path / "exact.json"
    exact.write_bytes(b" " * (64 * 1024))
    assert run(server, "documents", "create", "--name", "ok", "--file", str(exact)).exit_code == 0


def test_list_filters_by_owner_and_prints_the_columns() -> None:
    server = Server({"documents": [SHOWN]})
    result = run(server, "documents", "list", "--filter", "owner:self")
    assert result.exit_code == 0, result.output
    assert server.requests[0].url.params["owner"] == "self"
    header = result.output.splitlines()[0].split()
    assert header == [
        "name", "owner", "default_version", "latest_version", "schema_version",
        "document_type", "created_at", "tags",
    ]  # fmt: skip
    assert "env=prod" in result.output
    result = run(server, "documents", "list", "--output", "json")
    assert "owner" not in server.requests[-1].url.params
    assert json.loads(result.output) == [SHOWN]


@pytest.mark.parametrize("value", ["owner:amazon", "self", "tag:a=b", "owner:"])
def test_a_bad_filter_is_a_usage_error(value: str) -> None:
    server = Server({"documents": []})
    result = run(server, "documents", "list", "--filter", value)
    assert result.exit_code == 2 and "owner:self or owner:corral" in result.output
    assert server.requests == []


def test_show_asks_for_a_version_and_prints_the_content_as_stored() -> None:
    server = Server({**SHOWN, "content": CONTENT})
    result = run(server, "documents", "show", "hello", "--version", "$LATEST", "--content")
    assert result.exit_code == 0, result.output
    params = server.requests[0].url.params
    assert (params["version"], params["content"]) == ("$LATEST", "true")
    assert result.output.endswith("\n\n" + CONTENT)
    assert "sha256" in result.output

    result = run(server, "documents", "show", "hello", "--content", "-o", "json")
    assert json.loads(result.output)["content"] == CONTENT
    server.reply = SHOWN
    result = run(server, "documents", "show", "hello")
    assert "version" not in server.requests[-1].url.params
    assert "content" not in server.requests[-1].url.params


def test_set_default_puts_the_version() -> None:
    server = Server({**SHOWN, "default_version": "3"})
    result = run(server, "documents", "set-default", "hello", "--version", "3")
    assert result.exit_code == 0, result.output
    request = server.requests[0]
    assert (request.method, request.url.path) == ("PUT", "/v1/documents/hello/default")
    assert server.body == {"version": "3"}
    assert result.output == "default version of hello is now 3\n"
    result = run(server, "documents", "set-default", "hello")
    assert result.exit_code == 2 and "--version" in result.output


def test_versions_and_delete() -> None:
    rows = [
        {"version": "1", "version_name": None, "is_default": True, "is_latest": False},
        {"version": "2", "version_name": "two", "is_default": False, "is_latest": True},
    ]
    server = Server({"name": "hello", "owner": "self", "versions": rows})
    result = run(server, "documents", "versions", "hello")
    assert result.exit_code == 0, result.output
    assert server.requests[0].url.path == "/v1/documents/hello/versions"
    header = result.output.splitlines()[0].split()
    assert header[:4] == ["version", "version_name", "default", "latest"]
    assert json.loads(run(server, "documents", "versions", "hello", "-o", "json").output) == rows

    server = Server({"deleted": "hello", "version": "2"})
    result = run(server, "documents", "delete", "hello", "--version", "two")
    assert result.output == "deleted version 2 of document hello\n"
    request = server.requests[0]
    assert (request.method, request.url.params["version"]) == ("DELETE", "two")
    server = Server({"deleted": "hello"})
    result = run(server, "documents", "delete", "hello", "--output", "json")
    assert json.loads(result.output) == {"deleted": "hello"}
    assert "version" not in server.requests[0].url.params


def test_a_refusal_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text("{}")
    message = "document name 'aws-x' is reserved: names starting with AWS ..."
    server = Server({"error": {"code": "invalid_request", "message": message}}, 400)
    result = run(server, "documents", "create", "--name", "aws-x", "--file", str(path))
    assert result.exit_code == 1
    assert result.output == f"error: {message} (invalid_request)\n"
