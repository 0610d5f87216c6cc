"""A corrupt state file does not stop the agent (issue 9, item 4): each file the agent can
rebuild is moved aside into ``corrupt/``, rebuilt, and reported to the server as a node
event; a file it cannot rebuild (its identity, its configuration) stops it with a one-line
error and an exit code that systemd does not restart."""

from __future__ import annotations

import configparser
import json
import os
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.errors import EXIT_CONFIG, EXIT_NOT_REGISTERED
from tests.integration.harness import BIN, Agent, Server, run, wait_for
from tests.integration.test_run_agent import (
    _zombie,
    finished,
    kill_session,
    send,
    started_agent,
    worker_pid,
)
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

GARBAGE = b"\x00\x01 this is not what the agent wrote \xff" * 40
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def node_events(server: Server, node_id: str) -> list[dict[str, Any]]:
    with server.api() as api:
        response = api.get(f"/v1/nodes/{node_id}/events")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def moved(agent: Agent, name: str) -> list[Path]:
    folder = agent.state_dir / "corrupt"
    return sorted(folder.glob(f"{name}.*")) if folder.is_dir() else []


def restart_with(agent: Agent, name: str) -> None:
    agent.stop()
    (agent.state_dir / name).write_bytes(GARBAGE)
    agent.start()


def runs_a_command(server: Server, agent: Agent) -> None:
    command_id = send(server, agent, "echo alive")
    inv = wait_for(lambda: finished(server, command_id), 60, "the command to finish")
    assert inv["status"] == "Success" and inv["steps"][0]["stdout"] == "alive\n"


def reported(server: Server, agent: Agent, code: str, file: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in node_events(server, agent.node_id)
                if (e["code"], e["file"]) == (code, file)
            ),
            None,
        )

    event: dict[str, Any] = wait_for(found, 60, f"the {code} event for {file}")
    assert event["severity"] == "error" and event["moved_to"].startswith("corrupt/")
    return event


@pytest.mark.parametrize("name", ["outbox.db", "status.json", "node.pem", "ca.pem"])
def test_a_rebuildable_state_file_is_moved_aside_rebuilt_and_reported(
    server: Server, make_agent: Callable[..., Agent], name: str
) -> None:
    agent = started_agent(make_agent)
    runs_a_command(server, agent)
    before_cert = (agent.state_dir / "node.pem").read_text()
    restart_with(agent, name)

    runs_a_command(server, agent)
    assert agent.proc is not None and agent.proc.alive()
    (aside,) = moved(agent, name)
    assert aside.read_bytes() == GARBAGE
    event = reported(server, agent, "state_file_corrupt", name)
    assert event["moved_to"] == f"corrupt/{aside.name}"
    assert name in event["message"]
    if name == "outbox.db":
        assert "may stay InProgress" in event["message"]
    if name == "node.pem":  # renewed at once: a new, valid certificate
        cert = (agent.state_dir / "node.pem").read_text()
        wait_for(lambda: (agent.state_dir / "node.pem").read_text() != before_cert, 30, "renewal")
        ssl.PEM_cert_to_DER_cert((agent.state_dir / "node.pem").read_text() or cert)
    if name == "ca.pem":  # fetched again and checked against the pinned hash
        from agent import wire

        pinned = json.loads((agent.state_dir / "state.json").read_text())["ca_hash"]
        assert wire.ca_pin((agent.state_dir / "ca.pem").read_text()) == pinned
    status = run(
        BIN / "corral-agent", "status", "--state-dir", str(agent.state_dir), "--output", "json"
    )
    assert json.loads(status.stdout)["files_moved_aside"] >= 1


def test_an_outbox_that_is_not_a_database_does_not_stop_the_agent(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    """The outside review's reproduction: the agent exited 1 and systemd restarted it every
    5 s forever."""
    agent = started_agent(make_agent)
    agent.stop()
    (agent.state_dir / "outbox.db").write_bytes(b"not a database" * 500)
    for suffix in ("-wal", "-shm"):
        (agent.state_dir / f"outbox.db{suffix}").unlink(missing_ok=True)
    status = run(
        BIN / "corral-agent", "status", "--state-dir", str(agent.state_dir), "--output", "json"
    )
    assert status.returncode == 0 and "unreadable" in json.loads(status.stdout)["outbox_depth"]
    agent.start()
    wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "Online")
    runs_a_command(server, agent)
    reported(server, agent, "state_file_corrupt", "outbox.db")


def test_an_unreadable_journal_entry_is_reported_failed_and_never_run_again(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = started_agent(make_agent)
    go, running, counter = tmp_path / "go", tmp_path / "running", tmp_path / "counter"
    command_id = send(
        server, agent, f"echo ran >> {counter}", f"touch {running}",
        f"while [ ! -e {go} ]; do sleep 0.05; done",
    )  # fmt: skip
    wait_for(running.exists, 30, "the script to start")
    entry = agent.state_dir / "commands" / command_id
    pid = worker_pid(agent, command_id)
    try:
        agent.kill9()  # the agent, not the worker
        go.touch()
        wait_for(lambda: not psutil.pid_exists(pid) or _zombie(pid), 20, "the worker to end")
        wait_for((entry / "result.json").exists, 20, "the worker's result")
        (entry / "result.json").write_bytes(GARBAGE)
        (entry / "worker.json").write_bytes(GARBAGE)
        agent.start()
        inv = wait_for(lambda: finished(server, command_id), 60, "the invocation to end")
    finally:
        kill_session(pid)
    assert (inv["status"], inv["status_details"]) == ("Failed", "Interrupted")
    assert "could not read its journal" in inv["steps"][0]["stderr"]
    event = reported(server, agent, "journal_entry_corrupt", f"commands/{command_id}")
    assert event["command_id"] == command_id and "result.json" in event["message"]
    assert counter.read_text() == "ran\n"  # never run again
    (aside,) = moved(agent, command_id)
    assert (aside / "request.json").exists()
    # A redelivery of the command is recognised: the fresh entry is still there.
    assert (entry / "done").exists()
    runs_a_command(server, agent)


@pytest.mark.parametrize(
    ("name", "content", "says", "code"),
    [
        ("state.json", GARBAGE, "register again", EXIT_CONFIG),
        ("node.key", GARBAGE, "register the node again", EXIT_CONFIG),
        ("agent.toml", b"poll_wait_seconds = [", "agent.toml", EXIT_CONFIG),
        ("state.json", None, "run 'corral-agent register' first", EXIT_NOT_REGISTERED),
    ],
)
def test_what_cannot_be_rebuilt_stops_with_a_code_systemd_will_not_restart(
    server: Server,
    make_agent: Callable[..., Agent],
    name: str,
    content: bytes | None,
    says: str,
    code: int,
) -> None:
    agent = make_agent()
    assert agent.register().returncode == 0
    path = agent.state_dir / name
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    result = run(BIN / "corral-agent", "run", "--state-dir", str(agent.state_dir))
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert "Traceback" not in result.stderr


def test_the_unit_does_not_restart_what_restarting_cannot_fix() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "systemd" / "corral-agent.service")
    codes = {int(c) for c in unit["Service"]["RestartPreventExitStatus"].split()}
    assert codes >= {2, 3, EXIT_NOT_REGISTERED, EXIT_CONFIG}
    assert unit["Service"]["Restart"] == "on-failure"
    assert os.path.basename(unit["Service"]["ExecStart"].split()[0]) == "corral-agent"
