"""What a document worker is told by the agent that starts it (from agent.toml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.plugins.base import InventorySettings, PatchSettings

if TYPE_CHECKING:
    from agent.config import AgentConfig


@dataclass(frozen=True)
class WorkerSettings:
    platform: str  # Linux | MacOS | Windows (agent.facts.platform_type)
    reboots_enabled: bool = True
    kill_grace_seconds: float = 5.0
    state_dir: str = ""  # the agent's state dir ("": none, e.g. a test's worker)
    inventory_file_roots: tuple[str, ...] = ()
    patch_root: str = "/"  # the tree whose packages Patch Manager patches

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def inventory(self) -> InventorySettings | None:
        if not self.state_dir:
            return None
        return InventorySettings(Path(self.state_dir), self.inventory_file_roots)

    def patching(self, delivery: Any, reboots_allowed: bool) -> PatchSettings:
        """Patch Manager's settings for one command (``delivery``: its body's ``patch``)."""
        return PatchSettings(
            Path(self.state_dir) if self.state_dir else None,
            self.patch_root,
            reboots_allowed,
            delivery if isinstance(delivery, dict) else None,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerSettings:
        return cls(
            platform=str(data["platform"]),
            reboots_enabled=bool(data.get("reboots_enabled", True)),
            kill_grace_seconds=float(data.get("kill_grace_seconds", 5.0)),
            state_dir=str(data.get("state_dir", "")),
            inventory_file_roots=tuple(str(r) for r in data.get("inventory_file_roots", ())),
            patch_root=str(data.get("patch_root") or "/"),
        )


def worker_settings(config: AgentConfig) -> WorkerSettings:
    from agent.facts import platform_type

    return WorkerSettings(
        platform_type(),
        config.reboots_enabled,
        config.kill_grace_seconds,
        str(config.state_dir),
        config.inventory_file_roots,
        config.patch_root,
    )
