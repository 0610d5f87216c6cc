"""Text -> Document: size limit, JSON or YAML, document type, JSON Schema, the extra checks.

PyYAML is imported only when a document is YAML."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from agent.documents._model import SCHEMA_VERSIONS, Document
from agent.documents._schema import validate
from agent.documents._steps import build_parameters, build_steps, check_steps
from agent.documents._util import canonical_json, check_json
from agent.errors import DocumentError
from agent.wire import MAX_DOCUMENT_BYTES

# Actions that exist only in Automation runbooks: a document using them is of the wrong type.
_AUTOMATION_NAMES = """approve assertAwsResourceProperty branch changeInstanceState copyImage
    createImage createStack createTags deleteImage deleteStack executeAutomation executeAwsApi
    executeScript executeStateMachine invokeLambdaFunction invokeWebhook loop pause runCommand
    runInstances sleep updateVariable waitForAwsResourceProperty"""
AUTOMATION_ACTIONS = frozenset("aws:" + name for name in _AUTOMATION_NAMES.split())


def parse_document(text: str | bytes, fmt: str | None = None) -> Document:
    """Parse and validate a Command document.  ``fmt`` is "json", "yaml" or None (JSON if the
    text parses as JSON, else YAML).  Raises DocumentError naming the path of the problem."""
    if fmt not in (None, "json", "yaml"):
        raise DocumentError(f"unknown document format {fmt!r} (use json or yaml)")
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DocumentError(
            f"the document is {len(raw)} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes"
        )
    try:
        source = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"the document is not UTF-8 text (byte {exc.start})") from None
    if not source.strip():
        raise DocumentError("the document is empty")
    try:
        content = _parse(source, fmt)
    except RecursionError:
        raise DocumentError("the document is nested too deeply") from None
    return document_from_content(content)


def _parse(source: str, fmt: str | None) -> Any:
    if fmt == "json":
        return _load_json(source)
    if fmt == "yaml":
        return _load_yaml(source)
    try:
        return _load_json(source)
    except DocumentError:
        if source.lstrip().startswith("{"):
            raise  # meant as JSON: its error is the useful one
    return _load_yaml(source)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _load_json(source: str) -> Any:
    try:
        return json.loads(source, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DocumentError(
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise DocumentError(f"invalid JSON: {exc}") from None


# PyYAML's pure-Python scanner is slow on deeply nested flow collections ("[[[[...": minutes
# for 64 KB).  libyaml (in PyYAML's wheels) is fast and stops at depth 1000; without it, a
# document with this many '[' and '{' is refused.
_PURE_PYTHON_MAX_BRACKETS = 1000


def _load_yaml(source: str) -> Any:
    import yaml  # type: ignore[import-untyped, unused-ignore]

    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        loader = yaml.SafeLoader
        if source.count("[") + source.count("{") > _PURE_PYTHON_MAX_BRACKETS:
            raise DocumentError(
                f"more than {_PURE_PYTHON_MAX_BRACKETS} '[' and '{{' in YAML; PyYAML is "
                "installed without libyaml here: write the document as JSON"
            )
    try:
        # Aliases would let 64 KB of YAML expand to gigabytes of JSON: refuse them.
        for event in yaml.parse(source, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1
                raise DocumentError(
                    f"invalid YAML: aliases (*{event.anchor}) are not supported (line {line})"
                )
        documents = list(yaml.load_all(source, Loader=loader))
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise DocumentError(f"invalid YAML: {problem}{where}") from None
    if len(documents) != 1:
        raise DocumentError("invalid YAML: the text must hold exactly one YAML document")
    return documents[0]


def document_from_content(content: dict[str, Any], *, validated: bool = False) -> Document:
    """Validate already-parsed content (what the agent receives over the wire) with the same
    checks as parse_document.  The Document holds its own copy of the content.

    ``validated``: the content passed the JSON Schema already (the server checks every
    document when it is created, with this same code, and sends what it stored), so the
    schema is not run again: the worker then needs no jsonschema, and the fork server that
    preloads it stays small (docs/agent-state.md).  Every other check still runs; a worker
    treats anything it cannot build as an invalid document."""
    if not isinstance(content, dict):
        raise DocumentError("a document must be an object (a mapping at the top level)")
    try:
        check_json(content)
        text = canonical_json(content)
    except RecursionError:
        raise DocumentError("the document is nested too deeply") from None
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    content = copy.deepcopy(content)  # ours now; key order kept (the digest sorts keys)
    version = content.get("schemaVersion")
    if isinstance(version, float):  # YAML's schemaVersion: 2.2, unquoted
        version = content["schemaVersion"] = str(version)
    _check_kind(content)
    _check_version(content)
    if not validated:
        validate(content)
    parameters = build_parameters(content)
    steps = build_steps(content)
    check_steps(steps, parameters)
    return Document(
        schema_version=content["schemaVersion"],
        description=content.get("description", ""),
        parameters=parameters,
        steps=steps,
        content=content,
        sha256=hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest(),
    )


def _wrong_type(kind: str, why: str, path: str) -> DocumentError:
    return DocumentError(f"this is {kind} ({why}); Corral runs Command documents only", path)


def _check_kind(content: dict[str, Any]) -> None:
    kind = content.get("documentType")
    if "documentType" in content and kind != "Command":
        raise _wrong_type(f"a document of type {kind!r}", "documentType", "documentType")
    if "assumeRole" in content:
        raise _wrong_type("an Automation runbook", "it has assumeRole", "assumeRole")
    if content.get("schemaVersion") == "0.3":
        raise _wrong_type("an Automation runbook", "schemaVersion 0.3", "schemaVersion")
    if "sessionType" in content:
        raise _wrong_type("a Session document", "it has sessionType", "sessionType")
    steps = content.get("mainSteps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        action = step.get("action") if isinstance(step, dict) else None
        if isinstance(action, str) and action in AUTOMATION_ACTIONS:
            why = f"{action} is an Automation action"
            raise _wrong_type("an Automation runbook", why, f"mainSteps[{i}].action")


def _check_version(content: dict[str, Any]) -> None:
    if "schemaVersion" not in content:
        raise DocumentError("required", "schemaVersion")
    version = content["schemaVersion"]
    if version not in SCHEMA_VERSIONS:
        raise DocumentError(
            f"unsupported schema version {version!r} (Command documents use 2.2; "
            f"1.2 and 2.0 are read too)",
            "schemaVersion",
        )
    if version == "1.2" and "mainSteps" in content:
        raise DocumentError("not allowed with schemaVersion 1.2 (use runtimeConfig)", "mainSteps")
    if version != "1.2" and "runtimeConfig" in content:
        raise DocumentError(
            f"not allowed with schemaVersion {version} (use mainSteps)", "runtimeConfig"
        )
