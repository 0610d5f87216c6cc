"""Run Command through real processes: ``corral-server`` dispatches, ``corral-agent run``
(with its fork server) journals, runs each document in a worker of its own, reports and uploads
the output; the worker outlives a killed agent; a reboot exit code reboots (here: the test's
reboot command stops the agent, as a reboot would) and the step runs again."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.harness import Agent, Server, wait_for
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    """Scripts run in sessions of their own, in step directories under tmp_path: whatever a
    test leaves running there is killed."""
    yield
    kill_under(tmp_path)


def started_agent(make_agent: Callable[..., Agent], **toml: Any) -> Agent:
    agent = make_agent()
    with (agent.state_dir / "agent.toml").open("a") as fh:
        fh.write("poll_wait_seconds = 5\nkill_grace_seconds = 1\n")
        for key, value in toml.items():
            fh.write(f"{key} = {json.dumps(value)}\n")
    assert agent.register().returncode == 0
    agent.start()
    return agent


def send(server: Server, agent: Agent, *commands: str, timeout: int = 600) -> str:
    with server.api() as api:
        response = api.post(
            "/v1/commands",
            json={
                "targets": [agent.node_id],
                "parameters": {"commands": list(commands)},
                "timeout_seconds": timeout,
            },
        )
    assert response.status_code == 201, response.text
    command_id: str = response.json()["command_id"]
    return command_id


def invocation(server: Server, command_id: str) -> dict[str, Any]:
    with server.api() as api:
        shown = api.get(f"/v1/commands/{command_id}").json()
    result: dict[str, Any] = shown["invocations"][0]
    return result


def finished(server: Server, command_id: str) -> dict[str, Any] | None:
    inv = invocation(server, command_id)
    return inv if inv["status"] not in ("Pending", "InProgress", "Delayed") else None


def worker_pid(agent: Agent, command_id: str) -> int:
    data = json.loads((agent.state_dir / "commands" / command_id / "worker.json").read_text())
    pid: int = data["pid"]
    return pid


def kill_session(sid: int) -> None:
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid:
                os.kill(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue


def test_a_command_runs_in_a_forked_worker_and_its_output_is_uploaded(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = started_agent(make_agent)
    go, running = tmp_path / "go", tmp_path / "running"
    command_id = send(
        server,
        agent,
        f"touch {running}",
        f"while [ ! -e {go} ]; do sleep 0.05; done",
        "seq 1 30000",
        "echo done >&2",
    )
    try:
        wait_for(running.exists, 30, "the script to start")
        assert agent.proc is not None
        agent_proc = psutil.Process(agent.proc.popen.pid)
        # The fork server: ``python -m agent.execution.forkserver FD``.  Other children come
        # and go (the heartbeat's facts may run a tool), so they are not counted.
        forkservers = [
            c for c in agent_proc.children() if "agent.execution.forkserver" in c.cmdline()
        ]
        assert len(forkservers) == 1
        pid = worker_pid(agent, command_id)
        assert psutil.Process(pid).ppid() == forkservers[0].pid
        assert os.getsid(pid) == pid != os.getsid(agent_proc.pid)
        wait_for(lambda: invocation(server, command_id)["status"] == "InProgress", 20, "InProgress")
        go.touch()
        inv = wait_for(lambda: finished(server, command_id), 30, "the invocation to end")
    finally:
        kill_session(worker_pid(agent, command_id))
    assert (inv["status"], inv["response_code"]) == ("Success", 0)
    step = inv["steps"][0]
    full = "".join(f"{n}\n" for n in range(1, 30001))
    assert step["stdout"] == full[:24000] and step["stdout_bytes"] == len(full)
    assert step["stderr"] == "done\n"

    def output() -> str | None:
        with server.api() as api:
            response = api.get(f"/v1/commands/{command_id}/invocations/{agent.node_id}/output")
        return response.text if response.status_code == 200 else None

    # The record (cut at 24,000 characters) is served until the full output is uploaded.
    wait_for(lambda: output() == full, 20, "the full output")


def test_a_killed_agent_reattaches_and_nothing_runs_twice(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = started_agent(make_agent)
    go, running, counter = tmp_path / "go", tmp_path / "running", tmp_path / "counter"
    command_id = send(
        server,
        agent,
        f"echo ran >> {counter}",
        f"touch {running}",
        f"while [ ! -e {go} ]; do sleep 0.05; done",
        "echo finished",
    )
    wait_for(running.exists, 30, "the script to start")
    pid = worker_pid(agent, command_id)
    try:
        agent.kill9()  # the agent and its fork server (one process group), not the worker
        assert psutil.Process(pid).is_running()
        go.touch()
        wait_for(lambda: not psutil.pid_exists(pid) or _zombie(pid), 20, "the worker to end")
        agent.start()
        inv = wait_for(lambda: finished(server, command_id), 30, "the invocation to end")
    finally:
        kill_session(pid)
    assert inv["status"] == "Success"
    assert inv["steps"][0]["stdout"] == "finished\n"
    assert counter.read_text() == "ran\n"


def test_sigterm_stops_the_agent_but_not_its_workers(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = started_agent(make_agent)
    go, running = tmp_path / "go", tmp_path / "running"
    command_id = send(
        server, agent, f"touch {running}", f"while [ ! -e {go} ]; do sleep 0.05; done", "echo ok"
    )
    wait_for(running.exists, 30, "the script to start")
    pid = worker_pid(agent, command_id)
    try:
        assert agent.stop() == 0
        assert psutil.Process(pid).is_running() and not _zombie(pid)
        agent.start()
        go.touch()
        inv = wait_for(lambda: finished(server, command_id), 30, "the invocation to end")
    finally:
        kill_session(pid)
    assert (inv["status"], inv["steps"][0]["stdout"]) == ("Success", "ok\n")


def test_a_lost_worker_is_interrupted_not_rerun(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = started_agent(make_agent)
    running, counter, pids = tmp_path / "running", tmp_path / "counter", tmp_path / "pids"
    command_id = send(
        server,
        agent,
        f"echo ran >> {counter}",
        f"echo $$ > {pids}",
        f"touch {running}",
        "sleep 300",
    )
    wait_for(running.exists, 30, "the script to start")
    agent.kill9()
    # As a crash of the machine would: the worker and its script die too.
    kill_session(worker_pid(agent, command_id))
    os.killpg(int(pids.read_text()), signal.SIGKILL)
    agent.start()
    inv = wait_for(lambda: finished(server, command_id), 30, "the invocation to end")
    assert (inv["status"], inv["status_details"]) == ("Failed", "Interrupted")
    assert counter.read_text() == "ran\n"


def test_a_reboot_exit_code_reboots_and_runs_the_step_again(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    # The "reboot": stop the agent, as the machine going down would; the test starts it again.
    reboot = tmp_path / "reboot.sh"
    reboot.write_text(
        "#!/bin/sh\n"
        f'echo "$CORRAL_COMMAND_ID" >> {tmp_path}/reboots\n'
        'kill -TERM "$CORRAL_AGENT_PID"\n'
    )
    reboot.chmod(0o755)
    agent = started_agent(make_agent, reboot_command=[str(reboot)])
    marker, counter = tmp_path / "marker", tmp_path / "counter"
    command_id = send(
        server,
        agent,
        f"echo ran >> {counter}",
        f"if [ -e {marker} ]; then echo back after the reboot; exit 0; fi",
        f"touch {marker}",
        "exit 194",
    )
    assert agent.proc is not None
    assert agent.proc.wait(60) == 0  # stopped by the reboot command
    assert (tmp_path / "reboots").read_text() == f"{command_id}\n"
    assert invocation(server, command_id)["status"] == "InProgress"
    agent.start()
    inv = wait_for(lambda: finished(server, command_id), 30, "the invocation to end")
    assert inv["status"] == "Success"
    assert inv["steps"][0]["stdout"] == "back after the reboot\n"
    assert counter.read_text() == "ran\nran\n"  # the step itself runs again, by design
    assert (tmp_path / "reboots").read_text() == f"{command_id}\n"  # rebooted once


def test_cancel_from_the_api_stops_the_script(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = started_agent(make_agent)
    running, pids = tmp_path / "running", tmp_path / "pids"
    command_id = send(server, agent, f"sleep 300 & echo $! > {pids}", f"touch {running}", "wait")
    wait_for(running.exists, 30, "the script to start")
    with server.api() as api:
        assert api.post(f"/v1/commands/{command_id}/cancel").status_code == 200
    inv = wait_for(lambda: finished(server, command_id), 30, "the invocation to end")
    assert inv["status"] == "Cancelled"
    sleeper = int(pids.read_text())
    wait_for(lambda: not psutil.pid_exists(sleeper) or _zombie(sleeper), 10, "the script killed")


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
