"""``corral:ensureService``: a service enabled (or not) at boot and running (or stopped),
through the node's service manager (agent/service_managers: systemd today).  Idempotent:
what is already as declared is left alone, and the output says so.

Inputs: ``name`` (systemd: a unit name, ``.service`` added when it has no unit type), ``enabled``
(``true`` | ``false`` | empty: leave as is), ``state`` (``running`` | ``stopped`` | empty:
leave as is); at least one of the two.  Enabling is applied first, then the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent import wire
from agent.plugins.base import PluginResult, StepContext, Stoppable

if TYPE_CHECKING:
    from agent.service_managers import ServiceManager

NAME = "corral:ensureService"
PLATFORMS = frozenset({"Linux"})
STATES = ("running", "stopped")

ManagerFactory = Callable[[float], "ServiceManager"]  # seconds left -> manager


def _enabled(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"enabled must be true, false or empty, not {str(value)[:40]!r}")


class EnsureService(Stoppable):
    name = NAME

    def __init__(self, manager: ManagerFactory | None = None) -> None:
        super().__init__()
        self._manager = manager

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        from agent.service_managers import ServiceError
        from agent.service_managers.base import check_service_name

        try:
            raw = inputs.get("name")
            if not isinstance(raw, str):
                raise ValueError("name is required: the service's unit name")
            name = check_service_name(raw.strip())
            enabled = _enabled(inputs.get("enabled"))
            state = str(inputs.get("state") or "").strip()
            if state and state not in STATES:
                raise ValueError(f"state must be running, stopped or empty, not {state[:40]!r}")
            if enabled is None and not state:
                raise ValueError("nothing to ensure: give enabled, state or both")
            manager = self._make(ctx)
            done = self._ensure(manager, name, enabled, state, ctx)
        except (ValueError, ServiceError) as exc:
            return PluginResult.failed(str(exc))
        if done is None:
            assert self._stopped is not None
            return PluginResult(self._stopped.status, None, message=self._stopped.describe)
        ctx.stdout.note(done)
        return PluginResult(wire.ST_SUCCESS, 0)

    def _make(self, ctx: StepContext) -> ServiceManager:
        left = max(ctx.deadline - time.monotonic(), 1.0)
        if self._manager is not None:
            return self._manager(left)
        from agent.service_managers import service_manager

        return service_manager(timeout=left)

    def _ensure(
        self,
        manager: ServiceManager,
        name: str,
        enabled: bool | None,
        state: str,
        ctx: StepContext,
    ) -> str | None:
        """The closing line; each change is written as it is made.  None: stopped."""
        changed: list[str] = []
        kept: list[str] = []
        if enabled is not None:
            word = "enabled" if enabled else "disabled"
            if manager.enabled(name) == enabled:
                kept.append(word)
            else:
                if self._stopped is not None:
                    return None
                manager.set_enabled(name, enabled)
                changed.append(word)
                ctx.stdout.note(f"{word} {name}")
        if state:
            want = state == "running"
            if manager.running(name) == want:
                kept.append(state)
            else:
                if self._stopped is not None:
                    return None
                (manager.start if want else manager.stop)(name)
                changed.append("started" if want else "stopped")
                ctx.stdout.note(f"{changed[-1]} {name}")
        if not changed:
            return f"service {name} already {', '.join(kept)}; nothing to do"
        return f"service {name}: {', '.join(changed)}" + (
            f" (already {', '.join(kept)})" if kept else ""
        )
