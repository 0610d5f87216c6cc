"""``corral:putComplianceItems``: a document step reports compliance items of a custom type.

Inputs (as SSM's PutComplianceItems, from inside a document)::

    ComplianceType: Custom:NAME
    Items: [{Id, Title, Severity, Status, Details}, ...]   (a list, or its JSON text)

The step checks them against AWS's rules (agent/wire.py: statuses, severities, lengths; at
most COMPLIANCE_STEP_MAX_ITEMS items and COMPLIANCE_STEP_MAX_BYTES as JSON) and puts them in
its step result (``compliance``); the server replaces that type's items on this node with
them when it stores the command's result.  Bad input fails the step with a one-line reason
and puts nothing.  Runs nothing on the node: a script step before it decides the items
(pass them in with a parameter, or write the document's Items from its own checks).
"""

from __future__ import annotations

import json
from typing import Any

from agent import wire
from agent.plugins.base import PluginResult, StepContext, Stoppable

NAME = "corral:putComplianceItems"
PLATFORMS = frozenset({"Linux", "MacOS", "Windows"})
_FIELDS = {"Id", "Title", "Severity", "Status", "Details"}


class ComplianceInputError(ValueError):
    pass


def check_inputs(inputs: dict[str, Any]) -> wire.StepCompliance:
    """The step's compliance, or ComplianceInputError naming what is wrong."""
    ctype = inputs.get("ComplianceType")
    if not isinstance(ctype, str) or not ctype:
        raise ComplianceInputError("ComplianceType is required: Custom:NAME")
    if len(ctype) > wire.COMPLIANCE_TYPE_MAX_CHARS or not wire.COMPLIANCE_CUSTOM_TYPE_RE.match(
        ctype
    ):
        raise ComplianceInputError(
            f"ComplianceType {ctype[:64]!r}: expected Custom:NAME (NAME: letters, digits, _ "
            f"and -, at least 2 characters; {wire.COMPLIANCE_TYPE_MAX_CHARS} in all)"
        )
    raw = inputs.get("Items")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ComplianceInputError("Items is not a JSON list") from None
    if not isinstance(raw, list):
        raise ComplianceInputError("Items must be a list of {Id, Title, Severity, Status}")
    if len(raw) > wire.COMPLIANCE_STEP_MAX_ITEMS:
        raise ComplianceInputError(
            f"Items: at most {wire.COMPLIANCE_STEP_MAX_ITEMS} per step ({len(raw)} given)"
        )
    items: list[wire.ComplianceItem] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        item = _item(entry, f"Items[{index}]")
        if item["id"] in seen:
            raise ComplianceInputError(f"Items[{index}].Id {item['id'][:64]!r}: given twice")
        seen.add(item["id"])
        items.append(item)
    found = wire.StepCompliance(compliance_type=ctype, items=items)
    size = len(json.dumps(found, separators=(",", ":"), ensure_ascii=True))
    if size > wire.COMPLIANCE_STEP_MAX_BYTES:
        raise ComplianceInputError(
            f"Items: {size} bytes as JSON, at most {wire.COMPLIANCE_STEP_MAX_BYTES} per step"
        )
    return found


def _item(entry: Any, where: str) -> wire.ComplianceItem:
    if not isinstance(entry, dict):
        raise ComplianceInputError(f"{where}: expected an object")
    unknown = sorted(str(k) for k in set(entry) - _FIELDS)
    if unknown:
        raise ComplianceInputError(
            f"{where}: unknown field {unknown[0][:32]!r} (fields: Id, Title, Severity, Status, "
            "Details)"
        )
    item_id = entry.get("Id")
    if not isinstance(item_id, str) or not item_id.strip():
        raise ComplianceInputError(f"{where}.Id is required")
    if len(item_id) > wire.COMPLIANCE_ITEM_ID_MAX_CHARS:
        raise ComplianceInputError(
            f"{where}.Id: at most {wire.COMPLIANCE_ITEM_ID_MAX_CHARS} characters"
        )
    title = entry.get("Title", "")
    if not isinstance(title, str) or len(title) > wire.COMPLIANCE_TITLE_MAX_CHARS:
        raise ComplianceInputError(
            f"{where}.Title: a string of at most {wire.COMPLIANCE_TITLE_MAX_CHARS} characters"
        )
    status = entry.get("Status")
    if status not in wire.COMPLIANCE_STATUSES:
        raise ComplianceInputError(
            f"{where}.Status {str(status)[:32]!r}: expected COMPLIANT or NON_COMPLIANT"
        )
    severity = entry.get("Severity")
    if severity not in wire.COMPLIANCE_SEVERITIES:
        raise ComplianceInputError(
            f"{where}.Severity {str(severity)[:32]!r}: expected one of "
            + ", ".join(wire.COMPLIANCE_SEVERITIES)
        )
    return wire.ComplianceItem(
        id=item_id,
        title=title,
        severity=str(severity),
        status=str(status),
        details=_details(entry.get("Details"), f"{where}.Details"),
    )


def _details(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ComplianceInputError(f"{where}: expected an object of strings")
    if len(raw) > wire.COMPLIANCE_DETAILS_MAX_ENTRIES:
        raise ComplianceInputError(
            f"{where}: at most {wire.COMPLIANCE_DETAILS_MAX_ENTRIES} entries"
        )
    for key, value in raw.items():
        if not isinstance(key, str) or not 1 <= len(key) <= wire.COMPLIANCE_DETAIL_KEY_MAX_CHARS:
            raise ComplianceInputError(
                f"{where}: keys are 1 to {wire.COMPLIANCE_DETAIL_KEY_MAX_CHARS} characters"
            )
        if not isinstance(value, str) or len(value) > wire.COMPLIANCE_DETAIL_VALUE_MAX_CHARS:
            raise ComplianceInputError(
                f"{where}.{key[:32]}: a string of at most "
                f"{wire.COMPLIANCE_DETAIL_VALUE_MAX_CHARS} characters"
            )
    return dict(raw)


class PutComplianceItems(Stoppable):
    name = NAME

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        if self._stopped is not None:
            return PluginResult(self._stopped.status, None, message=self._stopped.describe)
        try:
            found = check_inputs(inputs)
        except ComplianceInputError as exc:
            return PluginResult.failed(str(exc))
        bad = sum(1 for item in found["items"] if item["status"] != "COMPLIANT")
        ctx.stdout.note(
            f"{len(found['items'])} {found['compliance_type']} compliance item(s) to put "
            f"({bad} NON_COMPLIANT); they replace that type's items on this node"
        )
        return PluginResult(wire.ST_SUCCESS, 0, compliance=found)
