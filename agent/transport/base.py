"""The transport seam: four methods and ``aclose`` (like httpx's transport interface).

``send`` answers per message (agent/wire.py, KEY_RESULTS): what the server stored (accepted,
or a duplicate of what it stored before), what it rejected and why; a message in neither is
kept and sent again.  ``max_request_bytes`` is the server's request limit as it last told it
(the control channel's hello, a long-poll answer), None until it has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent import wire
from agent.wire import Message

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.credentials import Credentials


@dataclass
class SendAnswer:
    acked: list[str] = field(default_factory=list)  # stored: accepted or duplicate
    rejected: dict[str, str] = field(default_factory=dict)  # id -> the server's reason

    @classmethod
    def parse(cls, answer: Any, sent: list[Message]) -> SendAnswer:
        """The server's answer to a batch.  Without ``results`` (an older server) only
        ``acked`` counts; an id that was not in the batch is ignored."""
        ids = {m["id"] for m in sent}
        data = answer if isinstance(answer, dict) else {}
        acked_raw = data.get(wire.KEY_ACKED)
        acked = [i for i in acked_raw if i in ids] if isinstance(acked_raw, list) else []
        rejected: dict[str, str] = {}
        results = data.get(wire.KEY_RESULTS)
        if isinstance(results, list):
            for item in results:
                if not isinstance(item, dict) or item.get("id") not in ids:
                    continue
                msg_id = str(item["id"])
                status = item.get("status")
                if status in (wire.RESULT_ACCEPTED, wire.RESULT_DUPLICATE):
                    if msg_id not in acked:
                        acked.append(msg_id)
                elif status == wire.RESULT_REJECTED and msg_id not in acked:
                    reason = item.get("reason")
                    text = reason if isinstance(reason, str) and reason else "rejected"
                    rejected[msg_id] = text[: wire.MAX_REASON_CHARS]
        return cls(acked, rejected)


def told_limit(value: Any) -> int | None:
    """A ``max_request_bytes`` the server told, if it is a usable one."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024:
        return value
    return None


def encode(data: Any) -> bytes:
    """JSON as the agent sends it: compact, every non-ASCII character escaped (so what is
    measured is what goes, and it is the largest form of the text either side writes)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class Transport(Protocol):
    @property
    def max_request_bytes(self) -> int | None: ...

    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        """Acknowledge received messages; wait up to ``wait`` s for new ones."""

    async def send(self, messages: list[Message]) -> SendAnswer:
        """Deliver agent messages; says per message what the server did with it."""

    async def upload_output(
        self, command_id: str, step_index: int, stream: str, path: Path
    ) -> tuple[int, str]:
        """Store a step's full output (the file, at most 16 MiB) in the server's blob store;
        returns (size, sha256 hex).  Idempotent: a retry replaces the same blob."""

    async def aclose(self) -> None: ...


class TransportFactory(Protocol):
    def __call__(self, config: AgentConfig, credentials: Credentials) -> Transport: ...
