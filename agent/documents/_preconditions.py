"""Step preconditions (schema 2.2): ``{"StringEquals": [a, b]}`` with exactly two arguments,
either ``platformType`` against Linux, Windows or MacOS (either order, the platform
case-insensitive), or a document parameter ``{{ name }}`` against a value.

Anything else (another operator, identical arguments, a {{ssm:...}} reference, an unknown
platform, two parameters) is an unrecognized precondition: the step fails, as the SSM agent
fails it.  A precondition in a document of schema before 2.2 fails its step too.  A false
precondition skips the step; when one operator is false and another unrecognized, the step is
skipped (the SSM agent's order)."""

from __future__ import annotations

import json
from typing import Any, Final

from agent.documents._model import MISSING, Document, PreconditionResult, Step
from agent.documents._util import REF_RE, is_ssm_ref, single_ref, value_text

PLATFORMS: Final = {"linux": "Linux", "windows": "Windows", "macos": "MacOS"}
_RUN: Final = PreconditionResult("run")


class _Unrecognized(Exception):
    pass


def evaluate_precondition(
    step: Step, doc: Document, platform_type: str, values: dict[str, Any]
) -> PreconditionResult:
    """Whether ``step`` runs on a node of ``platform_type`` (agent.facts.platform_type()) with
    these parameter values.  Never raises."""
    condition = step.precondition
    if not condition:
        return _RUN
    if doc.schema_version != "2.2":
        return PreconditionResult(
            "fail",
            "Precondition is not supported for document schema version prior to 2.2. "
            f"Step name: {step.name}",
        )
    if not isinstance(condition, dict):
        return _fail([f"{json.dumps(condition)} (not an object)"], step)
    skipped: str | None = None
    unrecognized: list[str] = []
    for operator, args in condition.items():
        shown = f'"{operator}": {json.dumps(args)}'
        try:
            holds, why = _evaluate(operator, args, doc, platform_type, values)
        except _Unrecognized as exc:
            unrecognized.append(f"{shown} ({exc})")
            continue
        if not holds and skipped is None:
            skipped = f"Step execution skipped due to {why}. Step name: {step.name}"
    if skipped is not None:
        return PreconditionResult("skip", skipped)
    if unrecognized:
        return _fail(unrecognized, step)
    return _RUN


def _fail(items: list[str], step: Step) -> PreconditionResult:
    return PreconditionResult(
        "fail", f"Unrecognized precondition(s): {'; '.join(items)}. Step name: {step.name}"
    )


def _evaluate(
    operator: str, args: Any, doc: Document, platform_type: str, values: dict[str, Any]
) -> tuple[bool, str]:
    if operator != "StringEquals":
        raise _Unrecognized("the only operator is StringEquals")
    if not isinstance(args, list) or len(args) != 2 or not all(isinstance(a, str) for a in args):
        raise _Unrecognized("StringEquals takes exactly two strings")
    first, second = args
    if first == second:
        raise _Unrecognized("the two arguments are identical")
    for arg in args:
        if any(is_ssm_ref(m.group(1)) for m in REF_RE.finditer(arg)):
            raise _Unrecognized("Parameter Store references are not allowed in preconditions")
    if "platformType" in args:
        other = second if first == "platformType" else first
        wanted = PLATFORMS.get(_resolve(other, doc, values).lower())
        if wanted is None:
            raise _Unrecognized("platformType is compared with Linux, Windows or MacOS")
        return wanted.lower() == platform_type.lower(), "incompatible platform"
    params = [arg for arg in args if single_ref(arg) is not None]
    if len(params) != 1:
        raise _Unrecognized("compare platformType or one document parameter with a value")
    literal = second if params[0] == first else first
    if "{{" in literal:
        raise _Unrecognized("the value must be plain text")
    return _resolve(params[0], doc, values) == literal, "unsatisfied precondition"


def _resolve(arg: str, doc: Document, values: dict[str, Any]) -> str:
    """The text of ``arg``: a ``{{ name }}`` of a declared parameter becomes its value."""
    ref = single_ref(arg)
    if ref is None:
        if "{{" in arg:
            raise _Unrecognized(f"cannot read {arg!r}")
        return arg
    spec = doc.parameters.get(ref)
    if spec is None:
        raise _Unrecognized(f"{arg} names no declared parameter")
    value = values.get(ref, spec.default)
    if value is MISSING:
        raise _Unrecognized(f"parameter {ref!r} has no value")
    return value_text(value)
