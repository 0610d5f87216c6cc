"""``aws:runShellScript``: the lines of ``runCommand`` as one POSIX ``sh`` script."""

from __future__ import annotations

from typing import Any

from agent.plugins._script import ScriptRunner
from agent.plugins.base import PluginResult, StepContext, StopReason

NAME = "aws:runShellScript"
PLATFORMS = frozenset({"Linux", "MacOS"})


class RunShellScript:
    name = NAME

    def __init__(self) -> None:
        self._script = ScriptRunner()

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        return self._script.run(ctx, inputs, env, "_script.sh", ["sh"])

    def request_stop(self, reason: StopReason) -> None:
        self._script.request_stop(reason)
