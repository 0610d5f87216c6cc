"""Condition blocks: ``{"StringEquals": {"node:tag/team": ["web", "api"]}, ...}``.

Semantics follow IAM.  Values listed for one key are any-of; keys within an operator and the
operators of a block are ANDed.  When the request context lacks a key, a positive operator is
false and a negated one (``StringNotEquals``, ``StringNotLike``, ``NotIpAddress``,
``DateNotEquals``...) is true, as in IAM; ``Null`` tests presence.  ``current_time`` is
filled with the clock when the context lacks it.  A context value of the wrong type (an
unparsable address, say) makes the clause *unknown*: an Allow then does not apply, a Deny
does, so a bug in building the context never opens access.

Keys are case-sensitive and must be in ``CONDITION_KEYS`` (or ``node:tag/<tag key>``), each
with a type its operators must suit; the API builds the context from the same table.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from control_plane.errors import PolicyError
from control_plane.security.policy_glob import compile_globs

KeyType = Literal["string", "ip", "date", "bool"]
ContextValue = str | bool | datetime | ipaddress.IPv4Address | ipaddress.IPv6Address
Context = Mapping[str, ContextValue]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CONDITION_KEYS: Mapping[str, KeyType] = {
    "source_ip": "ip",
    "current_time": "date",
    "secure_transport": "bool",
    "token:id": "string",
    "token:name": "string",
    "node:id": "string",
    "node:platform": "string",
    "command:document": "string",
    "parameter:type": "string",
    "sessions:run_as": "string",
}
CONDITION_KEY_PREFIXES: Mapping[str, KeyType] = {"node:tag/": "string"}

_KINDS: Mapping[KeyType, str] = {
    "string": "a string",
    "ip": "an IP address",
    "date": "a date",
    "bool": "a boolean",
}
MAX_VALUES = 100
MAX_VALUE_LENGTH = 1024

# operator -> (key type it needs, negated); "Null" accepts any key.
OPERATORS: Mapping[str, tuple[KeyType | None, bool]] = {
    "StringEquals": ("string", False),
    "StringNotEquals": ("string", True),
    "StringEqualsIgnoreCase": ("string", False),
    "StringNotEqualsIgnoreCase": ("string", True),
    "StringLike": ("string", False),
    "StringNotLike": ("string", True),
    "IpAddress": ("ip", False),
    "NotIpAddress": ("ip", True),
    "DateEquals": ("date", False),
    "DateNotEquals": ("date", True),
    "DateLessThan": ("date", False),
    "DateLessThanEquals": ("date", False),
    "DateGreaterThan": ("date", False),
    "DateGreaterThanEquals": ("date", False),
    "Bool": ("bool", False),
    "Null": (None, False),
}

Test = Callable[[ContextValue], "bool | None"]
Check = Callable[[Context], "bool | None"]


@dataclass(frozen=True, slots=True)
class Clause:
    """One ``operator: {key: values}`` entry; ``check`` reads the context and decides."""

    operator: str
    key: str
    values: tuple[str, ...]
    check: Check


@dataclass(frozen=True, slots=True)
class Condition:
    """The ANDed clauses; ``check(context)`` is True, False, or None (a value was unreadable).

    ``check`` is one plain function built at parse time (the single clause's own check when
    there is one), so evaluation pays a single call per clause.
    """

    clauses: tuple[Clause, ...]
    check: Check


def _all_of(checks: tuple[Check, ...]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(context: Context) -> bool | None:
        result: bool | None = True
        for one in checks:
            got = one(context)
            if got is not True:
                if got is False:
                    return False
                result = None
        return result

    return check


def key_type(key: str) -> KeyType | None:
    if key in CONDITION_KEYS:
        return CONDITION_KEYS[key]
    for prefix, kind in CONDITION_KEY_PREFIXES.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return kind
    return None


def parse_condition(block: object, where: str) -> Condition:
    """Validate and compile a Condition block; ``where`` prefixes error messages."""
    if not isinstance(block, dict) or not block:
        raise PolicyError(f"{where}: must be a non-empty object of operator: {{key: value}}")
    clauses = []
    for operator, entries in block.items():
        if operator not in OPERATORS:
            raise PolicyError(
                f"{where}: unknown operator {quote(operator)}{did_you_mean(operator, OPERATORS)}"
            )
        at = f"{where}.{operator}"
        if not isinstance(entries, dict) or not entries:
            raise PolicyError(f"{at}: must be a non-empty object of key: value(s)")
        for key, raw in entries.items():
            _check_key(key, operator, at)
            values = _values(raw, f"{at}.{key}", bool_ok=operator in ("Bool", "Null"))
            clauses.append(_compile(operator, key, values, f"{at}.{key}"))
    return Condition(tuple(clauses), _all_of(tuple(c.check for c in clauses)))


def _check_key(key: str, operator: str, at: str) -> None:
    kind = key_type(key)
    if kind is None:
        known = [*CONDITION_KEYS, *(p + "<key>" for p in CONDITION_KEY_PREFIXES)]
        raise PolicyError(f"{at}: unknown condition key {quote(key)}{did_you_mean(key, known)}")
    needs = OPERATORS[operator][0]
    if needs is not None and kind != needs:
        what, wanted = _KINDS[kind], _KINDS[needs]
        raise PolicyError(f"{at}: {quote(key)} is {what} key; {operator} needs {wanted} key")


def quote(text: str) -> str:
    """``text`` in double quotes, escaped as in JSON."""
    return json.dumps(text, ensure_ascii=False)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _values(raw: object, at: str, *, bool_ok: bool) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise PolicyError(f"{at}: must not be empty")
    if len(items) > MAX_VALUES:
        raise PolicyError(f"{at}: at most {MAX_VALUES} values")
    out = []
    for item in items:
        if bool_ok and isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str):
            raise PolicyError(f"{at}: must be a string or a list of strings")
        if len(item) > MAX_VALUE_LENGTH:
            raise PolicyError(f"{at}: values are at most {MAX_VALUE_LENGTH} characters")
        out.append(item)
    return tuple(out)


def _compile(operator: str, key: str, values: tuple[str, ...], at: str) -> Clause:
    negated = OPERATORS[operator][1]
    base = operator.replace("Not", "", 1) if negated else operator
    if operator == "Null":
        flags = {_parse_bool(v, at) for v in values}
        check = _bind(key, lambda _v: False in flags, True in flags)
    elif base == "StringEquals":
        check = _string_in(key, frozenset(values), negated)
    elif negated:
        check = _bind(key, _negate(_positive_test(base, values, at)), True)
    else:
        check = _bind(key, _positive_test(base, values, at), False)
    return Clause(operator, key, values, check)


def _bind(key: str, test: Test, if_missing: bool) -> Check:
    if key == "current_time":

        def check_time(context: Context) -> bool | None:
            value = context.get(key)
            return test(datetime.now(UTC) if value is None else value)

        return check_time

    def check(context: Context) -> bool | None:
        value = context.get(key)
        return if_missing if value is None else test(value)

    return check


def _string_in(key: str, wanted: frozenset[str], negated: bool) -> Check:
    """StringEquals / StringNotEquals in one call: the check run on most requests."""

    def check(context: Context) -> bool | None:
        value = context.get(key)
        if value is None:
            return negated
        text = value if isinstance(value, str) else _as_str(value)
        if text is None:
            return None
        return (text in wanted) is not negated

    return check


def _negate(test: Test) -> Test:
    def negated(value: ContextValue) -> bool | None:
        got = test(value)
        return None if got is None else not got

    return negated


def _positive_test(operator: str, values: tuple[str, ...], at: str) -> Test:
    if operator == "StringEqualsIgnoreCase":
        return _member(_fold, frozenset(v.casefold() for v in values))
    if operator == "StringLike":
        regex = compile_globs(values)
        return lambda v: _like(regex.fullmatch, v)
    if operator == "IpAddress":
        nets = tuple(parse_network(v, at) for v in values)
        return lambda v: _in_networks(v, nets)
    if operator.startswith("Date"):
        return _date_test(operator, tuple(parse_date(v, at) for v in values))
    return _member(_as_bool, frozenset(_parse_bool(v, at) for v in values))


def _member(convert: Callable[[ContextValue], object], wanted: frozenset[object]) -> Test:
    def test(value: ContextValue) -> bool | None:
        got = convert(value)
        return None if got is None else got in wanted

    return test


_DATE_COMPARE: Mapping[str, Callable[[datetime, datetime], bool]] = {
    "DateEquals": lambda t, x: t == x,
    "DateLessThan": lambda t, x: t < x,
    "DateLessThanEquals": lambda t, x: t <= x,
    "DateGreaterThan": lambda t, x: t > x,
    "DateGreaterThanEquals": lambda t, x: t >= x,
}


def _date_test(operator: str, limits: tuple[datetime, ...]) -> Test:
    compare = _DATE_COMPARE[operator]

    def test(value: ContextValue) -> bool | None:
        when = _as_date(value)
        return None if when is None else any(compare(when, limit) for limit in limits)

    return test


def _like(fullmatch: Callable[[str], object], value: ContextValue) -> bool | None:
    text = _as_str(value)
    return None if text is None else fullmatch(text) is not None


def _in_networks(value: ContextValue, nets: tuple[IpNetwork, ...]) -> bool | None:
    address = _as_ip(value)
    return None if address is None else any(address in net for net in nets)


def parse_network(text: str, at: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PolicyError(f"{at}: {quote(text)} is not an IP address or CIDR block") from None


def parse_date(text: str, at: str) -> datetime:
    when = _read_date(text)
    if when is None:
        raise PolicyError(f"{at}: {quote(text)} is not an ISO 8601 date-time")
    return when


def _parse_bool(text: str, at: str) -> bool:
    flag = _as_bool(text)
    if flag is None:
        raise PolicyError(f'{at}: {quote(text)} is not "true" or "false"')
    return flag


def _as_str(value: ContextValue) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else None


def _fold(value: ContextValue) -> str | None:
    text = _as_str(value)
    return None if text is None else text.casefold()


def _as_bool(value: ContextValue) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _as_date(value: ContextValue) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return _read_date(value) if isinstance(value, str) else None


@lru_cache(maxsize=256)
def _read_date(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _as_ip(value: ContextValue) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        address = value
    elif isinstance(value, str):
        parsed = _read_ip(value)
        if parsed is None:
            return None
        address = parsed
    else:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=1024)
def _read_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
