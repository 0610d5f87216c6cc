"""The document store: named Command documents with numbered, immutable versions.

A user document (owner ``self``) has versions 1, 2, 3 ...; the first is the default until
``set_default`` says otherwise.  A number is never given twice, even after its version was
deleted, so "version 3" always means the same content.  The built-ins (owner ``corral``:
AWS-RunShellScript, AWS-RunPowerShellScript, Corral-RunDocument) come from
:mod:`agent.documents`; they have one version, "1", and cannot be changed or deleted.

A version is chosen by a selector: a number, ``$LATEST``, ``$DEFAULT`` or its version name.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.documents import Document, builtin_documents, document_from_content, parse_document
from agent.errors import DocumentError
from agent.wire import MAX_DOCUMENT_BYTES
from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services import audit_context
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.validation import check_tags
from control_plane.store import documents as store
from control_plane.store.db import Database

DOCUMENT_TYPE = "Command"
OWNER_SELF = "self"
OWNER_CORRAL = "corral"
OWNERS = (OWNER_SELF, OWNER_CORRAL)
LATEST = "$LATEST"
DEFAULT = "$DEFAULT"
FORMATS = ("json", "yaml")
RESERVED_PREFIXES = ("aws", "amazon", "amzn", "corral")
BUILTIN_VERSION = 1

_NAME = re.compile(r"[a-zA-Z0-9_.\-]{3,128}")
_VERSION_NAME = re.compile(r"[a-zA-Z0-9_.\-]{1,128}")
_VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
# What YAML allows in a stream: no C0 control characters but tab, newline, carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CACHE_SIZE = 256

# A version selector: a number, LATEST, DEFAULT, or a version name (never digits or "$...").
Selector = int | str


@dataclass(frozen=True)
class ResolvedDocument:
    """One version of a document, ready to send: what the command dispatcher records."""

    name: str
    version: str
    sha256: str
    document: Document


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name)[:140]
        raise InvalidRequest(
            f"document name {shown} must be 3 to 128 characters: letters, digits, _ . -"
        )
    return name


def check_version_name(version_name: object) -> str | None:
    if version_name is None:
        return None
    if not isinstance(version_name, str) or not _VERSION_NAME.fullmatch(version_name):
        shown = repr(version_name)[:140]
        raise InvalidRequest(
            f"version_name {shown} must be 1 to 128 characters: letters, digits, _ . -"
        )
    if version_name.isdigit():
        raise InvalidRequest(
            f"version_name {version_name!r} may not be only digits (it would read as a version"
            " number)"
        )
    return version_name


def parse_selector(version: str | None) -> Selector:
    """``None`` means ``$DEFAULT``."""
    if version is None or version == DEFAULT:
        return DEFAULT
    if version == LATEST:
        return LATEST
    if _VERSION_NUMBER.fullmatch(version):
        return int(version)
    if _VERSION_NAME.fullmatch(version) and not version.isdigit():
        return version
    raise InvalidRequest(
        f"version {version[:140]!r} must be a version number, $LATEST, $DEFAULT or a version name"
    )


def detect_format(text: str) -> str:
    """``json`` if the text is JSON, else ``yaml`` (it has parsed as one of them)."""
    try:
        json.loads(text)
    except ValueError:
        return "yaml"
    return "json"


class DocumentService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._builtins = builtin_documents()
        self._builtin_text = {
            name: json.dumps(doc.content, indent=2) + "\n" for name, doc in self._builtins.items()
        }
        # Versions are immutable, so a parsed Document can be kept by its content's hash.
        self._cache: OrderedDict[str, Document] = OrderedDict()

    # --- changes ---------------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        content: str,
        format: str | None = None,
        version_name: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        check_name(name)
        if name.lower().startswith(RESERVED_PREFIXES):
            raise InvalidRequest(
                f"document name {name!r} is reserved: names starting with AWS, Amazon, AMZN or"
                " Corral (any case) belong to built-in documents"
            )
        vname = check_version_name(version_name)
        clean_tags = check_tags(tags or {})
        document, fmt, content = await self._parse(content, format)
        now = self._clock()
        row = {
            "name": name,
            "default_version": 1,
            "latest_version": 1,
            "last_version": 1,
            "tags": clean_tags,
            "created_at": now,
            "updated_at": now,
        }
        first = _version_row(name, 1, vname, document, fmt, content, now)
        async with self._db.transaction() as conn:
            if not await store.insert_document(conn, row, first):
                raise Conflict(f"document {name} already exists; use update to add a version")
            audit_context.name_resource(f"document/{name}", version=1)
        return _detail(row, first, content=False)

    async def update(
        self,
        *,
        name: str,
        content: str,
        format: str | None = None,
        version_name: str | None = None,
    ) -> dict[str, Any]:
        """Add a version; it becomes $LATEST (the default does not move)."""
        check_name(name)
        self._refuse_builtin(name, "updated")
        vname = check_version_name(version_name)
        document, fmt, content = await self._parse(content, format)
        now = self._clock()
        async with self._db.transaction() as conn:
            row = await self._get_row(conn, name, lock=True)
            latest = await store.get_version(conn, name, number=row["latest_version"])
            if latest is not None and latest["sha256"] == document.sha256:
                raise Conflict(
                    f"content unchanged: it is the same as version {latest['version']}"
                    f" ($LATEST) of {name} (layout, comments and format do not count)"
                )
            if vname is not None and await store.get_version(conn, name, version_name=vname):
                raise Conflict(f"document {name} already has a version named {vname!r}")
            number = row["last_version"] + 1
            version = _version_row(name, number, vname, document, fmt, content, now)
            await store.add_version(conn, version, now)
            audit_context.name_resource(f"document/{name}", version=number)
        row.update(latest_version=number, last_version=number, updated_at=now)
        return _detail(row, version, content=False)

    async def set_default(self, name: str, version: str) -> dict[str, Any]:
        check_name(name)
        selector = parse_selector(version)
        self._refuse_builtin(name, "changed")
        now = self._clock()
        async with self._db.transaction() as conn:
            row = await self._get_row(conn, name, lock=True)
            chosen = await self._select(conn, row, selector)
            await store.set_default(conn, name, chosen["version"], now)
            audit_context.name_resource(f"document/{name}", version=chosen["version"])
        row.update(default_version=chosen["version"], updated_at=now)
        return _summary(row, chosen)

    async def delete(self, name: str, version: str | None = None) -> dict[str, Any]:
        """All versions, or one that is not the default."""
        check_name(name)
        selector = None if version is None else parse_selector(version)
        self._refuse_builtin(name, "deleted")
        async with self._db.transaction() as conn:
            if selector is None:
                if not await store.delete(conn, name):
                    raise NotFound(f"document {name} not found")
                audit_context.name_resource(f"document/{name}", version="all")
                return {"deleted": name}
            row = await self._get_row(conn, name, lock=True)
            chosen = await self._select(conn, row, selector)
            number = chosen["version"]
            if number == row["default_version"]:
                raise Conflict(
                    f"version {number} is the default version of {name}: make another version"
                    " the default first, or delete the whole document"
                )
            await store.delete_version(conn, name, number, self._clock())
            audit_context.name_resource(f"document/{name}", version=number)
        return {"deleted": name, "version": str(number)}

    # --- reading ---------------------------------------------------------------------------

    async def list_all(self, owner: str | None = None) -> list[dict[str, Any]]:
        if owner is not None and owner not in OWNERS:
            raise InvalidRequest(f"owner {owner[:40]!r} must be self or corral")
        rows: list[dict[str, Any]] = []
        if owner in (None, OWNER_CORRAL):
            rows += [self._builtin_summary(name) for name in self._builtins]
        if owner in (None, OWNER_SELF):
            async with self._db.read() as conn:
                rows += [_summary(r, r) for r in await store.list_with_defaults(conn)]
        return sorted(rows, key=lambda r: str(r["name"]))

    async def get(
        self, name: str, version: str | None = None, *, content: bool = False
    ) -> dict[str, Any]:
        """Metadata of one version ($DEFAULT unless chosen); its text too if ``content``."""
        check_name(name)
        selector = parse_selector(version)
        if name in self._builtins:
            self._builtin_version(name, selector)
            return self._builtin_detail(name, content)
        async with self._db.read() as conn:
            row = await self._get_row(conn, name)
            chosen = await self._select(conn, row, selector, content=True)
        return _detail(row, chosen, content=content)

    async def versions(self, name: str) -> dict[str, Any]:
        check_name(name)
        if name in self._builtins:
            doc = self._builtins[name]
            only = {
                "version": BUILTIN_VERSION,
                "version_name": None,
                "sha256": doc.sha256,
                "schema_version": doc.schema_version,
                "format": "json",
                "created_at": None,
            }
            return {"name": name, "owner": OWNER_CORRAL, "versions": [_version_item(only, 1, 1)]}
        async with self._db.read() as conn:
            row = await self._get_row(conn, name)
            rows = await store.list_versions(conn, name)
        default, latest = row["default_version"], row["latest_version"]
        return {
            "name": name,
            "owner": OWNER_SELF,
            "versions": [_version_item(v, default, latest) for v in rows],
        }

    async def resolve(self, name: str, version: str | None) -> ResolvedDocument:
        """The document version to run: ``version`` is a selector, ``None`` the default."""
        check_name(name)
        selector = parse_selector(version)
        builtin = self._builtins.get(name)
        if builtin is not None:
            self._builtin_version(name, selector)
            return ResolvedDocument(name, str(BUILTIN_VERSION), builtin.sha256, builtin)
        async with self._db.read() as conn:
            row = await self._get_row(conn, name)
            chosen = await self._select(conn, row, selector, content=True)
        number = str(chosen["version"])
        return ResolvedDocument(name, number, chosen["sha256"], self._document(name, chosen))

    # --- helpers ---------------------------------------------------------------------------

    async def _parse(self, content: object, fmt: str | None) -> tuple[Document, str, str]:
        """The document, its format and its text (as stored)."""
        if not isinstance(content, str):
            raise InvalidRequest("content must be the document's text")
        content = content.removeprefix("\ufeff")  # a byte order mark is not text
        if fmt is not None and fmt not in FORMATS:
            raise InvalidRequest(f"format {fmt[:40]!r} must be json or yaml")
        try:
            size = len(content.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidRequest("content is not valid Unicode text") from None
        if size > MAX_DOCUMENT_BYTES:
            raise InvalidRequest(
                f"content is {size} bytes; a document may be at most {MAX_DOCUMENT_BYTES} bytes"
                f" ({MAX_DOCUMENT_BYTES // 1024} KB)"
            )
        if _CONTROL.search(content):
            raise InvalidRequest("content may not contain control characters")
        try:
            # Up to 64 KB of YAML takes a while to parse: not on the event loop.
            document = await asyncio.to_thread(parse_document, content, fmt)
        except DocumentError as exc:
            raise InvalidRequest(f"invalid document: {exc.message}") from None
        return document, fmt or detect_format(content), content

    async def _get_row(
        self, conn: AsyncConnection, name: str, *, lock: bool = False
    ) -> dict[str, Any]:
        row = await store.get(conn, name, lock=lock)
        if row is None:
            raise NotFound(f"document {name} not found")
        return row

    async def _select(
        self,
        conn: AsyncConnection,
        row: dict[str, Any],
        selector: Selector,
        *,
        content: bool = False,
    ) -> dict[str, Any]:
        name = row["name"]
        if selector == DEFAULT:
            chosen = await store.get_version(
                conn, name, number=row["default_version"], content=content
            )
        elif selector == LATEST:
            chosen = await store.get_version(
                conn, name, number=row["latest_version"], content=content
            )
        elif isinstance(selector, int):
            chosen = await store.get_version(conn, name, number=selector, content=content)
        else:
            chosen = await store.get_version(conn, name, version_name=selector, content=content)
        if chosen is None:
            raise NotFound(f"document {name} has no version {selector}")
        return chosen

    def _refuse_builtin(self, name: str, what: str) -> None:
        if name in self._builtins:
            raise InvalidRequest(
                f"{name} is a built-in document (owner {OWNER_CORRAL}); it cannot be {what}"
            )

    def _builtin_version(self, name: str, selector: Selector) -> None:
        if selector not in (DEFAULT, LATEST, BUILTIN_VERSION):
            raise NotFound(f"document {name} has no version {selector}")

    def _document(self, name: str, version: dict[str, Any]) -> Document:
        sha = version["sha256"]
        cached = self._cache.get(sha)
        if cached is not None:
            self._cache.move_to_end(sha)
            return cached
        try:
            document = document_from_content(version["parsed"])
        except DocumentError as exc:
            raise InvalidRequest(
                f"document {name} version {version['version']} is no longer valid: {exc.message}"
            ) from None
        self._cache[sha] = document
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return document

    def _builtin_summary(self, name: str) -> dict[str, Any]:
        doc = self._builtins[name]
        return {
            "name": name,
            "owner": OWNER_CORRAL,
            "document_type": DOCUMENT_TYPE,
            "default_version": str(BUILTIN_VERSION),
            "latest_version": str(BUILTIN_VERSION),
            "schema_version": doc.schema_version,
            "description": doc.description,
            "created_at": None,
            "tags": {},
        }

    def _builtin_detail(self, name: str, content: bool) -> dict[str, Any]:
        doc, text = self._builtins[name], self._builtin_text[name]
        out = {
            **self._builtin_summary(name),
            "version": str(BUILTIN_VERSION),
            "version_name": None,
            "version_created_at": None,
            "sha256": doc.sha256,
            "format": "json",
            "size": len(text.encode("utf-8")),
            "parameters": doc.content.get("parameters", {}),
        }
        if content:
            out["content"] = text
        return out


def _version_row(
    name: str,
    number: int,
    version_name: str | None,
    document: Document,
    fmt: str,
    content: str,
    now: float,
) -> dict[str, Any]:
    return {
        "name": name,
        "version": number,
        "version_name": version_name,
        "sha256": document.sha256,
        "schema_version": document.schema_version,
        "description": document.description,
        "format": fmt,
        "content": content,
        "parsed": document.content,
        "created_at": now,
    }


def _summary(row: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """A list row; ``default`` gives ``schema_version`` and ``description``."""
    return {
        "name": row["name"],
        "owner": OWNER_SELF,
        "document_type": DOCUMENT_TYPE,
        "default_version": str(row["default_version"]),
        "latest_version": str(row["latest_version"]),
        "schema_version": default["schema_version"],
        "description": default["description"],
        "created_at": rfc3339(row["created_at"]),
        "tags": row["tags"],
    }


def _detail(row: dict[str, Any], version: dict[str, Any], *, content: bool) -> dict[str, Any]:
    """Metadata of one version (with its text if ``content``)."""
    out = {**_summary(row, version), **_version_view(version)}
    if content:
        out["content"] = version["content"]
    return out


def _version_item(version: dict[str, Any], default: int, latest: int) -> dict[str, Any]:
    """One row of a document's version list."""
    return {
        "version": str(version["version"]),
        "version_name": version["version_name"],
        "sha256": version["sha256"],
        "schema_version": version["schema_version"],
        "format": version["format"],
        "created_at": rfc3339(version["created_at"]),
        "is_default": version["version"] == default,
        "is_latest": version["version"] == latest,
    }


def _version_view(version: dict[str, Any]) -> dict[str, Any]:
    parsed = version.get("parsed")
    text = version.get("content")
    return {
        "version": str(version["version"]),
        "version_name": version["version_name"],
        "version_created_at": rfc3339(version["created_at"]),
        "sha256": version["sha256"],
        "format": version["format"],
        "size": len(text.encode("utf-8")) if isinstance(text, str) else None,
        "parameters": parsed.get("parameters", {}) if isinstance(parsed, dict) else {},
    }
