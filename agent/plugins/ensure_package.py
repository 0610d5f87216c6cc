"""``corral:ensurePackage``: a package present (at a version, when one is given) or absent,
through the node's package manager (agent/patching: apt/dpkg today).  Idempotent: when the
package is already as declared nothing runs but one ``dpkg-query``, and the output says so.

Inputs: ``name`` (Debian's package name rules), ``version`` (optional; exact), ``state``
(``present`` | ``absent``).  A stop (cancel, timeout) is honoured before a change starts;
a running package manager command is bounded by the step's time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent import wire
from agent.plugins.base import PluginResult, StepContext, Stoppable

if TYPE_CHECKING:
    from agent.patching import PackageProvider

NAME = "corral:ensurePackage"
PLATFORMS = frozenset({"Linux"})
STATES = ("present", "absent")

ProviderFactory = Callable[[float], "PackageProvider"]  # seconds left -> provider


def _text(inputs: dict[str, Any], key: str, default: str = "") -> str:
    value = inputs.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value.strip()


class EnsurePackage(Stoppable):
    name = NAME

    def __init__(self, provider: ProviderFactory | None = None) -> None:
        super().__init__()
        self._provider = provider

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        from agent.patching import PackageError
        from agent.patching.base import check_name, check_version

        try:
            package = check_name(_text(inputs, "name"))
            version = _text(inputs, "version") or None
            state = _text(inputs, "state", "present") or "present"
            if state not in STATES:
                return PluginResult.failed(f"state must be present or absent, not {state!r}")
            if version is not None:
                check_version(version)
                if state == "absent":
                    return PluginResult.failed("version goes with state present only")
            provider = self._make(ctx)
            message = self._ensure(provider, package, version, state)
        except (ValueError, PackageError) as exc:
            return PluginResult.failed(str(exc))
        if message is None:
            assert self._stopped is not None
            return PluginResult(self._stopped.status, None, message=self._stopped.describe)
        ctx.stdout.note(message)
        return PluginResult(wire.ST_SUCCESS, 0)

    def _make(self, ctx: StepContext) -> PackageProvider:
        left = max(ctx.deadline - time.monotonic(), 1.0)
        if self._provider is not None:
            return self._provider(left)
        from agent.patching import package_provider

        return package_provider(timeout=left)

    def _ensure(
        self, provider: PackageProvider, package: str, version: str | None, state: str
    ) -> str | None:
        """What was done, in one line; None when stopped before changing anything."""
        now = provider.installed(package)
        if state == "absent":
            if now is None:
                return f"package {package} already absent; nothing to do"
            if self._stopped is not None:
                return None
            provider.remove(package)
            return f"removed package {package} {now}"
        if now is not None and (version is None or version == now):
            return f"package {package} {now} already present; nothing to do"
        if self._stopped is not None:
            return None
        provider.install(package, version)
        after = provider.installed(package) or "?"
        if now is None:
            return f"installed package {package} {after} ({provider.name})"
        return f"changed package {package} from {now} to {after} ({provider.name})"
