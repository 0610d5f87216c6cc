"""``aws:runPowerShellScript``: the lines of ``runCommand`` as one ``.ps1`` file, run by
PowerShell 7 (``pwsh``) where it is installed, else Windows PowerShell on Windows.  On Linux
and macOS without ``pwsh`` the step fails and says so."""

from __future__ import annotations

import shutil
from typing import Any

from agent.plugins._script import ScriptRunner, step_env
from agent.plugins.base import PluginResult, StepContext, StopReason

NAME = "aws:runPowerShellScript"
PLATFORMS = frozenset({"Linux", "MacOS", "Windows"})
ARGS = ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]


def find_powershell(path: str | None, platform: str) -> str | None:
    found = shutil.which("pwsh", path=path)
    if found is None and platform == "Windows":
        found = shutil.which("powershell.exe", path=path)
    return found


class RunPowerShellScript:
    name = NAME

    def __init__(self) -> None:
        self._script = ScriptRunner()

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        exe = find_powershell(step_env(env, ctx).get("PATH"), ctx.platform)
        if exe is None:
            return PluginResult.failed(
                "pwsh not found: aws:runPowerShellScript needs PowerShell 7 (pwsh) on the PATH"
            )
        # A BOM lets Windows PowerShell 5.1 read UTF-8; pwsh accepts it too.
        return self._script.run(ctx, inputs, env, "_script.ps1", [exe, *ARGS], "utf-8-sig")

    def request_stop(self, reason: StopReason) -> None:
        self._script.request_stop(reason)
