"""Pseudo parameters in a window task's parameters (SSM's): ``{{WINDOW_ID}}``,
``{{WINDOW_EXECUTION_ID}}``, ``{{WINDOW_TASK_ID}}``, ``{{TASK_EXECUTION_ID}}`` and
``{{TARGET_ID}}`` (the node the command runs on).  They are replaced in parameter values when
the task starts, before the document's own ``{{ name }}`` interpolation on the node ever sees
them.  A task whose parameters use ``{{TARGET_ID}}`` sends one command per node (each
command's value differs); otherwise one command for all its nodes."""

from __future__ import annotations

import re
from typing import Any

TARGET_ID = "TARGET_ID"
NAMES = ("WINDOW_ID", "WINDOW_EXECUTION_ID", "WINDOW_TASK_ID", "TASK_EXECUTION_ID", TARGET_ID)
_PSEUDO = re.compile(r"\{\{(" + "|".join(NAMES) + r")\}\}")

# Stand-ins when a task is registered: its parameters are checked against the document's
# types and allowedPattern with values shaped like the real ones.
SAMPLE = {
    "WINDOW_ID": "mw-0123456789abcdef0",
    "WINDOW_EXECUTION_ID": "00000000-0000-4000-8000-000000000000",
    "WINDOW_TASK_ID": "00000000-0000-4000-8000-000000000001",
    "TASK_EXECUTION_ID": "00000000-0000-4000-8000-000000000002",
    TARGET_ID: "mi-0123456789abcdef0",
}


def uses_target_id(parameters: dict[str, Any]) -> bool:
    return any(f"{{{{{TARGET_ID}}}}}" in text for text in _strings(parameters))


def substitute(parameters: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """``parameters`` with every pseudo parameter that ``values`` names replaced."""

    def one(value: Any) -> Any:
        if isinstance(value, str):
            return _PSEUDO.sub(lambda m: values.get(m.group(1), m.group(0)), value)
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {key: one(value) for key, value in parameters.items()}


def _strings(parameters: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for value in parameters.values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return out
