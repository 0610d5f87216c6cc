"""The agent side of Run Command with real workers (forked by a real fork server, or spawned):
journal and dedupe, reports through the outbox, re-attach after an agent restart, Interrupted
when the worker was killed, cancel, the reboot flow, output uploads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.backoff import Backoff
from agent.execution.executor import Executor, RebootSettings, message_id
from agent.execution.forkserver import ForkServer
from agent.execution.journal import Journal, State
from agent.execution.launcher import Launcher
from agent.execution.settings import WorkerSettings
from agent.outbox import Outbox
from agent.wire import Message
from tests.unit.test_execution_support import (
    RecordingTransport,
    document,
    eventually,
    group_members,
    kill_workers,
    live,
    read_pids,
    refused,
    run_message,
    shell,
    sync,
    unreachable,
    wait_for,
)

# Larger than what a step's record holds (24,000 / 8,000 characters): uploaded.
BIG_OUT = wire.STDOUT_RECORD_CHARS + 100
BIG_ERR = wire.STDERR_RECORD_CHARS + 100

NODE = "mi-0123456789abcdef0"
SETTINGS = WorkerSettings(platform="Linux", reboots_enabled=True, kill_grace_seconds=1.0)


@pytest.fixture(scope="module")
def forkserver() -> Iterator[ForkServer]:
    server = ForkServer.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def launcher(forkserver: ForkServer) -> Launcher:
    return Launcher(SETTINGS, forkserver)


@pytest.fixture(autouse=True)
def _kill_workers(tmp_path: Path) -> Iterator[None]:
    """Whatever a test leaves running in a worker's session is killed."""
    yield
    kill_workers(tmp_path)


class AgentSide:
    """One life of the agent's executor: ``async with`` starts its loop, leaving ends it (as
    an agent that stops or dies: the workers are not touched)."""

    def __init__(
        self,
        root: Path,
        launcher: Launcher,
        transport: RecordingTransport | None = None,
        reboot_command: tuple[str, ...] = ("true",),
        reboots: bool = True,
    ) -> None:
        self.journal = Journal(root / "commands")
        self.outbox_path = root / "outbox.db"
        self.launcher = launcher
        self.transport = transport or RecordingTransport()
        self.reboot = RebootSettings(reboots, reboot_command, 0.2)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AgentSide:
        self.outbox = Outbox(self.outbox_path)
        self.executor = Executor(
            journal=self.journal,
            outbox=self.outbox,
            transport=self.transport,
            launcher=self.launcher,
            node_id=NODE,
            reboot=self.reboot,
            backoff=lambda: Backoff(0.01, 0.05),
        )
        self.task = asyncio.create_task(self.executor.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.outbox.close()

    async def until(self, cond: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                value = cond()
                if isinstance(value, Awaitable):
                    value = await value
                if value:
                    return value
                if self.task is not None and self.task.done():
                    self.task.result()  # surface a crash of the executor
                    raise AssertionError(f"the executor stopped before {what}")
                await asyncio.sleep(0.02)

    def done(self, command_id: str) -> bool:
        return (self.journal.root / command_id / "done").exists()

    def state(self, command_id: str) -> State:
        return self.journal.command(command_id).state()

    async def messages(self) -> list[Message]:
        return await self.outbox.peek(100)

    async def message(self, command_id: str, kind: str) -> Message | None:
        wanted = message_id(NODE, command_id, kind)
        return next((m for m in await self.messages() if m["id"] == wanted), None)

    async def final(self, command_id: str) -> dict[str, Any]:
        msg = await self.message(command_id, "final")
        assert msg is not None, "no final invocation_update"
        return msg["body"]


def counting(counter: Path, *lines: str) -> list[str]:
    """A script that first records that it ran."""
    return [f"echo ran >> {counter}", *lines]


def wait_file(path: Path) -> str:
    return f"while [ ! -e {path} ]; do sleep 0.02; done"


@sync
async def test_a_command_runs_once_in_its_own_session_and_is_reported(
    tmp_path: Path, launcher: Launcher
) -> None:
    counter, go, running = tmp_path / "counter", tmp_path / "go", tmp_path / "running"
    content = document(
        shell(
            "one",
            *counting(
                counter, f"touch {running}", wait_file(go), "echo out", "echo err >&2",
                f"head -c {BIG_OUT} /dev/zero | tr '\\0' o",
            ),
        ),
        shell("two", f"head -c {BIG_ERR} /dev/zero | tr '\\0' e >&2", "exit 3"),
    )  # fmt: skip
    message = run_message("cmd-1", content)
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.executor.accept(message)
        await agent.executor.accept(message)  # redelivered
        await agent.executor.accept(run_message("cmd-1", content))  # same command, new message
        await agent.until(running.exists, "the script to start")
        pid = agent.journal.command("cmd-1").worker_pid()
        assert pid is not None and os.getsid(pid) == pid  # its own session
        assert pid != os.getpid()
        started = await agent.until(lambda: agent.message("cmd-1", "started/1"), "InProgress")
        assert started["body"]["status"] == wire.ST_IN_PROGRESS
        assert isinstance(started["body"]["started_at"], float)
        go.touch()
        await agent.until(lambda: agent.done("cmd-1"), "the command to be reported")
        final = await agent.final("cmd-1")
        messages = await agent.messages()
    assert counter.read_text() == "ran\n"
    assert (final["status"], final["status_details"], final["response_code"]) == (
        wire.ST_FAILED,
        wire.ST_FAILED,
        3,
    )
    one, two = final["steps"]
    assert (one["status"], one["stderr"]) == (wire.ST_SUCCESS, "err\n")
    assert one["stdout"].startswith("out\nooo") and one["stdout_bytes"] == 4 + BIG_OUT
    assert two["response_code"] == 3
    # InProgress, then one output_uploaded per stream that the record does not hold whole
    # (step one's stdout, step two's stderr; the small ones are all there), then the final
    # update: the command is final on the server only once its whole output is there.
    kinds = [m["type"] for m in messages]
    assert kinds == [
        wire.MSG_INVOCATION_UPDATE,
        wire.MSG_OUTPUT_UPLOADED,
        wire.MSG_OUTPUT_UPLOADED,
        wire.MSG_INVOCATION_UPDATE,
    ]
    uploaded = [m["body"] for m in messages if m["type"] == wire.MSG_OUTPUT_UPLOADED]
    assert {(u["step_index"], u["stream"]) for u in uploaded} == {(0, "stdout"), (1, "stderr")}
    import hashlib

    stdout_0 = next(u for u in uploaded if (u["step_index"], u["stream"]) == (0, "stdout"))
    full = b"out\n" + b"o" * BIG_OUT
    assert (stdout_0["size"], stdout_0["sha256"]) == (len(full), hashlib.sha256(full).hexdigest())
    # The full output left the node: it is not kept once uploaded.
    assert list((tmp_path / "commands" / "cmd-1" / "output").iterdir()) == []


@sync
async def test_without_a_fork_server_workers_are_spawned(tmp_path: Path) -> None:
    launcher = Launcher(SETTINGS, None)
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.executor.accept(run_message("cmd-s", document(shell("s", "echo spawned"))))
        await agent.until(lambda: agent.done("cmd-s"), "the command to be reported", 60)
        final = await agent.final("cmd-s")
    assert final["status"] == wire.ST_SUCCESS
    assert final["steps"][0]["stdout"] == "spawned\n"


@sync
async def test_a_restarted_agent_reattaches_to_a_running_worker(
    tmp_path: Path, launcher: Launcher
) -> None:
    counter, go, running = tmp_path / "counter", tmp_path / "go", tmp_path / "running"
    content = document(
        shell("one", *counting(counter, f"touch {running}", wait_file(go), "echo done"))
    )
    async with AgentSide(tmp_path, launcher) as first:
        await first.executor.accept(run_message("cmd-r", content))
        await first.until(running.exists, "the script to start")
    # The first agent is gone (its event pipe with it); the worker carries on.
    assert (tmp_path / "commands" / "cmd-r").is_dir()
    async with AgentSide(tmp_path, launcher) as second:
        await second.until(lambda: second.state("cmd-r") is State.RUNNING, "re-attach")
        go.touch()
        await second.until(lambda: second.done("cmd-r"), "the command to be reported")
        final = await second.final("cmd-r")
        finals = [
            m for m in await second.messages() if m["id"] == message_id(NODE, "cmd-r", "final")
        ]
    assert final["status"] == wire.ST_SUCCESS
    assert final["steps"][0]["stdout"] == "done\n"
    assert counter.read_text() == "ran\n"
    assert len(finals) == 1


@sync
async def test_a_finished_worker_is_collected_by_the_next_agent(
    tmp_path: Path, launcher: Launcher
) -> None:
    go, running = tmp_path / "go", tmp_path / "running"
    content = document(shell("one", f"touch {running}", wait_file(go), "echo late"))
    async with AgentSide(tmp_path, launcher) as first:
        await first.executor.accept(run_message("cmd-f", content))
        await first.until(running.exists, "the script to start")
    go.touch()  # it finishes while no agent runs
    cmd = Journal(tmp_path / "commands").command("cmd-f")
    await eventually(lambda: cmd.state() is State.FINISHED, "the worker to finish")
    async with AgentSide(tmp_path, launcher) as second:
        await second.until(lambda: second.done("cmd-f"), "the command to be reported")
        final = await second.final("cmd-f")
    assert (final["status"], final["steps"][0]["stdout"]) == (wire.ST_SUCCESS, "late\n")


@sync
async def test_a_killed_worker_ends_interrupted_and_is_never_rerun(
    tmp_path: Path, launcher: Launcher
) -> None:
    counter, running, pids = tmp_path / "counter", tmp_path / "running", tmp_path / "pids"
    content = document(
        shell("first", "echo first"),
        shell(
            "second",
            *counting(
                counter, "echo partial", f"echo $$ > {pids}", f"touch {running}", "sleep 300"
            ),
        ),
        shell("third", "echo third"),
    )
    async with AgentSide(tmp_path, launcher) as first:
        await first.executor.accept(run_message("cmd-k", content))
        await first.until(running.exists, "the script to start")
        worker = first.journal.command("cmd-k").worker_pid()
    assert worker is not None
    # The machine "crashes": the worker and its script die with the agent away.
    os.kill(worker, signal.SIGKILL)
    os.killpg(read_pids(pids)[0], signal.SIGKILL)
    cmd = Journal(tmp_path / "commands").command("cmd-k")
    await eventually(lambda: cmd.state() is State.LOST, "the worker to be lost")
    async with AgentSide(tmp_path, launcher) as second:
        await second.until(lambda: second.done("cmd-k"), "the command to be reported")
        final = await second.final("cmd-k")
    assert (final["status"], final["status_details"]) == (wire.ST_FAILED, wire.DETAIL_INTERRUPTED)
    done_step, cut_step = final["steps"]
    assert done_step["status"] == wire.ST_SUCCESS
    assert (cut_step["status"], cut_step["status_details"]) == (
        wire.ST_FAILED,
        wire.DETAIL_INTERRUPTED,
    )
    assert cut_step["stdout"] == "partial\n"
    assert counter.read_text() == "ran\n"  # never run a second time
    assert not (tmp_path / "commands" / "cmd-k" / "steps" / "2.json").exists()


@sync
async def test_cancel_stops_the_process_group_and_reports_cancelled(
    tmp_path: Path, launcher: Launcher
) -> None:
    pids, running = tmp_path / "pids", tmp_path / "running"
    content = document(
        shell(
            "wait",
            f"echo $$ >> {pids}",
            f"sleep 300 & echo $! >> {pids}",
            f"touch {running}",
            "wait",
        ),
        shell("next", "echo next"),
    )
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.executor.cancel({"command_id": "unknown"})  # nothing to do
        await agent.executor.accept(run_message("cmd-c", content))
        await agent.until(running.exists, "the script to start")
        await agent.executor.cancel({"command_id": "cmd-c"})
        await agent.until(lambda: agent.done("cmd-c"), "the command to be reported")
        final = await agent.final("cmd-c")
        before = len(await agent.messages())
        await agent.executor.cancel({"command_id": "cmd-c"})  # finished: a no-op
        assert len(await agent.messages()) == before
    assert (final["status"], final["status_details"]) == (wire.ST_CANCELLED, wire.ST_CANCELLED)
    assert [s["status"] for s in final["steps"]] == [wire.ST_CANCELLED, wire.ST_SKIPPED]
    started = read_pids(pids)
    assert len(started) == 2 and not [p for p in started if live(p)]
    assert group_members(started[0]) == []
    assert not (tmp_path / "commands" / "unknown").exists()


@sync
async def test_a_command_cancelled_before_it_starts_never_runs(
    tmp_path: Path, launcher: Launcher
) -> None:
    counter = tmp_path / "counter"
    agent = AgentSide(tmp_path, launcher)
    journal = agent.journal
    journal.record(
        "cmd-early",
        {
            "message_id": "m1",
            "body": run_message("cmd-early", document(shell("s", *counting(counter))))["body"],
        },
    )
    # An executor that journals but has not started the worker yet gets the cancel.
    async with agent:
        await agent.executor.cancel({"command_id": "cmd-early"})
        await agent.until(lambda: agent.done("cmd-early"), "the command to be reported")
        final = await agent.final("cmd-early")
    assert final["status"] == wire.ST_CANCELLED
    assert [s["status"] for s in final["steps"]] == [wire.ST_SKIPPED]
    assert not counter.exists()


@sync
async def test_reboot_flow_reruns_the_step_after_the_reboot(
    tmp_path: Path, launcher: Launcher
) -> None:
    counter, marker, rebooted = tmp_path / "counter", tmp_path / "marker", tmp_path / "rebooted"
    reboot = tmp_path / "reboot.sh"
    reboot.write_text(f'#!/bin/sh\necho "$CORRAL_COMMAND_ID $CORRAL_AGENT_PID" > {rebooted}\n')
    reboot.chmod(0o755)
    content = document(
        shell("before", *counting(counter, "echo before")),
        shell(
            "needs-reboot",
            f"if [ -e {marker} ]; then echo after the reboot; exit 0; fi",
            f"touch {marker}",
            "echo rebooting",
            "exit 194",
        ),
        shell("after", "echo last step"),
    )
    async with AgentSide(tmp_path, launcher, reboot_command=(str(reboot),)) as first:
        await first.executor.accept(run_message("cmd-b", content))
        await first.until(rebooted.exists, "the reboot command")
        report = await first.message("cmd-b", "reboot/2")
        assert not first.done("cmd-b")
    assert rebooted.read_text() == f"cmd-b {os.getpid()}\n"
    assert report is not None
    assert report["body"]["status"] == wire.ST_IN_PROGRESS
    assert [s["status"] for s in report["body"]["steps"]] == [
        wire.ST_SUCCESS,
        wire.ST_IN_PROGRESS,
    ]
    # The node is back: the next agent runs the step again, not the ones before it.
    async with AgentSide(tmp_path, launcher, reboot_command=(str(reboot),)) as second:
        await second.until(lambda: second.done("cmd-b"), "the command to be reported")
        final = await second.final("cmd-b")
        assert await second.message("cmd-b", "started/2") is not None
    assert final["status"] == wire.ST_SUCCESS
    before, again, after = final["steps"]
    assert before["stdout"] == "before\n"
    assert (again["status"], again["stdout"]) == (wire.ST_SUCCESS, "after the reboot\n")
    assert after["stdout"] == "last step\n"
    assert counter.read_text() == "ran\n"


@sync
async def test_a_failing_reboot_command_fails_the_step(tmp_path: Path, launcher: Launcher) -> None:
    content = document(shell("r", "echo asking", "exit 194"), shell("after", "echo after"))
    failing = ("sh", "-c", "echo shutdown: permission denied >&2; exit 1")
    async with AgentSide(tmp_path, launcher, reboot_command=failing) as agent:
        await agent.executor.accept(run_message("cmd-rf", content))
        await agent.until(lambda: agent.done("cmd-rf"), "the command to be reported")
        final = await agent.final("cmd-rf")
    assert final["status"] == wire.ST_FAILED
    step = final["steps"][0]
    assert step["status"] == wire.ST_FAILED
    assert step["stdout"] == "asking\n"
    assert "the reboot command exited with 1: shutdown: permission denied" in step["stderr"]


@sync
async def test_with_reboots_disabled_the_step_fails(tmp_path: Path, forkserver: ForkServer) -> None:
    launcher = Launcher(
        WorkerSettings(platform="Linux", reboots_enabled=False, kill_grace_seconds=1.0), forkserver
    )
    content = document(shell("r", "exit 194"), shell("after", "echo after"))
    async with AgentSide(tmp_path, launcher, reboots=False) as agent:
        await agent.executor.accept(run_message("cmd-rd", content))
        await agent.until(lambda: agent.done("cmd-rd"), "the command to be reported")
        final = await agent.final("cmd-rd")
    assert [s["status"] for s in final["steps"]] == [wire.ST_FAILED, wire.ST_SUCCESS]
    assert "reboots are disabled" in final["steps"][0]["stderr"]
    assert not (tmp_path / "commands" / "cmd-rd" / "resume.json").exists()


@sync
async def test_uploads_are_retried_and_a_refusal_is_final(
    tmp_path: Path, launcher: Launcher
) -> None:
    transport = RecordingTransport()
    transport.failures = [unreachable(), unreachable(), refused(404)]
    content = document(
        shell(
            "s",
            f"head -c {BIG_OUT} /dev/zero | tr '\\0' o",
            f"head -c {BIG_ERR} /dev/zero | tr '\\0' e >&2",
        )
    )
    async with AgentSide(tmp_path, launcher, transport) as agent:
        await agent.executor.accept(run_message("cmd-u", content))
        await agent.until(lambda: agent.done("cmd-u"), "the command to be reported")
        uploaded = [
            m["body"] for m in await agent.messages() if m["type"] == wire.MSG_OUTPUT_UPLOADED
        ]
    # stdout: two transport errors, then refused (404): given up, not announced.
    # stderr: uploaded at once.
    assert [(u[1], u[2], u[3]) for u in transport.uploads] == [(0, "stderr", b"e" * BIG_ERR)]
    assert [(u["step_index"], u["stream"]) for u in uploaded] == [(0, "stderr")]
    progress = Journal(tmp_path / "commands").command("cmd-u").read("progress.json")
    assert progress is not None
    assert progress["uploads"] == {"0.stdout": "refused", "0.stderr": "uploaded"}


@sync
async def test_an_invalid_document_fails_with_the_reason(
    tmp_path: Path, launcher: Launcher
) -> None:
    bad = {"schemaVersion": "2.2", "mainSteps": [{"action": "aws:runShellScript"}]}
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.executor.accept(run_message("cmd-bad", bad))
        await agent.executor.accept(wire.make_message(wire.MSG_RUN_COMMAND, {"command_id": "../x"}))
        await agent.until(lambda: agent.done("cmd-bad"), "the command to be reported")
        final = await agent.final("cmd-bad")
    assert final["status"] == wire.ST_FAILED
    assert final["steps"][0]["name"] == "document"
    assert "mainSteps[0]" in final["steps"][0]["stderr"]
    assert sorted(p.name for p in (tmp_path / "commands").iterdir()) == ["cmd-bad"]


def test_journal_ignores_a_second_delivery_and_prunes_old_commands(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "commands")
    first = journal.record("c1", {"body": {"n": 1}})
    assert first is not None and first.read("request.json") == {"body": {"n": 1}}
    assert journal.record("c1", {"body": {"n": 2}}) is None
    assert first.read("request.json") == {"body": {"n": 1}}
    (journal.root / ".new-c2-1-1").mkdir()  # a journal write cut short by a crash
    assert [c.command_id for c in journal.pending()] == ["c1"]
    assert not (journal.root / ".new-c2-1-1").exists()
    first.file("done").write_text("x")
    assert journal.pending() == []
    assert journal.prune() == 0
    old = os.stat(first.file("done")).st_mtime - 8 * 24 * 3600
    os.utime(first.file("done"), (old, old))
    assert journal.prune() == 1 and not first.path.exists()
    with pytest.raises(ValueError):
        journal.command("../etc")


def test_forkserver_forks_workers_that_outlive_it(tmp_path: Path) -> None:
    """A worker forked by a fork server keeps running when the fork server (and so the agent
    that owned it) is gone."""
    server = ForkServer.start()
    journal = Journal(tmp_path / "commands")
    go, running = tmp_path / "go", tmp_path / "running"
    cmd = journal.record(
        "cmd-o",
        {
            "body": run_message(
                "cmd-o", document(shell("s", f"touch {running}", wait_file(go), "echo survived"))
            )["body"]
        },
    )
    assert cmd is not None
    read_fd, write_fd = os.pipe()
    try:
        pid = server.spawn(cmd.path, SETTINGS.to_json(), write_fd)
        os.close(write_fd)
        server.close()
        assert not live(server.pid)
        wait_for(running.exists, 30, "the script to start")
        assert live(pid) and os.getsid(pid) == pid
        go.touch()
        with os.fdopen(read_fd, "rb") as events:
            lines = events.read().decode().splitlines()  # EOF when the worker exits
        assert [line.split('"event": "')[1].split('"')[0] for line in lines] == ["started", "ended"]
        result = cmd.read("result.json")
        assert result is not None and result["steps"][0]["stdout"] == "survived\n"
    finally:
        kill_workers(tmp_path)
    assert sys.platform != "win32"


@sync
async def test_an_idle_fork_server_is_stopped_and_the_next_command_starts_another(
    tmp_path: Path,
) -> None:
    """fork_server_idle_seconds: after that long without a command the fork server exits (an
    idle agent is one process); the next command starts a new one and runs as usual."""
    first = ForkServer.start()
    launcher = Launcher(SETTINGS, first, fork_server_idle_seconds=600)
    later = time.monotonic() + 601
    try:
        async with AgentSide(tmp_path, launcher) as agent:
            await agent.executor.accept(run_message("cmd-a", document(shell("s", "echo a"))))
            await agent.until(lambda: agent.done("cmd-a"), "the first command to be reported")
            assert launcher.forkserver is first
            assert not await asyncio.to_thread(launcher.release_idle)  # not idle long enough
            assert await asyncio.to_thread(launcher.release_idle, later)
            assert launcher.forkserver is None and not live(first.pid)
            await agent.executor.accept(run_message("cmd-b", document(shell("s", "echo b"))))
            await agent.until(lambda: agent.done("cmd-b"), "the second command to be reported")
            second = launcher.forkserver
            assert second is not None and second.pid != first.pid and live(second.pid)
            soon = time.monotonic() + 300  # used just now: not idle for 600 s by then
            assert not await asyncio.to_thread(launcher.release_idle, soon)
            final = await agent.final("cmd-b")
        assert final["steps"][0]["stdout"] == "b\n"
    finally:
        launcher.close()
    assert launcher.forkserver is None and not live(second.pid)


@sync
async def test_a_script_sees_the_node_id_and_command_id(tmp_path: Path, launcher: Launcher) -> None:
    """From the run_command to the script, through the journal and a real worker."""
    script = 'echo "$AWS_SSM_INSTANCE_ID $CORRAL_NODE_ID $CORRAL_COMMAND_ID"'
    content = document(shell("ids", script))
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.executor.accept(run_message("cmd-ids", content))
        await agent.until(lambda: agent.done("cmd-ids"), "the command to be reported")
        final = await agent.final("cmd-ids")
    assert final["steps"][0]["stdout"] == f"{NODE} {NODE} cmd-ids\n"


class BrokenLauncher(Launcher):
    """A launcher with a bug for one command (an exception no one foresaw)."""

    def __init__(self, inner: Launcher, broken: str) -> None:
        super().__init__(inner.settings, inner.forkserver)
        self.broken = broken

    async def launch(self, cmd: Any, ssm_values: Any = None) -> Any:
        if cmd.command_id == self.broken:
            raise KeyError("a bug in the launcher")
        return await super().launch(cmd, ssm_values)


@sync
async def test_a_command_whose_supervision_raises_is_reported_failed_and_the_rest_run(
    tmp_path: Path, forkserver: ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.execution import executor as executor_module

    monkeypatch.setattr(executor_module, "REATTACH_POLL_SECONDS", 0.01)
    launcher = BrokenLauncher(Launcher(SETTINGS, forkserver), "cmd-broken")
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.executor.accept(run_message("cmd-broken", document(shell("s", "echo no"))))
        await agent.executor.accept(run_message("cmd-fine", document(shell("s", "echo yes"))))
        await agent.until(lambda: agent.done("cmd-fine"), "the other command to be reported")
        await agent.until(lambda: agent.message("cmd-broken", "final"), "the broken one's report")
        broken = await agent.final("cmd-broken")
        fine = await agent.final("cmd-fine")
        events = [m for m in await agent.messages() if m["type"] == wire.MSG_NODE_EVENT]
        assert not agent.task.done()  # type: ignore[union-attr]  # the executor carries on
    assert fine["status"] == wire.ST_SUCCESS
    assert broken["status"] == wire.ST_FAILED
    assert "KeyError" in broken["steps"][0]["stderr"]
    assert [e["body"]["command_id"] for e in events] == ["cmd-broken"]
    assert list((tmp_path / "corrupt").iterdir())  # the entry was moved aside


@pytest.mark.parametrize(
    "result",
    [
        '{"command_id": "cmd-odd", "steps": []}',  # JSON, but not a result: no status
        '{"command_id": "cmd-odd", "status": "Succ',  # cut short
        "\x00\x00\x00\x00",  # zeroes (a power cut on some file systems)
    ],
)
@sync
async def test_a_damaged_journal_entry_is_moved_aside_and_reported(
    tmp_path: Path, launcher: Launcher, result: str
) -> None:
    journal = Journal(tmp_path / "commands")
    cmd = journal.record("cmd-odd", {"body": {"command_id": "cmd-odd"}})
    assert cmd is not None
    cmd.write("worker.json", {"pid": 1, "attempt": 1, "started_at": 1.0})
    cmd.file("result.json").write_text(result)
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.until(lambda: agent.done("cmd-odd"), "the entry to be reported")
        final = await agent.final("cmd-odd")
        events = [m for m in await agent.messages() if m["type"] == wire.MSG_NODE_EVENT]
    assert (final["status"], final["status_details"]) == (wire.ST_FAILED, wire.DETAIL_INTERRUPTED)
    assert "result.json" in final["steps"][0]["stderr"]
    assert events[0]["body"]["code"] == wire.EVENT_JOURNAL_ENTRY_CORRUPT
    moved = list((tmp_path / "corrupt").iterdir())
    assert len(moved) == 1 and (moved[0] / "result.json").exists()


@sync
async def test_a_run_command_the_agent_could_not_handle_is_reported_failed(
    tmp_path: Path, launcher: Launcher
) -> None:
    async with AgentSide(tmp_path, launcher) as agent:
        message = run_message("cmd-x", document(shell("s", "echo never")))
        await agent.executor.report_message_failure(message, "OSError: No space left on device")
        final = await agent.final("cmd-x")
        # Nothing was journalled, nothing runs; a node_event for a message of another type.
        await agent.executor.report_message_failure(
            {"id": "m-1", "type": "ping", "body": {}}, "ValueError: odd"
        )
        events = [m for m in await agent.messages() if m["type"] == wire.MSG_NODE_EVENT]
    assert final["status"] == wire.ST_FAILED
    assert "No space left on device" in final["steps"][0]["stderr"]
    assert not (tmp_path / "commands" / "cmd-x").exists()
    assert events[0]["body"]["code"] == wire.EVENT_MESSAGE_FAILED
    assert "ValueError: odd" in events[0]["body"]["message"]


class FullDiskLauncher(Launcher):
    """A launcher whose first ``failures`` launches meet a full disk."""

    def __init__(self, inner: Launcher, failures: int) -> None:
        super().__init__(inner.settings, inner.forkserver)
        self.failures = failures

    async def launch(self, cmd: Any, ssm_values: Any = None) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        return await super().launch(cmd, ssm_values)


@sync
async def test_a_full_disk_is_waited_out_never_a_failed_command(
    tmp_path: Path, forkserver: ForkServer
) -> None:
    launcher = FullDiskLauncher(Launcher(SETTINGS, forkserver), failures=5)
    async with AgentSide(tmp_path, launcher) as agent:
        await agent.executor.accept(run_message("cmd-disk", document(shell("s", "echo ok"))))
        await agent.until(lambda: agent.done("cmd-disk"), "the command to be reported")
        final = await agent.final("cmd-disk")
    assert launcher.failures == 0
    assert (final["status"], final["steps"][0]["stdout"]) == (wire.ST_SUCCESS, "ok\n")
    assert not (tmp_path / "corrupt").exists()
