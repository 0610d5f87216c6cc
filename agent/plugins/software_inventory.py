"""``aws:softwareInventory``: gather this node's inventory and queue what changed.

Inputs are AWS-GatherSoftwareInventory's (agent/inventory/gather.py).  Each enabled type's
collector runs (agent/inventory/registry.py chooses it for this platform); the custom
inventory folder is read; each type's content is hashed and only the types whose hash
differs from the one last queued are queued in the outbox, in parts, followed by a small
summary (agent/inventory/upload.py).  The step's output is a table of what was found and
sent; a type whose source failed, or a bad custom file, is reported there and in the summary
and costs only itself.  Bad inputs fail the step with one line and gather nothing.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from agent import __version__, wire
from agent.errors import AgentError
from agent.inventory.base import CollectContext, FileSpec
from agent.inventory.gather import Gathered, GatherInputError, gather, plan
from agent.plugins.base import PluginResult, StepContext, Stoppable
from agent.tools import run_tool

NAME = "aws:softwareInventory"
PLATFORMS = frozenset({"Linux", "MacOS", "Windows"})


class SoftwareInventory(Stoppable):
    name = NAME

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        try:
            step = plan(inputs)
            specs = _file_specs(step.files)
            if step.registry:
                from agent.inventory.windows_registry import parse_specs as registry_specs

                registry_specs(step.registry)
        except (GatherInputError, ValueError) as exc:
            return PluginResult.failed(str(exc))
        settings = ctx.inventory
        collect = CollectContext(
            platform=ctx.platform,
            run=run_tool,
            node_id=ctx.node_id,
            agent_version=__version__,
            files=specs,
            file_roots=settings.file_roots if settings is not None else (),
            custom_dir=settings.custom_dir if settings is not None else None,
            registry=tuple(step.registry),
            deadline=ctx.deadline,
        )
        from agent.inventory.custom import collect_custom

        found = gather(
            step, collect, stopped=lambda: self._stopped is not None, custom=collect_custom
        )
        if self._stopped is not None:
            return PluginResult(self._stopped.status, message=self._stopped.describe)
        for warning in collect.warnings:
            ctx.stderr.write(f"warning: {warning}\n".encode())
        for error in found.errors:
            ctx.stderr.write(f"error: {error['source']}: {error['reason']}\n".encode())
        if settings is None:
            _report(ctx, found, None)
            ctx.stdout.write(b"not uploaded: no agent state here (run-document)\n")
            return PluginResult("Success", 0)
        from agent.inventory import upload
        from agent.outbox import Outbox

        try:
            outbox = Outbox(settings.outbox_file)
        except AgentError as exc:
            return PluginResult.failed(f"cannot open the outbox: {exc}")
        try:
            queued = upload.queue(
                outbox,
                found.types,
                custom_complete=found.custom_complete,
                errors=list(found.errors)
                + [wire.InventoryError(source="warning", reason=w) for w in collect.warnings],
                now=time.time(),
            )
        except sqlite3.Error as exc:  # a full or read-only disk: nothing was queued
            return PluginResult.failed(f"cannot queue the upload in the outbox: {exc}")
        finally:
            outbox.close()
        _report(ctx, found, queued)
        return PluginResult("Success", 0)


def _file_specs(raw: list[dict[str, Any]]) -> tuple[FileSpec, ...]:
    if not raw:
        return ()
    from agent.inventory.file import parse_specs

    return parse_specs(raw)


def _report(ctx: StepContext, found: Gathered, queued: Any) -> None:
    """The step's output: one line per type."""
    uploads = {u.type_name: u for u in queued.types} if queued is not None else {}
    lines = [f"{'TYPE':<34} {'ITEMS':>7}  {'CPU':>6}  UPLOAD"]
    for name in sorted(found.types):
        cpu = found.cpu_seconds.get(name)
        cpu_text = f"{cpu:.2f}s" if cpu is not None else "-"
        u = uploads.get(name)
        if u is None:
            sent = "-"
        elif u.changed:
            sent = f"changed: {u.parts} part(s), {u.bytes:,} bytes"
        else:
            sent = "unchanged"
        lines.append(f"{name:<34} {len(found.types[name]):>7}  {cpu_text:>6}  {sent}")
    if queued is not None:
        lines.append(f"queued {queued.messages} message(s), {queued.bytes:,} bytes")
    ctx.stdout.write(("\n".join(lines) + "\n").encode())
