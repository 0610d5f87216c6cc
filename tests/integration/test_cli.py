"""The operator CLI against a real server and a real agent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import BIN, Agent, Server, run, wait_for

pytestmark = pytest.mark.integration


def test_cli_end_to_end(tmp_path: Path, server: Server, make_agent: Callable[..., Agent]) -> None:
    env = {"CORRAL_CONFIG": str(tmp_path / "cli.toml")}

    def corral(*args: str) -> tuple[int, str, str]:
        result = run(BIN / "corral", *args, env=env)
        assert "Traceback" not in result.stderr
        return result.returncode, result.stdout, result.stderr

    code, _, err = corral(
        "login", "--url", server.url, "--token", server.token, "--ca-hash", "sha256:" + "1" * 64
    )
    assert code == 1 and "mismatch" in err.lower()
    code, _, err = corral(
        "login", "--url", server.url, "--token", "crl_wrong", "--ca-hash", server.ca_hash
    )
    assert code == 1 and err.startswith("error:")
    code, _, err = corral(
        "login", "--url", server.url, "--token", server.token, "--ca-hash", server.ca_hash
    )
    assert code == 0, err
    assert (tmp_path / "cli.toml").stat().st_mode & 0o777 == 0o600

    code, out, _ = corral(
        "activations",
        "create",
        "--limit",
        "2",
        "--expires",
        "2h",
        "--tag",
        "team=web",
        "--output",
        "json",
    )
    assert code == 0
    activation = json.loads(out)
    assert {"activation_id", "activation_code", "expires_at", "registration_limit"} <= set(
        activation
    )
    assert activation["registration_limit"] == 2
    code, _, err = corral("activations", "create", "--limit", "1001")
    assert code == 2
    code, _, err = corral("activations", "create", "--expires", "31d")
    assert code == 2

    agent = make_agent()
    assert agent.register(activation).returncode == 0
    agent.start()
    wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "Online")

    code, out, _ = corral("activations", "show", activation["activation_id"], "--output", "json")
    assert code == 0 and json.loads(out)["registrations_count"] == 1

    code, out, _ = corral("nodes", "list", "--filter", "tag:team=web", "--output", "json")
    assert code == 0 and [n["node_id"] for n in json.loads(out)] == [agent.node_id]
    code, out, _ = corral("nodes", "list")
    assert code == 0 and agent.node_id in out and "Online" in out

    code, out, _ = corral("nodes", "tag", agent.node_id, "env=prod", "--output", "json")
    assert code == 0 and json.loads(out)["tags"] == {"team": "web", "env": "prod"}
    code, _, err = corral("nodes", "tag", agent.node_id, "aws:x=1")
    assert code == 2 and "aws:" in err
    code, out, _ = corral("nodes", "untag", agent.node_id, "team", "--output", "json")
    assert code == 0 and json.loads(out)["tags"] == {"env": "prod"}

    code, out, _ = corral("nodes", "ping", agent.node_id)
    assert code == 0 and out.startswith(f"pong from {agent.node_id} in ")
    code, _, err = corral("nodes", "show", "mi-00000000000000000")
    assert code == 1 and "not found" in err

    # Environment variables override the profile.
    bad = run(BIN / "corral", "nodes", "list", env={**env, "CORRAL_TOKEN": "crl_revoked"})
    assert bad.returncode == 1 and "unauthorized" in bad.stderr

    code, out, _ = corral("nodes", "deregister", agent.node_id, "--output", "json")
    assert code == 0 and json.loads(out)["status"] == "Deregistered"
    assert agent.proc is not None and agent.proc.wait(timeout=20) == 3

    code, out, _ = corral("activations", "delete", activation["activation_id"])
    assert code == 0
    code, out, _ = corral("nodes", "show", agent.node_id, "--output", "json")
    assert code == 0 and json.loads(out)["status"] == "Deregistered"  # deleting kept the node


def test_cli_reports_unreachable_server_and_corrupted_config(tmp_path: Path) -> None:
    config = tmp_path / "cli.toml"
    env = {
        "CORRAL_CONFIG": str(config),
        "CORRAL_URL": "https://127.0.0.1:1",
        "CORRAL_TOKEN": "crl_x",
    }
    ca = tmp_path / "ca.pem"
    ca.write_text("not a cert")
    result = run(BIN / "corral", "nodes", "list", env={**env, "CORRAL_CA_FILE": str(ca)})
    assert result.returncode == 1 and result.stderr.startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1
    config.write_text("[[[ not toml")
    result = run(BIN / "corral", "nodes", "list", env={"CORRAL_CONFIG": str(config)})
    assert result.returncode == 1 and str(config) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
