"""One AWS-RunPatchBaseline operation on this node: scan, or install what the baseline
approves, then every patch's state (agent/patching/states.py).

Scan changes nothing (the package manager's metadata cache aside).  Install installs the
approved updates that are missing (or exactly InstallOverrideList's, when given), in one
transaction of the package manager, never anything a BLOCK baseline rejects; a failure of
the package manager marks every patch it was to install FAILED with its message, and the
operation reports the failure (nothing retried).  After an install the node is scanned again,
so what is reported is what is there.

Reboots (AWS's rule): with RebootIfNeeded, an Install that installed something, or found
patches still waiting for a reboot, reboots the node once (the plugin asks the agent's reboot
path); with NoReboot they stay INSTALLED_PENDING_REBOOT until the node next boots
(:class:`PendingReboots` remembers them across operations, by boot time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.patching import names, states
from agent.patching.base import PackageError, PatchProvider
from agent.patching.baseline import Baseline
from agent.patching.model import Package, Scan, Source
from agent.patching.overrides import OverrideEntry, matches_override
from agent.patching.rules import evaluate

SCAN = "Scan"
INSTALL = "Install"
REBOOT_IF_NEEDED = "RebootIfNeeded"
NO_REBOOT = "NoReboot"


@dataclass(frozen=True)
class Request:
    operation: str  # Scan | Install
    reboot_option: str  # RebootIfNeeded | NoReboot
    baseline: Baseline
    patch_group: str = ""
    snapshot_id: str = ""
    install_override: tuple[OverrideEntry, ...] | None = None
    install_override_text: str = ""  # as given, for the summary
    command_id: str = ""
    reboots_allowed: bool = True
    rebooted_for_this: bool = False  # this step already rebooted the node once


@dataclass
class Outcome:
    scan: Scan
    states: list[states.PatchState]
    summary: dict[str, str]
    installed: list[Package] = field(default_factory=list)
    error: str = ""  # the package manager's failure: the step fails with it
    reboot: bool = False  # the node must reboot now (then the step runs again)
    notes: list[str] = field(default_factory=list)


class PendingReboots:
    """Patches installed since the node last booted, kept in ``path`` (JSON) with the boot
    time they were installed under: a different boot time means the node rebooted."""

    def __init__(self, path: Path | None, boot_time: float) -> None:
        self._path = path
        self._boot = boot_time
        self.keys: set[str] = set()
        self.last_no_reboot_install: float | None = None
        data = self._read()
        if data and abs(float(data.get("boot_time", 0)) - boot_time) < 2:
            self.keys = {str(k) for k in data.get("keys", [])}
            last = data.get("last_no_reboot_install")
            self.last_no_reboot_install = float(last) if isinstance(last, int | float) else None

    def _read(self) -> dict[str, Any] | None:
        if self._path is None:
            return None
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "boot_time": self._boot,
                    "keys": sorted(self.keys),
                    "last_no_reboot_install": self.last_no_reboot_install,
                }
            ),
            encoding="utf-8",
        )
        tmp.replace(self._path)


def sources_for(baseline: Baseline, product: str) -> tuple[Source, ...]:
    """The baseline's Sources whose Products name this node's product."""
    import fnmatch

    return tuple(
        Source(s.name, s.products, s.configuration)
        for s in baseline.sources
        if any(fnmatch.fnmatchcase(product.lower(), p.lower()) for p in s.products)
    )


def to_install(request: Request, scan: Scan, now: float) -> list[Package]:
    """The updates an Install installs: approved and missing (or InstallOverrideList's),
    never one the baseline rejects."""
    os_name = request.baseline.operating_system
    chosen: list[Package] = []
    for update in scan.updates:
        if names.matches(os_name, request.baseline.rejected, update) is not None:
            continue
        if request.install_override is not None:
            if matches_override(request.install_override, update):
                chosen.append(update)
        elif evaluate(request.baseline, update, scan.product, now).approved:
            chosen.append(update)
    return chosen


def run(
    provider: PatchProvider,
    request: Request,
    pending: PendingReboots,
    *,
    product_hint: str = "",
    clock: Callable[[], float] = time.time,
    stopped: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Carry out ``request``; PackageError from a scan propagates (nothing to report)."""
    started = clock()
    # Sources are chosen by the product the node's os-release names (Sources are for Linux,
    # where the hint is always known): one scan, with them.
    sources = sources_for(request.baseline, product_hint)
    scan = provider.scan(sources)
    product = scan.product = scan.product or product_hint
    if request.rebooted_for_this:  # the agent rebooted the node for this step, and it is back
        pending.keys.clear()
    installed: list[Package] = []
    failed: dict[str, str] = {}
    error = ""
    notes = list(scan.notes)
    reboot = False
    if request.operation == INSTALL and not stopped():
        wanted = to_install(request, scan, clock())
        blocked = _blocked(request.baseline)
        if wanted:
            try:
                done = provider.install(wanted, blocked=blocked, sources=sources)
            except PackageError as exc:
                error = str(exc)
                failed = {u.key: error for u in wanted}
            else:
                installed = done.installed
                failed = dict(done.failed)
                notes += done.notes
                if failed:
                    error = f"{len(failed)} patch(es) failed to install: " + "; ".join(
                        f"{k}: {v}" for k, v in sorted(failed.items())[:5]
                    )
            scan = provider.scan(sources)
            scan.product = scan.product or product
        keys = {p.key for p in installed}
        if keys:
            pending.keys |= keys
        if (keys or pending.keys) and request.reboot_option == REBOOT_IF_NEEDED:
            if request.reboots_allowed and not request.rebooted_for_this:
                reboot = True
            elif not request.reboots_allowed:
                notes.append("reboots are disabled on this node: patches wait for a reboot")
        if keys and request.reboot_option == NO_REBOOT:
            pending.last_no_reboot_install = clock()
        pending.save()
    ctx = states.Context(
        installed_now=frozenset(p.key for p in installed),
        failed=failed,
        pending_reboot=frozenset(pending.keys),
        operation=request.operation,
    )
    found = states.assess(request.baseline, scan, clock(), ctx)
    ended = clock()
    summary = states.summary_item(
        found,
        request.baseline,
        fields={
            "PatchGroup": request.patch_group,
            "BaselineId": request.baseline.baseline_id or request.baseline.name,
            "SnapshotId": request.snapshot_id,
            "OperationType": request.operation,
            "OperationStartTime": states.iso(started),
            "OperationEndTime": states.iso(ended),
            "RebootOption": request.reboot_option,
            "LastNoRebootInstallOperationTime": states.iso(pending.last_no_reboot_install),
            "InstallOverrideList": request.install_override_text[:256],
            "OperatingSystem": request.baseline.operating_system,
            "Product": scan.product,
            "PackageManager": provider.name,
            "CommandId": request.command_id,
            "Message": error[:500],
        },
    )
    return Outcome(scan, found, summary, installed, error, reboot, notes)


def _blocked(baseline: Baseline) -> Sequence[str]:
    if baseline.rejected_action != "BLOCK":
        return ()
    return baseline.rejected
