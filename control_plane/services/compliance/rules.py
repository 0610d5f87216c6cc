"""What a compliance put may hold, as SSM's PutComplianceItems (AWS's values and limits,
agent/wire.py), and what follows from items: a node's status and overall severity per type.

Types: ``Association`` and ``Patch`` are written by the server itself (State Manager, Patch
Manager); operators and document steps put ``Custom:NAME`` (AWS's pattern: ``Custom:`` then
a letter, digit, ``_`` or ``-`` and at least one more word character, 100 characters in all).
A node holds at most MAX_CUSTOM_TYPES custom types, as AWS allows.  Unlike SSM, every item
needs an id (items are kept per node, type and id, and their history follows the id).
"""

from __future__ import annotations

from typing import Any, Final

from agent import wire
from control_plane.errors import InvalidRequest

ASSOCIATION: Final = "Association"
PATCH: Final = "Patch"
SERVER_TYPES: Final = (ASSOCIATION, PATCH)
COMPLIANT: Final = "COMPLIANT"
NON_COMPLIANT: Final = "NON_COMPLIANT"
STATUSES: Final = wire.COMPLIANCE_STATUSES
SEVERITIES: Final = wire.COMPLIANCE_SEVERITIES  # the most severe first
MAX_ITEMS: Final = 10_000  # per put, as AWS
MAX_CUSTOM_TYPES: Final = 10  # per node, as AWS (ComplianceTypeCountLimitExceeded)
EXECUTION_ID_MAX_CHARS: Final = 100
EXECUTION_TYPE_MAX_CHARS: Final = 50


def check_type(compliance_type: Any, *, custom_only: bool = False) -> str:
    """The compliance type, or a one-line InvalidRequest."""
    if not isinstance(compliance_type, str) or not compliance_type:
        raise InvalidRequest("compliance_type: required (Association, Patch or Custom:NAME)")
    shown = compliance_type[:64]
    if compliance_type in SERVER_TYPES:
        if custom_only:
            raise InvalidRequest(
                f"compliance_type {shown!r}: only the server writes {compliance_type} "
                "compliance; put Custom:NAME items"
            )
        return compliance_type
    if len(compliance_type) > wire.COMPLIANCE_TYPE_MAX_CHARS:
        raise InvalidRequest(
            f"compliance_type: at most {wire.COMPLIANCE_TYPE_MAX_CHARS} characters"
        )
    if not wire.COMPLIANCE_CUSTOM_TYPE_RE.match(compliance_type):
        raise InvalidRequest(
            f"compliance_type {shown!r}: expected Association, Patch or Custom:NAME (NAME: "
            "letters, digits, _ and -, at least 2 characters)"
        )
    return compliance_type


def check_status(status: Any) -> str:
    if status not in STATUSES:
        raise InvalidRequest(f"status {str(status)[:32]!r}: expected COMPLIANT or NON_COMPLIANT")
    return str(status)


def check_severity(severity: Any, where: str = "severity") -> str:
    if severity not in SEVERITIES:
        raise InvalidRequest(
            f"{where} {str(severity)[:32]!r}: expected one of {', '.join(SEVERITIES)}"
        )
    return str(severity)


def check_items(items: Any) -> list[wire.ComplianceItem]:
    """Items as stored (id, title, severity, status, details), or a one-line InvalidRequest
    naming the first bad one."""
    if not isinstance(items, list):
        raise InvalidRequest("items: expected a list")
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"items: at most {MAX_ITEMS} per put ({len(items)} given)")
    out: list[wire.ComplianceItem] = []
    seen: set[str] = set()
    for index, raw in enumerate(items):
        item = check_item(raw, f"items[{index}]")
        if item["id"] in seen:
            raise InvalidRequest(f"items[{index}].id {item['id'][:64]!r}: given twice")
        seen.add(item["id"])
        out.append(item)
    return out


def check_item(raw: Any, where: str) -> wire.ComplianceItem:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: expected an object")
    unknown = sorted(set(raw) - {"id", "title", "severity", "status", "details"})
    if unknown:
        raise InvalidRequest(f"{where}: unknown field {unknown[0][:32]!r}")
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        raise InvalidRequest(f"{where}.id: required")
    if len(item_id) > wire.COMPLIANCE_ITEM_ID_MAX_CHARS:
        raise InvalidRequest(f"{where}.id: at most {wire.COMPLIANCE_ITEM_ID_MAX_CHARS} characters")
    title = raw.get("title", "")
    if not isinstance(title, str) or len(title) > wire.COMPLIANCE_TITLE_MAX_CHARS:
        raise InvalidRequest(
            f"{where}.title: a string of at most {wire.COMPLIANCE_TITLE_MAX_CHARS} characters"
        )
    if raw.get("status") not in STATUSES:
        raise InvalidRequest(
            f"{where}.status {str(raw.get('status'))[:32]!r}: expected COMPLIANT or NON_COMPLIANT"
        )
    severity = check_severity(raw.get("severity"), f"{where}.severity")
    return wire.ComplianceItem(
        id=item_id,
        title=title,
        severity=severity,
        status=str(raw["status"]),
        details=check_details(raw.get("details"), f"{where}.details"),
    )


def check_details(details: Any, where: str) -> dict[str, str]:
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise InvalidRequest(f"{where}: expected an object of strings")
    if len(details) > wire.COMPLIANCE_DETAILS_MAX_ENTRIES:
        raise InvalidRequest(f"{where}: at most {wire.COMPLIANCE_DETAILS_MAX_ENTRIES} entries")
    for key, value in details.items():
        if not isinstance(key, str) or not 1 <= len(key) <= wire.COMPLIANCE_DETAIL_KEY_MAX_CHARS:
            raise InvalidRequest(
                f"{where}: keys are 1 to {wire.COMPLIANCE_DETAIL_KEY_MAX_CHARS} characters"
            )
        if not isinstance(value, str) or len(value) > wire.COMPLIANCE_DETAIL_VALUE_MAX_CHARS:
            raise InvalidRequest(
                f"{where}.{key[:32]}: a string of at most "
                f"{wire.COMPLIANCE_DETAIL_VALUE_MAX_CHARS} characters"
            )
    return dict(details)


def check_execution(execution_id: Any, execution_type: Any) -> tuple[str, str]:
    if not isinstance(execution_id, str) or len(execution_id) > EXECUTION_ID_MAX_CHARS:
        raise InvalidRequest(
            f"execution_id: a string of at most {EXECUTION_ID_MAX_CHARS} characters"
        )
    if not isinstance(execution_type, str) or len(execution_type) > EXECUTION_TYPE_MAX_CHARS:
        raise InvalidRequest(
            f"execution_type: a string of at most {EXECUTION_TYPE_MAX_CHARS} characters"
        )
    return execution_id, execution_type


def empty_counts() -> dict[str, dict[str, int]]:
    return {status: dict.fromkeys(SEVERITIES, 0) for status in STATUSES}


def summarize(items: list[wire.ComplianceItem]) -> tuple[str, str, dict[str, dict[str, int]]]:
    """(status, overall severity, item counts by status and severity) of one type on one
    node: NON_COMPLIANT when any item is, its severity the most severe non-compliant item's
    (a compliant node's: its most severe item's; UNSPECIFIED without items)."""
    counts = empty_counts()
    for item in items:
        counts[item["status"]][item["severity"]] += 1
    bad = counts[NON_COMPLIANT]
    status = NON_COMPLIANT if any(bad.values()) else COMPLIANT
    scope = bad if status == NON_COMPLIANT else counts[COMPLIANT]
    severity = next((s for s in SEVERITIES if scope[s]), "UNSPECIFIED")
    return status, severity, counts
