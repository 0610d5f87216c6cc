"""What a document worker is told by the agent that starts it (from agent.toml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import AgentConfig


@dataclass(frozen=True)
class WorkerSettings:
    platform: str  # Linux | MacOS | Windows (agent.facts.platform_type)
    reboots_enabled: bool = True
    kill_grace_seconds: float = 5.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerSettings:
        return cls(
            platform=str(data["platform"]),
            reboots_enabled=bool(data.get("reboots_enabled", True)),
            kill_grace_seconds=float(data.get("kill_grace_seconds", 5.0)),
        )


def worker_settings(config: AgentConfig) -> WorkerSettings:
    from agent.facts import platform_type

    return WorkerSettings(platform_type(), config.reboots_enabled, config.kill_grace_seconds)
