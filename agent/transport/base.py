"""The transport seam: four methods and ``aclose`` (like httpx's transport interface)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent.wire import Message

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.credentials import Credentials


class Transport(Protocol):
    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        """Acknowledge received messages; wait up to ``wait`` s for new ones."""

    async def send(self, messages: list[Message]) -> list[str]:
        """Deliver agent messages; returns the ids the server has stored."""

    async def upload_output(
        self, command_id: str, step_index: int, stream: str, path: Path
    ) -> tuple[int, str]:
        """Store a step's full output (the file, at most 16 MiB) in the server's blob store;
        returns (size, sha256 hex).  Idempotent: a retry replaces the same blob."""

    async def aclose(self) -> None: ...


class TransportFactory(Protocol):
    def __call__(self, config: AgentConfig, credentials: Credentials) -> Transport: ...
