"""``aws:runDocument`` steps that name a stored document: each is authorized, resolved and
embedded when the command is sent, so a node never reads the document store and runs only
what the sender may run.

Every step's inputs are interpolated with the values its document runs with (the command's
parameters at the top, the step's ``documentParameters`` below), exactly as the agent will
interpolate them, so ``Corral-RunDocument``'s ``documentPath: "{{ documentPath }}"`` names the
document it will really run.  Each named document is checked with the sender's
``commands:Send`` on ``document/NAME`` before anything is stored; a refusal names it and the
step that runs it.  The content travels with the command under
``content["__embedded"]["NAME[:VERSION]"]`` (the path as the step names it after
interpolation, so two versions of one document are two entries).  Nesting is at most
:data:`MAX_DEPTH` deep and a command runs at most :data:`MAX_NESTED_RUNS` nested documents.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.documents import interpolate_step, nested_parameters, resolve_parameters
from agent.errors import DocumentError
from control_plane.errors import AccessDenied, InvalidRequest

if TYPE_CHECKING:
    from agent.documents import Document, Step
    from control_plane.services.documents import DocumentService

MAX_DEPTH = 3
MAX_NESTED_RUNS = 50
RUN_DOCUMENT = "aws:runDocument"

# Document name -> may the sender run it (commands:Send on document/NAME).
DocumentCheck = Callable[[str], bool]


@dataclass
class Nested:
    """What a command's documents embed: contents by path, and every document that will run
    (``NAME:VERSION``, in the order met) for the audit trail."""

    embedded: dict[str, Any] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)


async def embed_nested_documents(
    documents: DocumentService,
    name: str,
    doc: Document,
    values: dict[str, Any],
    may_run: DocumentCheck,
) -> tuple[dict[str, Any], Nested]:
    """The command's content (with ``__embedded`` when it nests documents) and what nests."""
    walk = _Walk(documents, may_run)
    await walk.document(name, doc, values, depth=1)
    content = copy.deepcopy(doc.content)
    if walk.nested.embedded:
        content["__embedded"] = walk.nested.embedded
    return content, walk.nested


class _Walk:
    def __init__(self, documents: DocumentService, may_run: DocumentCheck) -> None:
        self._documents = documents
        self._may_run = may_run
        self.nested = Nested()

    async def document(self, name: str, doc: Document, values: dict[str, Any], depth: int) -> None:
        for step in doc.steps:
            if step.action == RUN_DOCUMENT:
                await self._step(name, doc, step, values, depth)

    async def _step(
        self, parent: str, doc: Document, step: Step, values: dict[str, Any], depth: int
    ) -> None:
        where = f"{parent} mainSteps[{step.index}]"
        try:
            inputs, _ = interpolate_step(step, doc, values)
        except DocumentError as exc:
            raise InvalidRequest(f"{where}: {exc.message}") from None
        kind = inputs.get("documentType") or "SSMDocument"
        if kind == "LocalPath":
            return  # a file on the node: nothing on the server to embed or to authorize
        if kind != "SSMDocument":
            raise InvalidRequest(
                f"{where}.inputs.documentType {str(kind)[:40]!r} must be SSMDocument or LocalPath"
            )
        path = inputs.get("documentPath")
        if not isinstance(path, str) or not path or "{{" in path:
            raise InvalidRequest(f"{where}.inputs.documentPath must name a document")
        if depth >= MAX_DEPTH:
            raise InvalidRequest(f"documents nest deeper than {MAX_DEPTH} levels (at {path})")
        if len(self.nested.runs) >= MAX_NESTED_RUNS:
            raise InvalidRequest(f"a command may run at most {MAX_NESTED_RUNS} nested documents")
        name, _, version = path.partition(":")
        if not self._may_run(name):
            raise AccessDenied(
                "commands:Send",
                f"document/{name}",
                f"{where} runs the document {path}, which you may not run "
                f"(commands:Send on document/{name})",
            )
        resolved = await self._documents.resolve(name, version or None)
        try:
            nested_values = resolve_parameters(
                resolved.document, nested_parameters(inputs.get("documentParameters"))
            )
        except DocumentError as exc:
            raise InvalidRequest(f"{where} runs {path}: {exc.message}") from None
        self.nested.embedded.setdefault(path, resolved.document.content)
        self.nested.runs.append(f"{resolved.name}:{resolved.version}")
        await self.document(path, resolved.document, nested_values, depth + 1)
