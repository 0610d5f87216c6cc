"""What every kind of session runs on the node (a shell, a command, port forwarding): a
``Program``, one module each, registered in agent/sessions/manager.py.

A program is started only once the session's data channel is up, so that a failure to start
(``Refused``: a missing run-as user, a refused port, ...) reaches the operator as the CLOSED
frame's reason.  ``supervise`` is the life of a program with a child process: its output
pumped to the channel, the peer's frames handed to it, and at the end (the child exited, the
peer ended the session, or a cancellation) the whole session of processes killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from agent.sessions import datachannel as dc
from agent.sessions.endpoint import Endpoint, SessionLost


class Refused(Exception):
    """The session cannot start here; the message (one line) is the CLOSED frame's reason."""


class Program(Protocol):
    async def run(self, endpoint: Endpoint) -> int | None:
        """Start, then serve the session: its exit status once the program ended, None once
        the peer ended the session.  Refused if nothing could be started; by return (or
        cancellation) nothing it started is left running."""


class Child(Protocol):
    """What ``supervise`` needs of the child (asyncio's Process has it)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


# Output pump: sends the program's output until its end; once ``exited`` is set (the child
# and the rest of its session are gone) it stops at the first lull instead of waiting.
Pump = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
Handler = Callable[[dc.Frame], Awaitable[None]]
Killer = Callable[[Child], Awaitable[None]]


def exit_status(returncode: int) -> int:
    """As a shell reports it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


async def supervise(
    endpoint: Endpoint, child: Child, pump: Pump, handle: Handler, kill: Killer
) -> int | None:
    """Run ``child``'s session to its end: its exit status, or None if the peer ended it."""
    exited = asyncio.Event()
    output = asyncio.create_task(pump(exited), name="session-output")
    inputs = asyncio.create_task(_inputs(endpoint, handle), name="session-input")
    waiter = asyncio.create_task(child.wait(), name="session-child")
    try:
        pending: set[asyncio.Task[None] | asyncio.Task[int]] = {output, inputs, waiter}
        while waiter in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if inputs in done:
                inputs.result()
                return None  # the peer ended the session (or the channel is gone)
            if output in done and _lost(output):
                return None
        await kill(child)  # what the program left behind (background jobs) goes with it
        exited.set()
        await output
        return exit_status(waiter.result())
    except SessionLost:
        return None
    finally:
        for task in (output, inputs, waiter):
            task.cancel()
        await kill(child)
        await asyncio.gather(output, inputs, waiter, return_exceptions=True)


def _lost(task: asyncio.Task[None]) -> bool:
    exc = task.exception()
    if exc is None:
        return False
    if isinstance(exc, SessionLost):
        return True
    raise exc


async def _inputs(endpoint: Endpoint, handle: Handler) -> None:
    """Hand the peer's frames over until it ends the session."""
    while True:
        frame = await endpoint.receive()
        if frame is None or frame.type in (dc.CLOSED, dc.TERMINATE):
            return
        await handle(frame)
