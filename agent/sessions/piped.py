"""A child with its output on a pipe, whose exit is known when it exits: asyncio's
``Process.wait`` waits for its pipes to close too, which a background job that inherited
them may hold open for ever."""

from __future__ import annotations

import asyncio
from typing import Any


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class PipedChild:
    def __init__(self, process: asyncio.subprocess.Process, exited: asyncio.Future[None]) -> None:
        self._process = process
        self._exited = exited
        self.stdout = process.stdout

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        """The exit status, as soon as the child has exited (its pipe may still be open)."""
        await asyncio.shield(self._exited)
        code = self._process.returncode
        assert code is not None
        return code


async def spawn(argv: list[str], **options: Any) -> PipedChild:
    """``argv`` with stdin /dev/null, stdout and stderr merged into one pipe; ``options`` as
    subprocess.Popen takes them."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        **options,
    )
    return PipedChild(asyncio.subprocess.Process(transport, protocol, loop), protocol.exited)
