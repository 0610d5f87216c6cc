"""Access control and audit through the real server, real agents and the CLI: each role, a
tag-scoped token, revocation, and the audit trail exported, verified offline and tampered."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import BIN, Agent, Server, run, wait_for

pytestmark = pytest.mark.integration

Cli = Callable[..., tuple[int, str, str]]

WEB_TEAM = {
    "Version": "2026-01-01",
    "Statement": [
        {
            "Sid": "WebNodes",
            "Effect": "Allow",
            "Action": ["nodes:List", "nodes:Get", "commands:Send"],
            "Resource": "node/*",
            "Condition": {"StringEquals": {"node:tag/team": "web"}},
        },
        {
            "Sid": "Docs",
            "Effect": "Allow",
            "Action": ["commands:Send", "documents:Get"],
            "Resource": "document/*",
        },
        {
            "Sid": "Results",
            "Effect": "Allow",
            "Action": ["commands:Get", "commands:List", "identity:WhoAmI"],
            "Resource": "*",
        },
    ],
}


def cli_for(tmp_path: Path, server: Server, name: str, token: str) -> Cli:
    env = {"CORRAL_CONFIG": str(tmp_path / f"{name}.toml")}

    def call(*args: str) -> tuple[int, str, str]:
        result = run(BIN / "corral", *args, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    code, _, err = call("login", "--url", server.url, "--token", token, "--ca-hash", server.ca_hash)
    assert code == 0, err
    return call


def tagged_agent(make_agent: Callable[..., Agent], server: Server, name: str, team: str) -> Agent:
    agent = make_agent(name)
    assert agent.register(server.activation(tags={"team": team})).returncode == 0
    agent.start()
    wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "Online")
    return agent


def new_token(admin: Cli, *args: str) -> dict[str, str]:
    code, out, err = admin("tokens", "create", *args, "--output", "json")
    assert code == 0, err
    created: dict[str, str] = json.loads(out)
    return created


def test_roles_scopes_and_the_audit_trail(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent]
) -> None:
    web = tagged_agent(make_agent, server, "web", "web")
    db = tagged_agent(make_agent, server, "db", "db")
    admin = cli_for(tmp_path, server, "admin", server.token)

    viewer_token = new_token(admin, "--name", "viewer-1", "--role", "viewer")
    operator_token = new_token(admin, "--name", "operator-1", "--role", "operator")
    policy = tmp_path / "web.json"
    policy.write_text(json.dumps(WEB_TEAM))
    web_token = new_token(admin, "--name", "web-team", "--policy", str(policy))
    viewer = cli_for(tmp_path, server, "viewer", viewer_token["secret"])
    operator = cli_for(tmp_path, server, "operator", operator_token["secret"])
    team = cli_for(tmp_path, server, "team", web_token["secret"])

    # viewer: reads, never runs
    code, out, _ = viewer("nodes", "list", "--output", "json")
    assert code == 0 and {n["node_id"] for n in json.loads(out)} == {web.node_id, db.node_id}
    code, _, err = viewer("run", "--node", web.node_id, "--", "true")
    assert code == 1 and "may not commands:Send" in err

    # operator: runs commands, cannot mint tokens
    code, out, err = operator("run", "--targets", "all", "--wait", "--", "true")
    assert code == 0, err
    code, _, err = operator("tokens", "create", "--name", "x", "--role", "viewer")
    assert code == 1 and "forbidden" in err

    # the web team: its own nodes only, and nothing sent when a target is out of scope
    code, out, _ = team("nodes", "list", "--output", "json")
    assert code == 0 and [n["node_id"] for n in json.loads(out)] == [web.node_id]
    with server.db() as conn:
        before = conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    code, _, err = team("run", "--targets", "all", "--", "true")
    assert code == 1 and db.node_id in err and "out of scope" in err
    with server.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == before
    code, _, err = team("run", "--targets", "tag:team=web", "--wait", "--", "true")
    assert code == 0, err
    code, out, _ = admin(
        "policies", "simulate", "--token", web_token["token_id"],
        "--action", "commands:Send", "--resource", f"node/{db.node_id}",
    )  # fmt: skip
    assert code == 1 and out.startswith("denied")

    # revocation takes effect on the next request
    assert admin("tokens", "revoke", viewer_token["token_id"])[0] == 0
    code, _, err = viewer("nodes", "list")
    assert code == 1 and "revoked" in err

    # the audit trail: denials listed, an export verified offline, tampering found
    code, out, _ = admin(
        "audit", "list", "--since", "1h", "--outcome", "denied", "--output", "json"
    )
    denied = {(e["identity_name"], e["action"]) for e in json.loads(out)}
    assert {("viewer-1", "commands:Send"), ("operator-1", "tokens:Create")} <= denied
    assert ("web-team", "commands:Send") in denied
    code, out, _ = admin("audit", "list", "--action", "identity:Login", "--output", "json")
    assert {e["identity_name"] for e in json.loads(out)} >= {"viewer-1", "operator-1", "web-team"}

    export = tmp_path / "audit.jsonl"
    code, _, err = admin("audit", "export", "--format", "jsonl", "--file", str(export))
    assert code == 0, err
    pub = server.data_dir / "audit.pub"
    code, out, err = admin("audit", "verify", "--file", str(export), "--public-key", str(pub))
    assert code == 0 and "OK" in out, err
    for secret in (viewer_token["secret"], operator_token["secret"], web_token["secret"]):
        assert secret not in export.read_text()

    lines = export.read_text().splitlines()
    edited = [
        line.replace('"outcome":"denied"', '"outcome":"allowed"', 1)
        if '"outcome":"denied"' in line
        else line
        for line in lines
    ]
    assert edited != lines
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(edited) + "\n")
    code, out, _ = admin("audit", "verify", "--file", str(tampered), "--public-key", str(pub))
    assert code == 1 and "BROKEN" in out

    assert admin("audit", "verify")[0] == 0
    with server.db() as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = 3")
    code, out, _ = admin("audit", "verify")
    assert code == 1 and "entry 3" in out
