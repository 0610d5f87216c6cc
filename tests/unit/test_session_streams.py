"""The bytes of a session (agent/sessions/): a non-interactive command's output and status;
flow control (a command printing without end, towards an operator that does not read, is
held in its write, never buffered past the window); a websocket dropped mid-session and
dialled again loses and repeats nothing."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import psutil

from agent import wire
from agent.sessions import datachannel as dc
from tests.unit.test_execution_support import live
from tests.unit.test_session_support import Operator, agent_side, start_body, wait_until


def test_a_non_interactive_command_sends_its_output_and_status(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            command = "echo out; echo err >&2; test -t 0 || echo no-tty; read x; exit 7"
            body = start_body(wire.SESSION_TYPE_NON_INTERACTIVE, command)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.send(b"typed\n")  # stdin is /dev/null: ignored
            closed = await op.until_closed()
            assert bytes(op.output) == b"out\nerr\nno-tty\n"
            assert op.status == 7 and closed == {"reason": "exited", "status": 7}
            await op.aclose()

    asyncio.run(scenario())


def test_a_command_session_ends_with_the_command_not_with_its_background_jobs(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(wire.SESSION_TYPE_NON_INTERACTIVE, "sleep 1000 & echo bg=$!")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.until_closed()
            found = re.search(rb"bg=(\d+)", op.output)
            assert found is not None and op.status == 0
            await wait_until(lambda: not live(int(found[1])), "the background job to be killed")
            await op.aclose()

    asyncio.run(scenario())


def test_an_empty_command_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            for kind in (wire.SESSION_TYPE_NON_INTERACTIVE, wire.SESSION_TYPE_INTERACTIVE):
                body = start_body(kind, "  ")
                manager.start(body)
                op = Operator(relay, body["session_id"])
                assert await op.until_closed() == {"reason": f"{kind} needs a command"}
                await op.aclose()

    asyncio.run(scenario())


def _wchar(pid: int) -> int:
    io = psutil.Process(pid).io_counters()
    return int(getattr(io, "write_chars", io.write_bytes))


def test_output_waits_for_the_window_and_the_command_is_held_in_its_write(
    tmp_path: Path,
) -> None:
    total, window = 20_000_000, 64 * 1024

    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(
                wire.SESSION_TYPE_INTERACTIVE, f"head -c {total} /dev/zero", window=window
            )
            session = manager.start(body)
            assert session is not None
            out = session.endpoint.out
            seen: list[int] = []
            number = out.number

            def numbered(*args: Any, **kwargs: Any) -> dc.Frame:  # every frame the agent sends
                frame = number(*args, **kwargs)
                seen.append(out.unacked_bytes)
                return frame

            out.number = numbered  # type: ignore[method-assign]
            op = Operator(relay, body["session_id"], window=window)  # and it does not read
            await wait_until(lambda: out.room() < dc.MAX_PAYLOAD, "the window to fill")
            head = [p for p in psutil.Process().children(recursive=True) if p.name() == "head"]
            assert len(head) == 1
            # the PTY's buffer and one read's worth in the agent: nowhere near 20 MB
            assert _wchar(head[0].pid) < window + 2 * 1024 * 1024
            assert head[0].is_running() and head[0].status() != psutil.STATUS_ZOMBIE
            # the operator reads: output flows again, still within the window
            await op.until(lambda: len(op.output) >= 4 * 1024 * 1024, "4 MB of output")
            assert _wchar(head[0].pid) > 4 * 1024 * 1024
            assert len(seen) > 100 and max(seen) <= window
            await op.finish("enough")
            await wait_until(lambda: not live(head[0].pid), "head to be killed")
            await op.aclose()

    asyncio.run(scenario())


def test_a_dropped_websocket_is_dialled_again_and_nothing_is_lost_or_repeated(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(wire.SESSION_TYPE_INTERACTIVE, "seq 1 20000", window=16 * 1024)
            sid = body["session_id"]
            manager.start(body)
            op = Operator(relay, sid, window=16 * 1024)
            await op.until(lambda: len(op.output) >= 1000, "some output")
            await relay.drop(sid)
            await op.until(lambda: relay.accepted[sid] == 2 and len(op.output) > 30_000, "more")
            await relay.drop(sid)  # and once more
            await op.until_closed()
            expected = "".join(f"{i}\r\n" for i in range(1, 20001)).encode()
            assert bytes(op.output) == expected
            assert op.status == 0 and relay.accepted[sid] == 3
            await op.aclose()

    asyncio.run(scenario())
