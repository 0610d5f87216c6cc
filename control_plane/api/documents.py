"""/v1/documents: the document store (operator)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.services.paging import paginate

router = APIRouter(prefix="/v1/documents", tags=["documents"])


class CreateDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    content: StrictStr
    format: Literal["json", "yaml"] | None = None
    version_name: StrictStr | None = None
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class NewVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: StrictStr
    format: Literal["json", "yaml"] | None = None
    version_name: StrictStr | None = None


class DefaultVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: StrictStr | StrictInt


@router.post("", status_code=201)
async def create(
    body: CreateDocument,
    cp: CP,
    _caller: Annotated[Caller, allow("documents:Create", "document/*")],
) -> dict[str, Any]:
    return await cp.documents.create(**body.model_dump())


@router.get("")
async def list_documents(
    cp: CP,
    _caller: Annotated[Caller, allow("documents:List", "document/*")],
    owner: Annotated[str | None, Query(max_length=16)] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Documents by name, a page at a time."""
    page = paginate(
        await cp.documents.list_all(owner),
        key=lambda d: (d["name"],),
        limit=limit,
        next_token=next_token,
        shape=(str,),
    )
    return body("documents", page)


@router.get("/{name}")
async def show(
    name: str,
    cp: CP,
    _caller: Annotated[Caller, allow("documents:Get", "document/{name}")],
    version: Annotated[str | None, Query()] = None,
    content: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    return await cp.documents.get(name, version, content=content)


@router.post("/{name}/versions", status_code=201)
async def update(
    name: str,
    body: NewVersion,
    cp: CP,
    _caller: Annotated[Caller, allow("documents:Update", "document/{name}")],
) -> dict[str, Any]:
    return await cp.documents.update(name=name, **body.model_dump())


@router.get("/{name}/versions")
async def versions(
    name: str,
    cp: CP,
    _caller: Annotated[Caller, allow("documents:ListVersions", "document/{name}")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The document's versions, oldest first, a page at a time."""
    shown = await cp.documents.versions(name)
    page = paginate(
        shown["versions"],
        key=lambda v: (int(v["version"]),),
        limit=limit,
        next_token=next_token,
        shape=(int,),
    )
    return {**shown, **body("versions", page)}


@router.put("/{name}/default")
async def set_default(
    name: str,
    body: DefaultVersion,
    cp: CP,
    _caller: Annotated[Caller, allow("documents:SetDefault", "document/{name}")],
) -> dict[str, Any]:
    return await cp.documents.set_default(name, str(body.version))


@router.delete("/{name}")
async def delete(
    name: str,
    cp: CP,
    _caller: Annotated[Caller, allow("documents:Delete", "document/{name}")],
    version: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    return await cp.documents.delete(name, version)
