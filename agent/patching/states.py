"""Each patch's state on the node after an operation (SSM's PatchComplianceDataState), the
node's compliance, and the two inventory types that carry them to the server
(``Corral:Patch``, one item per patch, and ``AWS:PatchSummary``).

States, as AWS defines them:

- INSTALLED: installed, and its installed version is approved by the baseline.
- INSTALLED_OTHER: installed, not approved (or rejected with ALLOW_AS_DEPENDENCY).
- INSTALLED_PENDING_REBOOT: installed by an Install operation; the node has not rebooted since.
- INSTALLED_REJECTED: installed though rejected, with RejectedPatchesAction BLOCK.
- MISSING: an approved update is available but not installed (Scan).
- FAILED: an approved update could not be installed (Install).
- AVAILABLE_SECURITY_UPDATE: a security update not approved (yet), where the baseline sets
  AvailableSecurityUpdatesComplianceStatus.
- NOT_APPLICABLE: an ApprovedPatches KB that is neither installed nor offered (Windows).

NON_COMPLIANT: any INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED, MISSING, FAILED (and
AVAILABLE_SECURITY_UPDATE when the baseline says NON_COMPLIANT); the node's severity is the
highest ComplianceLevel among those.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Final

from agent.patching.baseline import COMPLIANCE_LEVELS, Baseline
from agent.patching.model import Package, Scan
from agent.patching.rules import Decision, evaluate, is_security

INSTALLED: Final = "INSTALLED"
INSTALLED_OTHER: Final = "INSTALLED_OTHER"
INSTALLED_PENDING_REBOOT: Final = "INSTALLED_PENDING_REBOOT"
INSTALLED_REJECTED: Final = "INSTALLED_REJECTED"
MISSING: Final = "MISSING"
FAILED: Final = "FAILED"
NOT_APPLICABLE: Final = "NOT_APPLICABLE"
AVAILABLE_SECURITY_UPDATE: Final = "AVAILABLE_SECURITY_UPDATE"
STATES: Final = (
    INSTALLED,
    INSTALLED_OTHER,
    INSTALLED_PENDING_REBOOT,
    INSTALLED_REJECTED,
    MISSING,
    FAILED,
    NOT_APPLICABLE,
    AVAILABLE_SECURITY_UPDATE,
)
NON_COMPLIANT_STATES: Final = frozenset(
    {INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED, MISSING, FAILED}
)


@dataclass(frozen=True)
class PatchState:
    key: str
    state: str
    installed: Package | None  # the installed version (None: not installed)
    update: Package | None  # the available update it is about (None: none)
    decision: Decision
    reason: str = ""  # FAILED: the package manager's words

    @property
    def package(self) -> Package:
        """What the state is about: the update for MISSING and FAILED, else the installed
        package (an update it has, not approved, is in ``update``)."""
        if self.state in (MISSING, FAILED, AVAILABLE_SECURITY_UPDATE) or self.installed is None:
            found = self.update or self.installed
        else:
            found = self.installed
        assert found is not None
        return found


@dataclass(frozen=True)
class Context:
    """What an operation knows beyond the scan."""

    installed_now: frozenset[str] = frozenset()  # keys this Install changed
    failed: dict[str, str] | None = None  # keys this Install could not install -> reason
    pending_reboot: frozenset[str] = frozenset()  # keys installed, no reboot since
    operation: str = "Scan"


def assess(baseline: Baseline, scan: Scan, now: float, ctx: Context) -> list[PatchState]:
    """Every patch's state: one per installed package, one per approved KB not present."""
    os_name = baseline.operating_system
    updates = {u.key: u for u in scan.updates}
    failed = ctx.failed or {}
    blocking = baseline.rejected_action == "BLOCK"
    out: list[PatchState] = []
    seen: set[str] = set()
    for pkg in scan.installed:
        key = pkg.key
        seen.add(key)
        update = updates.get(key)
        out.append(_one(baseline, scan.product, now, ctx, pkg, update, failed, blocking))
    for key, update in updates.items():  # offered, not installed (Windows KBs, new packages)
        if key in seen:
            continue
        decision = evaluate(baseline, update, scan.product, now)
        if key in failed and decision.approved:
            out.append(PatchState(key, FAILED, None, update, decision, failed[key]))
        elif decision.approved and update.kb:
            out.append(PatchState(key, MISSING, None, update, decision))
        elif update.kb and is_security(update, os_name) and baseline.available_security_status:
            out.append(PatchState(key, AVAILABLE_SECURITY_UPDATE, None, update, decision))
    if baseline.operating_system == "WINDOWS":
        present = {p.kb.lower() for p in [*scan.installed, *scan.updates] if p.kb}
        for entry in baseline.approved:
            if "*" not in entry and entry.upper().startswith("KB") and entry.lower() not in present:
                ghost = Package(name=entry.upper(), kb=entry.upper())
                decision = Decision("EXPLICIT_APPROVED", "ApprovedPatches",
                                    baseline.approved_compliance_level)  # fmt: skip
                out.append(PatchState(ghost.key, NOT_APPLICABLE, None, ghost, decision))
    return out


def _one(
    baseline: Baseline,
    product: str,
    now: float,
    ctx: Context,
    pkg: Package,
    update: Package | None,
    failed: dict[str, str],
    blocking: bool,
) -> PatchState:
    key = pkg.key
    mine = evaluate(baseline, pkg, product, now)
    if mine.status == "EXPLICIT_REJECTED":
        state = INSTALLED_REJECTED if blocking else INSTALLED_OTHER
        return PatchState(key, state, pkg, update, mine)
    if update is not None:
        decision = evaluate(baseline, update, product, now)
        if decision.approved:
            if key in failed:
                return PatchState(key, FAILED, pkg, update, decision, failed[key])
            return PatchState(key, MISSING, pkg, update, decision)
        if is_security(update, baseline.operating_system) and baseline.available_security_status:
            return PatchState(key, AVAILABLE_SECURITY_UPDATE, pkg, update, decision)
    if key in ctx.installed_now or key in ctx.pending_reboot:
        state = INSTALLED_PENDING_REBOOT if key in ctx.pending_reboot else INSTALLED
        return PatchState(key, state, pkg, update, mine)
    # An update the baseline does not approve stays beside it (effective patches use it).
    return PatchState(key, INSTALLED if mine.approved else INSTALLED_OTHER, pkg, update, mine)


def non_compliant(state: PatchState, baseline: Baseline) -> bool:
    if state.state == AVAILABLE_SECURITY_UPDATE:
        return baseline.available_security_status == "NON_COMPLIANT"
    return state.state in NON_COMPLIANT_STATES


def compliance(states: list[PatchState], baseline: Baseline) -> tuple[str, str]:
    """(COMPLIANT | NON_COMPLIANT, the highest severity among the non-compliant patches)."""
    bad = [s for s in states if non_compliant(s, baseline)]
    if not bad:
        return "COMPLIANT", "UNSPECIFIED"
    levels = {s.decision.compliance_level for s in bad}
    worst = next((lvl for lvl in COMPLIANCE_LEVELS if lvl in levels), "UNSPECIFIED")
    return "NON_COMPLIANT", worst


def counts(states: list[PatchState]) -> Counter[str]:
    return Counter(s.state for s in states)


def iso(when: float | None) -> str:
    if when is None:
        return ""
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def patch_item(state: PatchState, operating_system: str) -> dict[str, str]:
    """The Corral:Patch inventory item of one patch (DescribeInstancePatches' fields, then
    Corral's)."""
    pkg = state.update or state.package  # an update's metadata when there is one
    installed = state.installed
    item = {
        "Title": pkg.title or pkg.key,
        "KBId": state.key,
        "Classification": pkg.classification,
        "Severity": pkg.severity,
        "State": state.state,
        "InstalledTime": iso(installed.installed_time if installed else None),
        "CVEIds": ",".join(pkg.cves),
        "Name": pkg.name,
        "Arch": pkg.arch,
        "InstalledVersion": installed.version if installed else "",
        "AvailableVersion": state.update.version if state.update else "",
        "ReleaseDate": iso(pkg.release_time),
        "Repository": pkg.repository,
        "Section": pkg.section,
        "Priority": pkg.priority,
        "Security": "true" if is_security(pkg, operating_system) else "false",
        "AdvisoryIds": ",".join(pkg.advisories),
        "Rule": state.decision.rule,
        "ComplianceLevel": state.decision.compliance_level,
        "ApprovalDate": iso(state.decision.approval_time),
        "Reason": state.reason[:500],
    }
    return {k: v for k, v in item.items() if v != ""}


def _non_compliant_kinds(states: list[PatchState], baseline: Baseline) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for s in states:
        if not non_compliant(s, baseline):
            continue
        if s.decision.compliance_level == "CRITICAL":
            kinds["critical"] += 1
        elif is_security(s.package, baseline.operating_system):
            kinds["security"] += 1
        else:
            kinds["other"] += 1
    return kinds


def summary_item(
    states: list[PatchState],
    baseline: Baseline,
    *,
    fields: dict[str, str],
) -> dict[str, str]:
    """The AWS:PatchSummary item: the counts by state and the operation's ``fields``
    (PatchGroup, BaselineId, SnapshotId, OperationType, times, RebootOption ...)."""
    n = counts(states)
    kinds = _non_compliant_kinds(states, baseline)
    status, severity = compliance(states, baseline)
    item = {
        "OwnerInformation": "",
        "InstalledCount": str(n[INSTALLED]),
        "InstalledOtherCount": str(n[INSTALLED_OTHER]),
        "InstalledPendingRebootCount": str(n[INSTALLED_PENDING_REBOOT]),
        "InstalledRejectedCount": str(n[INSTALLED_REJECTED]),
        "MissingCount": str(n[MISSING]),
        "FailedCount": str(n[FAILED]),
        "NotApplicableCount": str(n[NOT_APPLICABLE]),
        "AvailableSecurityUpdateCount": str(n[AVAILABLE_SECURITY_UPDATE]),
        "CriticalNonCompliantCount": str(kinds["critical"]),
        "SecurityNonCompliantCount": str(kinds["security"]),
        "OtherNonCompliantCount": str(kinds["other"]),
        "ComplianceStatus": status,
        "ComplianceSeverity": severity,
        **fields,
    }
    return {k: v for k, v in item.items() if v != "" or k == "OwnerInformation"}
