"""The server process: IPv6 listen, OpenAPI, bad config, request limits, error shape, stop."""

from __future__ import annotations

import signal
import ssl
from pathlib import Path

import httpx
import pytest

from control_plane.store import migrations
from tests.integration.harness import BIN, Proc, Server, free_port, run, wait_for

pytestmark = pytest.mark.integration


def test_serves_on_ipv6_loopback(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    port = free_port()
    proc = Proc(
        [
            str(BIN / "corral-server"),
            "serve",
            "--data-dir",
            str(srv.data_dir),
            "--listen",
            f"[::1]:{port}",
        ],
        tmp_path,
        "v6",
    )
    try:
        tls = ssl.create_default_context(cafile=srv.ca_file)

        def ready() -> bool:
            try:
                return (
                    httpx.get(f"https://[::1]:{port}/readyz", verify=tls, timeout=2).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "IPv6 server ready")
    finally:
        assert proc.stop() == 0


def test_openapi_errors_and_limits(server: Server) -> None:
    with server.api() as api:
        spec = api.get("/v1/openapi.json").json()
        assert "/v1/nodes" in spec["paths"] and "/v1/agent/poll" in spec["paths"]
        missing = api.get("/v1/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        big = api.post(
            "/v1/activations",
            content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        bad_json = api.post(
            "/v1/activations", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_request"
        bad_tag = api.post("/v1/activations", json={"tags": {"aws:owner": "x"}})
        assert bad_tag.status_code == 400 and "aws:" in bad_tag.json()["error"]["message"]
    anonymous = httpx.get(server.url + "/v1/nodes", verify=server.tls())
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    forged = httpx.get(
        server.url + "/v1/nodes",
        verify=server.tls(),
        headers={"authorization": "Bearer crl_forged"},
    )
    assert forged.status_code == 401


def test_serve_refuses_corrupted_or_missing_config_in_one_line(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    (srv.data_dir / "config.toml").write_text("[server\nlisten = ")
    result = run(BIN / "corral-server", "serve", "--data-dir", str(srv.data_dir))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "config.toml" in result.stderr
    (srv.data_dir / "config.toml").unlink()
    result = run(BIN / "corral-server", "serve", "--data-dir", str(srv.data_dir))
    assert result.returncode == 1 and "corral-server init" in result.stderr
    (tmp_path / "file-not-dir").write_text("")
    result = run(BIN / "corral-server", "init", "--data-dir", str(tmp_path / "file-not-dir" / "x"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    result = run(BIN / "corral-server", "migrate", "--data-dir", str(srv.data_dir))
    assert result.returncode == 1


def test_migrate_reports_the_revision(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    result = run(BIN / "corral-server", "migrate", "--data-dir", str(srv.data_dir))
    versions = Path(migrations.__file__).parent / "versions"
    head = max(p.name[:4] for p in versions.glob("0*.py"))
    assert result.returncode == 0 and f"revision {head}" in result.stdout


@pytest.mark.server_config("shutdown_grace_seconds = 600")
def test_an_idle_keep_alive_connection_does_not_hold_a_restart(server: Server) -> None:
    """SIGTERM with an operator's idle keep-alive connection open (a CLI session, a console):
    the server stops at once.  Before, TLS waited for that client's close_notify, which an
    idle client never sends, until asyncio's 30 s SSL shutdown timeout (or the grace)."""
    assert server.proc is not None
    with server.api() as api:
        assert api.get("/v1/nodes").status_code == 200  # the connection stays open, idle
        server.proc.signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0  # a deadline well short of those 30 s
