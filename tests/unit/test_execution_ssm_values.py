"""Parameter Store values sent with a run_command (``ssm_values``): the script sees them, and
nothing the agent keeps (journal, outbox, logs, any file in its state dir) ever holds one; a
worker started without them (agent restart, reboot) fails the command instead of running it;
``corral-agent run-document`` refuses references."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.backoff import Backoff
from agent.errors import AgentError
from agent.execution import local
from agent.execution.executor import Executor, RebootSettings
from agent.execution.forkserver import MAX_MESSAGE, ForkServer, ForkServerError
from agent.execution.journal import Journal
from agent.execution.launcher import Launcher
from agent.execution.ssm_values import LOST
from agent.outbox import Outbox
from tests.unit.test_execution_executor import NODE, SETTINGS, AgentSide, wait_file
from tests.unit.test_execution_support import (
    document,
    kill_workers,
    run_message,
    shell,
    sync,
)

SECRET = "s3cr3t-XYZ-123"
REF = "ssm-secure:/app/pw"
PW = {"pw": {"type": "String", "interpolationType": "ENV_VAR", "default": "{{ssm-secure:/app/pw}}"}}


@pytest.fixture(scope="module")
def forkserver() -> Iterator[ForkServer]:
    server = ForkServer.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["forkserver", "spawned"])
def launcher(request: pytest.FixtureRequest, forkserver: ForkServer) -> Launcher:
    """Both ways a worker starts: forked by the fork server, or a new interpreter."""
    return Launcher(SETTINGS, forkserver if request.param == "forkserver" else None)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The agent's state dir; what the scripts write goes next to it, not in it."""
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _kill_workers(tmp_path: Path) -> Iterator[None]:
    yield
    kill_workers(tmp_path)


def files_holding(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (sqlite's WAL included)."""
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def secret_doc(out: Path, *more: dict[str, Any]) -> dict[str, Any]:
    return document(shell("use", f'printf %s "$SSM_pw" > {out}'), *more, parameters=PW)


async def finish(agent: AgentSide, command_id: str) -> dict[str, Any]:
    await agent.until(lambda: agent.done(command_id), "the command to be reported", 60)
    return await agent.final(command_id)


def lone_error(final: dict[str, Any]) -> str:
    assert final["status"] == wire.ST_FAILED
    assert final["steps"][-1]["name"] == "document"
    return str(final["steps"][-1]["stderr"])


@sync
async def test_the_script_sees_the_value_and_the_state_dir_never_holds_it(
    tmp_path: Path, state: Path, launcher: Launcher
) -> None:
    out = tmp_path / "out"
    content = secret_doc(out, shell("after", "echo next"))
    message = run_message("cmd-pw", content, ssm_values={REF: SECRET})
    async with AgentSide(state, launcher) as agent:
        await agent.executor.accept(message)
        final = await finish(agent, "cmd-pw")
        outbox = json.dumps(await agent.messages())
    assert final["status"] == wire.ST_SUCCESS, final
    assert out.read_text() == SECRET
    assert SECRET not in outbox
    assert files_holding(state, SECRET) == []
    # What was journalled: the command as sent, without the values; the reference is kept.
    request = Journal(state / "commands").command("cmd-pw").read("request.json")
    assert request is not None
    assert "ssm_values" not in request["body"]
    assert request["ssm_references"] == [REF]
    assert request["body"]["document"]["parameters"]["pw"]["default"] == "{{ssm-secure:/app/pw}}"
    # The caller's message is left as it was.
    assert message["body"]["ssm_values"] == {REF: SECRET}


@sync
async def test_string_values_reach_step_inputs_and_no_script_file_is_left(
    tmp_path: Path, state: Path, forkserver: ForkServer
) -> None:
    out = tmp_path / "out"
    content = document(
        shell("inline", f"printf %s {{{{ssm:/app/host}}}} > {out}"),
        parameters={"port": {"type": "String", "default": "{{ssm:/app/port:2}}"}},
    )
    content["mainSteps"][0]["inputs"]["runCommand"].append(f"printf :%s {{{{ port }}}} >> {out}")
    values = {"ssm:/app/host": "db-host-7f3a9", "ssm:/app/port:2": "5432"}
    async with AgentSide(state, Launcher(SETTINGS, forkserver)) as agent:
        await agent.executor.accept(run_message("cmd-str", content, ssm_values=values))
        final = await finish(agent, "cmd-str")
    assert final["status"] == wire.ST_SUCCESS, final
    assert out.read_text() == "db-host-7f3a9:5432"
    # The script file held the value while it ran; it is gone now.
    assert files_holding(state, "db-host-7f3a9") == []


@sync
async def test_an_agent_restart_before_the_worker_started_fails_the_command(
    tmp_path: Path, state: Path, launcher: Launcher
) -> None:
    out = tmp_path / "out"
    # An agent journals the command and dies before it starts the worker.
    outbox = Outbox(state / "outbox.db")
    first = Executor(
        journal=Journal(state / "commands"),
        outbox=outbox,
        transport=None,
        launcher=launcher,
        node_id=NODE,
        reboot=RebootSettings(True, ("true",)),
        backoff=lambda: Backoff(0.01, 0.05),
    )
    await first.accept(run_message("cmd-lost", secret_doc(out), ssm_values={REF: SECRET}))
    outbox.close()
    del first
    async with AgentSide(state, launcher) as agent:
        final = await finish(agent, "cmd-lost")
        outbox_text = json.dumps(await agent.messages())
    assert lone_error(final) == LOST
    assert not out.exists()  # never run, not even with the reference unresolved
    assert SECRET not in outbox_text
    assert files_holding(state, SECRET) == []


@sync
async def test_a_started_worker_keeps_its_values_through_an_agent_restart(
    tmp_path: Path, state: Path, launcher: Launcher
) -> None:
    out, go, running = tmp_path / "out", tmp_path / "go", tmp_path / "running"
    content = document(
        shell("wait", f"touch {running}", wait_file(go), f'printf %s "$SSM_pw" > {out}'),
        parameters=PW,
    )
    async with AgentSide(state, launcher) as first:
        await first.executor.accept(run_message("cmd-keep", content, ssm_values={REF: SECRET}))
        await first.until(running.exists, "the script to start", 60)
    async with AgentSide(state, launcher) as second:
        go.touch()
        final = await finish(second, "cmd-keep")
    assert final["status"] == wire.ST_SUCCESS, final
    assert out.read_text() == SECRET
    assert files_holding(state, SECRET) == []


@sync
async def test_after_a_reboot_the_next_attempt_fails_for_want_of_its_values(
    tmp_path: Path, state: Path, forkserver: ForkServer
) -> None:
    launcher = Launcher(SETTINGS, forkserver)
    out, marker = tmp_path / "out", tmp_path / "marker"
    content = document(
        shell("before", "echo before"),
        shell("reboot", f"[ -e {marker} ] && exit 0; touch {marker}; exit 194"),
        shell("use", f'printf %s "$SSM_pw" > {out}'),
        parameters=PW,
    )
    rebooted, reboot = tmp_path / "rebooted", tmp_path / "reboot.sh"
    reboot.write_text(f"#!/bin/sh\ntouch {rebooted}\n")
    reboot.chmod(0o755)
    async with AgentSide(state, launcher, reboot_command=(str(reboot),)) as first:
        await first.executor.accept(run_message("cmd-rb", content, ssm_values={REF: SECRET}))
        await first.until(rebooted.exists, "the reboot command")
    # The node is back; the agent's memory, the values with it, did not survive.
    async with AgentSide(state, launcher, reboot_command=(str(reboot),)) as second:
        final = await finish(second, "cmd-rb")
    assert lone_error(final) == LOST
    assert [s["name"] for s in final["steps"]] == ["before", "document"]
    assert final["steps"][0]["stdout"] == "before\n"
    assert not out.exists()
    assert files_holding(state, SECRET) == []


@sync
async def test_a_secure_value_is_never_pasted_into_script_text(
    tmp_path: Path, state: Path, forkserver: ForkServer
) -> None:
    out = tmp_path / "out"
    content = document(
        shell("direct", f"echo {{{{ssm-secure:/app/pw}}}} > {out}"),
        shell("via-parameter", f"echo {{{{ pw }}}} > {out}"),
        shell("env", f'printf %s "$SSM_pw" > {out}'),
        parameters=PW,
    )
    async with AgentSide(state, Launcher(SETTINGS, forkserver)) as agent:
        await agent.executor.accept(run_message("cmd-paste", content, ssm_values={REF: SECRET}))
        final = await finish(agent, "cmd-paste")
    direct, via, env = final["steps"]
    for step in (direct, via):
        assert step["status"] == wire.ST_FAILED
        assert "SecureString parameter cannot be pasted into script text" in step["stderr"]
        assert "{{ssm-secure:/app/pw}}" in step["stderr"]
    assert env["status"] == wire.ST_SUCCESS
    assert out.read_text() == SECRET  # only the ENV_VAR step wrote it
    assert files_holding(state, SECRET) == []


@sync
async def test_the_agents_own_messages_mask_secure_values(
    tmp_path: Path, state: Path, forkserver: ForkServer
) -> None:
    content = document(shell("cd", "true", workingDirectory="/nonexistent/{{ssm-secure:/app/pw}}"))
    async with AgentSide(state, Launcher(SETTINGS, forkserver)) as agent:
        await agent.executor.accept(run_message("cmd-mask", content, ssm_values={REF: SECRET}))
        final = await finish(agent, "cmd-mask")
        outbox = json.dumps(await agent.messages())
    step = final["steps"][0]
    assert step["status"] == wire.ST_FAILED
    assert "workingDirectory /nonexistent/**** does not exist" in step["stderr"]
    assert SECRET not in outbox
    assert files_holding(state, SECRET) == []


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ("s3cr3t-XYZ-123", "ssm_values is not an object of reference -> value"),
        ({"ssm-secure:/app/pw": 5}, "the value of {{ssm-secure:/app/pw}} is not a string"),
        ({"s3cr3t-XYZ-123": "x"}, "ssm_values has a key that is not a Parameter Store reference"),
        ({"ssm-secure:/app/pw": "a\0" + SECRET}, "contains a NUL character"),
        ({"ssm-secure:/app/pw": SECRET + "\ud800"}, "is not valid Unicode text"),
        (
            {f"ssm:/p/{i}": SECRET for i in range(101)},
            "101 Parameter Store values; a command carries at most 100",
        ),
        ({"ssm-secure:/app/pw": SECRET * 5000}, "bytes; a command carries at most 65536"),
    ],
)
@sync
async def test_malformed_values_fail_the_command_without_being_kept(
    tmp_path: Path, state: Path, forkserver: ForkServer, values: Any, why: str
) -> None:
    out = tmp_path / "out"
    async with AgentSide(state, Launcher(SETTINGS, forkserver)) as agent:
        await agent.executor.accept(run_message("cmd-bad", secret_doc(out), ssm_values=values))
        final = await finish(agent, "cmd-bad")
        outbox = json.dumps(await agent.messages())
    error = lone_error(final)
    assert error.startswith("the command's Parameter Store values were refused: ")
    assert why in error
    assert not out.exists()
    assert SECRET not in outbox
    assert files_holding(state, SECRET) == []


@sync
async def test_a_reference_the_server_sent_no_value_for_fails_the_command(
    tmp_path: Path, state: Path, launcher: Launcher
) -> None:
    out = tmp_path / "out"
    content = document(
        shell("use", f'printf %s "$SSM_pw" > {out}', "echo {{ssm:/app/other}}"), parameters=PW
    )
    async with AgentSide(state, launcher) as agent:
        await agent.executor.accept(run_message("cmd-none", content))
        await agent.executor.accept(run_message("cmd-part", content, ssm_values={REF: SECRET}))
        none = await finish(agent, "cmd-none")
        part = await finish(agent, "cmd-part")
    assert lone_error(none) == (
        "the server sent no value for these Parameter Store references: "
        "{{ssm-secure:/app/pw}}, {{ssm:/app/other}}"
    )
    assert lone_error(part) == (
        "the server sent no value for these Parameter Store references: {{ssm:/app/other}}"
    )
    assert not out.exists()


def test_a_request_too_large_for_the_fork_server_is_not_sent(tmp_path: Path) -> None:
    """The fork server stops on a message over its limit: the agent never sends one (the
    launcher then starts the worker as a new interpreter), and the fork server carries on."""
    server = ForkServer.start()
    cmd = Journal(tmp_path / "commands").record(
        "cmd-big", {"body": run_message("cmd-big", document(shell("s", "echo ok")))["body"]}
    )
    assert cmd is not None
    read_fd, write_fd = os.pipe()
    try:
        with pytest.raises(ForkServerError, match="too large"):
            server.spawn(cmd.path, SETTINGS.to_json(), write_fd, {"ssm:/x": "x" * MAX_MESSAGE})
        server.spawn(cmd.path, SETTINGS.to_json(), write_fd, {})
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as events:
            assert b'"ended"' in events.read()  # EOF when the worker exits
    finally:
        server.close()
    result = cmd.read("result.json")
    assert result is not None and result["steps"][0]["stdout"] == "ok\n"


def test_run_document_refuses_parameter_store_references(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(secret_doc(tmp_path / "out", shell("s", "echo {{ssm:/x}}"))))
    with pytest.raises(AgentError) as caught:
        local.run_file(path, [], 60)
    assert caught.value.message == (
        "Parameter Store references need a server: {{ssm-secure:/app/pw}}, {{ssm:/x}}"
    )
    assert not (tmp_path / "out").exists()
