"""A session while it lives on this server: its relay pair, its recording, its clocks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agent.sessions import datachannel as dc
from agent.sessions import recording
from control_plane.relay.pair import AGENT, CLIENT, Pair
from control_plane.services.clock import Clock
from control_plane.services.sessions.recorder import Recorder

CONNECTING = "Connecting"
CONNECTED = "Connected"
DISCONNECTED = "Disconnected"
TERMINATED = "Terminated"
FAILED = "Failed"


@dataclass
class Live:
    session_id: str
    node_id: str
    owner_token_id: str
    owner_name: str
    session_type: str
    run_as: str | None
    created_at: float
    idle_timeout: float | None
    max_duration: float | None
    log_input: bool
    recorder: Recorder | None
    clock: Clock
    pair: Pair = field(init=False)
    status: str = CONNECTING
    last_activity: float = 0.0
    away_since: float | None = None  # an end left (Disconnected) at this time
    exit_status: int | None = None
    connected_once: bool = False
    _recorded: dict[str, int] = field(default_factory=lambda: {AGENT: 0, CLIENT: 0})

    def __post_init__(self) -> None:
        self.pair = Pair(self.session_id, self.watch)
        self.last_activity = self.created_at

    async def watch(self, side: str, frame: dc.Frame) -> str | None:
        """Each frame on its way through: activity, recording, the program's exit."""
        if frame.type in (dc.DATA, dc.RESIZE, dc.OPEN, dc.CLOSE):
            self.last_activity = self.clock()
        if frame.seq and frame.seq <= self._recorded[side]:
            return None  # resent after a reconnect: recorded already
        if frame.seq:
            self._recorded[side] = frame.seq
        if self.recorder is not None and frame.stream == 0:
            kind = None
            data = frame.payload
            if frame.type == dc.DATA:
                kind = recording.OUTPUT if side == AGENT else recording.INPUT
                if kind == recording.INPUT and not self.log_input:
                    kind = None
            elif frame.type == dc.RESIZE:
                size = _json(frame.payload)
                kind = recording.RESIZE
                data = f"{size.get('cols', 0)}x{size.get('rows', 0)}".encode()
            if kind is not None:
                self.recorder.add(kind, data)
                await self.recorder.flush_soon()
        if frame.type == dc.EXIT and side == AGENT:
            status = _json(frame.payload).get("status")
            if isinstance(status, int) and not isinstance(status, bool):
                self.exit_status = status
        if frame.type == dc.CLOSED:
            reason = _json(frame.payload).get("reason")
            who = "the node" if side == AGENT else "the client"
            return f"{who} ended the session" + (f": {str(reason)[:300]}" if reason else "")
        return None

    def both_attached(self) -> bool:
        return self.pair.attached(AGENT) and self.pair.attached(CLIENT)

    @property
    def recorded(self) -> bool:
        return self.recorder is not None

    def max_reached(self, now: float) -> bool:
        return self.max_duration is not None and now - self.created_at >= self.max_duration

    def idle(self, now: float) -> bool:
        return self.idle_timeout is not None and now - self.last_activity >= self.idle_timeout


def _json(payload: bytes) -> dict[str, object]:
    try:
        value = json.loads(payload or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
