"""Parameter Store values that come with a run_command (``body["ssm_values"]``): checked on
arrival, kept in memory only, checked again by the worker against the document's references.

::

    message ──Executor.accept──> journal: the body without the values, and only the list of
       │                          references ("ssm_references") or why they were refused
       └──> Executor memory ──Launcher──> fork server request (socket) / new worker's stdin
                                            └──> worker memory ──> engine ──> interpolate_step

They never go into a file, a log line, the outbox, or the argv or environment of the worker
itself; a script sees a value only where its document puts one (an ENV_VAR parameter's
``SSM_<name>``).  A worker started without them (the agent restarted between journalling the
command and starting it, or the node rebooted in the middle of the command) fails the command
with LOST instead of running the document with its references unresolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent import wire

LOST = "the command's Parameter Store values were lost with the agent restart; send it again"


def take(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(the body to journal, the values to keep in memory, what the journal keeps about them:
    ``{"ssm_references": [...]}`` or ``{"ssm_error": why}``, or nothing)."""
    if "ssm_values" not in body:
        return body, {}, {}
    stored = {key: item for key, item in body.items() if key != "ssm_values"}
    try:
        values = check(body["ssm_values"])
    except ValueError as exc:
        return stored, {}, {"ssm_error": str(exc)}
    return stored, values, ({"ssm_references": sorted(values)} if values else {})


def check(raw: Any) -> dict[str, str]:
    """The values, if they are what the wire contract says; ValueError saying why not.  The
    message never quotes a value (nor a key that is not a reference: it could be one)."""
    if not isinstance(raw, dict):
        raise ValueError("ssm_values is not an object of reference -> value")
    if len(raw) > wire.MAX_SSM_VALUES:
        raise ValueError(
            f"{len(raw)} Parameter Store values; a command carries at most {wire.MAX_SSM_VALUES}"
        )
    total = 0
    for key, value in raw.items():
        if not isinstance(key, str) or not wire.SSM_REFERENCE_RE.fullmatch(key):
            raise ValueError("ssm_values has a key that is not a Parameter Store reference")
        if not isinstance(value, str):
            raise ValueError(f"the value of {{{{{key}}}}} is not a string")
        if "\0" in value:
            raise ValueError(f"the value of {{{{{key}}}}} contains a NUL character")
        try:
            total += len(key.encode()) + len(value.encode())
        except UnicodeEncodeError:
            raise ValueError(f"the value of {{{{{key}}}}} is not valid Unicode text") from None
    if total > wire.MAX_SSM_VALUES_BYTES:
        raise ValueError(
            f"the Parameter Store values come to {total} bytes; a command carries "
            f"at most {wire.MAX_SSM_VALUES_BYTES}"
        )
    return dict(raw)


def problem(request: Mapping[str, Any], needed: list[str], got: Mapping[str, str]) -> str | None:
    """Why the worker must not run the document (None: every reference has its value).
    ``request`` is the journalled request, ``needed`` the document's references
    (agent.documents.ssm_references), ``got`` the values the worker was started with."""
    refused = request.get("ssm_error")
    if isinstance(refused, str):
        return f"the command's Parameter Store values were refused: {refused}"
    expected = request.get("ssm_references")
    if isinstance(expected, list) and any(ref not in got for ref in expected):
        return LOST
    missing = [ref for ref in needed if ref not in got]
    if missing:
        names = ", ".join(f"{{{{{ref}}}}}" for ref in missing)
        return f"the server sent no value for these Parameter Store references: {names}"
    return None


MASK_MIN_CHARS = 4  # shorter values are not masked: they would garble every message


def secure_values(values: Mapping[str, str]) -> list[str]:
    """The SecureString values to mask in the agent's own messages, longest first."""
    found = {
        value
        for ref, value in values.items()
        if ref.startswith(wire.SSM_SECURE_PREFIX) and len(value) >= MASK_MIN_CHARS
    }
    return sorted(found, key=len, reverse=True)
