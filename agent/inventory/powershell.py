"""Running Windows PowerShell for the Windows collectors: a script's JSON output (as
ConvertTo-Json writes it), or a CollectError in one line; and reading what it wrote."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any, Final

from agent.inventory import schema
from agent.inventory.base import CollectContext, CollectError
from agent.tools import ToolTimeout

PREAMBLE: Final = "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8; "
# Windows PowerShell 5.1 writes a DateTime as "\/Date(1700006400000)\/" (ms since the
# epoch, maybe with a +hhmm offset that does not change the instant); PowerShell 7 as ISO.
_MS_DATE: Final = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def powershell_json(ctx: CollectContext, script: str, what: str, timeout: float = 120.0) -> Any:
    """Run ``script`` in Windows PowerShell and parse its stdout as JSON (None when it
    printed nothing); CollectError naming ``what`` on any failure."""
    argv = ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", script]
    if ctx.deadline is not None:
        timeout = max(1.0, min(timeout, ctx.deadline - time.monotonic()))
    try:
        done = ctx.run(argv, {}, timeout)
    except (FileNotFoundError, ToolTimeout) as exc:
        raise CollectError(f"powershell ({what}): {exc}") from None
    if done.returncode != 0:
        raise CollectError(f"powershell ({what}) failed: {done.reason()}")
    text = done.stdout.strip().lstrip("\ufeff")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise CollectError(f"powershell ({what}): its output is not JSON") from None


def as_list(value: Any) -> list[Any]:
    """ConvertTo-Json's answer as a list (one object comes out bare, none as nothing)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text(value: Any) -> str:
    """A JSON scalar as an attribute value ("" for null); PowerShell's True/False."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)[: schema.VALUE_MAX_CHARS]


def date(value: Any) -> str:
    """A DateTime as ConvertTo-Json writes it, as RFC3339 UTC ("" when absent or unknown)."""
    if isinstance(value, dict):  # 5.1 adds the DateTime script property: {"value", "DateTime"}
        value = value.get("value")
    if not isinstance(value, str) or not value:
        return ""
    found = _MS_DATE.match(value)
    try:
        if found:
            moment = datetime.fromtimestamp(int(found.group(1)) / 1000, UTC)
        else:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:  # PowerShell 7 writes a local time without offset
                moment = moment.astimezone()
    except (ValueError, OverflowError, OSError):
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
