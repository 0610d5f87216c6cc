"""The CLI's rough edges of issue 17, with a real server, real agents and real processes:
unique default node names, `run` without `--wait` saying how to follow, `commands watch`
exiting as `run --wait`, the audit trail searched by node name, `nodes deregister` saying what
it did, a closed pipe, and a token made for one job logging in."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import BIN, Agent, Server, wait_for
from tests.integration.test_run_command import Corral, corral

pytestmark = pytest.mark.integration
__all__ = ["corral"]  # the fixture, used by name


def test_the_rough_edges_are_smooth(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    # Two nodes from one activation and one host name, neither given --name.
    activation = server.activation(registration_limit=2)
    pair = [make_agent("a"), make_agent("b")]
    for agent in pair:
        with (agent.state_dir / "agent.toml").open("a") as fh:
            fh.write("poll_wait_seconds = 5\n")
        assert agent.register(activation).returncode == 0
        agent.start()
    for agent in pair:
        wait_for(lambda a=agent: server.node(a.node_id)["status"] == "Online", 30, "Online")
    host = socket.gethostname()
    first, second = pair
    assert [server.node(a.node_id)["name"] for a in pair] == [host, f"{host}-2"]

    # run without --wait: the id and the command that follows it.
    code, out, err = corral("run", "--node", second.node_id, "--", "sleep 3; echo hi; exit 3")
    assert code == 0, err
    sent_line, follow_line = out.splitlines()
    command_id = sent_line.split()[1]
    assert sent_line.endswith("on 1 node")
    assert follow_line == f"follow it with: corral commands watch {command_id}"

    # watch follows it to its end and exits 1 because it failed, as run --wait would.
    code, out, err = corral("commands", "watch", command_id)
    assert code == 1
    assert "| Failed | rc=3" in out and "hi" in out  # the node's result as it finished
    assert err == f"error: command {command_id} ended Failed (Failed)\n"
    code, out, _ = corral("commands", "watch", command_id, "-o", "json")
    assert code == 1 and json.loads(out)["status"] == "Failed"

    # The audit trail, by the node's name: the send is there, though it is about command/ID.
    code, out, err = corral(
        "audit", "list", "--node", f"{host}-2", "--action", "commands:Send", "--since", "1h",
        "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    assert [e["resource"] for e in json.loads(out)] == [f"command/{command_id}"]

    # A closed pipe: nothing on stderr, death by SIGPIPE (141 in a shell).
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "CORRAL_CONFIG": str(tmp_path / "cli.toml")}
    try:
        piped = subprocess.run(
            [str(BIN / "corral"), "audit", "list", "-o", "json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (piped.returncode, piped.stderr) == (-signal.SIGPIPE, b"")

    # deregister says what it did.
    code, out, err = corral("nodes", "deregister", first.node_id)
    assert code == 0, err
    assert out == f"deregistered {first.node_id} ({host}): its credentials no longer work\n"

    # A token that may only read parameters logs in, then switching back works.
    policy = tmp_path / "reader.json"
    only = {"Effect": "Allow", "Action": "parameters:Get", "Resource": "parameter/app/*"}
    policy.write_text(json.dumps({"Version": "2026-01-01", "Statement": [only]}))
    code, out, err = corral("tokens", "create", "--name", "reader", "--policy", str(policy),
                            "-o", "json")  # fmt: skip
    assert code == 0, err
    secret = json.loads(out)["secret"]
    code, out, err = corral(
        "login", "--url", server.url, "--token", secret, "--ca-hash", server.ca_hash,
        "--profile", "reader",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(corral("whoami", "-o", "json")[1])["name"] == "reader"
    assert corral("login", "--profile", "default")[0] == 0
    assert json.loads(corral("whoami", "-o", "json")[1])["name"] != "reader"
