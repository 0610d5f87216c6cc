"""AWS-RunPatchBaseline's InstallOverrideList: the patches an Install installs instead of
what the baseline approves, in SSM's YAML format::

    patches:
      - id: 'openssl.amd64'        # Linux: name.arch (wildcards), Windows: a KB id
        title: '*3.0.11*'          # optional: a version filter (wildcards)

Corral takes the list itself as the parameter's value (YAML or JSON text) or an absolute
path to such a file on the node; SSM's https and s3 URLs are not fetched (put the file on
the node with aws:downloadContent first).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.patching.model import Package

MAX_ENTRIES = 1000
MAX_BYTES = 256 * 1024


class OverrideError(ValueError):
    """An InstallOverrideList that cannot be used; the message says why, on one line."""


@dataclass(frozen=True)
class OverrideEntry:
    id: str
    title: str = ""


def load(value: str) -> tuple[OverrideEntry, ...] | None:
    """The entries of an InstallOverrideList parameter ("" -> None: no override)."""
    text = value.strip()
    if not text:
        return None
    if text.startswith(("https://", "http://", "s3://")):
        raise OverrideError(
            "InstallOverrideList: URLs are not fetched by Corral; give the list itself or an "
            "absolute path to it on the node (aws:downloadContent can put it there)"
        )
    if os.path.isabs(text) and "\n" not in text:
        try:
            data = Path(text).read_bytes()[: MAX_BYTES + 1]
        except OSError as exc:
            raise OverrideError(
                f"InstallOverrideList: cannot read {text}: {exc.strerror or exc}"
            ) from None
        if len(data) > MAX_BYTES:
            raise OverrideError(f"InstallOverrideList: {text} is over {MAX_BYTES} bytes")
        text = data.decode("utf-8", "replace")
    return parse(text)


def parse(text: str) -> tuple[OverrideEntry, ...]:
    try:
        raw: Any = json.loads(text)
    except ValueError:
        import yaml  # type: ignore[import-untyped, unused-ignore]

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = str(exc).splitlines()[0] if str(exc) else "bad YAML"
            raise OverrideError(f"InstallOverrideList is not YAML or JSON: {line}") from None
    patches = raw.get("patches") if isinstance(raw, dict) else None
    if not isinstance(patches, list):
        raise OverrideError("InstallOverrideList: expected 'patches:' with a list of {id, title}")
    if len(patches) > MAX_ENTRIES:
        raise OverrideError(f"InstallOverrideList: at most {MAX_ENTRIES} patches")
    out: list[OverrideEntry] = []
    for index, entry in enumerate(patches):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise OverrideError(f"InstallOverrideList patches[{index}]: needs an id")
        title = entry.get("title", "")
        out.append(OverrideEntry(entry["id"][:200], str(title or "")[:200]))
    return tuple(out)


def matches_override(entries: tuple[OverrideEntry, ...], update: Package) -> bool:
    """Whether an entry names ``update``: id against name.arch, name or the KB id; title
    (when given) against its version."""
    ids = [s.lower() for s in (update.key, update.name, update.kb) if s]
    for entry in entries:
        if not any(fnmatch.fnmatchcase(i, entry.id.lower()) for i in ids):
            continue
        if entry.title and not (
            fnmatch.fnmatchcase(update.version.lower(), entry.title.lower())
            or fnmatch.fnmatchcase(f"{update.key}:{update.version}".lower(), entry.title.lower())
        ):
            continue
        return True
    return False
