"""NonInteractiveCommands: ``/bin/sh -c <command>`` without a terminal, stdin /dev/null, its
stdout and stderr merged into one pipe whose bytes go back as DATA (the pipe is read only
while the channel's window has room), then its exit status."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Mapping
from typing import Any

from agent.sessions import datachannel as dc
from agent.sessions import processes
from agent.sessions.endpoint import Endpoint
from agent.sessions.fdio import DRAIN_SECONDS
from agent.sessions.program import Refused, supervise

log = logging.getLogger("corral.sessions")


class CommandProgram:
    def __init__(self, body: Mapping[str, Any]) -> None:
        self.session_id = str(body.get("session_id"))
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise Refused("NonInteractiveCommands needs a command")
        self.command = command
        run_as = body.get("run_as")
        self.run_as = run_as if isinstance(run_as, str) else None

    async def run(self, endpoint: Endpoint) -> int | None:
        user = processes.resolve_user(self.run_as)
        argv = processes.command_argv(self.command)
        try:
            child = await processes.spawn_piped(argv, user, user.environment())
        except (OSError, subprocess.SubprocessError) as exc:
            raise Refused(f"cannot start {argv[0]} as {user.name!r}: {exc}") from None
        log.info(
            "session program started",
            extra={"session_id": self.session_id, "pid": child.pid, "user": user.name},
        )
        output = child.stdout
        assert output is not None

        async def pump(exited: asyncio.Event) -> None:
            while True:
                read = asyncio.ensure_future(output.read(dc.MAX_PAYLOAD))
                try:
                    await _read_or_drain(read, exited)
                finally:
                    read.cancel()
                chunk = read.result() if read.done() and not read.cancelled() else b""
                if not chunk:
                    return
                await endpoint.send(dc.DATA, chunk)

        async def ignore(frame: dc.Frame) -> None:  # stdin is /dev/null
            log.debug(
                "ignoring a frame a command session does not use",
                extra={"session_id": self.session_id, "type": frame.type},
            )

        return await supervise(endpoint, child, pump, ignore, processes.end_session)


async def _read_or_drain(read: asyncio.Future[bytes], exited: asyncio.Event) -> None:
    """Wait for ``read``; once ``exited`` is set, for at most DRAIN_SECONDS more (a process
    that left the session may hold the pipe open for ever)."""
    draining = asyncio.ensure_future(exited.wait())
    try:
        waiting: set[asyncio.Future[Any]] = {read, draining}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not read.done():
            await asyncio.wait({read}, timeout=DRAIN_SECONDS)
    finally:
        draining.cancel()
