"""Shell sessions on the node (agent/sessions/shell.py) through a real websocket and a real
PTY: commands typed in run in a login shell, RESIZE sets the terminal's size, the exit status
comes back, run-as users are honoured or refused with the reason, and ending the session
kills everything the shell started."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from agent import wire
from agent.sessions import datachannel as dc
from tests.unit.test_execution_support import live
from tests.unit.test_session_support import Operator, agent_side, start_body, wait_until

SHELL = wire.SESSION_TYPE_SHELL


def test_a_command_typed_into_the_shell_runs_there(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.send(b"echo $((6*7)); echo TERM=$TERM; tty\n")
            await op.until_output(b"42\r\n")
            await op.until_output(b"TERM=xterm-256color\r\n")
            await op.until_output(b"/dev/pts/")  # a real terminal
            await op.finish("done")
            await op.aclose()

    asyncio.run(scenario())


def test_the_shell_profile_is_typed_in_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL, "PROFILE=set; echo profile-$PROFILE")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.until_output(b"profile-set\r\n")
            await op.finish("done")
            await op.aclose()

    asyncio.run(scenario())


def test_resize_sets_the_terminals_size(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL, cols=100, rows=30)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.send(b"stty size\n")
            await op.until_output(b"30 100\r\n")
            await op.endpoint.send_json(dc.RESIZE, {"cols": 123, "rows": 45})
            await op.endpoint.send(dc.RESIZE, b"not json")  # ignored
            await op.send(b"stty size\n")
            await op.until_output(b"45 123\r\n")
            await op.finish("done")
            await op.aclose()

    asyncio.run(scenario())


def test_exit_sends_the_status_then_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            # a job left behind holds the terminal open: it goes with the shell
            await op.send(b"sleep 1000 & echo bg=$!\n")
            await op.until(lambda: re.search(rb"bg=(\d+)\r", op.output), "the pid")
            found = re.search(rb"bg=(\d+)\r", op.output)
            assert found is not None
            await op.send(b"exit 3\n")
            closed = await op.until_closed()
            assert op.status == 3
            assert closed == {"reason": "exited", "status": 3}
            assert not live(int(found[1]))
            await wait_until(lambda: not manager.sessions, "the session to be over")
            await op.aclose()

    asyncio.run(scenario())


def test_a_shell_killed_by_a_signal_exits_128_plus_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(wire.SESSION_TYPE_INTERACTIVE, "kill -TERM $$")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.until_closed()
            assert op.status == 128 + 15
            await op.aclose()

    asyncio.run(scenario())


def test_a_run_as_user_that_does_not_exist_is_refused_with_the_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL, run_as="no-such-user-here")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            closed = await op.until_closed()
            assert closed == {
                "reason": "run-as user 'no-such-user-here' does not exist on this node"
            }
            assert op.status is None and not op.output
            await op.aclose()

    asyncio.run(scenario())


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_run_as_nobody_runs_the_shell_as_nobody(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL, run_as="nobody")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.send(b"test -w $(tty) && echo I-am-$(id -un) in $(pwd) with $HOME\n")
            # nobody's shell (nologin) is not in /etc/shells: /bin/sh; its home is missing: /;
            # the terminal is nobody's
            await op.until_output(b"I-am-nobody in / with /nonexistent")
            await op.send(b"exit\n")
            await op.until_closed()
            assert op.status == 0
            await op.aclose()

    asyncio.run(scenario())


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_run_as_nobody_is_also_refused_an_agent_that_is_not_root(tmp_path: Path) -> None:
    """The agent itself runs as nobody here (a child process): it cannot become root."""
    script = (
        "import os, pwd\n"
        "from agent.sessions.runas import resolve\n"
        "from agent.sessions.program import Refused\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    resolve('root')\nexcept Refused as exc:\n    print(exc)\n"
    )

    async def scenario() -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        out, _ = await proc.communicate()
        return out.decode()

    assert asyncio.run(scenario()).strip() == (
        "the agent runs as 'nobody', not root: it cannot start a session as 'root'"
    )


def test_ending_the_session_kills_the_shells_background_jobs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.send(b"sleep 1000 & echo bg=$! shell=$$\n")
            await op.until(lambda: re.search(rb"bg=(\d+) shell=(\d+)", op.output), "the pids")
            found = re.search(rb"bg=(\d+) shell=(\d+)", op.output)
            assert found is not None
            sleeper, shell = int(found[1]), int(found[2])
            assert os.getpgid(sleeper) != os.getpgid(shell)  # a job of its own
            await op.finish("the operator is done")
            await wait_until(lambda: not live(sleeper) and not live(shell), "both to be killed")
            await op.aclose()

    asyncio.run(scenario())


def test_terminate_session_kills_the_session_and_tells_the_operator(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.send(b"trap '' HUP; sleep 1000 & echo bg=$!\n")
            await op.until(lambda: re.search(rb"bg=(\d+)\r", op.output), "the pid")
            found = re.search(rb"bg=(\d+)\r", op.output)
            assert found is not None
            sleeper = int(found[1])
            manager.terminate({"session_id": body["session_id"], "reason": "ended by alice"})
            closed = await op.until_closed()
            assert closed == {"reason": "ended by alice"}
            await wait_until(lambda: not live(sleeper), "the job that ignores SIGHUP to die")
            await op.aclose()

    asyncio.run(scenario())


def test_stopping_the_agent_ends_every_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        pids: list[int] = []
        ops: list[Operator] = []
        closing: list[asyncio.Task[object]] = []
        async with agent_side(tmp_path) as (relay, manager):
            for _ in range(2):
                body = start_body(SHELL)
                manager.start(body)
                op = Operator(relay, body["session_id"])
                await op.send(b"echo shell=$$\n")
                await op.until(lambda op=op: re.search(rb"shell=(\d+)\r", op.output), "a pid")
                found = re.search(rb"shell=(\d+)\r", op.output)
                assert found is not None
                pids.append(int(found[1]))
                ops.append(op)
                closing.append(asyncio.create_task(op.until_closed()))
        # the manager was cancelled, as the daemon's task group cancels it on SIGTERM
        assert not any(live(pid) for pid in pids)
        await asyncio.gather(*closing)
        for op in ops:
            assert op.closed == {"reason": "the agent is stopping"}
            await op.aclose()

    asyncio.run(scenario())


def test_a_session_whose_relay_is_gone_for_its_grace_is_ended_here(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path, grace=0.5) as (relay, manager):
            body = start_body(SHELL)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.send(b"echo shell=$$\n")
            await op.until(lambda: re.search(rb"shell=(\d+)\r", op.output), "the pid")
            found = re.search(rb"shell=(\d+)\r", op.output)
            assert found is not None
            await relay.stop()  # and it does not come back
            await wait_until(lambda: not manager.sessions, "the session to be given up")
            assert not live(int(found[1]))
            await op.aclose()

    asyncio.run(scenario())
