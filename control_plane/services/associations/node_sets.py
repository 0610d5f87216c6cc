"""What each node is told it must keep: the ``associations`` message (agent/wire.py).

Every node gets the full set of associations that target it, with each one's document
(nested documents embedded) and parameters, so that its agent can run a scheduled one by
itself while the server is out of reach.  A set is sent again only when its revision (a hash
of what the node would be told) changed: a tag added, an association created, edited or
deleted, a ``$LATEST`` document given a new version.  An association that needs the server
at run time (Parameter Store values, a change calendar) is sent with ``offline`` false: the
node knows of it but never starts it alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agent import wire
from control_plane.errors import CorralError

# One node's message stays well inside a frame: past this many bytes of documents, further
# associations go without theirs (offline false: the server runs them).
MAX_SET_BYTES = wire.MAX_REQUEST_BYTES // 4


def local_association(
    assoc: dict[str, Any], prepared: dict[str, Any] | None
) -> wire.LocalAssociation:
    """``prepared``: CommandService.check_run's answer for it (None: it cannot run now)."""
    offline = bool(
        prepared is not None
        and assoc["schedule"]
        and not assoc["calendars"]
        and not prepared["pins"]
    )
    return wire.LocalAssociation(
        association_id=assoc["id"],
        name=assoc["name"],
        version=int(assoc["version"]),
        document_name=assoc["document_name"],
        document_version=prepared["version"] if prepared else "",
        document=prepared["content"] if prepared and offline else {},
        parameters=prepared["parameters"] if prepared and offline else {},
        schedule=assoc["schedule"],
        timezone=assoc["timezone"],
        schedule_offset=int(assoc["schedule_offset"] or 0),
        anchor=float(assoc["anchor"]),
        execution_timeout_seconds=int(assoc["execution_timeout"]),
        offline=offline,
    )


def build(items: list[wire.LocalAssociation]) -> wire.AssociationsBody:
    """The message body for one node: its associations by name, at most
    MAX_NODE_ASSOCIATIONS, documents within MAX_SET_BYTES."""
    chosen = sorted(items, key=lambda a: (a["name"], a["association_id"]))[
        : wire.MAX_NODE_ASSOCIATIONS
    ]
    budget = MAX_SET_BYTES
    out: list[wire.LocalAssociation] = []
    for item in chosen:
        size = len(json.dumps(item["document"])) + len(json.dumps(item["parameters"]))
        if size > budget:
            item = wire.LocalAssociation(
                **{**item, "document": {}, "parameters": {}, "offline": False}
            )
        else:
            budget -= size
        out.append(item)
    digest = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    return wire.AssociationsBody(revision=digest, associations=out)


class Prepared:
    """check_run answers for one pass, by (document, version selector, parameters)."""

    def __init__(self, check: Any) -> None:
        self._check = check
        self._cache: dict[str, dict[str, Any] | None] = {}

    async def get(self, assoc: dict[str, Any]) -> dict[str, Any] | None:
        key = json.dumps(
            [assoc["document_name"], assoc["document_version"], assoc["parameters"]],
            sort_keys=True,
        )
        if key not in self._cache:
            try:
                self._cache[key] = await self._check(
                    assoc["document_name"], assoc["document_version"], dict(assoc["parameters"])
                )
            except CorralError:
                self._cache[key] = None
        return self._cache[key]
