"""Evaluating a baseline against one package: AWS's approval semantics.

In order, as Patch Manager does:

1. RejectedPatches names it: EXPLICIT_REJECTED.
2. ApprovedPatches names it: EXPLICIT_APPROVED (on Linux, a non-security update only with
   ApprovedPatchesEnableNonSecurity), at ApprovedPatchesComplianceLevel.
3. A GlobalFilters filter it does not match: NOT_APPROVED.
4. The approval rules, each a filter group (every filter must match; a filter matches when
   the package's attribute matches one of its values, ``*`` wildcards, case-insensitive):
   a matching rule approves it ApproveAfterDays after its release (or if it was released by
   ApproveUntilDate): APPROVED, or PENDING_APPROVAL until that day.  On Linux a rule
   approves only security updates unless EnableNonSecurity: "security" is what the package
   manager classifies (a -security suite on Debian and Ubuntu, any updateinfo advisory on
   the RPM family, any patch category on SUSE); pacman, apk and Homebrew classify nothing,
   so there only EnableNonSecurity rules approve (Corral's ARCH and ALPINE defaults set it).
   A package with no release date is approved at once (Debian and Ubuntu: always).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Final

from agent.patching import names
from agent.patching.baseline import Baseline, Filter, Rule
from agent.patching.model import Package

APPROVED: Final = "APPROVED"
EXPLICIT_APPROVED: Final = "EXPLICIT_APPROVED"
EXPLICIT_REJECTED: Final = "EXPLICIT_REJECTED"
PENDING_APPROVAL: Final = "PENDING_APPROVAL"
NOT_APPROVED: Final = "NOT_APPROVED"
DAY: Final = 86_400.0
_NOT_LINUX: Final = frozenset({"WINDOWS"})


@dataclass(frozen=True)
class Decision:
    status: str  # one of the constants above
    rule: str = ""  # "ApprovalRules[0]", "ApprovedPatches", "RejectedPatches", "GlobalFilters"
    compliance_level: str = "UNSPECIFIED"
    approval_time: float | None = None  # when a rule approves (approves) it

    @property
    def approved(self) -> bool:
        return self.status in (APPROVED, EXPLICIT_APPROVED)


def is_security(package: Package, operating_system: str = "") -> bool:
    """What "security update" means for a rule without EnableNonSecurity: what the package
    manager marks so (a -security suite, a security advisory), or on the RPM family and SUSE
    any advisory (their CLASSIFICATION); on macOS CLASSIFICATION names the package manager
    (softwareupdate, brew ...), so there only the security mark counts; on Windows the
    SecurityUpdates classification."""
    if operating_system == "MACOS":
        return package.security
    if operating_system == "WINDOWS":
        return package.security or package.classification == "SecurityUpdates"
    return package.security or bool(package.classification)


def attribute(key: str, package: Package, product: str) -> str:
    """The package's value for a filter key."""
    if key == "PRODUCT":
        return product
    if key == "CLASSIFICATION":
        return package.classification
    if key in ("SEVERITY", "MSRC_SEVERITY"):
        return package.severity
    if key == "PRIORITY":
        return package.priority
    if key == "SECTION":
        return package.section
    if key == "REPOSITORY":
        return package.repository
    if key == "PATCH_SET":
        return "OS"
    if key == "PRODUCT_FAMILY":
        return "Windows"
    return ""


def filter_matches(flt: Filter, package: Package, product: str) -> bool:
    value = attribute(flt.key, package, product).lower()
    return any(fnmatch.fnmatchcase(value, pattern.lower()) for pattern in flt.values)


def evaluate(baseline: Baseline, package: Package, product: str, now: float) -> Decision:
    os_name = baseline.operating_system
    linux = os_name not in _NOT_LINUX
    rejected = names.matches(os_name, baseline.rejected, package)
    if rejected is not None:
        return Decision(EXPLICIT_REJECTED, "RejectedPatches")
    approved = names.matches(os_name, baseline.approved, package)
    if approved is not None and (
        not linux or baseline.approved_enable_non_security or is_security(package, os_name)
    ):
        return Decision(
            EXPLICIT_APPROVED, "ApprovedPatches", baseline.approved_compliance_level, None
        )
    if not all(filter_matches(f, package, product) for f in baseline.global_filters):
        return Decision(NOT_APPROVED, "GlobalFilters")
    pending: Decision | None = None
    for index, rule in enumerate(baseline.rules):
        if not all(filter_matches(f, package, product) for f in rule.filters):
            continue
        if linux and not rule.enable_non_security and not is_security(package, os_name):
            continue
        when = approval_time(rule, package)
        if when is False:
            continue
        where = f"ApprovalRules[{index}]"
        if when is None or when <= now:
            return Decision(APPROVED, where, rule.compliance_level, when)
        if pending is None or (pending.approval_time or 0) > when:
            pending = Decision(PENDING_APPROVAL, where, rule.compliance_level, when)
    return pending or Decision(NOT_APPROVED)


def approval_time(rule: Rule, package: Package) -> float | bool | None:
    """When ``rule`` approves ``package``: an epoch time, None for "now" (no release date),
    or False when it never does (released after ApproveUntilDate)."""
    released = package.release_time
    if released is None:
        return None
    if rule.approve_after_days is not None:
        return released + rule.approve_after_days * DAY
    until = rule.until_time()
    if until is not None and released > until:
        return False
    return released
