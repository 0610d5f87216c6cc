"""Session Manager on the server: starting a session (the node told over its channel), pairing
its two websockets in the relay, the session's life (Connecting, Connected, Disconnected,
Terminated, Failed), its limits (idle timeout, maximum duration, the grace for an end to come
back), its recording and its audit entry.  Authorization is the API's (api/sessions.py); this
module checks what is the session's own: whose it is, which node it is on."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import wire
from agent.sessions import datachannel as dc
from agent.sessions import recording
from control_plane.errors import Conflict, InvalidRequest, NodeUnavailable, NotFound
from control_plane.relay.pair import AGENT, CLIENT, Link, LinkClosed
from control_plane.services.audit import AuditEvent, AuditService
from control_plane.services.channel import AgentChannel
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.sessions import documents
from control_plane.services.sessions import recorder as rec
from control_plane.services.sessions.live import (
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    FAILED,
    TERMINATED,
    Live,
)
from control_plane.store import sessions as store
from control_plane.store.db import Database

log = logging.getLogger("corral.sessions")

RUN_AS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
MAX_REASON_CHARS = 256
MAX_TERMINAL = 1000


class SessionRefused(Exception):
    """An end may not attach; ``code`` is the websocket close code (wire.CLOSE_SESSION_*)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Preferences:
    """Session Manager's preferences (server config, ``session_*``), as SSM's
    SSM-SessionManagerRunShell document holds them; a session document's inputs override."""

    idle_timeout: float | None = 20 * 60.0
    max_duration: float | None = None
    run_as_default: str = "corral-user"
    recording: bool = True
    resume_grace: float = 30.0
    connect_timeout: float = 30.0
    max_live: int = 1000
    window: int = dc.DEFAULT_WINDOW


@dataclass(frozen=True)
class Plan:
    """What a start request resolves to, before it is authorized."""

    node: dict[str, Any]
    document: documents.Resolved
    run_as: str


class SessionService:
    def __init__(
        self,
        db: Database,
        channel: AgentChannel,
        audit: AuditService,
        blob_root: Path,
        clock: Clock,
        prefs: Preferences,
    ) -> None:
        self._db = db
        self._channel = channel
        self._audit = audit
        self._root = blob_root / "sessions"
        self._clock = clock
        self.prefs = prefs
        self.live: dict[str, Live] = {}
        self._finishing: set[str] = set()

    # Starting ----------------------------------------------------------------------------

    def plan(
        self,
        node: dict[str, Any],
        document: str,
        parameters: dict[str, Any],
        run_as: str | None,
    ) -> Plan:
        """Check a start request (the node's view from NodeService.get): the document and
        its parameters, the run-as user.  The API authorizes the plan, then ``start``s it."""
        resolved = documents.resolve(document, parameters, node.get("platform") or "Linux")
        user = run_as or resolved.run_as_default or self.prefs.run_as_default
        if not RUN_AS_RE.match(user):
            raise InvalidRequest(f"run_as: {user[:40]!r} is not a user name")
        return Plan(node, resolved, user)

    @staticmethod
    def new_id() -> str:
        return "s-" + secrets.token_hex(10)

    async def start(
        self,
        plan: Plan,
        *,
        session_id: str,
        owner_token_id: str,
        owner_name: str,
        reason: str | None,
        cols: int,
        rows: int,
    ) -> dict[str, Any]:
        status = plan.node["status"]
        if status != "Online":
            raise NodeUnavailable(
                f"node {plan.node['node_id']} is {status}: a session needs a connected node"
            )
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise InvalidRequest(f"reason: at most {MAX_REASON_CHARS} characters")
        for name, value in (("cols", cols), ("rows", rows)):
            if not 1 <= value <= MAX_TERMINAL:
                raise InvalidRequest(f"{name}: must be 1 to {MAX_TERMINAL}")
        if len(self.live) >= self.prefs.max_live:
            raise Conflict(f"{len(self.live)} sessions are open: the server's limit")
        now = self._clock()
        doc = plan.document
        recorded = self.prefs.recording and doc.session_type != wire.SESSION_TYPE_PORT
        row = {
            "session_id": session_id,
            "node_id": plan.node["node_id"],
            "owner_token_id": owner_token_id,
            "owner_name": owner_name,
            "document": doc.name,
            "session_type": doc.session_type,
            "parameters": doc.parameters,
            "run_as": plan.run_as,
            "reason": reason,
            "status": CONNECTING,
            "created_at": now,
            "recorded": recorded,
            "input_logged": recorded and doc.log_input,
            "cols": cols,
            "rows": rows,
        }
        body: wire.StartSessionBody = {
            "session_id": session_id,
            "session_type": doc.session_type,
            "command": doc.command,
            "run_as": plan.run_as,
            "port": doc.port,
            "host": doc.host,
            "cols": cols,
            "rows": rows,
            "expires_at": now + self.prefs.connect_timeout,
            "window": self.prefs.window,
        }
        directory = self._root / session_id
        live = Live(
            session_id=session_id,
            node_id=plan.node["node_id"],
            owner_token_id=owner_token_id,
            owner_name=owner_name,
            session_type=doc.session_type,
            run_as=plan.run_as,
            created_at=now,
            idle_timeout=doc.idle_timeout or self.prefs.idle_timeout,
            max_duration=doc.max_duration or self.prefs.max_duration,
            log_input=doc.log_input,
            recorder=rec.Recorder(directory, self._clock, now) if recorded else None,
            clock=self._clock,
        )
        async with self._db.transaction() as conn:
            await store.insert(conn, row)
        self.live[session_id] = live
        await self._channel.send(
            plan.node["node_id"], wire.make_message(wire.MSG_START_SESSION, dict(body))
        )
        log.info(
            "session started",
            extra={
                "session_id": session_id,
                "node_id": plan.node["node_id"],
                "document": doc.name,
                "run_as": plan.run_as,
                "token": owner_token_id,
            },
        )
        return _view(row) | {"stream_path": wire.ROUTE_SESSION_STREAM.format(session_id=session_id)}

    # The ends ----------------------------------------------------------------------------

    def check_end(
        self, session_id: str, side: str, *, token_id: str | None = None, node_id: str | None = None
    ) -> Live:
        """The live session an end may attach to, or SessionRefused (its close code)."""
        live = self.live.get(session_id) if wire.SESSION_ID_RE.match(session_id) else None
        if live is None or session_id in self._finishing:
            raise SessionRefused(wire.CLOSE_SESSION_UNKNOWN, f"no open session {session_id[:40]}")
        if side == CLIENT and token_id != live.owner_token_id:
            raise SessionRefused(
                wire.CLOSE_SESSION_FORBIDDEN,
                f"session {session_id} belongs to another token: only its owner may attach",
            )
        if side == AGENT and node_id != live.node_id:
            raise SessionRefused(
                wire.CLOSE_SESSION_FORBIDDEN, f"session {session_id} is not this node's"
            )
        return live

    async def serve(self, live: Live, side: str, link: Link) -> None:
        """Relay one end's websocket until it drops or the session ends."""
        await live.pair.attach(side, link)
        await self._changed(live)
        ended = await live.pair.relay(side, link)
        if ended is not None:
            await self.finish(live, TERMINATED, ended)
        elif not live.pair.closed:
            await self._changed(live)

    async def _changed(self, live: Live) -> None:
        """An end attached or left: the session's status follows."""
        now = self._clock()
        if live.pair.closed:
            return
        if live.both_attached():
            status = CONNECTED
            live.away_since = None
        elif live.connected_once:
            status = DISCONNECTED
            live.away_since = live.away_since or now
        else:
            status = CONNECTING
        if status == live.status:
            return
        values: dict[str, Any] = {"status": status}
        if status == CONNECTED and not live.connected_once:
            live.connected_once = True
            values["connected_at"] = now
        live.status = status
        async with self._db.transaction() as conn:
            await store.update(conn, live.session_id, **values)

    # Ending ------------------------------------------------------------------------------

    async def terminate(self, session_id: str, reason: str) -> dict[str, Any]:
        live = self.live.get(session_id)
        if live is not None:
            await self.finish(live, TERMINATED, reason)
        return await self.get(session_id)

    async def finish(self, live: Live, status: str, reason: str) -> None:
        """End the session once: both ends told, the node told if its end is away (its
        processes are killed), the recording flushed, the record and the audit entry."""
        if live.session_id in self._finishing:
            return
        self._finishing.add(live.session_id)
        try:
            agent_attached = live.pair.attached(AGENT)
            await live.pair.close(reason)
            if not agent_attached:
                body: wire.TerminateSessionBody = {
                    "session_id": live.session_id,
                    "reason": reason[:500],
                }
                await self._channel.send(
                    live.node_id, wire.make_message(wire.MSG_TERMINATE_SESSION, dict(body))
                )
            values: dict[str, Any] = {
                "status": status,
                "status_reason": reason[:500],
                "ended_at": self._clock(),
                "exit_status": live.exit_status,
            }
            if live.recorder is not None:
                await live.recorder.flush()
                values |= {
                    "recording_bytes": live.recorder.size,
                    "recording_sha256": live.recorder.sha256,
                    "recording_chunks": live.recorder.chunks,
                }
            async with self._db.transaction() as conn:
                await store.update(conn, live.session_id, **values)
                await self._audit.record(conn, self._end_event(live, values))
        finally:
            self.live.pop(live.session_id, None)
            self._finishing.discard(live.session_id)
        log.info(
            "session ended",
            extra={"session_id": live.session_id, "status": status, "reason": reason[:200]},
        )

    def _end_event(self, live: Live, values: dict[str, Any]) -> AuditEvent:
        return AuditEvent(
            action="sessions:End",
            resource=f"node/{live.node_id}",
            outcome="allowed" if values["status"] == TERMINATED else "error",
            identity_type="token",
            identity_id=live.owner_token_id,
            identity_name=live.owner_name,
            request={
                "session_id": live.session_id,
                "node_id": live.node_id,
                "run_as": live.run_as,
                "status": values["status"],
                "reason": values["status_reason"],
                "exit_status": live.exit_status,
                "duration_seconds": round(values["ended_at"] - live.created_at, 3),
                "recording_sha256": values.get("recording_sha256"),
                "recording_bytes": values.get("recording_bytes"),
            },
        )

    async def sweep(self) -> None:
        """The limits, by the server's clock: a session whose ends did not both come, that
        was idle or open too long, or whose end left and did not come back, ends; recordings
        waiting too long are flushed."""
        now = self._clock()
        prefs = self.prefs
        for live in list(self.live.values()):
            why: str | None = None
            status = TERMINATED
            if live.status == CONNECTING and now - live.created_at >= prefs.connect_timeout:
                status = FAILED
                missing = (
                    "the node did not open its side"
                    if not live.pair.attached(AGENT)
                    else ("no client attached")
                )
                why = f"{missing} within {prefs.connect_timeout:g} s"
            elif live.max_reached(now):
                why = f"the session reached its maximum duration ({_minutes(live.max_duration)})"
            elif live.idle(now):
                why = f"the session was idle for {_minutes(live.idle_timeout)}"
            elif live.away_since is not None and now - live.away_since >= prefs.resume_grace:
                gone = "the node" if not live.pair.attached(AGENT) else "the client"
                why = f"{gone} did not come back within {prefs.resume_grace:g} s"
            if why is not None:
                await self.finish(live, status, why)
            elif live.recorder is not None and live.recorder.due():
                await live.recorder.flush_soon()

    async def run(self) -> None:
        """Sweep every second until cancelled."""
        while True:
            await asyncio.sleep(1.0)
            await self.sweep()

    async def end_orphans(self) -> None:
        """Sessions a previous run of the server left open end (their relay is gone); called
        by the server's start, before any background work (never cancelled half-way)."""
        async with self._db.transaction() as conn:
            for session_id in await store.active_ids(conn):
                if session_id in self.live:
                    continue
                await store.update(
                    conn,
                    session_id,
                    status=TERMINATED,
                    status_reason="the server restarted",
                    ended_at=self._clock(),
                )

    async def close_all(self, reason: str) -> None:
        for live in list(self.live.values()):
            await self.finish(live, TERMINATED, reason)

    # Reading -----------------------------------------------------------------------------

    async def row(self, session_id: str) -> dict[str, Any]:
        if not wire.SESSION_ID_RE.match(session_id):
            raise NotFound(f"no session {session_id[:40]!r}")
        async with self._db.read() as conn:
            row = await store.get(conn, session_id)
        if row is None:
            raise NotFound(f"no session {session_id}")
        return row

    async def get(self, session_id: str) -> dict[str, Any]:
        return _view(await self.row(session_id))

    async def page(
        self, *, active: bool, node_id: str | None, after: tuple[float, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            return await store.page(conn, active=active, node_id=node_id, after=after, limit=limit)

    async def recording(self, row: dict[str, Any]) -> bytes:
        """What is recorded so far (all of it once the session ended)."""
        if not row["recorded"]:
            raise NotFound(f"session {row['session_id']} was not recorded")
        live = self.live.get(row["session_id"])
        if live is not None and live.recorder is not None:
            await live.recorder.flush()
        return await asyncio.to_thread(rec.read_all, self._root / row["session_id"])

    def asciicast(self, row: dict[str, Any], data: bytes) -> str:
        lines = recording.asciicast(
            recording.events(data),
            width=row["cols"],
            height=row["rows"],
            timestamp=int(row["created_at"]),
            title=f"{row['session_id']} on {row['node_id']} as {row['run_as']}",
        )
        return "\n".join(lines) + "\n"


def view(row: dict[str, Any]) -> dict[str, Any]:
    return _view(row)


def _view(row: dict[str, Any]) -> dict[str, Any]:
    ended = row.get("ended_at")
    recording_view = None
    if row["recorded"]:
        recording_view = {
            "bytes": row.get("recording_bytes"),
            "sha256": row.get("recording_sha256"),
            "input_logged": bool(row["input_logged"]),
        }
    return {
        "session_id": row["session_id"],
        "node_id": row["node_id"],
        "owner": {"token_id": row["owner_token_id"], "name": row["owner_name"]},
        "document": row["document"],
        "session_type": row["session_type"],
        "parameters": row["parameters"],
        "run_as": row["run_as"],
        "reason": row.get("reason"),
        "status": row["status"],
        "status_reason": row.get("status_reason"),
        "started_at": rfc3339(row["created_at"]),
        "connected_at": rfc3339(row.get("connected_at")),
        "ended_at": rfc3339(ended),
        "duration_seconds": None if ended is None else round(ended - row["created_at"], 3),
        "exit_status": row.get("exit_status"),
        "recording": recording_view,
    }


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "no limit"
    minutes = seconds / 60.0
    return f"{minutes:g} minute{'s' if minutes != 1 else ''}"


__all__ = ["LinkClosed", "Preferences", "SessionRefused", "SessionService", "view"]
