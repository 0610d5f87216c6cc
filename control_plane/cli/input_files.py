"""What the user hands the CLI in files and on stdin: JSON documents (policies) and values.

Every refusal is a usage error (exit 2) naming the file, with the line and column of a JSON
syntax error; none quotes what was read (it may be a secret).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

STDIN = "-"
MAX_READ = 64 * 1024  # far above the largest value (8 KB): a bigger input is surely a mistake


def read_json_file(path: str, hint: str) -> Any:
    """The JSON in ``path`` (``-``: stdin).  NaN and Infinity are refused: not JSON."""
    import json

    name = "stdin" if path == STDIN else path
    try:
        text = sys.stdin.read() if path == STDIN else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{name} is not UTF-8 text", param_hint=hint) from None
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {name}: {exc.strerror or type(exc).__name__}", param_hint=hint
        ) from None

    def no_constants(token: str) -> Any:
        raise ValueError(f"{token} is not a JSON value")

    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{name} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
            param_hint=hint,
        ) from None
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(f"{name} is not valid JSON: {exc}", param_hint=hint) from None


def read_value(value: str | None, value_file: str | None) -> str:
    """``--value V``, ``--value -`` (stdin, one trailing newline dropped, as ``read`` does) or
    ``--value-file F`` (as is; ``-`` for stdin as is): exactly one of them."""
    if (value is None) == (value_file is None):
        raise click.UsageError(
            "give the value exactly once: --value V, --value - (stdin) or --value-file F"
        )
    if value == STDIN:
        text = _read_text(sys.stdin.buffer, "stdin", "'--value'")
        return text[:-1] if text.endswith("\n") else text
    if value is not None:
        return value
    assert value_file is not None
    if value_file == STDIN:
        return _read_text(sys.stdin.buffer, "stdin", "'--value-file'")
    try:
        with open(value_file, "rb") as file:
            return _read_text(file, value_file, "'--value-file'")
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {value_file}: {exc.strerror or type(exc).__name__}",
            param_hint="'--value-file'",
        ) from None


def _read_text(stream: Any, name: str, hint: str) -> str:
    """The stream's bytes as UTF-8 text; a refusal never quotes the bytes."""
    data: bytes = stream.read(MAX_READ + 1)
    if len(data) > MAX_READ:
        raise click.BadParameter(
            f"{name} is larger than 64 KB; a value is at most 8 KB (Advanced tier)",
            param_hint=hint,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{name} is not UTF-8 text", param_hint=hint) from None
