"""``corral:updateAgent`` (Corral-UpdateAgent, as SSM's AWS-UpdateSSMAgent): upgrade this
agent to ``version`` from the server's signed packages, with the node's package manager,
restart it, and roll back when the new one does not come up.  The flow is agent/updates/.

Inputs: ``version`` (required; ``latest``: the newest the server has for this node's package
format and architecture), ``allowDowngrade`` and ``allowNoRollback`` ("true"/"false").
It runs only under an agent (it needs the agent's state dir: registration, CA, key).  The
worker running it outlives the agent's restart (it runs in a session of its own, and the
unit's ``KillMode=process`` spares it); the restarted agent re-attaches and reports.

Everything the flow needs is imported before the package is installed: after that, the
files on disk are the new version's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import wire
from agent.plugins.base import PluginResult, StepContext, Stoppable, StopReason

if TYPE_CHECKING:
    from agent.updates.flow import Done, Request

NAME = "corral:updateAgent"
PLATFORMS = frozenset({"Linux"})


def _flag(inputs: dict[str, Any], key: str) -> bool:
    value = inputs.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false", ""):
        return text == "true"
    raise ValueError(f"{key} must be true or false, not {str(value)[:40]!r}")


def default_package_file() -> Path:
    """Where a packaged agent's PACKAGE file is: beside its vendored runtime."""
    return Path(sys.prefix).parent / "PACKAGE"


class UpdateAgent(Stoppable):
    name = NAME

    def __init__(self, package_file: Path | None = None) -> None:
        super().__init__()
        self._package_file = package_file or default_package_file()

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        from agent.errors import AgentError
        from agent.updates.base import REQUESTED_RE, Stopped, UpdateError

        version = str(inputs.get("version", ""))
        if not REQUESTED_RE.match(version):
            return PluginResult.failed(f"invalid version {version[:64]!r}: e.g. 0.2.0, or latest")
        try:
            request = _request(version, inputs)
        except ValueError as exc:
            return PluginResult.failed(str(exc))
        if ctx.inventory is None:
            return PluginResult.failed(f"{NAME} runs only under the agent (it needs its state)")
        try:
            done = self._upgrade(ctx, ctx.inventory.state_dir, request)
        except Stopped as exc:
            reason = self._stopped or StopReason.CANCEL
            return PluginResult(reason.status, None, message=f"{reason.describe}; {exc.message}")
        except UpdateError as exc:
            return PluginResult.failed(exc.message)
        except AgentError as exc:  # the registration or config cannot be read
            return PluginResult.failed(exc.message)
        except OSError as exc:  # the state dir cannot be written (a full disk)
            return PluginResult.failed(f"cannot upgrade the agent: {exc}")
        if not done.success:
            return PluginResult.failed(done.message)
        ctx.stdout.note(done.message)
        return PluginResult(wire.ST_SUCCESS, 0)

    def _upgrade(self, ctx: StepContext, state_dir: Path, request: Request) -> Done:
        _preload()
        from agent.config import load_config
        from agent.tools import run_tool
        from agent.updates import installer
        from agent.updates.base import read_installed
        from agent.updates.flow import Upgrade
        from agent.updates.restart import choose
        from agent.updates.server import ServerFetcher
        from agent.updates.watch import Watcher

        config = load_config(state_dir)
        upgrade = Upgrade(
            installed=read_installed(self._package_file),
            fetcher=ServerFetcher(config, ctx.stdout.note),
            installer=installer,
            restarter=lambda: choose(state_dir),
            watcher=Watcher(state_dir),
            run_tool=run_tool,
            say=ctx.stdout.note,
            stopped=lambda: self._stopped is not None,
            start_timeout=config.update_start_timeout_seconds,
        )
        return upgrade.run(request)


def _request(version: str, inputs: dict[str, Any]) -> Request:
    from agent.updates.flow import Request

    return Request(version, _flag(inputs, "allowDowngrade"), _flag(inputs, "allowNoRollback"))


# What the upgrade imports after the package is installed, imported before it.
PRELOAD = (
    "httpx",
    "nacl.signing",
    "agent.credentials",
    "agent.http",
    "agent.service_managers.systemd",
    "agent.updates.deb",
    "agent.updates.rpm",
    "agent.updates.apk",
    "agent.updates.pacman",
    "agent.updates.download",
    "agent.updates.flow",
    "agent.updates.manifest",
    "agent.updates.restart",
    "agent.updates.server",
    "agent.updates.watch",
)


def _preload() -> None:
    """Import now what the upgrade uses later: the package about to be installed replaces
    these files, and a module first imported after that would be the new version's."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
