"""Package file names (the shared contract): ``{name}_{version}_{arch}.{ext}``.

A name that does not match is never served, never opened: the regex is the only way from a
request's file name to a path on disk, so ``..``, ``/`` and absolute names cannot reach one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FILE_RE = re.compile(
    r"^(corral-agent|corral-server)_([0-9][0-9A-Za-z.+~-]*)_([a-z0-9_]+)"
    r"\.(deb|rpm|apk|pkg\.tar\.zst)$"
)
MAX_FILE_NAME = 200
FORMAT_OF_EXT = {"deb": "deb", "rpm": "rpm", "apk": "apk", "pkg.tar.zst": "arch"}
AGENT = "corral-agent"


@dataclass(frozen=True, slots=True)
class PackageName:
    name: str
    version: str
    arch: str
    format: str
    file: str


def parse(file: str) -> PackageName | None:
    """The package a file name stands for, or None (not a package file of the contract)."""
    if len(file) > MAX_FILE_NAME:
        return None
    match = FILE_RE.fullmatch(file)
    if match is None:
        return None
    name, version, arch, ext = match.groups()
    return PackageName(name, version, arch, FORMAT_OF_EXT[ext], file)
