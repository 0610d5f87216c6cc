"""``{{ name }}`` interpolation into step inputs, SSM_<name> environment variables for
``interpolationType: ENV_VAR`` parameters, and the ``{{ssm:...}}`` references left for
Parameter Store.

Rules (the SSM agent's): a string that is exactly ``{{ name }}`` becomes the value itself (any
type); inside a list, a list value expands into the list's elements (``runCommand:
["{{ commands }}"]``); inside a longer string the value's text is inserted (StringList items
joined with ',', maps as JSON).  ENV_VAR parameters are replaced in the text too, as AWS does;
scripts that want injection safety read ``$SSM_name`` instead of writing ``{{ name }}``."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from agent.documents._model import (
    DEFAULT_TIMEOUT_SECONDS,
    MISSING,
    SCRIPT_ACTIONS,
    Document,
    Step,
)
from agent.documents._steps import check_timeout
from agent.documents._util import REF_RE, is_ssm_ref, join, single_ref, value_text, walk_strings
from agent.errors import DocumentError


def ssm_references(doc: Document, values: dict[str, Any]) -> list[str]:
    """Every Parameter Store reference in the parameter values and the step inputs, in order
    of appearance, once each, as written without braces: ``ssm:/app/db-host``,
    ``ssm-secure:/app/db-password``."""
    found: dict[str, None] = {}
    sources: list[tuple[Any, str]] = [(values, "parameters")]
    sources += [(step.inputs, step.inputs_path) for step in doc.steps]
    for value, path in sources:
        for _, text in walk_strings(value, path):
            for match in REF_RE.finditer(text):
                if is_ssm_ref(match.group(1)):
                    found.setdefault(match.group(1), None)
    return list(found)


class _Values:
    def __init__(self, doc: Document, values: dict[str, Any], ssm: Mapping[str, Any]) -> None:
        self.doc, self.values, self.ssm = doc, values, ssm

    def get(self, name: str, path: str) -> Any:
        if name in self.values:
            value = self.values[name]
        else:
            default = self.doc.parameters[name].default
            if default is MISSING:
                raise DocumentError(f"parameter {name!r} has no value", path)
            value = default
        return self._resolve_ssm(copy.deepcopy(value))

    def _resolve_ssm(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._resolve_ssm(item) for item in value]
        if isinstance(value, str):
            ref = single_ref(value)
            if ref is not None and ref in self.ssm:
                return copy.deepcopy(self.ssm[ref])
            return REF_RE.sub(self._ssm_text, value)
        return value

    def _ssm_text(self, match: re.Match[str]) -> str:
        ref = match.group(1)
        return value_text(self.ssm[ref]) if ref in self.ssm else match.group(0)

    def whole(self, text: str, path: str) -> tuple[bool, Any]:
        """(True, value) when ``text`` is exactly one reference we can resolve."""
        ref = single_ref(text)
        if ref is not None and ref in self.doc.parameters:
            return True, self.get(ref, path)
        if ref is not None and ref in self.ssm:
            return True, copy.deepcopy(self.ssm[ref])
        return False, None

    def substitute(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            found, whole = self.whole(value, path)
            if found:
                return whole
            return REF_RE.sub(lambda m: self._text(m, path), value)
        if isinstance(value, dict):
            return {key: self.substitute(item, join(path, key)) for key, item in value.items()}
        if isinstance(value, list):
            out: list[Any] = []
            for i, item in enumerate(value):
                here = join(path, i)
                found, whole = self.whole(item, here) if isinstance(item, str) else (False, None)
                if found and isinstance(whole, list):
                    out.extend(whole)
                else:
                    out.append(whole if found else self.substitute(item, here))
            return out
        return value

    def _text(self, match: re.Match[str], path: str) -> str:
        ref = match.group(1)
        if ref in self.doc.parameters:
            return value_text(self.get(ref, path))
        if ref in self.ssm:
            return value_text(self.ssm[ref])
        return match.group(0)


def interpolate_step(
    step: Step,
    doc: Document,
    values: dict[str, Any],
    *,
    ssm_values: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """(inputs with every ``{{ name }}`` replaced, env with SSM_<name> for each ENV_VAR
    parameter).  ``values`` are the resolved parameter values (resolve_parameters);
    ``ssm_values`` optionally maps references found by ssm_references ("ssm:/path") to what
    Parameter Store returned; references without an entry are left as written.

    The result's timeoutSeconds, when present, is an int in range (DocumentError otherwise),
    and a script action's runCommand is a list of strings."""
    lookup = _Values(doc, values, ssm_values or {})
    inputs: dict[str, Any] = lookup.substitute(step.inputs, step.inputs_path)
    env = {
        f"SSM_{name}": value_text(lookup.get(name, join("parameters", name)))
        for name, spec in doc.parameters.items()
        if spec.env_var
    }
    if "timeoutSeconds" in inputs:
        path = join(step.inputs_path, "timeoutSeconds")
        seconds = check_timeout(inputs["timeoutSeconds"], path)
        inputs["timeoutSeconds"] = DEFAULT_TIMEOUT_SECONDS if seconds is None else seconds
    if step.action in SCRIPT_ACTIONS and "runCommand" in inputs:
        path = join(step.inputs_path, "runCommand")
        inputs["runCommand"] = _commands(inputs["runCommand"], path)
    return inputs, env


def _commands(value: Any, path: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    flat: list[Any] = []
    for item in items:
        flat.extend(item if isinstance(item, list) else [item])
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            raise DocumentError("must be a string (after interpolation)", join(path, i))
    return flat
