"""What an operator sees of a command, end to end with real agents (issue 9, items 1, 2, 7):
``corral run --wait`` prints each node's output as it finishes, output reaches only tokens
allowed to read it, and ``Corral-RunDocument`` runs the stored document it names."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import BIN, Agent, Server, run, wait_for
from tests.integration.test_run_command import agents
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

Corral = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def login(tmp_path: Path, server: Server, token: str, name: str = "cli") -> Corral:
    env = {"CORRAL_CONFIG": str(tmp_path / f"{name}.toml")}

    def call(*args: str) -> tuple[int, str, str]:
        result = run(BIN / "corral", *args, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    logged = call("login", "--url", server.url, "--token", token, "--ca-hash", server.ca_hash)
    assert logged[0] == 0, logged
    return call


@pytest.fixture
def corral(tmp_path: Path, server: Server) -> Corral:
    return login(tmp_path, server, server.token)


def make_token(server: Server, name: str, **body: Any) -> str:
    with server.api() as api:
        response = api.post("/v1/tokens", json={"name": name, **body})
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def test_run_wait_prints_each_nodes_output_in_the_order_they_finish(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    fast, slow = agents(make_agent, server, 2)
    go = tmp_path / "go"
    # The slow node waits until the test has seen the fast node's output: a CLI that held
    # results back until every node had finished would never print it.
    script = (
        f'case "$0" in *agent-{slow.name}/*) while [ ! -e {go} ]; do sleep 0.05; done;; esac; '
        'echo "out from $0"; echo oops >&2'
    )
    env = {**os.environ, "CORRAL_CONFIG": str(tmp_path / "cli.toml")}
    proc = subprocess.Popen(
        [str(BIN / "corral"), "run", "--targets", "all", "--wait", "--", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []

        def fast_printed() -> bool:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            return not line or line.startswith(fast.node_id)

        wait_for(fast_printed, 60, "the fast node's header")
        assert lines[-1].startswith(f"{fast.node_id} ") and "| Success | rc=0" in lines[-1]
        go.touch()
        rest = proc.stdout.read()  # what readline() buffered, then the rest (not communicate)
        proc.wait(timeout=60)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    out = "".join(lines) + rest
    assert proc.returncode == 0, err
    first, second = out.split(f"\n{slow.node_id} ")
    assert first.startswith(f"{fast.node_id} ") and f"agent-{fast.name}/" in first
    assert "| Success | rc=0\n" in second and f"agent-{slow.name}/" in second
    assert "[stderr]\noops" in first and "[stderr]\noops\n" in second
    assert out.rstrip().splitlines()[-1].endswith("2/2 done, 0 errors")


def test_run_wait_output_modes_and_exit_codes(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (a, b) = agents(make_agent, server, 2)
    fail_b = f'case "$0" in *agent-{b.name}/*) echo wrong >&2; exit 3;; esac; echo fine'

    code, out, _ = corral("run", "--targets", "all", "--wait", "--", fail_b)
    assert code == 1
    assert f"{a.node_id} " in out and "| Success | rc=0\nfine\n" in out
    assert f"{b.node_id} " in out and "| Failed | rc=3\n[stderr]\nwrong\n" in out

    code, out, _ = corral("run", "--targets", "all", "--wait", "--no-output", "--", fail_b)
    assert code == 1 and "fine" not in out and "wrong" not in out
    assert "| Failed | rc=3" in out and "| Success | rc=0" in out

    code, out, _ = corral("run", "--targets", "all", "--wait", "--output", "json", "--", fail_b)
    assert code == 1
    result = json.loads(out)
    steps = {i["node_id"]: i["steps"][0] for i in result["invocations"]}
    assert steps[a.node_id]["stdout"] == "fine\n"
    assert steps[b.node_id]["stderr"].startswith("wrong\n")

    # A record holds 24,000 characters: the note says where the rest is.
    code, out, _ = corral(
        "run", "--node", a.node_id, "--wait", "--", "head -c 30000 /dev/zero | tr '\\0' x"
    )
    assert code == 0
    assert out.count("x") == 24_000
    command_id = out.rstrip().splitlines()[-1].split()[1].rstrip(":")
    note = f"corral commands output {command_id} --node {a.node_id} --step "
    assert "cut at 24,000 characters of 30,000 bytes" in out and note in out
    step = out.split(note, 1)[1].split()[0]
    code, full, _ = corral("commands", "output", command_id, "--node", a.node_id, "--step", step)
    assert (code, len(full)) == (0, 30_000)

    # commands show prints the same blocks.
    code, shown, _ = corral("commands", "show", command_id)
    assert code == 0 and shown.count("x") == 24_000 and "cut at 24,000" in shown


def test_output_reaches_only_tokens_allowed_to_read_it(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    code, out, _ = corral(
        "run",
        "--node",
        agent.node_id,
        "--wait",
        "--output",
        "json",
        "--",
        "echo TOP-SECRET-$((40 + 2))",
    )
    command_id = json.loads(out)["command_id"]

    viewer = login(tmp_path, server, make_token(server, "v", role="viewer"), "viewer")
    code, shown, _ = viewer("commands", "show", command_id)
    assert code == 0 and "TOP-SECRET-42" not in shown
    assert f"(output omitted: you may not commands:GetOutput on node/{agent.node_id})" in shown
    code, js, _ = viewer("commands", "show", command_id, "--output", "json")
    assert "TOP-SECRET-42" not in js
    assert json.loads(js)["invocations"][0]["output_omitted"]

    # A sender that may not read output runs, and is told the output was left out.
    policy = {
        "Version": "2026-01-01",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["commands:Send", "commands:Get", "events:Subscribe", "identity:WhoAmI"],
                "Resource": "*",
            }
        ],
    }
    blind = login(tmp_path, server, make_token(server, "blind", policy=policy), "blind")
    code, out, err = blind(
        "run", "--node", agent.node_id, "--wait", "--", "echo HIDDEN-$((40 + 2))"
    )
    assert code == 0, err
    assert "HIDDEN-42" not in out and "output omitted" in out

    # The event stream shows a subscriber only the commands it may read.
    no_get = make_token(
        server,
        "events-only",
        policy={
            "Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": "events:Subscribe", "Resource": "*"}],
        },
    )
    with httpx.Client(
        base_url=server.url,
        verify=server.tls(),
        headers={"authorization": f"Bearer {no_get}"},
        timeout=30,
    ) as client:
        refused = client.get("/v1/events", params={"command_id": command_id})
        assert refused.status_code == 403
        with client.stream("GET", "/v1/events", timeout=httpx.Timeout(30, read=20)) as stream:
            chunks = stream.iter_bytes()
            assert next(chunks).startswith(b": connected")
            code, _, _ = corral("run", "--node", agent.node_id, "--wait", "--", "true")
            assert code == 0
            seen = b""
            try:
                for chunk in chunks:  # until the first keep-alive, 15 s later
                    seen += chunk
                    if b"keepalive" in chunk:
                        break
            except httpx.ReadTimeout:
                pass
        assert b"command." not in seen, seen


def test_corral_run_document_runs_the_stored_document_it_names(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    """Corral-RunDocument never worked with documentType SSMDocument: the nested document
    was looked for before its path was interpolated, so it was never sent."""
    (agent,) = agents(make_agent, server, 1)
    inner = {
        "schemaVersion": "2.2",
        "description": "greets",
        "parameters": {"who": {"type": "String"}},
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": "greet",
                "inputs": {"runCommand": ['echo "nested hello {{ who }}"']},
            }
        ],
    }
    path = tmp_path / "inner.json"
    path.write_text(json.dumps(inner))
    assert corral("documents", "create", "--name", "Inner-Greet", "--file", str(path))[0] == 0
    code, out, err = corral(
        "run", "--node", agent.node_id, "--document", "Corral-RunDocument",
        "--param", "documentPath=Inner-Greet",
        "--param", 'documentParameters={"who": "operator"}',
        "--wait", "--output", "json",
    )  # fmt: skip
    assert code == 0, (out, err)
    inv = json.loads(out)["invocations"][0]
    assert inv["status"] == "Success"
    assert inv["steps"][0]["stdout"] == "nested hello operator\n"

    # A token allowed only Corral-RunDocument cannot reach Inner-Greet through it.
    policy = {
        "Version": "2026-01-01",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "commands:Send",
                "Resource": ["node/*", "document/Corral-RunDocument"],
            },
            {"Effect": "Allow", "Action": "identity:WhoAmI", "Resource": "*"},
        ],
    }
    narrow = login(tmp_path, server, make_token(server, "narrow", policy=policy), "narrow")
    code, _, err = narrow(
        "run", "--node", agent.node_id, "--document", "Corral-RunDocument",
        "--param", "documentPath=Inner-Greet", "--param", 'documentParameters={"who": "x"}',
    )  # fmt: skip
    assert code == 1 and "Inner-Greet" in err and len(err.strip().splitlines()) == 1, err
