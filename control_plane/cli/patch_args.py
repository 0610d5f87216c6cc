"""Checking ``corral baselines`` and ``corral patch`` input before anything is sent: a baseline
file (AWS's CreatePatchBaseline JSON or YAML), the flags that override it, patch group names.

A baseline is checked by the same :func:`agent.patching.baseline.parse` the server runs, so a
baseline the server would refuse is a usage error here (exit 2), naming the field, and the
flag or the file it came from.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Final

import click

from agent.patching.baseline import BaselineError, parse
from agent.patching.names import PATCH_GROUP_RE
from control_plane.cli.input_files import STDIN

MAX_FILE: Final = 256 * 1024  # a baseline is a few KB; Sources add at most 20 KB
# Keys a GetPatchBaseline answer (AWS's or `corral baselines show -o json`) has that are not
# the baseline's: dropped, so such a file can be created again as it is.
READ_ONLY: Final = frozenset(
    {"BaselineId", "CreatedDate", "ModifiedDate", "PatchGroups", "DefaultBaseline", "Predefined"}
)
# The flag that sets each field (a refusal names it when the field came from it).
FLAGS: Final = {
    "Name": "--name",
    "OperatingSystem": "--operating-system",
    "Description": "--description",
    "ApprovedPatches": "--approved-patches",
    "RejectedPatches": "--rejected-patches",
    "RejectedPatchesAction": "--rejected-patches-action",
    "ApprovedPatchesComplianceLevel": "--approved-patches-compliance-level",
    "ApprovedPatchesEnableNonSecurity": "--approved-patches-enable-non-security",
}
_LISTS: Final = frozenset({"ApprovedPatches", "RejectedPatches"})
_YAML_SUFFIXES: Final = (".yaml", ".yml")


def read_baseline_file(path: str) -> dict[str, Any]:
    """The baseline in ``path`` (``-``: stdin): JSON, or YAML for .yaml/.yml (and for other
    files and stdin when the text does not start with ``{``).  Read-only keys are dropped."""
    hint = "'--file'"
    name = "stdin" if path == STDIN else path
    try:
        data = sys.stdin.buffer.read(MAX_FILE + 1) if path == STDIN else _read(path)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {name}: {exc.strerror or type(exc).__name__}", param_hint=hint
        ) from None
    if len(data) > MAX_FILE:
        raise click.BadParameter(f"{name} is larger than 256 KB: not a baseline", param_hint=hint)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{name} is not UTF-8 text", param_hint=hint) from None
    suffix = PurePath(path).suffix.lower() if path != STDIN else ""
    as_yaml = suffix in _YAML_SUFFIXES or (suffix != ".json" and not text.lstrip().startswith("{"))
    raw = _yaml(text, name) if as_yaml else _json(text, name)
    if not isinstance(raw, dict):
        raise click.BadParameter(
            f"{name} is not a patch baseline: expected an object of AWS's CreatePatchBaseline "
            "fields (Name, OperatingSystem, ApprovalRules ...)",
            param_hint=hint,
        )
    return {str(k): v for k, v in raw.items() if k not in READ_ONLY}


def _read(path: str) -> bytes:
    with Path(path).open("rb") as file:
        return file.read(MAX_FILE + 1)


def _json(text: str, name: str) -> Any:
    import json

    def no_constants(token: str) -> Any:
        raise ValueError(f"{token} is not a JSON value")

    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{name} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
            param_hint="'--file'",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(
            f"{name} is not valid JSON: {exc}", param_hint="'--file'"
        ) from None


def _yaml(text: str, name: str) -> Any:
    import yaml  # type: ignore[import-untyped, unused-ignore]

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise click.BadParameter(
            f"{name} is not valid YAML{where}: {problem}", param_hint="'--file'"
        ) from None
    except RecursionError:
        raise click.BadParameter(f"{name} is nested too deeply", param_hint="'--file'") from None
    return _dates_as_text(loaded)


def _dates_as_text(value: Any) -> Any:
    """YAML reads ``ApproveUntilDate: 2026-12-31`` as a date; AWS's field is its text."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    return value


def patch_list(values: Sequence[str]) -> list[str] | None:
    """``--approved-patches a,b --approved-patches c`` → ``[a, b, c]``; not given → None;
    ``--approved-patches ''`` → ``[]`` (an update that clears the list)."""
    if not values:
        return None
    return [name.strip() for text in values for name in text.split(",") if name.strip()]


def flag_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline fields the flags set (those given), by AWS's names: ``--approved-patches``
    arrives as ``approved_patches``, a tuple of comma-separated lists."""
    fields: dict[str, Any] = {}
    for field, flag in FLAGS.items():
        value = given.get(flag[2:].replace("-", "_"))
        if field in _LISTS:
            value = patch_list(value or ())
        if value is not None:
            fields[field] = value
    return fields


def check_baseline(
    merged: Mapping[str, Any], from_flags: Mapping[str, Any], *, file_given: bool
) -> None:
    """Refuse (exit 2) what the server would refuse, naming the flag or ``--file``."""
    try:
        parse(dict(merged))
    except BaselineError as exc:
        message = str(exc)
        field = re.split(r"[\s.\[]", message, maxsplit=1)[0]
        flag = FLAGS.get(field)
        if flag is not None and (field in from_flags or not file_given):
            hint: str | None = f"'{flag}'"
        else:
            hint = "'--file'" if file_given else None
        raise click.BadParameter(message, param_hint=hint) from None


class UpperChoice(click.Choice[str]):
    """A choice of AWS's upper-case names, given in any case; help lists them as AWS spells
    them (``click.Choice(case_sensitive=False)`` would list them in lower case)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(value.upper() if isinstance(value, str) else value, param, ctx)


def check_group(value: str) -> str:
    if not PATCH_GROUP_RE.match(value):
        raise click.BadParameter(
            f"patch group {value[:60]!r}: 1 to 256 letters, digits, spaces and _.:/=+-@"
        )
    return value


def group_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else check_group(value)
