"""The query parameters every list takes: ``limit`` (1-1,000) and ``next_token`` (the token a
previous page gave); see control_plane/services/paging.py for what a token is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from control_plane.services.paging import DEFAULT_LIMIT, MAX_LIMIT, MAX_TOKEN, Page

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")
]
NextToken = Annotated[
    str | None,
    Query(max_length=MAX_TOKEN, description="The next_token of the previous page."),
]
DEFAULT = DEFAULT_LIMIT


def body(key: str, page: Page[Any]) -> dict[str, Any]:
    """``{key: [...], "next_token": ...}``: null when there is nothing more."""
    return {key: page.items, "next_token": page.next_token}
