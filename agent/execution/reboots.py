"""A script's reboot (exit 194 / 3010): what the agent is told about rebooting, whether the
reboot a pending attempt asked for was carried out, and running the reboot command (its
output kept in the command's ``reboot.log``).  The executor reports the step InProgress
first (agent/execution/executor.py)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from agent.execution.journal import CommandDir


@dataclass(frozen=True)
class RebootSettings:
    enabled: bool
    command: tuple[str, ...]
    report_budget_seconds: float = 8.0  # how long to wait for the InProgress report to leave


def rebooted(cmd: CommandDir) -> bool:
    """Whether the reboot asked for by the pending attempt was already carried out (or
    must not be: the command was cancelled meanwhile)."""
    resume = cmd.read("resume.json") or {}
    progress = cmd.read("progress.json") or {}
    return progress.get("rebooted_for", 0) >= resume.get("attempt", 0) or cmd.exists("cancel.json")


async def run_reboot_command(settings: RebootSettings, cmd: CommandDir) -> str | None:
    env = dict(os.environ, CORRAL_AGENT_PID=str(os.getpid()), CORRAL_COMMAND_ID=cmd.command_id)
    log_path = cmd.file("reboot.log")
    try:
        with log_path.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *settings.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
            )
    except OSError as exc:
        return f"cannot run the reboot command {settings.command[0]}: {exc.strerror or exc}"
    code = await proc.wait()
    if code == 0:
        return None
    tail = log_path.read_bytes()[-500:].decode("utf-8", "replace").strip()
    return f"the reboot command exited with {code}" + (f": {tail}" if tail else "")
