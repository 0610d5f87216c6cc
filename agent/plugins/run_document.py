"""``aws:runDocument``: run another document as this step.

``documentType`` ``SSMDocument`` (the default) names a stored document (``name`` or
``name:version``); the server sends its content with the command (``__embedded``), so the node
never reads the document store.  ``LocalPath`` reads a document file on the node.  Documents
nest at most 3 deep; a script inside a nested document cannot reboot the node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent import wire
from agent.errors import DocumentError
from agent.plugins.base import NestedRun, PluginResult, StepContext, StopReason

NAME = "aws:runDocument"
PLATFORMS = frozenset({"Linux", "MacOS", "Windows"})
MAX_DEPTH = 3


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
            from agent.documents import document_from_content, nested_parameters, parse_document

            kind = str(inputs.get("documentType") or "SSMDocument")
            where = str(inputs.get("documentPath") or "")
            if not where:
                raise DocumentError("documentPath is required")
            if kind == "LocalPath":
                doc = parse_document(_read_local(Path(where)))
            elif kind == "SSMDocument":
                doc = document_from_content(_embedded(ctx.embedded, where), validated=True)
            else:
                raise DocumentError(
                    f"documentType {kind} is not supported (SSMDocument or LocalPath)"
                )
            params = nested_parameters(inputs.get("documentParameters"))
            self._nested = ctx.run_nested(doc, params, ctx)
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


def _embedded(embedded: dict[str, Any], where: str) -> dict[str, Any]:
    """The content the server embedded for ``NAME[:VERSION]``, as the step names it after
    interpolation.  Only what the server resolved and authorized can run: a path it did not
    embed (another version, a name built from values it did not see) fails the step."""
    content = embedded.get(where)
    if not isinstance(content, dict):
        raise DocumentError(f"document {where} was not sent with the command")
    return content


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
