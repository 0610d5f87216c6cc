"""``aws:runDocument``: run another document as this step.

``documentType`` ``SSMDocument`` (the default) names a stored document (``name`` or
``name:version``); the server sends its content with the command (``__embedded``), so the node
never reads the document store.  ``LocalPath`` reads a document file on the node.  Documents
nest at most 3 deep; a script inside a nested document cannot reboot the node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent import wire
from agent.errors import DocumentError
from agent.plugins.base import NestedRun, PluginResult, StepContext, StopReason

NAME = "aws:runDocument"
PLATFORMS = frozenset({"Linux", "MacOS", "Windows"})
MAX_DEPTH = 3


def _parameters(raw: Any) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise DocumentError("documentParameters is not a JSON object") from None
    if not isinstance(raw, dict):
        raise DocumentError("documentParameters must be an object of parameter values")
    return raw


class RunDocument:
    name = NAME

    def __init__(self) -> None:
        self._nested: NestedRun | None = None
        self._stopped: StopReason | None = None

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        if ctx.run_nested is None:
            return PluginResult.failed("aws:runDocument cannot run here")
        if ctx.depth >= MAX_DEPTH:
            return PluginResult.failed(
                f"aws:runDocument: documents nest at most {MAX_DEPTH} levels deep"
            )
        try:
            from agent.documents import document_from_content, parse_document

            kind = str(inputs.get("documentType") or "SSMDocument")
            where = str(inputs.get("documentPath") or "")
            if not where:
                raise DocumentError("documentPath is required")
            if kind == "LocalPath":
                doc = parse_document(_read_local(Path(where)))
            elif kind == "SSMDocument":
                name = where.partition(":")[0]
                content = ctx.embedded.get(name)
                if not isinstance(content, dict):
                    raise DocumentError(f"document {name} was not sent with the command")
                doc = document_from_content(content)
            else:
                raise DocumentError(
                    f"documentType {kind} is not supported (SSMDocument or LocalPath)"
                )
            self._nested = ctx.run_nested(doc, _parameters(inputs.get("documentParameters")), ctx)
        except DocumentError as exc:
            return PluginResult.failed(f"aws:runDocument: {exc.message}")
        if self._stopped is not None:
            self._nested.request_stop(self._stopped)
        outcome = self._nested.run()
        if outcome.status == wire.ST_FAILED:
            return PluginResult.failed(f"the document {where} failed", outcome.response_code)
        return PluginResult(outcome.status, outcome.response_code)

    def request_stop(self, reason: StopReason) -> None:
        if self._stopped is None:
            self._stopped = reason
        if self._nested is not None:
            self._nested.request_stop(reason)


def _read_local(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(wire.MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > wire.MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{path} is larger than {wire.MAX_DOCUMENT_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{path} is not UTF-8 text") from None
