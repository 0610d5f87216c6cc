"""/v1/sessions: Session Manager (docs/sessions.md).

Starting a session is ``sessions:Start`` on the node (its tags in conditions, the run-as user
as ``sessions:run_as``) and on the session document (``document/<name>``).  The operator's
client then opens the session's websocket (``/v1/sessions/{id}/stream``, the same token: only
the session's owner may attach, and the token must still be allowed to start it); the agent
opens its own (``/v1/agent/sessions/{id}/stream``, its node token).  A session's owner may
always see and end its own session; anyone else needs ``sessions:Get`` / ``sessions:Terminate``
on the node.  Recordings carry the node's output: ``sessions:GetRecording`` on the node, for
everyone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.websockets import WebSocketDisconnect

from agent import wire
from control_plane.api.authz import Caller, allow, socket_caller
from control_plane.api.deps import CP, node_channel
from control_plane.api.errors import error_response
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.errors import CorralError, RateLimited
from control_plane.relay.pair import AGENT, CLIENT, LinkClosed
from control_plane.security.node_tokens import NodeClaims
from control_plane.services import audit_context
from control_plane.services.hub import ControlPlane
from control_plane.services.paging import scan
from control_plane.services.sessions.documents import DEFAULT_DOCUMENT
from control_plane.services.sessions.service import SessionRefused, view

router = APIRouter(tags=["sessions"])

ParamValue = StrictStr | list[StrictStr]


class StartSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: StrictStr = Field(min_length=1, max_length=32)
    document: StrictStr = Field(DEFAULT_DOCUMENT, min_length=1, max_length=128)
    parameters: dict[StrictStr, ParamValue] = Field(default_factory=dict, max_length=50)
    reason: StrictStr | None = Field(None, max_length=256)
    run_as: StrictStr | None = Field(None, min_length=1, max_length=32)
    cols: StrictInt = Field(80, ge=1, le=1000)
    rows: StrictInt = Field(24, ge=1, le=1000)


@router.post("/v1/sessions", status_code=201)
async def start(
    request: StartSession,
    cp: CP,
    caller: Annotated[Caller, allow("sessions:Start", per_item=True)],
) -> dict[str, Any]:
    """StartSession: the node is told to open its end; the answer names the stream."""
    service = cp.sessions
    node = await cp.nodes.get(request.node_id)
    plan = service.plan(node, request.document, dict(request.parameters), request.run_as)
    await caller.require(
        "sessions:Start",
        f"node/{request.node_id}",
        node["tags"],
        context={"sessions:run_as": plan.run_as},
    )
    await caller.require("sessions:Start", f"document/{plan.document.name}")
    session_id = service.new_id()
    audit_context.name_resource(
        f"node/{request.node_id}",
        session_id=session_id,
        document=plan.document.name,
        run_as=plan.run_as,
    )
    return await service.start(
        plan,
        session_id=session_id,
        owner_token_id=caller.operator.token_id,
        owner_name=caller.operator.name,
        reason=request.reason,
        cols=request.cols,
        rows=request.rows,
    )


@router.get("/v1/sessions")
async def list_sessions(
    cp: CP,
    caller: Annotated[Caller, allow("sessions:List", per_item=True)],
    state: Literal["Active", "History"] = "Active",
    node_id: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """DescribeSessions: the caller's own sessions and those on nodes it may list, newest
    first."""
    tags: dict[str, dict[str, str]] = {}

    async def fetch(after: Any, n: int) -> list[dict[str, Any]]:
        rows = await cp.sessions.page(
            active=state == "Active", node_id=node_id, after=after, limit=n
        )
        for row in rows:
            if row["node_id"] not in tags:
                tags[row["node_id"]] = await cp.nodes.tags_of(row["node_id"])
        return rows

    def visible(row: dict[str, Any]) -> bool:
        return _owner(caller, row) or caller.allowed(
            "sessions:List", f"node/{row['node_id']}", tags.get(row["node_id"]) or {}
        )

    page = await scan(
        fetch,
        key=lambda r: (float(r["created_at"]), str(r["session_id"])),
        limit=limit,
        next_token=next_token,
        shape=(float, str),
        visible=visible,
    )
    page.items[:] = [view(r) for r in page.items]
    return body("sessions", page)


@router.get("/v1/sessions/{session_id}")
async def show(
    session_id: str, cp: CP, caller: Annotated[Caller, allow("sessions:Get", per_item=True)]
) -> dict[str, Any]:
    row = await cp.sessions.row(session_id)
    await _require_unless_owner(cp, caller, "sessions:Get", row)
    return view(row)


@router.post("/v1/sessions/{session_id}/terminate")
async def terminate(
    session_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("sessions:Terminate", per_item=True)],
) -> dict[str, Any]:
    """TerminateSession: both ends are told, the node kills the session's processes."""
    row = await cp.sessions.row(session_id)
    await _require_unless_owner(cp, caller, "sessions:Terminate", row)
    audit_context.name_resource(f"node/{row['node_id']}", session_id=session_id)
    who = f"{caller.operator.name} ({caller.operator.token_id})"
    return await cp.sessions.terminate(session_id, f"terminated by {who}")


@router.get("/v1/sessions/{session_id}/recording")
async def get_recording(
    session_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("sessions:GetRecording", per_item=True, audit=True)],
    format: Literal["raw", "asciicast"] = "raw",
) -> Response:
    """The session's recording so far: Corral's form (exact bytes) or asciicast v2."""
    row = await cp.sessions.row(session_id)
    tags = await cp.nodes.tags_of(row["node_id"])
    await caller.require("sessions:GetRecording", f"node/{row['node_id']}", tags)
    audit_context.name_resource(f"node/{row['node_id']}", session_id=session_id)
    data = await cp.sessions.recording(row)
    if format == "asciicast":
        return Response(cp.sessions.asciicast(row, data), media_type="application/x-asciicast")
    return Response(data, media_type="application/octet-stream")


def _owner(caller: Caller, row: dict[str, Any]) -> bool:
    return bool(row["owner_token_id"] == caller.operator.token_id)


async def _require_unless_owner(
    cp: ControlPlane, caller: Caller, action: str, row: dict[str, Any]
) -> None:
    if _owner(caller, row):
        return
    tags = await cp.nodes.tags_of(row["node_id"])
    await caller.require(action, f"node/{row['node_id']}", tags)


# The two ends' websockets ---------------------------------------------------------------------


class _Link:
    """A Starlette websocket as the relay's Link."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise LinkClosed(str(exc)) from None

    async def receive(self) -> bytes | None:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:
            raise LinkClosed("text on a session's data channel")
        return bytes(data)

    async def close(self, code: int, reason: str) -> None:
        try:
            await self._ws.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise LinkClosed(str(exc)) from None


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    await websocket.send_denial_response(error_response(status, code, message))


async def _refused(websocket: WebSocket, exc: SessionRefused) -> None:
    status = 404 if exc.code == wire.CLOSE_SESSION_UNKNOWN else 403
    await _deny(websocket, status, "not_found" if status == 404 else "forbidden", exc.message)


async def _refuse(websocket: WebSocket, exc: CorralError) -> None:
    refusal = error_response(exc.status, exc.code, exc.message)
    if isinstance(exc, RateLimited):
        refusal.headers["retry-after"] = str(exc.retry_after)
    await websocket.send_denial_response(refusal)


@router.websocket(wire.ROUTE_SESSION_STREAM)
async def client_stream(
    websocket: WebSocket,
    session_id: str,
    caller: Annotated[Caller | CorralError, Depends(socket_caller)],
) -> None:
    """The operator's end: its token must own the session and still be allowed to start
    it on the node."""
    cp: ControlPlane = websocket.app.state.control_plane
    try:
        if isinstance(caller, CorralError):
            raise caller
        live = cp.sessions.check_end(session_id, CLIENT, token_id=caller.operator.token_id)
        tags = await cp.nodes.tags_of(live.node_id)
        await caller.require(
            "sessions:Start",
            f"node/{live.node_id}",
            tags,
            context={"sessions:run_as": live.run_as or ""},
        )
    except SessionRefused as exc:
        await _refused(websocket, exc)
        return
    except CorralError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    await cp.sessions.serve(live, CLIENT, _Link(websocket))


@router.websocket(wire.ROUTE_AGENT_SESSION)
async def agent_stream(
    websocket: WebSocket,
    session_id: str,
    claims: Annotated[NodeClaims | str | CorralError, Depends(node_channel)],
) -> None:
    """The node's end: its access token (Bearer), for a session on this node."""
    cp: ControlPlane = websocket.app.state.control_plane
    if isinstance(claims, CorralError):
        await _refuse(websocket, claims)
        return
    if isinstance(claims, str):
        await _deny(websocket, 401, wire.ERR_UNAUTHORIZED, "a session's stream needs a token")
        return
    try:
        live = cp.sessions.check_end(session_id, AGENT, node_id=claims.node_id)
    except SessionRefused as exc:
        await _refused(websocket, exc)
        return
    await websocket.accept()
    await cp.sessions.serve(live, AGENT, _Link(websocket))
