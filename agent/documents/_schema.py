"""The JSON Schema (draft 7) of a Command document, and its errors turned into DocumentError
with the exact path (``mainSteps[1].inputs.runCommand: required``).

jsonschema is imported on first use only: the agent's daemon never pays for it."""

from __future__ import annotations

import json
from typing import Any, Final

from agent.documents._model import (
    DOWNLOAD_CONTENT,
    ON_FAILURE_VALUES,
    ON_SUCCESS_VALUES,
    PARAMETER_TYPES,
    RUN_DOCUMENT,
    SCRIPT_ACTIONS,
)
from agent.documents._util import PARAM_NAME, fmt_path
from agent.errors import DocumentError

STEP_NAME_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"

_COUNT = {"type": "integer", "minimum": 0}
_STRINGS = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "x-message": "must be a string or a list of strings",
}
_TIMEOUT = {"type": ["integer", "string"], "x-message": "must be a whole number of seconds"}
_OBJECT_OR_STRING = {"type": ["object", "string"]}

_SHARED = {
    "onFailure": {"enum": list(ON_FAILURE_VALUES)},
    "onSuccess": {"enum": list(ON_SUCCESS_VALUES)},
    "finallyStep": {"type": "boolean"},
}
_SCRIPT = {
    "runCommand": _STRINGS,
    "workingDirectory": {"type": "string"},
    "timeoutSeconds": _TIMEOUT,
}
_RUN_DOCUMENT = {
    "documentType": {"type": "string"},
    "documentPath": {"type": "string"},
    "documentParameters": _OBJECT_OR_STRING,
}
_DOWNLOAD = {
    "sourceType": {"type": "string"},
    "sourceInfo": _OBJECT_OR_STRING,
    "destinationPath": {"type": "string"},
}
# action -> (its inputs, the required ones)
_ACTION_INPUTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    **{action: (_SCRIPT, ["runCommand"]) for action in sorted(SCRIPT_ACTIONS)},
    RUN_DOCUMENT: (_RUN_DOCUMENT, ["documentType"]),
    DOWNLOAD_CONTENT: (_DOWNLOAD, ["sourceType", "sourceInfo"]),
}


def _inputs(props: dict[str, Any], required: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": {**props, **extra},
        "additionalProperties": False,
    }


def _step_rule(action: str) -> dict[str, Any]:
    props, required = _ACTION_INPUTS[action]
    return {
        "if": {"required": ["action"], "properties": {"action": {"const": action}}},
        "then": {
            "required": ["inputs"],
            "properties": {"inputs": _inputs(props, required, _SHARED)},
        },
    }


_STEP = {
    "type": "object",
    "required": ["action", "name"],
    "properties": {
        "action": {"type": "string", "minLength": 1},
        "name": {"type": "string", "pattern": STEP_NAME_PATTERN},
        "inputs": {"type": "object", "properties": _SHARED},
        "precondition": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "additionalProperties": False,
    "allOf": [_step_rule(action) for action in sorted(_ACTION_INPUTS)],
}


def _plugin_12(action: str | None) -> dict[str, Any]:
    """One plugin of a schema 1.2 ``runtimeConfig``."""
    if action is None:
        properties: dict[str, Any] = {"type": ["array", "object"], "items": {"type": "object"}}
    else:
        props, required = _ACTION_INPUTS[action]
        item = _inputs(props, required, {"id": {"type": "string"}})
        properties = {"type": "array", "minItems": 1, "items": item}
    return {
        "type": "object",
        "required": ["properties"],
        "properties": {"properties": properties, "settings": {}, "description": {"type": "string"}},
        "additionalProperties": False,
    }


_PARAMETER = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": list(PARAMETER_TYPES)},
        "description": {"type": "string"},
        "default": {},
        "allowedValues": {"type": "array"},
        "allowedPattern": {"type": "string"},
        "minItems": _COUNT,
        "maxItems": _COUNT,
        "minChars": _COUNT,
        "maxChars": _COUNT,
        "displayType": {"enum": ["textfield", "textarea"]},
        "interpolationType": {"enum": ["ENV_VAR"]},
    },
    "additionalProperties": False,
}

SCHEMA: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["schemaVersion"],
    "properties": {
        "schemaVersion": {"type": "string"},
        "description": {"type": "string"},
        "documentType": {"const": "Command"},
        "parameters": {
            "type": "object",
            "propertyNames": {"pattern": f"^{PARAM_NAME}$"},
            "additionalProperties": _PARAMETER,
        },
        "mainSteps": {"type": "array", "minItems": 1, "items": _STEP},
        "runtimeConfig": {
            "type": "object",
            "minProperties": 1,
            "properties": {action: _plugin_12(action) for action in sorted(_ACTION_INPUTS)},
            "additionalProperties": _plugin_12(None),
        },
    },
    "additionalProperties": False,
    "if": {"properties": {"schemaVersion": {"const": "1.2"}}},
    "then": {"required": ["runtimeConfig"]},
    "else": {"required": ["mainSteps"]},
}

_validator: Any = None

_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def validate(content: dict[str, Any]) -> None:
    """Raise DocumentError for the first violation (in document order), naming its path."""
    global _validator
    if _validator is None:
        import jsonschema  # type: ignore[import-untyped, unused-ignore]

        _validator = jsonschema.Draft7Validator(SCHEMA)
    errors = list(_validator.iter_errors(content))
    if errors:
        converted = [_convert(error) for error in errors]
        raise min(converted, key=lambda e: _order(e.path))


def _order(path: str) -> tuple[tuple[int, int | str], ...]:
    # "mainSteps[10].x" after "mainSteps[9].x": compare numbers as numbers.
    parts: list[tuple[int, int | str]] = []
    for chunk in path.replace("[", ".[").split("."):
        if chunk.startswith("[") and chunk.endswith("]") and chunk[1:-1].isdigit():
            parts.append((0, int(chunk[1:-1])))
        else:
            parts.append((1, chunk))
    return tuple(parts)


def _convert(error: Any) -> DocumentError:
    parts: list[str | int] = list(error.absolute_path)
    kind: str = error.validator
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    if "propertyNames" in error.absolute_schema_path:
        # The name itself is wrong: error.instance is the offending key.
        return DocumentError(
            "invalid name: use letters and digits only", fmt_path([*parts, error.instance])
        )
    if kind == "required":
        missing = next(n for n in error.validator_value if n not in error.instance)
        return DocumentError("required", fmt_path([*parts, missing]))
    if kind == "additionalProperties":
        known = schema.get("properties", {})
        extra = sorted(k for k in error.instance if k not in known)
        at_step = len(parts) == 2 and parts[0] == "mainSteps"
        hint = " (it belongs inside inputs)" if at_step and extra[0] in _SHARED else ""
        return DocumentError("unknown field" + hint, fmt_path([*parts, extra[0]]))
    path = fmt_path(parts)
    if "x-message" in schema:
        return DocumentError(schema["x-message"], path)
    if kind == "type":
        wanted = error.validator_value
        words = [_TYPE_WORDS[t] for t in ([wanted] if isinstance(wanted, str) else wanted)]
        return DocumentError("must be " + " or ".join(words), path)
    if kind == "enum":
        return DocumentError("must be one of: " + ", ".join(map(str, error.validator_value)), path)
    if kind == "const":
        return DocumentError(f"must be {json.dumps(error.validator_value)}", path)
    if kind == "minItems":
        return DocumentError(f"must have at least {error.validator_value} item(s)", path)
    if kind in ("minLength", "minProperties"):
        return DocumentError("must not be empty", path)
    if kind == "pattern":
        return DocumentError(f"must match {error.validator_value}", path)
    if kind == "minimum":
        return DocumentError(f"must be at least {error.validator_value}", path)
    return DocumentError(str(error.message), path)
