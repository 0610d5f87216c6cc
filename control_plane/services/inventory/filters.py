"""Inventory filters: ``KEY=V`` (any of V1,V2), ``KEY!=V``, ``KEY^=PREFIX`` (begins with),
``KEY<V``, ``KEY>V``, ``KEY<=V``, ``KEY>=V``; KEY is an attribute of the type (``Name``, or
SSM's ``AWS:Application.Name``).  Each becomes a SQL condition on an indexed column where
there is one; comparisons of a package version follow that package manager's rules (the
``version_key`` column, services/inventory/versions.py), of a NUMBER attribute numeric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from agent.inventory import schema
from control_plane.errors import InvalidRequest
from control_plane.services.inventory.versions import MANAGERS, sort_key
from control_plane.store.inventory import items_t

MAX_FILTERS: Final = 10
MAX_VALUES: Final = 20
MAX_VALUE_CHARS: Final = 256
_FILTER: Final = re.compile(
    r"^(?P<key>[^=!<>^]{1,164}?)\s*(?P<op>!=|\^=|<=|>=|=|<|>)\s*(?P<value>.*)$"
)
ORDERED: Final = ("<", ">", "<=", ">=")


@dataclass(frozen=True)
class Filter:
    attribute: str
    op: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.attribute}{self.op}{','.join(self.values)}"


def parse(text: str, type_name: str, attributes: list[str]) -> Filter:
    """One filter, checked against the type's attributes; InvalidRequest naming what is
    wrong (an unknown attribute lists the known ones)."""
    found = _FILTER.match(text.strip())
    if found is None:
        raise InvalidRequest(
            f"filter {text[:80]!r}: expected KEY=VALUE, KEY!=VALUE, KEY^=PREFIX, KEY<VALUE, "
            "KEY>VALUE, KEY<=VALUE or KEY>=VALUE"
        )
    key, op, value = found["key"].strip(), found["op"], found["value"].strip()
    if key.startswith(type_name + "."):
        key = key[len(type_name) + 1 :]
    if key not in attributes:
        raise InvalidRequest(
            f"filter {text[:80]!r}: {type_name} has no attribute {key[:64]!r} "
            f"(its attributes: {', '.join(attributes)})"
        )
    values = tuple(v.strip() for v in value.split(",")) if op in ("=", "!=") else (value,)
    if not values or any(not v for v in values):
        raise InvalidRequest(f"filter {text[:80]!r}: a value is required")
    if len(values) > MAX_VALUES or any(len(v) > MAX_VALUE_CHARS for v in values):
        raise InvalidRequest(
            f"filter {text[:80]!r}: at most {MAX_VALUES} values of {MAX_VALUE_CHARS} characters"
        )
    known = schema.known_type(type_name)
    if op in ORDERED and known is not None and key in known.numbers:
        try:
            float(values[0])
        except ValueError:
            raise InvalidRequest(
                f"filter {text[:80]!r}: {key} is a number; {values[0][:40]!r} is not"
            ) from None
    return Filter(key, op, values)


def parse_all(texts: list[str], type_name: str, attributes: list[str]) -> list[Filter]:
    if len(texts) > MAX_FILTERS:
        raise InvalidRequest(f"at most {MAX_FILTERS} filters")
    return [parse(t, type_name, attributes) for t in texts]


def column(type_name: str, attribute: str) -> sa.ColumnElement[Any]:
    """The SQL expression holding ``attribute``'s value (text)."""
    known = schema.known_type(type_name)
    if attribute == schema.indexed_attribute(type_name):
        return items_t.c.name
    if known is not None and attribute == known.version_attribute:
        return items_t.c.version
    found: sa.ColumnElement[Any] = items_t.c.data[attribute].as_string()
    return found


def condition(type_name: str, f: Filter, dialect: str) -> sa.ColumnElement[bool]:
    known = schema.known_type(type_name)
    col = column(type_name, f.attribute)
    if f.op == "=":
        return col.in_(f.values) if len(f.values) > 1 else col == f.values[0]
    if f.op == "!=":
        return sa.or_(col.is_(None), col.not_in(f.values))
    if f.op == "^=":
        return _begins(col, f.values[0], dialect)
    value = f.values[0]
    if known is not None and f.attribute == known.version_attribute:
        return _version_compare(f.op, value)
    if known is not None and f.attribute in known.numbers:
        return _compare(sa.cast(col, sa.Float), f.op, float(value))
    return _compare(col, f.op, value)


def _begins(col: sa.ColumnElement[Any], prefix: str, dialect: str) -> sa.ColumnElement[bool]:
    exact = sa.func.substr(col, 1, len(prefix)) == prefix
    if dialect == "sqlite":  # bytewise text order: a range the index can use, then exact
        return sa.and_(col >= prefix, col < prefix + "\U0010ffff", exact)
    return exact


def _compare(col: sa.ColumnElement[Any], op: str, value: Any) -> sa.ColumnElement[bool]:
    found: sa.ColumnElement[bool]
    if op == "<":
        found = col < value
    elif op == ">":
        found = col > value
    elif op == "<=":
        found = col <= value
    else:
        found = col >= value
    return found


def _version_compare(op: str, value: str) -> sa.ColumnElement[bool]:
    """Each item compared by its own package manager's rules: one range per manager."""
    c = items_t.c
    ranges = [
        sa.and_(c.manager == manager, _compare(c.version_key, op, sort_key(manager, value)))
        for manager in MANAGERS
    ]
    ranges.append(
        sa.and_(
            sa.or_(c.manager.is_(None), c.manager.not_in(MANAGERS)),
            _compare(c.version_key, op, sort_key("", value)),
        )
    )
    return sa.or_(*ranges)
