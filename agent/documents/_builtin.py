"""The documents every Corral server has: AWS-RunShellScript and AWS-RunPowerShellScript (with
AWS's parameters, so commands written for AWS run unchanged) and Corral-RunDocument.  They
are JSON files in builtin/, parsed once."""

from __future__ import annotations

import functools

from agent.documents._loader import parse_document
from agent.documents._model import Document


@functools.cache
def _load() -> tuple[tuple[str, Document], ...]:
    from importlib import resources

    folder = resources.files("agent.documents").joinpath("builtin")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            name = entry.name.removesuffix(".json")
            found.append((name, parse_document(entry.read_bytes(), "json")))
    return tuple(found)


def builtin_documents() -> dict[str, Document]:
    """Document name -> parsed Document (a new dict each call; the Documents are shared and
    must not be modified)."""
    return dict(_load())
