"""The node's sessions: ``start`` (a start_session message), ``terminate`` (a
terminate_session message), both returning at once, and ``run``, which owns the sessions'
tasks for the daemon's lifetime and, when cancelled (the agent stopping), ends every session
and kills its processes within ``config.shutdown_budget_seconds``.

Each kind of session is a Program (agent/sessions/program.py), registered in PROGRAMS.  A
start_session that arrives after its ``expires_at`` (the node was away) is ignored, and so is
one for a session already running here; one that cannot be served (sessions disabled, too
many at once, a bad body) still dials the relay, to tell the operator why (CLOSED).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from agent import wire
from agent.config import AgentConfig
from agent.sessions import datachannel as dc
from agent.sessions import dial
from agent.sessions.command import CommandProgram
from agent.sessions.endpoint import ConnectionGone, Dial
from agent.sessions.port import PortForward
from agent.sessions.program import Program, Refused
from agent.sessions.session import PEER_WAIT_SECONDS, Session
from agent.sessions.shell import TerminalProgram

log = logging.getLogger("corral.sessions")

ProgramFactory = Callable[[Mapping[str, Any]], Program]
PROGRAMS: Final[dict[str, ProgramFactory]] = {
    wire.SESSION_TYPE_SHELL: TerminalProgram.shell,
    wire.SESSION_TYPE_INTERACTIVE: TerminalProgram.interactive,
    wire.SESSION_TYPE_NON_INTERACTIVE: CommandProgram,
    wire.SESSION_TYPE_PORT: PortForward,
}
DISABLED: Final = "sessions are disabled on this node (agent.toml sessions_enabled)"
GRACE_SECONDS: Final = 30.0
STOPPING: Final = "the agent is stopping"


class SessionManager:
    def __init__(
        self,
        config: AgentConfig,
        dial_for: Callable[[str], Dial],
        *,
        clock: Callable[[], float] = time.time,
        grace: float = GRACE_SECONDS,
        peer_wait: float = PEER_WAIT_SECONDS,
        describe_close: Callable[[Exception], ConnectionGone] | None = None,
        programs: Mapping[str, ProgramFactory] = PROGRAMS,
    ) -> None:
        self.config = config
        self._dial_for = dial_for
        self._clock = clock
        self._grace = grace
        self._peer_wait = peer_wait
        self._describe = describe_close or dial.describe_close
        self._programs = programs
        self.sessions: dict[str, Session] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        """Sessions running a program (a refused one only tells the operator why)."""
        return sum(1 for s in self.sessions.values() if s.program is not None)

    def start(self, body: Mapping[str, Any]) -> Session | None:
        """Open the session's side in a task of its own; the Session, or None if ignored."""
        session_id = body.get("session_id")
        if not isinstance(session_id, str) or not wire.SESSION_ID_RE.match(session_id):
            log.warning("ignoring a start_session without a valid session id")
            return None
        extra = {"session_id": session_id, "session_type": str(body.get("session_type"))[:64]}
        expires = body.get("expires_at")
        if not isinstance(expires, int | float) or self._clock() > expires:
            log.info("ignoring an expired start_session", extra=extra)
            return None
        if session_id in self.sessions:
            log.info("ignoring a start_session for a session running here", extra=extra)
            return None
        program, refusal = self._program(body)
        window = body.get("window")
        session = Session(
            session_id,
            self._dial_for(session_id),
            program,
            refusal=refusal,
            window=window if isinstance(window, int) and window > 0 else dc.DEFAULT_WINDOW,
            grace=self._grace,
            peer_wait=self._peer_wait,
            describe_close=self._describe,
        )
        task = asyncio.create_task(session.run(), name=f"session-{session_id}")
        self.sessions[session_id] = session
        self._tasks[session_id] = task
        task.add_done_callback(functools.partial(self._finished, session_id))
        log.info(
            "session starting",
            extra={**extra, "run_as": str(body.get("run_as")), "refusal": refusal},
        )
        return session

    def _program(self, body: Mapping[str, Any]) -> tuple[Program | None, str | None]:
        if not self.config.sessions_enabled:
            return None, DISABLED
        kind = body.get("session_type")
        factory = self._programs.get(kind) if isinstance(kind, str) else None
        if factory is None:
            return None, f"unknown session type {kind!r}"
        if self.running >= self.config.max_sessions:
            limit = self.config.max_sessions
            return None, f"this node runs {limit} sessions already (agent.toml max_sessions)"
        try:
            return factory(body), None
        except Refused as exc:
            return None, str(exc)

    def terminate(self, body: Mapping[str, Any]) -> None:
        """End a session here (its processes killed); unknown ones are already over."""
        session = self.sessions.get(str(body.get("session_id")))
        reason = body.get("reason")
        if session is None:
            log.info("terminate_session for no session running here")
            return
        session.stop(reason if isinstance(reason, str) and reason else "terminated")

    async def run(self) -> None:
        """Hold the sessions until cancelled; then end them all."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop_all(STOPPING)

    async def stop_all(self, reason: str) -> None:
        """Stop every session; those not over within the shutdown budget are cancelled
        (their processes are killed all the same)."""
        tasks = list(self._tasks.values())
        for session in list(self.sessions.values()):
            session.stop(reason)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.config.shutdown_budget_seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, session_id: str, task: asyncio.Task[None]) -> None:
        self.sessions.pop(session_id, None)
        self._tasks.pop(session_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "session task failed", extra={"session_id": session_id}, exc_info=task.exception()
            )
