"""RFC 3339 timestamps as the server writes them (``2026-11-28T03:45:00Z``)."""

from __future__ import annotations

import datetime as dt


def parse_rfc3339(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
