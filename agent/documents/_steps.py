"""From schema-valid content to ParameterSpec and Step objects, and the checks a JSON Schema
cannot express: unique step names, timeoutSeconds range, finallyStep on the last step only,
{{ name }} references to declared parameters, compilable allowedPattern, typed defaults.

Schema 1.2 ``runtimeConfig`` is normalized to the same Step list: one step per ``properties``
entry, named after the plugin ("aws:runShellScript"; "aws:runShellScript.1" for a second)."""

from __future__ import annotations

import re
from typing import Any

from agent.documents._model import (
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    MISSING,
    SHARED_INPUTS,
    ParameterSpec,
    Step,
    parse_timeout,
    timeout_in_range,
)
from agent.documents._parameters import coerce
from agent.documents._util import REF_RE, is_ssm_ref, join, walk_strings
from agent.errors import DocumentError


def build_parameters(content: dict[str, Any]) -> dict[str, ParameterSpec]:
    specs: dict[str, ParameterSpec] = {}
    for name, raw in content.get("parameters", {}).items():
        path = join("parameters", name)
        spec = ParameterSpec(
            name=name,
            type=raw["type"],
            default=raw.get("default", MISSING),
            description=raw.get("description", ""),
            allowed_values=raw.get("allowedValues"),
            allowed_pattern=raw.get("allowedPattern"),
            min_items=raw.get("minItems"),
            max_items=raw.get("maxItems"),
            min_chars=raw.get("minChars"),
            max_chars=raw.get("maxChars"),
            display_type=raw.get("displayType"),
            env_var=raw.get("interpolationType") == "ENV_VAR",
        )
        _check_parameter(spec, path)
        specs[name] = spec
    return specs


def _check_parameter(spec: ParameterSpec, path: str) -> None:
    if spec.allowed_pattern is not None:
        try:
            re.compile(spec.allowed_pattern)
        except re.error as exc:
            raise DocumentError(
                f"not a valid regular expression ({exc})", join(path, "allowedPattern")
            ) from None
    for low, high in (("minItems", "maxItems"), ("minChars", "maxChars")):
        lo, hi = getattr(spec, _snake(low)), getattr(spec, _snake(high))
        if lo is not None and hi is not None and lo > hi:
            raise DocumentError(f"is less than {low} ({lo})", join(path, high))
    if spec.default is not MISSING:
        coerce(spec, spec.default, join(path, "default"))


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def build_steps(content: dict[str, Any]) -> list[Step]:
    if content["schemaVersion"] == "1.2":
        return _steps_12(content["runtimeConfig"])
    steps: list[Step] = []
    for i, raw in enumerate(content["mainSteps"]):
        inputs = dict(raw.get("inputs", {}))
        shared = {key: inputs.pop(key) for key in SHARED_INPUTS if key in inputs}
        steps.append(
            Step(
                index=i,
                name=raw["name"],
                action=raw["action"],
                inputs=inputs,
                precondition=raw.get("precondition"),
                on_failure=shared.get("onFailure"),
                on_success=shared.get("onSuccess"),
                finally_step=shared.get("finallyStep") is True,
                inputs_path=f"mainSteps[{i}].inputs",
            )
        )
    return steps


def _steps_12(runtime_config: dict[str, Any]) -> list[Step]:
    steps: list[Step] = []
    for plugin, config in runtime_config.items():
        base = join(join("runtimeConfig", plugin), "properties")
        entries = config["properties"]
        many = not isinstance(entries, dict)
        for i, props in enumerate(_as_list(entries)):
            path = join(base, i) if many else base
            name = plugin if i == 0 else f"{plugin}.{i}"
            inputs = {key: value for key, value in props.items() if key != "id"}
            steps.append(
                Step(index=len(steps), name=name, action=plugin, inputs=inputs, inputs_path=path)
            )
    return steps


def _as_list(entries: Any) -> list[dict[str, Any]]:
    return [entries] if isinstance(entries, dict) else list(entries)


def check_steps(steps: list[Step], parameters: dict[str, ParameterSpec]) -> None:
    seen: dict[str, Step] = {}
    for step in steps:
        in_main = step.inputs_path.startswith("mainSteps")
        name_path = f"mainSteps[{step.index}].name" if in_main else step.inputs_path
        if step.name in seen:
            raise DocumentError(f"duplicate step name {step.name!r}", name_path)
        seen[step.name] = step
        if step.finally_step and step is not steps[-1]:
            raise DocumentError(
                "only the last step can be a finallyStep", join(step.inputs_path, "finallyStep")
            )
        if "timeoutSeconds" in step.inputs:
            check_timeout(
                step.inputs["timeoutSeconds"],
                join(step.inputs_path, "timeoutSeconds"),
                allow_template=True,
            )
        for path, text in walk_strings(step.inputs, step.inputs_path):
            for match in REF_RE.finditer(text):
                ref = match.group(1)
                if not is_ssm_ref(ref) and ref not in parameters:
                    raise DocumentError(f"{match.group(0)} names no declared parameter", path)


def check_timeout(value: Any, path: str, allow_template: bool = False) -> int | None:
    """timeoutSeconds as seconds (None: absent or empty, the default applies); DocumentError
    if it is not a whole number in range.  A template is accepted when ``allow_template``."""
    if allow_template and isinstance(value, str) and REF_RE.search(value):
        return None
    try:
        seconds = parse_timeout(value)
    except ValueError:
        raise DocumentError(f"must be a whole number of seconds, not {value!r}", path) from None
    if seconds is not None and not timeout_in_range(seconds):
        raise DocumentError(
            f"must be between {MIN_TIMEOUT_SECONDS} and {MAX_TIMEOUT_SECONDS} seconds, "
            f"not {seconds}",
            path,
        )
    return seconds
