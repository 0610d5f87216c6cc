"""A patch baseline: AWS's CreatePatchBaseline shape, checked against AWS's rules.

Both sides use it: the server checks what operators create (``corral baselines create
--file``: AWS's own CreatePatchBaseline JSON or YAML, so an SSM user's baselines carry over)
and a command's BaselineOverride; the agent evaluates the baseline the server delivered with
AWS-RunPatchBaseline (agent/patching/rules.py).  :func:`parse` refuses bad input with one line
naming the field; :meth:`Baseline.to_json` writes the same shape back (GetPatchBaseline's
fields, ``BaselineId`` included once it has one).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Final

from agent.patching import names

OPERATING_SYSTEMS: Final = (
    "WINDOWS",
    "AMAZON_LINUX",
    "AMAZON_LINUX_2",
    "AMAZON_LINUX_2022",
    "AMAZON_LINUX_2023",
    "UBUNTU",
    "DEBIAN",
    "RASPBIAN",
    "REDHAT_ENTERPRISE_LINUX",
    "CENTOS",
    "ROCKY_LINUX",
    "ALMA_LINUX",
    "ORACLE_LINUX",
    "SUSE",
    "MACOS",
    "ARCH",  # Corral's
    "ALPINE",  # Corral's
)
_RPM_KEYS: Final = ("PRODUCT", "CLASSIFICATION", "SEVERITY")
# The filter keys valid in approval rules and global filters, per operating system (AWS's
# PatchFilter reference; ARCH and ALPINE are Corral's: no security metadata, see
# docs/patching.md; REPOSITORY is Corral's, for them).
FILTER_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "WINDOWS": ("PATCH_SET", "PRODUCT", "PRODUCT_FAMILY", "CLASSIFICATION", "MSRC_SEVERITY"),
    "UBUNTU": ("PRODUCT", "PRIORITY", "SECTION"),
    "DEBIAN": ("PRODUCT", "PRIORITY", "SECTION"),
    "RASPBIAN": ("PRODUCT", "PRIORITY", "SECTION"),
    "MACOS": ("PRODUCT", "CLASSIFICATION"),
    "ARCH": ("PRODUCT", "REPOSITORY"),
    "ALPINE": ("PRODUCT", "REPOSITORY"),
    **{
        os_name: _RPM_KEYS
        for os_name in (
            "AMAZON_LINUX",
            "AMAZON_LINUX_2",
            "AMAZON_LINUX_2022",
            "AMAZON_LINUX_2023",
            "REDHAT_ENTERPRISE_LINUX",
            "CENTOS",
            "ROCKY_LINUX",
            "ALMA_LINUX",
            "ORACLE_LINUX",
            "SUSE",
        )
    },
}
COMPLIANCE_LEVELS: Final = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNSPECIFIED")
REJECTED_ACTIONS: Final = ("ALLOW_AS_DEPENDENCY", "BLOCK")
NAME_RE: Final = re.compile(r"[a-zA-Z0-9_\-.]{3,128}")
SOURCE_NAME_RE: Final = re.compile(r"[a-zA-Z0-9_\-.]{3,50}")
BASELINE_ID_RE: Final = re.compile(r"[a-zA-Z0-9_\-:/]{3,128}")
MAX_RULES: Final = 10
MAX_FILTERS: Final = 4
MAX_VALUES: Final = 20
MAX_VALUE_CHARS: Final = 64
MAX_PATCHES: Final = 50
MAX_SOURCES: Final = 20
MAX_SOURCE_CONFIGURATION: Final = 1024
MAX_DESCRIPTION: Final = 1024
APPROVE_AFTER_DAYS: Final = (0, 360)
# What a BaselineOverride or a GetPatchBaseline document may carry beside the create fields.
_READ_ONLY: Final = frozenset(
    {
        "BaselineId",
        "CreatedDate",
        "ModifiedDate",
        "PatchGroups",
        "ClientToken",
        "Tags",
        "DefaultBaseline",  # Corral's GetPatchBaseline answer adds these two
        "Predefined",
    }
)
_FIELDS: Final = frozenset(
    {
        "Name",
        "OperatingSystem",
        "Description",
        "GlobalFilters",
        "ApprovalRules",
        "ApprovedPatches",
        "ApprovedPatchesComplianceLevel",
        "ApprovedPatchesEnableNonSecurity",
        "RejectedPatches",
        "RejectedPatchesAction",
        "Sources",
        "AvailableSecurityUpdatesComplianceStatus",
    }
)


class BaselineError(ValueError):
    """A baseline that AWS's rules refuse; the message names the field, on one line."""


@dataclass(frozen=True)
class Filter:
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    filters: tuple[Filter, ...]
    compliance_level: str = "UNSPECIFIED"
    approve_after_days: int | None = None
    approve_until: str | None = None  # YYYY-MM-DD
    enable_non_security: bool = False

    def until_time(self) -> float | None:
        """ApproveUntilDate as the end of that day (UTC), epoch seconds."""
        if self.approve_until is None:
            return None
        day = dt.date.fromisoformat(self.approve_until)
        end = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        return end.timestamp()


@dataclass(frozen=True)
class SourceSpec:
    name: str
    products: tuple[str, ...]
    configuration: str


@dataclass(frozen=True)
class Baseline:
    name: str
    operating_system: str
    baseline_id: str = ""
    description: str = ""
    global_filters: tuple[Filter, ...] = ()
    rules: tuple[Rule, ...] = ()
    approved: tuple[str, ...] = ()
    approved_compliance_level: str = "UNSPECIFIED"
    approved_enable_non_security: bool = False
    rejected: tuple[str, ...] = ()
    rejected_action: str = "ALLOW_AS_DEPENDENCY"
    sources: tuple[SourceSpec, ...] = ()
    available_security_status: str | None = None  # COMPLIANT | NON_COMPLIANT
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.baseline_id:
            out["BaselineId"] = self.baseline_id
        out.update(
            Name=self.name,
            OperatingSystem=self.operating_system,
            Description=self.description,
            GlobalFilters={"PatchFilters": [_filter_json(f) for f in self.global_filters]},
            ApprovalRules={"PatchRules": [_rule_json(r) for r in self.rules]},
            ApprovedPatches=list(self.approved),
            ApprovedPatchesComplianceLevel=self.approved_compliance_level,
            ApprovedPatchesEnableNonSecurity=self.approved_enable_non_security,
            RejectedPatches=list(self.rejected),
            RejectedPatchesAction=self.rejected_action,
            Sources=[
                {"Name": s.name, "Products": list(s.products), "Configuration": s.configuration}
                for s in self.sources
            ],
        )
        if self.available_security_status is not None:
            out["AvailableSecurityUpdatesComplianceStatus"] = self.available_security_status
        return out


def _filter_json(f: Filter) -> dict[str, Any]:
    return {"Key": f.key, "Values": list(f.values)}


def _rule_json(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "PatchFilterGroup": {"PatchFilters": [_filter_json(f) for f in rule.filters]},
        "ComplianceLevel": rule.compliance_level,
        "EnableNonSecurity": rule.enable_non_security,
    }
    if rule.approve_after_days is not None:
        out["ApproveAfterDays"] = rule.approve_after_days
    if rule.approve_until is not None:
        out["ApproveUntilDate"] = rule.approve_until
    return out


def parse(raw: Any, *, default_name: str | None = None, baseline_id: str = "") -> Baseline:
    """A Baseline from AWS's JSON shape (CreatePatchBaseline's request, or GetPatchBaseline's
    answer), or BaselineError naming what is wrong."""
    if not isinstance(raw, dict):
        raise BaselineError("a patch baseline is a JSON object (AWS's CreatePatchBaseline)")
    unknown = sorted(str(k) for k in raw if k not in _FIELDS and k not in _READ_ONLY)
    if unknown:
        raise BaselineError(
            f"unknown baseline field {unknown[0][:40]!r} (fields: {', '.join(sorted(_FIELDS))})"
        )
    name = raw.get("Name", default_name)
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BaselineError(f"Name {str(name)[:40]!r}: 3 to 128 letters, digits, '_', '-' and '.'")
    os_name = raw.get("OperatingSystem", "WINDOWS")
    if os_name not in OPERATING_SYSTEMS:
        raise BaselineError(
            f"OperatingSystem {str(os_name)[:40]!r}: one of {', '.join(OPERATING_SYSTEMS)}"
        )
    description = raw.get("Description") or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise BaselineError(f"Description: a string of at most {MAX_DESCRIPTION} characters")
    given_id = raw.get("BaselineId") or baseline_id
    if given_id and (not isinstance(given_id, str) or not BASELINE_ID_RE.fullmatch(given_id)):
        raise BaselineError(f"BaselineId {str(given_id)[:40]!r} is not a baseline id")
    return Baseline(
        name=name,
        operating_system=os_name,
        baseline_id=str(given_id or ""),
        description=description,
        global_filters=_filter_group(raw.get("GlobalFilters"), os_name, "GlobalFilters"),
        rules=_rules(raw.get("ApprovalRules"), os_name),
        approved=_patches(raw.get("ApprovedPatches"), os_name, "ApprovedPatches"),
        approved_compliance_level=_level(
            raw.get("ApprovedPatchesComplianceLevel"), "ApprovedPatchesComplianceLevel"
        ),
        approved_enable_non_security=_flag(
            raw.get("ApprovedPatchesEnableNonSecurity"), "ApprovedPatchesEnableNonSecurity"
        ),
        rejected=_patches(raw.get("RejectedPatches"), os_name, "RejectedPatches"),
        rejected_action=_choice(
            raw.get("RejectedPatchesAction"),
            REJECTED_ACTIONS,
            "RejectedPatchesAction",
            "ALLOW_AS_DEPENDENCY",
        ),
        sources=_sources(raw.get("Sources"), os_name),
        available_security_status=_available(raw.get("AvailableSecurityUpdatesComplianceStatus")),
    )


def _choice(value: Any, allowed: tuple[str, ...], where: str, default: str) -> str:
    if value is None or value == "":
        return default
    if value not in allowed:
        raise BaselineError(f"{where} {str(value)[:40]!r}: one of {', '.join(allowed)}")
    return str(value)


def _level(value: Any, where: str) -> str:
    return _choice(value, COMPLIANCE_LEVELS, where, "UNSPECIFIED")


def _available(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _choice(
        value, ("COMPLIANT", "NON_COMPLIANT"), "AvailableSecurityUpdatesComplianceStatus", ""
    )


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BaselineError(f"{where}: true or false")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BaselineError(f"{where}: a list")
    return value


def _filter_group(raw: Any, os_name: str, where: str) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or set(raw) - {"PatchFilters"}:
        raise BaselineError(f"{where}: an object {{PatchFilters: [{{Key, Values}}]}}")
    filters = _list(raw.get("PatchFilters"), f"{where}.PatchFilters")
    if len(filters) > MAX_FILTERS:
        raise BaselineError(f"{where}.PatchFilters: at most {MAX_FILTERS} filters")
    seen: set[str] = set()
    out: list[Filter] = []
    valid = FILTER_KEYS[os_name]
    for index, entry in enumerate(filters):
        here = f"{where}.PatchFilters[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"Key", "Values"}:
            raise BaselineError(f"{here}: an object {{Key, Values}}")
        key = entry.get("Key")
        if key not in valid:
            raise BaselineError(
                f"{here}.Key {str(key)[:40]!r} is not valid for {os_name} "
                f"(valid: {', '.join(valid)})"
            )
        if key in seen:
            raise BaselineError(f"{here}.Key {key}: given twice in one filter group")
        seen.add(str(key))
        values = _list(entry.get("Values"), f"{here}.Values")
        if not 1 <= len(values) <= MAX_VALUES:
            raise BaselineError(f"{here}.Values: 1 to {MAX_VALUES} values")
        for value in values:
            if not isinstance(value, str) or not 1 <= len(value) <= MAX_VALUE_CHARS:
                raise BaselineError(f"{here}.Values: strings of 1 to {MAX_VALUE_CHARS} characters")
        out.append(Filter(str(key), tuple(values)))
    return tuple(out)


def _rules(raw: Any, os_name: str) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or set(raw) - {"PatchRules"}:
        raise BaselineError("ApprovalRules: an object {PatchRules: [...]}")
    entries = _list(raw.get("PatchRules"), "ApprovalRules.PatchRules")
    if len(entries) > MAX_RULES:
        raise BaselineError(f"ApprovalRules.PatchRules: at most {MAX_RULES} rules")
    return tuple(_rule(entry, os_name, f"ApprovalRules.PatchRules[{i}]") for i, entry in
                 enumerate(entries))  # fmt: skip


_RULE_FIELDS: Final = frozenset(
    {"PatchFilterGroup", "ComplianceLevel", "ApproveAfterDays", "ApproveUntilDate",
     "EnableNonSecurity"}
)  # fmt: skip


def _rule(raw: Any, os_name: str, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise BaselineError(f"{where}: an object")
    unknown = sorted(str(k) for k in set(raw) - _RULE_FIELDS)
    if unknown:
        raise BaselineError(f"{where}: unknown field {unknown[0][:40]!r}")
    if "PatchFilterGroup" not in raw:
        raise BaselineError(f"{where}.PatchFilterGroup is required")
    filters = _filter_group(raw["PatchFilterGroup"], os_name, f"{where}.PatchFilterGroup")
    after = raw.get("ApproveAfterDays")
    until = raw.get("ApproveUntilDate")
    if after is not None and until is not None:
        raise BaselineError(f"{where}: ApproveAfterDays or ApproveUntilDate, not both")
    if after is not None and (
        isinstance(after, bool)
        or not isinstance(after, int)
        or not APPROVE_AFTER_DAYS[0] <= after <= APPROVE_AFTER_DAYS[1]
    ):
        raise BaselineError(
            f"{where}.ApproveAfterDays {str(after)[:20]!r}: a whole number of days, "
            f"{APPROVE_AFTER_DAYS[0]} to {APPROVE_AFTER_DAYS[1]}"
        )
    if until is not None:
        try:
            if not isinstance(until, str) or len(until) != 10:
                raise ValueError
            dt.date.fromisoformat(until)
        except ValueError:
            raise BaselineError(
                f"{where}.ApproveUntilDate {str(until)[:20]!r}: a date YYYY-MM-DD"
            ) from None
    if os_name in names.DEBIAN_FAMILY and ((after or 0) > 0 or until is not None):
        raise BaselineError(
            f"{where}: ApproveAfterDays and ApproveUntilDate are not supported on {os_name} "
            "(its repositories carry no release dates; matching patches are approved at once)"
        )
    if after is None and until is None and os_name not in names.DEBIAN_FAMILY:
        raise BaselineError(f"{where}: ApproveAfterDays or ApproveUntilDate is required")
    return Rule(
        filters=filters,
        compliance_level=_level(raw.get("ComplianceLevel"), f"{where}.ComplianceLevel"),
        approve_after_days=after,
        approve_until=until,
        enable_non_security=_flag(raw.get("EnableNonSecurity"), f"{where}.EnableNonSecurity"),
    )


def _patches(raw: Any, os_name: str, where: str) -> tuple[str, ...]:
    entries = _list(raw, where)
    if len(entries) > MAX_PATCHES:
        raise BaselineError(f"{where}: at most {MAX_PATCHES} patches")
    try:
        return tuple(names.check(os_name, e, f"{where}[{i}]") for i, e in enumerate(entries))
    except ValueError as exc:
        raise BaselineError(str(exc)) from None


def _sources(raw: Any, os_name: str) -> tuple[SourceSpec, ...]:
    entries = _list(raw, "Sources")
    if entries and os_name in ("WINDOWS", "MACOS"):
        raise BaselineError(f"Sources: alternative repositories are for Linux, not {os_name}")
    if len(entries) > MAX_SOURCES:
        raise BaselineError(f"Sources: at most {MAX_SOURCES}")
    out: list[SourceSpec] = []
    for index, entry in enumerate(entries):
        here = f"Sources[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"Name", "Products", "Configuration"}:
            raise BaselineError(f"{here}: an object {{Name, Products, Configuration}}")
        name = entry.get("Name")
        if not isinstance(name, str) or not SOURCE_NAME_RE.fullmatch(name):
            raise BaselineError(f"{here}.Name: 3 to 50 letters, digits, '_', '-' and '.'")
        products = _list(entry.get("Products"), f"{here}.Products")
        if not 1 <= len(products) <= MAX_VALUES or not all(
            isinstance(p, str) and 1 <= len(p) <= 128 for p in products
        ):
            raise BaselineError(f"{here}.Products: 1 to {MAX_VALUES} product names")
        config = entry.get("Configuration")
        if not isinstance(config, str) or not 1 <= len(config) <= MAX_SOURCE_CONFIGURATION:
            raise BaselineError(
                f"{here}.Configuration: the repository's configuration text, 1 to "
                f"{MAX_SOURCE_CONFIGURATION} characters"
            )
        out.append(SourceSpec(name, tuple(products), config))
    return tuple(out)
