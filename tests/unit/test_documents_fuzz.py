"""The document parser on arbitrary input: it accepts a document or raises DocumentError,
never anything else (schemathesis found a TypeError once: an ``action`` that was a list).

Near-valid documents (a valid one with fields replaced by arbitrary JSON) reach deep into the
checks that plain random JSON never gets past."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.documents import document_from_content, parse_document, parse_param_args
from agent.errors import DocumentError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

VALID: dict[str, Any] = {
    "schemaVersion": "2.2",
    "description": "d",
    "parameters": {
        "name": {"type": "String", "default": "x", "allowedPattern": "^[a-z]+$"},
        "items": {"type": "StringList", "default": ["a"]},
        "env": {"type": "String", "default": "e", "interpolationType": "ENV_VAR"},
    },
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "one",
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {"runCommand": ["echo {{ name }}"], "timeoutSeconds": 60},
        },
        {
            "action": "aws:runDocument",
            "name": "two",
            "inputs": {"documentType": "SSMDocument", "documentPath": "other"},
        },
    ],
}

# Where a fuzzed value goes in the valid document.
PATHS: list[tuple[Any, ...]] = [
    ("schemaVersion",),
    ("parameters",),
    ("parameters", "name"),
    ("parameters", "name", "type"),
    ("parameters", "name", "default"),
    ("parameters", "name", "allowedPattern"),
    ("parameters", "items", "default"),
    ("parameters", "env", "interpolationType"),
    ("mainSteps",),
    ("mainSteps", 0),
    ("mainSteps", 0, "action"),
    ("mainSteps", 0, "name"),
    ("mainSteps", 0, "precondition"),
    ("mainSteps", 0, "inputs"),
    ("mainSteps", 0, "inputs", "runCommand"),
    ("mainSteps", 0, "inputs", "timeoutSeconds"),
    ("mainSteps", 1, "inputs"),
    ("mainSteps", 1, "inputs", "documentPath"),
]


def _near_valid(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@settings(max_examples=300, deadline=None, derandomize=True)
@given(content=JSON)
def test_arbitrary_json_is_a_document_or_a_document_error(content: Any) -> None:
    with contextlib.suppress(DocumentError):
        document_from_content(content)
    with contextlib.suppress(DocumentError):
        parse_document(json.dumps(content))


@settings(
    max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(path=st.sampled_from(PATHS), value=JSON)
def test_near_valid_documents_are_accepted_or_refused_cleanly(
    path: tuple[Any, ...], value: Any
) -> None:
    try:
        doc = document_from_content(_near_valid(path, value))
    except DocumentError:
        return
    with contextlib.suppress(DocumentError):  # it also takes parameter values, cleanly
        parse_param_args(doc, ["name=abc", "items=a", "items=b"])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_yaml_or_json(text: str) -> None:
    with contextlib.suppress(DocumentError):
        parse_document(text)
