"""Pages of a list: at most ``limit`` items, and a ``next_token`` to ask for the rest (SSM's
``MaxResults``/``NextToken``).

A token is opaque to clients: the sort key of the last item the page looked at, as URL-safe
base64 of JSON.  Lists are ordered by a key that never changes for an item, so a page
continues exactly after the previous one whatever was added or removed meanwhile, and
filtering items out (those the caller may not see) never skips one: the token names the last
item *looked at*, not the last one shown.  A token this list did not give is a one-line 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from control_plane.errors import InvalidRequest

T = TypeVar("T")
Key = tuple[Any, ...]
Shape = tuple[type, ...]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_TOKEN = 1024


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str | None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be 1 to {MAX_LIMIT}")
    return limit


def encode(key: Key) -> str:
    text = json.dumps(list(key), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str | None, shape: Shape) -> Key | None:
    """The key a token names, None without one; ``shape`` is the type of each part
    (``float`` takes an int too)."""
    if token is None:
        return None
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key = json.loads(raw)
        if not isinstance(key, list) or len(key) != len(shape):
            raise ValueError
        for part, kind in zip(key, shape, strict=True):
            if isinstance(part, bool) or not isinstance(
                part, (int, float) if kind is float else kind
            ):
                raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            f"next_token {token[:24]!r} is not one this list gave (start without it)"
        ) from None
    return tuple(key)


def paginate(
    items: Iterable[T],
    *,
    key: Callable[[T], Key],
    limit: int,
    next_token: str | None,
    shape: Shape,
    visible: Callable[[T], bool] = lambda _item: True,
) -> Page[T]:
    """A page of a list held in memory, sorted by ``key`` (which must be unique per item)."""
    check_limit(limit)
    after = decode(next_token, shape)
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [item for item in ordered if _after(key(item), after)]
    shown: list[T] = []
    for i, item in enumerate(ordered):
        if visible(item):
            shown.append(item)
            if len(shown) == limit:
                more = i + 1 < len(ordered)
                return Page(shown, encode(key(item)) if more else None)
    return Page(shown, None)


async def scan(
    fetch: Callable[[Key | None, int], Awaitable[Sequence[T]]],
    *,
    key: Callable[[T], Key],
    limit: int,
    next_token: str | None,
    shape: Shape,
    visible: Callable[[T], bool] = lambda _item: True,
    batches: int = 10,
) -> Page[T]:
    """A page read from storage in key order: ``await fetch(after, n)`` returns up to ``n``
    items after the key ``after``.  Items the caller may not see are skipped; after
    ``batches`` reads the page is returned short, with a token, rather than scan forever."""
    check_limit(limit)
    after = decode(next_token, shape)
    shown: list[T] = []
    for _ in range(batches):
        rows: Sequence[T] = await fetch(after, limit + 1)
        for i, row in enumerate(rows[:limit]):
            after = key(row)
            if visible(row):
                shown.append(row)
                if len(shown) == limit:
                    more = i + 1 < len(rows)
                    return Page(shown, encode(after) if more else None)
        if len(rows) <= limit:
            return Page(shown, None)
    return Page(shown, encode(after) if after is not None else None)


def _after(key: Key, after: Key) -> bool:
    try:
        return key > after
    except TypeError:  # a token from another list, with parts of other types
        raise InvalidRequest("next_token is not one this list gave (start without it)") from None
