"""The server's pre-check of an agent upgrade: ``Corral-UpdateAgent`` with a ``version`` no
``corral-agent`` package here has is refused when the command is sent, with the versions
there are, rather than failing on every node."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.updates.versions import version_key
from control_plane.errors import InvalidRequest

UPDATE_DOCUMENT = "Corral-UpdateAgent"
LATEST = "latest"


def check_update(
    document: str, values: dict[str, Any], available: Iterable[str], where: str
) -> None:
    """Raise InvalidRequest if ``document`` upgrades agents to a version not ``available``
    (``where``: the directory an operator puts packages in, for the message)."""
    if document != UPDATE_DOCUMENT:
        return
    wanted = values.get("version")
    if not isinstance(wanted, str) or "{{" in wanted:
        return  # the document's own parameter checks answer for those
    versions = sorted(set(available), key=version_key)
    if wanted in versions or (wanted == LATEST and versions):
        return
    has = ", ".join(versions) if versions else f"none (put packages in {where})"
    raise InvalidRequest(f"corral-agent {wanted} is not on this server; it has: {has}")
