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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Entry:
    """One association as one node is told it, with what identifies that telling (``key``:
    changes whenever the message would) and its documents' size."""

    local: wire.LocalAssociation
    key: str
    size: int


def entry(assoc: dict[str, Any], prepared: dict[str, Any] | None) -> Entry:
    local = local_association(assoc, prepared)
    digest = prepared["digest"] if prepared else "-"
    key = f"{local['name']}\t{assoc['id']}\t{assoc['version']}\t{digest}\t{local['offline']}"
    size = prepared["size"] if prepared and local["offline"] else 0
    return Entry(local, key, size)


def revision(entries: list[Entry]) -> str:
    """What a node holds, in one hash: cheap to compare for every node on every pass."""
    return hashlib.sha256(json.dumps(sorted(e.key for e in entries)).encode()).hexdigest()


def build(entries: list[Entry]) -> wire.AssociationsBody:
    """The message body for one node: its associations by name, at most
    MAX_NODE_ASSOCIATIONS, documents within MAX_SET_BYTES."""
    chosen = sorted(entries, key=lambda e: e.key)[: wire.MAX_NODE_ASSOCIATIONS]
    budget = MAX_SET_BYTES
    out: list[wire.LocalAssociation] = []
    for item in chosen:
        local = item.local
        if item.size > budget:
            local = wire.LocalAssociation(
                **{**local, "document": {}, "parameters": {}, "offline": False}
            )
        else:
            budget -= item.size
        out.append(local)
    return wire.AssociationsBody(revision=revision(entries), associations=out)


# How long a document's check is reused across passes: a new version of a document an
# association runs as $LATEST / $DEFAULT reaches the nodes' sets within this (a run always
# resolves the document afresh).
PREPARED_SECONDS = 300.0


class Prepared:
    """check_run answers by (document, version selector, parameters), reused across passes
    for PREPARED_SECONDS: 10,000 associations cost 10,000 checks once, not every pass."""

    def __init__(self, check: Any, ttl: float = PREPARED_SECONDS) -> None:
        self._check = check
        self._ttl = ttl
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def start_pass(self, now: float) -> None:
        """Forget what is older than the time to live."""
        stale = [k for k, (at, _p) in self._cache.items() if now - at >= self._ttl]
        for key in stale:
            del self._cache[key]

    def clear(self) -> None:
        self._cache.clear()

    async def get(self, assoc: dict[str, Any], now: float) -> dict[str, Any] | None:
        key = json.dumps(
            [assoc["document_name"], assoc["document_version"], assoc["parameters"]],
            sort_keys=True,
        )
        if key not in self._cache:
            try:
                prepared = await self._check(
                    assoc["document_name"], assoc["document_version"], dict(assoc["parameters"])
                )
            except CorralError:
                self._cache[key] = (now, None)
            else:
                text = json.dumps([prepared["content"], prepared["parameters"]], sort_keys=True)
                prepared["digest"] = hashlib.sha256(text.encode()).hexdigest()[:32]
                prepared["size"] = len(text)
                self._cache[key] = (now, prepared)
        return self._cache[key][1]
