"""Corral:User: local accounts: Name, Uid, Gid, Groups (comma-separated), HomeDirectory,
Shell, FullName and LastLogin (RFC 3339 UTC) where the platform records it; a source per
platform."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
