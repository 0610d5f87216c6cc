"""Parameter Store's input rules, as AWS states them; pure checks raising InvalidRequest.

Messages are one line and name what was wrong; none echoes a parameter value.  Where AWS is
silent or Corral differs:

- a StringList may not have empty items (``a,,b``, ``a,``): they are nearly always mistakes;
- an allowed pattern must match the whole value (``re.fullmatch``), as Java's ``matches`` does
  for AWS; Python's regex dialect is the one used;
- parameter policies allow at most one policy of each type, and an ExpirationNotification
  needs an Expiration to count back from.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeAlias

from control_plane.errors import InvalidRequest, ParameterMaxVersionLimitExceeded

ParameterType = Literal["String", "StringList", "SecureString"]
Tier = Literal["Standard", "Advanced"]
TimeUnit = Literal["Days", "Hours"]

TYPES: tuple[ParameterType, ...] = ("String", "StringList", "SecureString")
TIERS: tuple[Tier, ...] = ("Standard", "Advanced")
MAX_NAME_LENGTH = 1011
MAX_DEPTH = 15
MAX_VALUE_BYTES: dict[Tier, int] = {"Standard": 4096, "Advanced": 8192}
MAX_DESCRIPTION_LENGTH = 1024
MAX_PATTERN_LENGTH = 1024
MAX_LABEL_LENGTH = 100
MAX_LABELS_PER_VERSION = 10
MAX_VERSIONS = 100
MAX_POLICIES_LENGTH = 4096
# Upper bounds on a policy's period, so the arithmetic stays far from datetime's limits.
MAX_PERIOD: dict[TimeUnit, int] = {"Days": 36500, "Hours": 876000}

# Event types of the policies' schedule.
EXPIRED = "parameter.expired"
EXPIRATION_NOTIFICATION = "parameter.expiration_notification"
NO_CHANGE_NOTIFICATION = "parameter.no_change_notification"

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-/]")
_LABEL = re.compile(r"[A-Za-z0-9_.\-]+")
_RESERVED = ("aws", "ssm")


def _show(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line message, cut short if long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


# Names


def check_name(name: object) -> str:
    """A valid parameter name: ``db-url`` or ``/app/prod/db-url``."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest("parameter name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"parameter name {_show(name)} is {len(name)} characters long; "
            f"at most {MAX_NAME_LENGTH} are allowed"
        )
    for char in name:
        if char == " ":
            raise InvalidRequest(f"parameter name {_show(name)} may not contain spaces")
        if not _NAME_CHARS.fullmatch(char):
            raise InvalidRequest(
                f"parameter name {_show(name)} contains {char!r}; "
                "allowed are letters, digits and _ . - /"
            )
    if "/" in name:
        if not name.startswith("/"):
            raise InvalidRequest(f"hierarchical parameter name {_show(name)} must start with '/'")
        if name.endswith("/"):
            raise InvalidRequest(f"parameter name {_show(name)} may not end with '/'")
        if "//" in name:
            raise InvalidRequest(f"parameter name {_show(name)} has an empty path segment")
        depth = name.count("/")
        if depth > MAX_DEPTH:
            raise InvalidRequest(
                f"parameter name {_show(name)} has {depth} levels; at most {MAX_DEPTH} are allowed"
            )
    first = name.split("/")[1] if name.startswith("/") else name
    if first.lower().startswith(_RESERVED):
        raise InvalidRequest(
            f"parameter name {_show(name)} may not begin with 'aws' or 'ssm' (in any case)"
        )
    return name


def check_path(path: object) -> str:
    """A path for get-by-path and list: ``/`` or a hierarchical name (``/app/prod``)."""
    if path == "/":
        return path
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequest(f"path {_show(str(path))} must start with '/'")
    return check_name(path.rstrip("/") if len(path) > 1 else path)


# Type, tier, data type, description


def check_type(value: object) -> ParameterType:
    for known in TYPES:
        if value == known:
            return known
    raise InvalidRequest(f"parameter type {_show(str(value))} is not one of {', '.join(TYPES)}")


def check_tier(value: object) -> Tier:
    for known in TIERS:
        if value == known:
            return known
    raise InvalidRequest(f"tier {_show(str(value))} is not one of {', '.join(TIERS)}")


def check_data_type(value: object) -> str:
    if value == "text":
        return value
    if value == "aws:ec2:image":
        raise InvalidRequest("data type 'aws:ec2:image' is not supported by Corral; use 'text'")
    raise InvalidRequest(f"data type {_show(str(value))} is not valid; use 'text'")


def check_description(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequest(
            f"description must be a string of at most {MAX_DESCRIPTION_LENGTH} characters"
        )
    return value


# Values and allowed patterns


def check_value(value: object, type_: str, tier: str) -> str:
    """A value ``type_`` and ``tier`` accept; the message never repeats the value."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest("parameter value is empty")
    if "{{" in value or "}}" in value:
        raise InvalidRequest("parameter value may not contain '{{' or '}}'")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest("parameter value is not valid UTF-8 text") from None
    limit = MAX_VALUE_BYTES[check_tier(tier)]
    if size > limit:
        hint = " (the Advanced tier allows 8192)" if tier == "Standard" else ""
        raise InvalidRequest(
            f"parameter value is {size} bytes; the {tier} tier allows at most {limit}{hint}"
        )
    if type_ == "StringList" and "" in value.split(","):
        raise InvalidRequest("StringList value has an empty item; separate items with one ','")
    return value


def split_string_list(value: str) -> list[str]:
    return value.split(",")


def check_allowed_pattern(pattern: object) -> re.Pattern[str]:
    """The compiled allowed pattern (a Python regular expression, at most 1024 characters)."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidRequest("allowed pattern is empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidRequest(
            f"allowed pattern is {len(pattern)} characters long; at most {MAX_PATTERN_LENGTH}"
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidRequest(
            f"allowed pattern {_show(pattern)} is not a valid regular expression: {exc.msg}"
            + (f" at position {exc.pos}" if exc.pos is not None else "")
        ) from None


def value_matches(pattern: str | re.Pattern[str], value: str) -> bool:
    """Whether the whole value matches (AWS matches the whole value, as Java does)."""
    compiled = pattern if isinstance(pattern, re.Pattern) else check_allowed_pattern(pattern)
    return compiled.fullmatch(value) is not None


def check_value_matches(pattern: str | re.Pattern[str], value: str) -> str:
    if not value_matches(pattern, value):
        shown = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        raise InvalidRequest(f"parameter value does not match the allowed pattern {_show(shown)}")
    return value


# Labels and versions


def check_label(label: object) -> str:
    """A label: up to 100 letters, digits, ``.``, ``-``, ``_``; not a number or aws/ssm first."""
    if not isinstance(label, str) or not label:
        raise InvalidRequest("label is empty")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidRequest(
            f"label {_show(label)} is {len(label)} characters long; at most {MAX_LABEL_LENGTH}"
        )
    if not _LABEL.fullmatch(label):
        raise InvalidRequest(f"label {_show(label)} may contain only letters, digits and . - _")
    if label[0].isdigit():
        raise InvalidRequest(f"label {_show(label)} may not begin with a digit")
    if label.lower().startswith(_RESERVED):
        raise InvalidRequest(
            f"label {_show(label)} may not begin with 'aws' or 'ssm' (in any case)"
        )
    return label


def check_label_count(existing: Collection[str], new: Iterable[str]) -> list[str]:
    """The labels a version carries after adding ``new``; refused past 10."""
    labels = list(existing)
    labels += [label for label in dict.fromkeys(new) if label not in labels]
    if len(labels) > MAX_LABELS_PER_VERSION:
        raise InvalidRequest(
            f"a version may carry at most {MAX_LABELS_PER_VERSION} labels; "
            f"this would give it {len(labels)}"
        )
    return labels


def version_to_drop(name: str, versions: Sequence[tuple[int, Collection[str]]]) -> int | None:
    """The oldest version a new put must drop to stay within 100, None if there is room."""
    if len(versions) < MAX_VERSIONS:
        return None
    oldest, labels = min(versions, key=lambda item: item[0])
    if labels:
        raise ParameterMaxVersionLimitExceeded(
            f"parameter {name} has {MAX_VERSIONS} versions and the oldest (v{oldest}) carries "
            f"labels [{', '.join(sorted(labels))}]: remove them first "
            f"(corral params unlabel {name} --version {oldest} ...)"
        )
    return oldest


class Selector(NamedTuple):
    name: str
    version: int | None
    label: str | None


def parse_selector(text: object) -> Selector:
    """``NAME``, ``NAME:VERSION`` or ``NAME:LABEL`` (a number is a version)."""
    if not isinstance(text, str):
        raise InvalidRequest("parameter selector must be a string")
    name, colon, suffix = text.partition(":")
    check_name(name)
    if not colon:
        return Selector(name, None, None)
    if not suffix:
        raise InvalidRequest(f"selector {_show(text)} has nothing after ':'")
    if suffix.isdecimal() and suffix.isascii():
        version = int(suffix)
        if version < 1:
            raise InvalidRequest(f"selector {_show(text)}: versions start at 1")
        return Selector(name, version, None)
    return Selector(name, None, check_label(suffix))


# Parameter policies


@dataclass(frozen=True)
class Expiration:
    """Delete the parameter at ``timestamp``."""

    timestamp: dt.datetime


@dataclass(frozen=True)
class ExpirationNotification:
    """An event ``before`` ``unit`` ahead of the expiration."""

    before: int
    unit: TimeUnit

    @property
    def period(self) -> dt.timedelta:
        return _period(self.before, self.unit)


@dataclass(frozen=True)
class NoChangeNotification:
    """An event once the parameter has been unchanged for ``after`` ``unit``."""

    after: int
    unit: TimeUnit

    @property
    def period(self) -> dt.timedelta:
        return _period(self.after, self.unit)


Policy: TypeAlias = Expiration | ExpirationNotification | NoChangeNotification


def _period(amount: int, unit: TimeUnit) -> dt.timedelta:
    return dt.timedelta(days=amount) if unit == "Days" else dt.timedelta(hours=amount)


def parse_policies(
    policies: str | Sequence[object] | None, tier: str, now: float | None = None
) -> list[Policy]:
    """AWS's policy list (JSON text, or as decoded from storage), typed; None is no policies.

    ``now`` given (epoch seconds), an Expiration must lie after it.
    """
    if policies is None:
        return []
    doc = _policies_json(policies) if isinstance(policies, str) else policies
    if not isinstance(doc, list | tuple):
        raise InvalidRequest("parameter policies must be a JSON list of policy objects")
    if doc and tier != "Advanced":
        raise InvalidRequest("parameter policies need the Advanced tier (--tier Advanced)")
    parsed = [_parse_policy(item, i) for i, item in enumerate(doc)]
    kinds = [type(p) for p in parsed]
    for kind in dict.fromkeys(kinds):
        if kinds.count(kind) > 1:
            raise InvalidRequest(f"parameter policies have more than one {kind.__name__} policy")
    expiration = next((p for p in parsed if isinstance(p, Expiration)), None)
    if ExpirationNotification in kinds and expiration is None:
        raise InvalidRequest("an ExpirationNotification policy needs an Expiration policy")
    if expiration is not None and now is not None and expiration.timestamp.timestamp() <= now:
        raise InvalidRequest("the Expiration policy's Timestamp is not in the future")
    return parsed


def _policies_json(text: str) -> object:
    if len(text) > MAX_POLICIES_LENGTH:
        raise InvalidRequest(f"parameter policies are longer than {MAX_POLICIES_LENGTH} characters")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(
            f"parameter policies are not valid JSON ({str(exc).splitlines()[0]})"
        ) from None


def _parse_policy(item: object, index: int) -> Policy:
    where = f"policy {index + 1}"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} is not a JSON object")
    if extra := sorted(set(item) - {"Type", "Version", "Attributes"}):
        raise InvalidRequest(f"{where} has unknown field {_show(extra[0])}")
    kind, version, attrs = item.get("Type"), item.get("Version"), item.get("Attributes")
    if kind not in ("Expiration", "ExpirationNotification", "NoChangeNotification"):
        raise InvalidRequest(
            f"{where} has unknown Type {_show(str(kind))}; expected Expiration, "
            "ExpirationNotification or NoChangeNotification"
        )
    where = f"{kind} policy"
    if version != "1.0":
        raise InvalidRequest(f'{where} must have "Version": "1.0"')
    if not isinstance(attrs, dict):
        raise InvalidRequest(f"{where} must have an Attributes object")
    if kind == "Expiration":
        _only(attrs, ("Timestamp",), where)
        return Expiration(_timestamp(attrs.get("Timestamp"), where))
    field = "Before" if kind == "ExpirationNotification" else "After"
    _only(attrs, (field, "Unit"), where)
    unit = attrs.get("Unit")
    if unit not in ("Days", "Hours"):
        raise InvalidRequest(f'{where}: Unit must be "Days" or "Hours"')
    amount = _amount(attrs.get(field), unit, f"{where}: {field}")
    if kind == "ExpirationNotification":
        return ExpirationNotification(amount, unit)
    return NoChangeNotification(amount, unit)


def _only(attrs: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    if extra := sorted(set(attrs) - set(allowed)):
        raise InvalidRequest(f"{where} has unknown attribute {_show(extra[0])}")


def _timestamp(value: object, where: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidRequest(
            f"{where}: Timestamp must be an ISO 8601 time with a zone, "
            "e.g. 2026-12-31T00:00:00.000Z"
        )
    return when.astimezone(dt.UTC)


def _amount(value: object, unit: TimeUnit, where: str) -> int:
    text = value if isinstance(value, str) else str(value) if type(value) is int else ""
    if not (text.isdecimal() and text.isascii()) or not 1 <= int(text) <= MAX_PERIOD[unit]:
        raise InvalidRequest(
            f"{where} must be a whole number of {unit.lower()} from 1 to {MAX_PERIOD[unit]}"
        )
    return int(text)


def policies_json(policies: Iterable[Policy]) -> list[dict[str, Any]]:
    """The policies back in AWS's JSON form (for storage and for display)."""
    out: list[dict[str, Any]] = []
    for p in policies:
        if isinstance(p, Expiration):
            stamp = p.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            attrs: dict[str, str] = {"Timestamp": stamp}
        elif isinstance(p, ExpirationNotification):
            attrs = {"Before": str(p.before), "Unit": p.unit}
        else:
            attrs = {"After": str(p.after), "Unit": p.unit}
        out.append({"Type": type(p).__name__, "Version": "1.0", "Attributes": attrs})
    return out


def next_fire_times(policies: Iterable[Policy], last_modified: float) -> list[tuple[str, float]]:
    """When each policy fires, earliest first: (event type, epoch seconds).

    Expiration at its Timestamp, ExpirationNotification ``Before`` ahead of it,
    NoChangeNotification ``After`` past ``last_modified``.
    """
    policies = list(policies)
    expiration = next((p for p in policies if isinstance(p, Expiration)), None)
    fires: list[tuple[str, float]] = []
    for p in policies:
        if isinstance(p, Expiration):
            fires.append((EXPIRED, p.timestamp.timestamp()))
        elif isinstance(p, ExpirationNotification) and expiration is not None:
            at = expiration.timestamp.timestamp() - p.period.total_seconds()
            fires.append((EXPIRATION_NOTIFICATION, at))
        elif isinstance(p, NoChangeNotification):
            fires.append((NO_CHANGE_NOTIFICATION, last_modified + p.period.total_seconds()))
    return sorted(fires, key=lambda fire: fire[1])
