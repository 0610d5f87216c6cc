"""How compliance rows are shown by the API (items, summaries, history)."""

from __future__ import annotations

from typing import Any

from control_plane.services.clock import rfc3339
from control_plane.services.compliance import rules


def number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def empty_fleet_entry() -> dict[str, Any]:
    return {
        side: {"count": 0, "severity": dict.fromkeys(rules.SEVERITIES, 0)}
        for side in ("compliant", "non_compliant")
    }


def execution(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "execution_id": row.get("execution_id", ""),
        "execution_type": row.get("execution_type", ""),
        "execution_time": rfc3339(row.get("execution_time")),
    }


def item_view(row: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "node_id": row["node_id"],
        "compliance_type": row["compliance_type"],
        "id": row["item_id"],
        "title": row["title"],
        "status": row["status"],
        "severity": row["severity"],
        "details": row["details"],
        "status_since": rfc3339(row["status_since"]),
        "execution_summary": execution(summary),
    }


def summary_view(row: dict[str, Any]) -> dict[str, Any]:
    counts = row["counts"]
    return {
        "node_id": row["node_id"],
        "compliance_type": row["compliance_type"],
        "status": row["status"],
        "overall_severity": row["overall_severity"],
        "compliant": {
            "count": sum(counts[rules.COMPLIANT].values()),
            "severity": counts[rules.COMPLIANT],
        },
        "non_compliant": {
            "count": sum(counts[rules.NON_COMPLIANT].values()),
            "severity": counts[rules.NON_COMPLIANT],
        },
        "execution_summary": execution(row),
        "updated_at": rfc3339(row["updated_at"]),
    }


def history_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": rfc3339(row["time"]),
        "compliance_type": row["compliance_type"],
        "id": row["item_id"],
        "old_status": row["old_status"],
        "new_status": row["new_status"],
        "severity": row["severity"],
        "execution_id": row["execution_id"],
        "execution_type": row["execution_type"],
    }
