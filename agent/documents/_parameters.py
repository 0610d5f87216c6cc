"""Parameter values: from the CLI's ``name=value`` strings, and from given values to the
complete, typed, checked set a command runs with (defaults applied)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from agent.documents._model import MISSING, Document, ParameterSpec
from agent.documents._util import (
    canonical_json,
    is_ssm_ref,
    join,
    short,
    single_ref,
    value_text,
)
from agent.errors import DocumentError

_INTEGER = re.compile(r"-?[0-9]+")


def parse_param_args(doc: Document, args: list[str]) -> dict[str, Any]:
    """CLI ``name=value`` strings -> typed values (not yet checked: see resolve_parameters).

    String as is; StringList: a JSON array of strings when the value is one, else a single
    element (``[ -f x ] && ...`` stays one command), and a repeated name appends; Boolean
    true/false; Integer; StringMap and MapList as JSON."""
    out: dict[str, Any] = {}
    for arg in args:
        name, sep, text = arg.partition("=")
        if not sep or not name:
            raise DocumentError(f"expected name=value, got {short(arg)}", "parameters")
        path = join("parameters", name)
        spec = doc.parameters.get(name)
        if spec is None:
            raise DocumentError("unknown parameter", path)
        if spec.type == "StringList":
            out.setdefault(name, []).extend(_string_list_arg(text))
            continue
        if name in out:
            raise DocumentError("given more than once", path)
        if spec.type in ("StringMap", "MapList"):
            try:
                out[name] = json.loads(text)
            except ValueError as exc:
                raise DocumentError(f"must be JSON ({exc})", path) from None
        else:
            out[name] = text  # String, and Integer/Boolean converted by coerce()
        out[name] = coerce(spec, out[name], path)
    return out


def _string_list_arg(text: str) -> list[str]:
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return [text]
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return items
    return [text]


def resolve_parameters(doc: Document, given: dict[str, Any]) -> dict[str, Any]:
    """Given values -> every parameter's value: defaults applied, types checked (an Integer
    given as "5" and a Boolean given as "true" are converted, as AWS's CLI sends strings; an
    AWS-style one-element list is unwrapped for the single-valued types), allowedValues,
    allowedPattern (the whole value must match), minItems/maxItems, minChars/maxChars.

    A value that is exactly a ``{{ssm:...}}`` reference is left for Parameter Store and is
    checked once resolved (call this again with the resolved values)."""
    for name in given:
        if name not in doc.parameters:
            raise DocumentError("unknown parameter", join("parameters", name))
    out: dict[str, Any] = {}
    for name, spec in doc.parameters.items():
        path = join("parameters", name)
        if name in given:
            value = given[name]
        elif spec.default is not MISSING:
            value = copy.deepcopy(spec.default)
        else:
            raise DocumentError("required parameter missing (it has no default)", path)
        value = coerce(spec, value, path)
        check_constraints(spec, value, path)
        out[name] = value
    return out


def nested_parameters(raw: Any) -> dict[str, Any]:
    """An ``aws:runDocument`` step's ``documentParameters`` (an object, or its JSON text) as
    the given values of the nested document; nothing given is ``{}``."""
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


def _is_ref(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    ref = single_ref(value)
    return ref is not None and is_ssm_ref(ref)


def coerce(spec: ParameterSpec, value: Any, path: str) -> Any:
    """``value`` converted to ``spec.type``, or DocumentError."""
    kind = spec.type
    if kind != "StringList" and kind != "MapList" and isinstance(value, list) and len(value) == 1:
        value = value[0]  # AWS's API form: {"name": ["value"]}
    if _is_ref(value):
        return value
    if kind == "String":
        if isinstance(value, str):
            return value
        raise DocumentError("must be a string", path)
    if kind == "StringList":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise DocumentError("must be a list of strings", path)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise DocumentError("must be a string", join(path, i))
        return list(items)
    if kind == "Integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value.strip())
        raise DocumentError(f"must be an integer, not {short(value)}", path)
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise DocumentError(f"must be true or false, not {short(value)}", path)
    if isinstance(value, str):  # StringMap / MapList given as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise DocumentError(f"must be a {kind} (JSON)", path) from None
    if kind == "StringMap" and isinstance(value, dict):
        return value
    if kind == "MapList" and isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise DocumentError("must be an object", join(path, i))
        return value
    what = "an object" if kind == "StringMap" else "a list of objects"
    raise DocumentError(f"must be {what}", path)


def check_constraints(spec: ParameterSpec, value: Any, path: str) -> None:
    if _is_ref(value):
        return
    if isinstance(value, list | dict):
        _bounds(len(value), spec.min_items, spec.max_items, "item", path)
    if spec.type == "StringList":
        for i, item in enumerate(value):
            if not _is_ref(item):
                _check_scalar(spec, item, join(path, i))
    elif spec.type in ("StringMap", "MapList"):
        if spec.allowed_values is not None and value not in spec.allowed_values:
            raise DocumentError("is not one of the allowed values", path)
        _bounds(len(canonical_json(value)), spec.min_chars, spec.max_chars, "character", path)
    else:
        _check_scalar(spec, value, path)


def _check_scalar(spec: ParameterSpec, value: Any, path: str) -> None:
    text = value_text(value)
    if spec.allowed_values is not None:
        allowed = [value_text(v) for v in spec.allowed_values]
        if text not in allowed:
            raise DocumentError(
                f"{short(text)} is not one of the allowed values: {', '.join(allowed)}", path
            )
    if spec.allowed_pattern is not None and not re.fullmatch(spec.allowed_pattern, text):
        raise DocumentError(
            f"{short(text)} does not match allowedPattern {spec.allowed_pattern}", path
        )
    _bounds(len(text), spec.min_chars, spec.max_chars, "character", path)


def _bounds(n: int, low: int | None, high: int | None, unit: str, path: str) -> None:
    if low is not None and n < low:
        raise DocumentError(f"has {n} {unit}(s); at least {low} required", path)
    if high is not None and n > high:
        raise DocumentError(f"has {n} {unit}(s); at most {high} allowed", path)
