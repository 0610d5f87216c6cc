"""Custom inventory: the ``*.json`` files in the agent's inventory/custom/ folder, each one
type in SSM's format::

    {"SchemaVersion": "1.0", "TypeName": "Custom:RackInfo",
     "Content": {"RackLocation": "Bay B", "Slot": "12"}}      (or "Content": [{...}, ...])

A bad file costs only itself: it is skipped and an error naming it is reported, the other
files go on.  Bad is: bigger than CUSTOM_MAX_BYTES (never read whole), not UTF-8 JSON, no
object, a SchemaVersion not like SSM's ``1.0``, a TypeName that is not ``Custom:NAME``
(schema.CUSTOM_TYPE_RE; ``AWS:`` and ``Corral:`` are reserved), a TypeName another file
already gave, more than CUSTOM_MAX_ITEMS items, an item with more than
CUSTOM_MAX_ATTRIBUTES attributes, a bad attribute name, a value that is not a string or a
number (null, true/false, objects and lists are refused), a value over VALUE_MAX_CHARS, and
every file after the CUSTOM_MAX_TYPES-th good type (files are read in name order).  A
symlink is not followed.  Other top-level keys are ignored, as SSM's agent does.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Final

from agent.inventory import schema
from agent.inventory.base import CollectContext, Item

SCHEMA_VERSION_RE: Final = re.compile(r"^[0-9]{1,6}\.[0-9]{1,6}$")
MAX_FILES_LISTED: Final = 1_000  # files in the folder looked at (each error is one line)


class BadFile(ValueError):
    """One custom inventory file is wrong (the reason, without the file's name)."""


def collect_custom(ctx: CollectContext) -> tuple[dict[str, list[Item]], list[str]]:
    """Each good file's type and items, and one error per bad file (naming the file)."""
    found: dict[str, list[Item]] = {}
    errors: list[str] = []
    folder = ctx.custom_dir
    if folder is None:
        return found, errors
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.name.endswith(".json") and not entry.name.startswith(".")
        )
    except FileNotFoundError:
        return found, errors  # no folder: no custom inventory
    except OSError as exc:
        return found, [f"{folder}: cannot list the folder: {exc.strerror or exc}"]
    if len(names) > MAX_FILES_LISTED:
        errors.append(f"{folder}: {len(names)} files; only the first {MAX_FILES_LISTED} read")
        names = names[:MAX_FILES_LISTED]
    origin: dict[str, str] = {}
    for name in names:
        path = folder / name
        try:
            type_name, items = read_file(path)
            if type_name in origin:
                raise BadFile(f"TypeName {type_name} is already given by {origin[type_name]}")
            if len(found) >= schema.CUSTOM_MAX_TYPES:
                raise BadFile(f"more than {schema.CUSTOM_MAX_TYPES} custom types on one node")
        except BadFile as exc:
            errors.append(f"{path}: {exc}")
            continue
        origin[type_name] = name
        found[type_name] = items
    return found, errors


def read_file(path: Path) -> tuple[str, list[Item]]:
    """One file's type name and items; BadFile saying what is wrong."""
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadFile("a symlink (not followed: put the file itself here)") from None
        raise BadFile(f"cannot open: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadFile("not a regular file")
        if info.st_size > schema.CUSTOM_MAX_BYTES:
            raise BadFile(_too_big(info.st_size))
        data = _read_at_most(fd, schema.CUSTOM_MAX_BYTES + 1)  # it may have grown since
    except OSError as exc:
        raise BadFile(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > schema.CUSTOM_MAX_BYTES:
        raise BadFile(_too_big(len(data)))
    try:
        document = json.loads(data.decode("utf-8-sig"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadFile(f"not JSON: {str(exc)[:120]}") from None
    return parse(document)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 64 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _too_big(size: int) -> str:
    return f"{size:,} bytes, over the limit of {schema.CUSTOM_MAX_BYTES:,}"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(document: Any) -> tuple[str, list[Item]]:
    """A parsed file's type name and items (values as strings); BadFile when wrong."""
    if not isinstance(document, dict):
        raise BadFile("not a JSON object with SchemaVersion, TypeName and Content")
    version = document.get("SchemaVersion")
    if not isinstance(version, str) or not SCHEMA_VERSION_RE.match(version):
        raise BadFile('SchemaVersion must be a string such as "1.0"')
    type_name = document.get("TypeName")
    if not isinstance(type_name, str) or not type_name:
        raise BadFile("TypeName is required (Custom:NAME)")
    if type_name.startswith(schema.RESERVED_PREFIXES):
        raise BadFile(f"TypeName {type_name[:100]} is reserved: custom types are Custom:NAME")
    if not schema.CUSTOM_TYPE_RE.match(type_name):
        raise BadFile(
            f"TypeName {type_name[:100]!r} must be Custom: and 1 to 93 letters, digits, _ - ."
        )
    if "Content" not in document:
        raise BadFile("Content is required (an object, or a list of objects)")
    content = document["Content"]
    entries = [content] if isinstance(content, dict) else content
    if not isinstance(entries, list):
        raise BadFile("Content must be an object or a list of objects")
    if len(entries) > schema.CUSTOM_MAX_ITEMS:
        raise BadFile(f"{len(entries)} items, over the limit of {schema.CUSTOM_MAX_ITEMS}")
    return type_name, [_item(i, entry) for i, entry in enumerate(entries)]


def _item(index: int, entry: Any) -> Item:
    where = f"Content[{index}]"
    if not isinstance(entry, dict):
        raise BadFile(f"{where} is not an object")
    if len(entry) > schema.CUSTOM_MAX_ATTRIBUTES:
        raise BadFile(
            f"{where} has {len(entry)} attributes, over the limit of {schema.CUSTOM_MAX_ATTRIBUTES}"
        )
    item: Item = {}
    for name, value in entry.items():
        if not schema.ATTRIBUTE_NAME_RE.match(name):
            raise BadFile(
                f"{where}: attribute name {name[:70]!r} must be 1 to 64 letters, digits, "
                "spaces, _ - . :"
            )
        item[name] = _value(f"{where}.{name}", value)
    return item


def _value(where: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise BadFile(f"{where} is {json.dumps(value)}: values are strings or numbers")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadFile(f"{where} is not a finite number")
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        raise BadFile(f"{where} is nested (an object or a list): values are strings or numbers")
    if len(text) > schema.VALUE_MAX_CHARS:
        raise BadFile(f"{where} has {len(text)} characters, over {schema.VALUE_MAX_CHARS}")
    return text
