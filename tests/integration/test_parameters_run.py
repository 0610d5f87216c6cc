"""Parameter Store used from a document on a real agent: the script sees the values, and a
known secret is found nowhere it should not be: no log, database, blob, state dir or output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import BIN, Agent, Server, run, wait_for
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

SECRET = "Sup3r-s3cret-QWERTY-7781"

DOC = {
    "schemaVersion": "2.2",
    "description": "uses Parameter Store",
    "parameters": {
        "url": {"type": "String", "default": "{{ssm:/app/prod/db-url}}"},
        "pw": {
            "type": "String",
            "default": "{{ssm-secure:/app/prod/db-pass}}",
            "interpolationType": "ENV_VAR",
        },
        "out": {"type": "String"},
    },
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "use",
            "inputs": {
                "runCommand": [
                    'printf "%s" "{{ url }}" > {{ out }}/url',
                    'printf "%s" "$SSM_pw" > {{ out }}/pw',
                    "echo done",
                ]
            },
        }
    ],
}

PASTED = {
    "schemaVersion": "2.2",
    "description": "pastes a secret into the script",
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "bad",
            "inputs": {"runCommand": ["echo {{ssm-secure:/app/prod/db-pass}}"]},
        }
    ],
}


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def test_documents_use_parameters_and_the_secret_leaks_nowhere(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent]
) -> None:
    env = {"CORRAL_CONFIG": str(tmp_path / "cli.toml")}
    outputs: list[str] = []

    def corral(
        *args: str, stdin: str | None = None, token_env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        result = run(BIN / "corral", *args, env={**env, **(token_env or {})}, input=stdin)
        outputs.extend([result.stdout, result.stderr])
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    login = ("login", "--url", server.url, "--token", server.token, "--ca-hash", server.ca_hash)
    assert corral(*login)[0] == 0
    agent = make_agent()
    assert agent.register().returncode == 0
    agent.start()
    wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "Online")

    assert corral("params", "put", "/app/prod/db-url", "--value", "postgres://db:5432/x")[0] == 0
    code, _, err = corral(
        "params", "put", "/app/prod/db-pass", "--type", "SecureString", "--value", "-",
        stdin=SECRET + "\n",
    )  # fmt: skip
    assert code == 0, err
    doc = tmp_path / "uses.json"
    doc.write_text(json.dumps(DOC))
    assert corral("documents", "create", "--name", "uses-params", "--file", str(doc))[0] == 0
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    code, out, err = corral(
        "run", "--node", agent.node_id, "--document", "uses-params",
        "--param", f"out={out_dir}", "--wait", "--output", "json",
    )  # fmt: skip
    assert code == 0, err
    assert (out_dir / "url").read_text() == "postgres://db:5432/x"
    assert (out_dir / "pw").read_text() == SECRET
    command = json.loads(out)
    stored = json.dumps(command)
    assert "ssm-secure:/app/prod/db-pass" in json.dumps(command.get("parameters", DOC))

    # A secure reference pasted into script text, and a sender who may not decrypt: refused,
    # nothing stored.
    pasted = tmp_path / "pasted.json"
    pasted.write_text(json.dumps(PASTED))
    assert corral("documents", "create", "--name", "pastes", "--file", str(pasted))[0] == 0
    with server.db() as conn:
        before = conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    code, _, err = corral("run", "--node", agent.node_id, "--document", "pastes")
    assert code != 0 and "paste" in err
    code, created, _ = corral(
        "tokens", "create", "--name", "ops", "--role", "operator", "-o", "json"
    )
    ops = {"CORRAL_TOKEN": json.loads(created)["secret"]}
    code, _, err = corral(
        "run", "--node", agent.node_id, "--document", "uses-params",
        "--param", f"out={out_dir}", token_env=ops,
    )  # fmt: skip
    assert code != 0 and "GetDecrypted" in err
    with server.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == before
    code, out, _ = corral("params", "get", "/app/prod/db-pass", "--decrypt", token_env=ops)
    assert code == 0 and SECRET not in out

    # The plaintext search: every file of the server and the agent, and every output.
    server.stop()
    agent.stop()
    hits = [
        str(path)
        for path in tmp_path.rglob("*")
        if path.is_file() and out_dir not in path.parents and SECRET.encode() in path.read_bytes()
    ]
    assert hits == [], f"the secret was found in {hits}"
    leaked = [o for o in outputs if SECRET in o]
    assert leaked == [], leaked
    assert SECRET not in stored
