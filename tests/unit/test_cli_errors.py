"""Failures reach the user as one line on stderr with exit 1; tracebacks only with --debug."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile

URL = "https://corral.test:8443"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file="/ca.pem", path=path)
    return path


def run(handler: Handler | None, *args: str, env: dict[str, str] | None = None) -> Result:
    transport = httpx.MockTransport(handler) if handler else None
    return CliRunner().invoke(cli, list(args), obj=Runtime(transport=transport), env=env)


def failed_with(result: Result) -> str:
    """The one stderr line of a failed command (asserting there is exactly one)."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def answer(status: int, **kwargs: object) -> Handler:
    return lambda request: httpx.Response(status, **kwargs)  # type: ignore[arg-type]


def raise_(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "invalid_request", "tags.env: too long"),
        (401, "unauthorized", "invalid operator token"),
        (403, "forbidden", "not allowed"),
        (404, "not_found", "node mi-1 not found"),
        (409, "conflict", "node mi-1 is deregistered"),
        (500, "internal", "internal server error; see the server log"),
    ],
)
def test_server_errors_print_message_and_code(
    config: Path, status: int, code: str, message: str
) -> None:
    envelope = {"error": {"code": code, "message": message}}
    result = run(answer(status, json=envelope), "nodes", "show", "mi-1")
    assert failed_with(result) == f"error: {message} ({code})"


def test_server_error_message_with_newlines_stays_one_line(config: Path) -> None:
    envelope = {"error": {"code": "invalid_request", "message": "bad\nthing\n\nhere"}}
    result = run(answer(400, json=envelope), "nodes", "list")
    assert failed_with(result) == "error: bad thing here (invalid_request)"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "<html>Bad Gateway</html>"},
        {"json": {"detail": "Not Found"}},
        {"json": {"error": "flat string"}},
        {"json": {"error": {"code": 1, "message": None}}},
    ],
)
def test_error_without_our_envelope_reports_the_http_status(
    config: Path, kwargs: dict[str, object]
) -> None:
    result = run(answer(502, **kwargs), "nodes", "list")
    assert failed_with(result) == "error: HTTP 502 Bad Gateway (http_502)"


def test_success_that_is_not_json_is_reported(config: Path) -> None:
    result = run(answer(200, text="<html>welcome to nginx</html>"), "nodes", "list")
    assert "not JSON" in failed_with(result)


def test_connection_refused(config: Path) -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    result = run(raise_(refused), "nodes", "list")
    assert failed_with(result) == f"error: cannot reach {URL}: Connection refused"


def test_timeout(config: Path) -> None:
    result = run(raise_(httpx.ReadTimeout("")), "nodes", "list")
    assert failed_with(result) == f"error: cannot reach {URL}: timed out after 30 s"


def test_ping_timeout_is_the_ping_budget(config: Path) -> None:
    result = run(raise_(httpx.ReadTimeout("")), "nodes", "ping", "mi-1", "--timeout", "5")
    assert failed_with(result) == f"error: cannot reach {URL}: timed out after 20 s"


def test_real_connection_refused_on_loopback(config: Path) -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = run(None, "nodes", "list", env={"CORRAL_URL": url})
    line = failed_with(result)
    assert line.startswith(f"error: cannot reach {url}: ")
    assert "refused" in line.lower()


def test_https_without_any_ca_file_is_refused_before_connecting(config: Path) -> None:
    env = {
        "CORRAL_CONFIG": str(config.parent / "none.toml"),
        "CORRAL_URL": URL,
        "CORRAL_TOKEN": "t",
    }
    line = failed_with(run(None, "nodes", "list", env=env))
    assert "CORRAL_CA_FILE" in line


def test_missing_ca_file_is_named(config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"
    line = failed_with(run(None, "nodes", "list", env={"CORRAL_CA_FILE": str(missing)}))
    assert str(missing) in line


def test_unexpected_exception_is_one_line_without_traceback(config: Path) -> None:
    result = run(raise_(ZeroDivisionError("boom")), "nodes", "list")
    line = failed_with(result)
    assert "ZeroDivisionError: boom" in line
    assert "--debug" in line


def test_debug_shows_the_traceback(config: Path) -> None:
    result = run(raise_(ZeroDivisionError("boom")), "--debug", "nodes", "list")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: unexpected ZeroDivisionError")


def test_debug_shows_the_cause_of_a_reported_error(config: Path) -> None:
    result = run(raise_(httpx.ConnectError("refused")), "--debug", "nodes", "list")
    assert result.exit_code == 1
    assert "httpx.ConnectError: refused" in result.stderr
    assert result.stderr.splitlines()[-1] == f"error: cannot reach {URL}: refused"


def test_ok_exits_zero_and_no_args_shows_help(config: Path) -> None:
    assert run(answer(200, json={"nodes": []}), "nodes", "list").exit_code == 0
    result = run(None)
    assert result.exit_code == 2  # click's convention for a group called without a command
    assert "Usage: corral" in result.stderr
    assert run(None, "--help").exit_code == 0
