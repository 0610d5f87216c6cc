"""What the two script actions share: the script file, the environment, and SSM's exit codes.

The environment of every script (shell or PowerShell, on every platform) is made here, in
``step_env``: the worker's own, then these, then the document's ENV_VAR parameters
(``SSM_<name>``):

| variable | value | as SSM Agent |
|---|---|---|
| ``AWS_SSM_INSTANCE_ID``, ``CORRAL_NODE_ID`` | the node's id (``mi-...``) | yes / Corral's |
| ``CORRAL_COMMAND_ID`` | the command's id (SSM Agent has no such variable) | Corral's |
| ``AWS_SSM_PLATFORM_NAME``, ``AWS_SSM_PLATFORM_VERSION`` | the OS, as the heartbeat says it | yes |

``AWS_SSM_REGION_NAME`` is not set: a Corral server has no AWS region, and a made-up one
would send a script's ``aws --region "$AWS_SSM_REGION_NAME"`` to the wrong place; a script
that needs a region must be given one.  ``corral-agent run-document`` (no server) sets no
node id.

| exit code | meaning |
|---|---|
| 0 | Success |
| 168 | Success, and the remaining steps are skipped |
| 169 | Failed, and the remaining steps are skipped |
| 194 (Linux, macOS), 3010 (Windows) | reboot the node, then run this step again |
| anything else | Failed |
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent import wire
from agent.plugins.base import Control, PluginResult, StepContext, StopReason
from agent.plugins.process import ProcessRunner

EXIT_SUCCESS_AND_STOP = 168
EXIT_FAILURE_AND_STOP = 169
REBOOT_CODES = {"Linux": 194, "MacOS": 194, "Windows": 3010}


def reboot_code(platform: str) -> int:
    return REBOOT_CODES.get(platform, 194)


def script_text(inputs: dict[str, Any]) -> str:
    commands = inputs.get("runCommand", [])
    if isinstance(commands, str):
        return commands
    if isinstance(commands, list):
        return "\n".join(str(c) for c in commands)
    raise ValueError("runCommand must be a list of strings or a string")


def working_dir(inputs: dict[str, Any], ctx: StepContext) -> Path:
    """``workingDirectory`` if given (it must exist), else the step's own directory."""
    given = inputs.get("workingDirectory")
    if given in (None, ""):
        return ctx.work_dir
    path = Path(str(given))
    if not path.is_dir():
        raise ValueError(f"workingDirectory {given} does not exist or is not a directory")
    return path


@functools.cache
def _platform() -> tuple[str, str]:
    from agent.facts import platform_name_version

    try:
        return platform_name_version()
    except (OSError, ValueError):  # an unreadable os-release: the variables are left out
        return "", ""


def step_env(env: Mapping[str, str], ctx: StepContext) -> dict[str, str]:
    """The worker's environment, then the node's and the command's ids (as SSM Agent's
    variables and Corral's), then the document's ENV_VAR parameters (``SSM_<name>``)."""
    merged = dict(os.environ)
    merged["CORRAL_COMMAND_ID"] = ctx.command_id
    if ctx.node_id:
        merged["AWS_SSM_INSTANCE_ID"] = merged["CORRAL_NODE_ID"] = ctx.node_id
    name, version = _platform()
    if name:
        merged["AWS_SSM_PLATFORM_NAME"] = name
    if version:
        merged["AWS_SSM_PLATFORM_VERSION"] = version
    merged.update(env)
    return merged


def result_for(code: int, stopped: StopReason | None, platform: str) -> PluginResult:
    if stopped is not None:
        return PluginResult(stopped.status, code, message=stopped.describe)
    if code == 0:
        return PluginResult(wire.ST_SUCCESS, 0)
    if code == EXIT_SUCCESS_AND_STOP:
        return PluginResult(wire.ST_SUCCESS, code, Control.EXIT_SUCCESS)
    if code == EXIT_FAILURE_AND_STOP:
        return PluginResult(wire.ST_FAILED, code, Control.EXIT_FAILURE)
    if code == reboot_code(platform):
        return PluginResult(wire.ST_SUCCESS, code, Control.REBOOT)
    return PluginResult.failed(f"failed to run commands: exit status {code}", code)


class ScriptRunner:
    """Write the script, run it in its own process group, map its exit code."""

    def __init__(self) -> None:
        self._runner = ProcessRunner()

    def request_stop(self, reason: StopReason) -> None:
        self._runner.request_stop(reason)

    def run(
        self,
        ctx: StepContext,
        inputs: dict[str, Any],
        env: Mapping[str, str],
        script_name: str,
        argv_for: list[str],
        encoding: str = "utf-8",
    ) -> PluginResult:
        """``argv_for`` is the interpreter's argv; the script's path is appended."""
        try:
            text = script_text(inputs)
            cwd = working_dir(inputs, ctx)
        except ValueError as exc:
            return PluginResult.failed(str(exc))
        script = ctx.work_dir / script_name
        script.write_text(text + "\n", encoding=encoding)
        script.chmod(0o700)
        try:
            code = self._runner.run([*argv_for, str(script)], ctx, step_env(env, ctx), cwd)
        except OSError as exc:
            return PluginResult.failed(f"cannot start {argv_for[0]}: {exc.strerror or exc}")
        finally:
            # The text may carry interpolated values (a {{ssm:...}} one among them): it is not
            # kept in the state directory once it has run.
            script.unlink(missing_ok=True)
        return result_for(code, self._runner.stopped, ctx.platform)
