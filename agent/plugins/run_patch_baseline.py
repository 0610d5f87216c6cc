"""``corral:runPatchBaseline``: AWS-RunPatchBaseline's action (agent/patching/operation.py).

Inputs are the document's parameters: ``Operation`` (Scan | Install), ``RebootOption``
(RebootIfNeeded | NoReboot), ``SnapshotId``, ``InstallOverrideList``, ``BaselineOverride``.
The baseline is the one the server delivered with the command for this node's operating
system (its patch group's, else the OS default, as they were when the command was sent), or
BaselineOverride's entry for this OS, or, with neither (corral-agent run-document), the
predefined default.  The operation's result (AWS:PatchSummary and one Corral:Patch item per
patch) is queued in the outbox as an inventory upload (only what changed is sent); the step
output lists the non-compliant patches.  Bad inputs fail the step with one line and change
nothing; a package manager's failure fails the step with its message after the states
(FAILED) are queued.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from agent import wire
from agent.errors import AgentError
from agent.plugins.base import Control, PatchSettings, PluginResult, StepContext, Stoppable

if TYPE_CHECKING:
    from agent.patching.baseline import Baseline
    from agent.patching.operation import Outcome, Request
    from agent.patching.platform import NodeOS

NAME = "corral:runPatchBaseline"
PLATFORMS = frozenset({"Linux", "MacOS", "Windows"})
OPERATIONS = ("Scan", "Install")
REBOOT_OPTIONS = ("RebootIfNeeded", "NoReboot")
REBOOT_MARKER = "patch-reboot.json"  # in the command's work dir: this step rebooted once
REBOOT_CODE = 194


class PatchInputError(ValueError):
    pass


def _text(inputs: dict[str, Any], key: str, default: str = "") -> str:
    value = inputs.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise PatchInputError(f"{key} must be a string")
    return value.strip()


def node_os(platform: str, root: str) -> NodeOS:
    from agent.patching.platform import NodeOS, detect_linux

    if platform == "Windows":
        return NodeOS("WINDOWS", "")
    if platform == "MacOS":
        return NodeOS("MACOS", "")
    found = detect_linux(root)
    if found is None:
        raise PatchInputError(
            f"this Linux distribution ({root.rstrip('/')}/etc/os-release) has no patch "
            "baseline operating system in Corral (docs/patching.md lists them)"
        )
    return found


def choose_baseline(
    os_name: str, delivery: dict[str, Any] | None, override: str, *, daemon: bool
) -> tuple[Baseline, str, str]:
    """(the baseline, its patch group, the snapshot id) for this node's OS: what the server
    delivered (its snapshot already holds a BaselineOverride, and a shared SnapshotId takes
    precedence over one, as SSM's); with no delivery, BaselineOverride, else (corral-agent
    run-document only) the predefined default."""
    from agent.patching import defaults
    from agent.patching.baseline import BaselineError, parse

    group = str((delivery or {}).get("patch_group") or "")
    snapshot = str((delivery or {}).get("snapshot_id") or "")
    delivered = (delivery or {}).get("baselines")
    if isinstance(delivered, dict):
        if not isinstance(delivered.get(os_name), dict):
            raise PatchInputError(
                f"the command carries no baseline for {os_name} (the server sent baselines "
                f"for {', '.join(sorted(delivered)) or 'no operating system'}): send it again"
            )
        try:
            return parse(delivered[os_name]), group, snapshot
        except BaselineError as exc:
            raise PatchInputError(f"the delivered baseline for {os_name}: {exc}") from None
    if override:
        try:
            raw = json.loads(override)
        except ValueError:
            raise PatchInputError("BaselineOverride is not JSON (a list of baselines)") from None
        entries = raw if isinstance(raw, list) else [raw]
        try:
            baselines = [parse(e, default_name="BaselineOverride") for e in entries]
        except BaselineError as exc:
            raise PatchInputError(f"BaselineOverride: {exc}") from None
        for b in baselines:
            if b.operating_system == os_name:
                return b, group, snapshot
        raise PatchInputError(f"BaselineOverride has no baseline for {os_name}")
    if daemon:
        raise PatchInputError(
            "no baseline came with this run: the server resolves the node's baseline when it "
            "sends the command (a State Manager run the agent started while the server was "
            "out of reach has none); nothing was scanned or installed"
        )
    found = defaults.predefined(os_name)
    if found is None:
        raise PatchInputError(f"no patch baseline for {os_name}")
    return found, group, snapshot


class RunPatchBaseline(Stoppable):
    name = NAME

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        from agent.patching import PackageError
        from agent.patching.operation import PendingReboots, Request, run
        from agent.patching.overrides import OverrideError, load
        from agent.patching.registry import patch_provider

        settings = ctx.patching or PatchSettings(None, "/", False, None)
        marker = ctx.work_dir / REBOOT_MARKER
        try:
            operation = _text(inputs, "Operation")
            if operation not in OPERATIONS:
                raise PatchInputError(f"Operation must be Scan or Install, not {operation!r}")
            reboot = _text(inputs, "RebootOption", "RebootIfNeeded") or "RebootIfNeeded"
            if reboot not in REBOOT_OPTIONS:
                raise PatchInputError(
                    f"RebootOption must be RebootIfNeeded or NoReboot, not {reboot!r}"
                )
            override_text = _text(inputs, "InstallOverrideList")
            baseline_override = _text(inputs, "BaselineOverride")
            if override_text and baseline_override:
                raise PatchInputError(
                    "InstallOverrideList and BaselineOverride cannot be used together (as SSM)"
                )
            install_override = load(override_text) if operation == "Install" else None
            here = node_os(ctx.platform, settings.root)
            baseline, group, snapshot = choose_baseline(
                here.operating_system,
                settings.delivery,
                baseline_override,
                daemon=ctx.patching is not None,
            )
            snapshot = _text(inputs, "SnapshotId") or snapshot
            left = max(ctx.deadline - time.monotonic(), 1.0)
            provider = patch_provider(here.operating_system, settings.root, timeout=left)
            import psutil

            pending = PendingReboots(settings.pending_file, psutil.boot_time())
            request = Request(
                operation=operation,
                reboot_option=reboot,
                baseline=baseline,
                patch_group=group,
                snapshot_id=snapshot,
                install_override=install_override,
                install_override_text=override_text if override_text.startswith("/") else "",
                command_id=ctx.command_id,
                reboots_allowed=settings.reboots_allowed and ctx.depth == 1,
                rebooted_for_this=marker.exists(),
            )
            outcome = run(
                provider,
                request,
                pending,
                product_hint=here.product,
                stopped=lambda: self._stopped is not None,
            )
        except (PatchInputError, OverrideError, PackageError) as exc:
            return PluginResult.failed(str(exc))
        _report(ctx, request, outcome, provider.name)
        queued = _queue(settings, outcome)
        if queued:
            ctx.stderr.write(f"error: {queued}\n".encode())
        if self._stopped is not None:
            return PluginResult(self._stopped.status, message=self._stopped.describe)
        if outcome.reboot:
            marker.write_text(json.dumps({"requested_at": time.time()}), encoding="utf-8")
            ctx.stdout.note("rebooting the node to finish the install (RebootIfNeeded)")
            return PluginResult(wire.ST_SUCCESS, REBOOT_CODE, control=Control.REBOOT)
        if outcome.error:
            return PluginResult.failed(outcome.error)
        if queued:
            return PluginResult.failed(queued)
        return PluginResult(wire.ST_SUCCESS, 0)


def _queue(settings: PatchSettings, outcome: Outcome) -> str:
    """Queue the report as an inventory upload; "" or why it could not be."""
    outbox_file = settings.outbox_file
    if outbox_file is None:
        return ""
    from agent.inventory import schema, upload
    from agent.outbox import Outbox
    from agent.patching.states import patch_item

    os_name = outcome.summary.get("OperatingSystem", "")
    items = [patch_item(s, os_name) for s in outcome.states]
    try:
        outbox = Outbox(outbox_file)
    except AgentError as exc:
        return f"cannot open the outbox: {exc}"
    try:
        upload.queue(
            outbox,
            {schema.PATCH_SUMMARY: [outcome.summary], schema.PATCH: items},
            custom_complete=False,
            errors=[],
            partial=True,
        )
    except sqlite3.Error as exc:
        return f"cannot queue the patch report in the outbox: {exc}"
    finally:
        outbox.close()
    return ""


def _report(ctx: StepContext, request: Request, outcome: Outcome, manager: str) -> None:
    from agent.patching import states

    s = outcome.summary
    lines = [
        f"Patch baseline {s.get('BaselineId', '')} ({request.baseline.operating_system}, "
        f"{outcome.scan.product or '?'}) via {manager}; operation {request.operation}",
        f"compliance: {s['ComplianceStatus']} (severity {s['ComplianceSeverity']})",
        "counts: "
        + ", ".join(
            f"{label} {s[key]}"
            for label, key in (
                ("installed", "InstalledCount"),
                ("installed other", "InstalledOtherCount"),
                ("pending reboot", "InstalledPendingRebootCount"),
                ("rejected", "InstalledRejectedCount"),
                ("missing", "MissingCount"),
                ("failed", "FailedCount"),
            )
        ),
    ]
    if outcome.installed:
        lines.append(
            "installed: " + ", ".join(f"{p.key} {p.version}" for p in outcome.installed[:50])
        )
    bad = [st for st in outcome.states if states.non_compliant(st, request.baseline)]
    for st in bad[:200]:
        version = st.update.version if st.update else ""
        lines.append(f"  {st.state:<26} {st.key} {version}".rstrip())
    for note in outcome.notes[:20]:
        lines.append(f"note: {note}")
    ctx.stdout.write(("\n".join(lines) + "\n").encode())
