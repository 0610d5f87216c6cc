"""``aws:runDocument`` steps that name a stored document: their content travels with the
command (``content["__embedded"][name]``), resolved when the command is sent, so a node never
needs to read the document store.  Nesting is at most 3 deep."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from control_plane.errors import InvalidRequest

if TYPE_CHECKING:
    from agent.documents import Document
    from control_plane.services.documents import DocumentService

MAX_DEPTH = 3


async def embed_nested_documents(
    documents: DocumentService, doc: Document, values: dict[str, Any]
) -> dict[str, Any]:
    content = copy.deepcopy(doc.content)
    embedded: dict[str, Any] = {}
    await _walk(documents, doc, values, embedded, depth=1)
    if embedded:
        content["__embedded"] = embedded
    return content


async def _walk(
    documents: DocumentService,
    doc: Document,
    values: dict[str, Any],
    embedded: dict[str, Any],
    depth: int,
) -> None:
    for step in doc.steps:
        if step.action != "aws:runDocument":
            continue
        if str(step.inputs.get("documentType", "SSMDocument")) != "SSMDocument":
            continue
        name = str(step.inputs.get("documentPath", ""))
        for key, value in values.items():
            name = name.replace("{{ " + key + " }}", str(value)).replace(
                "{{" + key + "}}", str(value)
            )
        if not name or "{{" in name:
            raise InvalidRequest(
                f"mainSteps[{step.index}].inputs.documentPath must name a document"
            )
        if depth >= MAX_DEPTH:
            raise InvalidRequest(f"documents nest deeper than {MAX_DEPTH} levels (at {name})")
        name, _, version = name.partition(":")
        if name in embedded:
            continue
        resolved = await documents.resolve(name, version or None)
        embedded[name] = resolved.document.content
        await _walk(documents, resolved.document, {}, embedded, depth + 1)
