"""Standard_Stream (the run-as user's login shell) and InteractiveCommands (``/bin/sh -c``), in
a real PTY: the peer's DATA is the terminal's input, RESIZE its size; what the terminal shows
goes back as DATA, read only while the channel's window has room (flow control: ``cat`` of a
huge file blocks in its write instead of filling the agent's memory)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from typing import Any, Final

from agent.sessions import datachannel as dc
from agent.sessions import processes
from agent.sessions.endpoint import Endpoint
from agent.sessions.fdio import FdReader, FdWriter
from agent.sessions.program import Refused, supervise

log = logging.getLogger("corral.sessions")

TERM: Final = "xterm-256color"
MAX_SIDE: Final = 0xFFFF


class TerminalProgram:
    def __init__(self, body: Mapping[str, Any], *, login: bool) -> None:
        self.session_id = str(body.get("session_id"))
        self.login = login
        self.command = body.get("command") or ""
        if not isinstance(self.command, str):
            raise Refused("the session's command is not a string")
        if not login and not self.command.strip():
            raise Refused("InteractiveCommands needs a command")
        run_as = body.get("run_as")
        self.run_as = run_as if isinstance(run_as, str) else None
        self.size = _size(body) or (80, 24)

    @classmethod
    def shell(cls, body: Mapping[str, Any]) -> TerminalProgram:
        return cls(body, login=True)

    @classmethod
    def interactive(cls, body: Mapping[str, Any]) -> TerminalProgram:
        return cls(body, login=False)

    async def run(self, endpoint: Endpoint) -> int | None:
        user = processes.resolve_user(self.run_as)
        if self.login:  # argv[0] "-bash": a login shell
            executable = user.shell
            argv = ["-" + os.path.basename(executable)]
        else:
            argv = processes.command_argv(self.command)
            executable = argv[0]
        master, slave = processes.open_terminal(*self.size)
        try:
            try:
                child = await processes.spawn_in_terminal(
                    argv, executable, user, user.environment(TERM), slave
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise Refused(f"cannot start {executable} as {user.name!r}: {exc}") from None
            finally:
                os.close(slave)
            log.info(
                "session program started",
                extra={"session_id": self.session_id, "pid": child.pid, "user": user.name},
            )
            terminal = _Terminal(endpoint, master, self.session_id)
            if self.login and self.command:  # the shell profile, typed in as SSM does
                await terminal.type_in(self.command.encode() + b"\n")
            return await supervise(
                endpoint, child, terminal.pump, terminal.handle, processes.end_session
            )
        finally:
            os.close(master)


class _Terminal:
    def __init__(self, endpoint: Endpoint, master: int, session_id: str) -> None:
        self.endpoint = endpoint
        self.master = master
        self.session_id = session_id
        self.reader = FdReader(master)
        self.writer = FdWriter(master)

    async def pump(self, exited: asyncio.Event) -> None:
        while chunk := await self.reader.read(dc.MAX_PAYLOAD, exited):
            await self.endpoint.send(dc.DATA, chunk)

    async def type_in(self, data: bytes) -> None:
        try:
            await self.writer.write(data)
        except OSError as exc:  # the terminal has no reader any more (EIO): input is moot
            log.debug(
                "session input dropped", extra={"session_id": self.session_id, "error": str(exc)}
            )

    async def handle(self, frame: dc.Frame) -> None:
        if frame.type == dc.DATA and frame.stream == 0:
            await self.type_in(frame.payload)
        elif frame.type == dc.RESIZE:
            size = _size(_json(frame.payload))
            if size is None:
                log.warning("ignoring a bad RESIZE", extra={"session_id": self.session_id})
            else:
                processes.set_terminal_size(self.master, *size)
        else:
            log.debug(
                "ignoring a frame a terminal session does not use",
                extra={"session_id": self.session_id, "type": frame.type},
            )


def _size(body: Mapping[str, Any]) -> tuple[int, int] | None:
    cols, rows = body.get("cols"), body.get("rows")
    for side in (cols, rows):
        if not isinstance(side, int) or isinstance(side, bool) or not 0 < side <= MAX_SIDE:
            return None
    assert isinstance(cols, int) and isinstance(rows, int)
    return cols, rows


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
