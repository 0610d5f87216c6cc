"""Small helpers shared by the document modules: paths in error messages, the ``{{ ... }}``
reference syntax, canonical JSON, and the text form of a parameter value."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

from agent.errors import DocumentError

# A parameter name, as the SSM agent accepts them.
PARAM_NAME: Final = r"[A-Za-z0-9]+"
PARAM_NAME_RE: Final = re.compile(PARAM_NAME)
# {{ name }} / {{name}}; {{ssm:/path}} / {{ ssm-secure:name }}.  Anything else between double
# braces ({{.Names}} in a docker --format, say) is not ours and is left alone.
REF_RE: Final = re.compile(r"\{\{\s*(" + PARAM_NAME + r"|ssm(?:-secure)?:[^\s{}]+)\s*\}\}")
SSM_PREFIXES: Final = ("ssm:", "ssm-secure:")


def fmt_path(parts: Sequence[str | int]) -> str:
    """``["mainSteps", 1, "inputs"]`` -> ``mainSteps[1].inputs``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` (dict values and list items, recursively), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk_strings(item, join(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk_strings(item, join(path, i))


def is_ssm_ref(ref: str) -> bool:
    return ref.startswith(SSM_PREFIXES)


def single_ref(text: str) -> str | None:
    """The reference when ``text`` is exactly one ``{{ ... }}`` (spaces allowed), else None."""
    match = REF_RE.fullmatch(text.strip())
    return match.group(1) if match else None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def value_text(value: Any) -> str:
    """A parameter value as text, for interpolation inside a string and for SSM_<name>:
    strings as they are, booleans true/false, StringList items joined with ',', maps as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return json.dumps(value, ensure_ascii=False)


def check_json(value: Any, path: str = "") -> None:
    """Refuse what JSON cannot carry (YAML dates, non-string keys, NaN): the content is stored
    and sent as JSON."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DocumentError("numbers must be finite", path)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_json(item, join(path, i))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DocumentError(f"keys must be strings, not {key!r}", path)
            check_json(item, join(path, key))
        return
    kind = type(value).__name__
    raise DocumentError(f"a {kind} value is not allowed (quote it to make it a string)", path)


def short(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
