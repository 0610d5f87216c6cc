"""Render API objects as a table (rich, for people) or JSON (stable, for scripts).

JSON: pretty-printed with sorted keys; lists are arrays of objects, single objects are
objects, exactly as the server sent them.  Tables: one row per object, or one row per field
for a single object.  rich and json are imported only when something is printed.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

Row = Mapping[str, Any]
Column = tuple[str, Callable[[Row], Any]]


def field(name: str) -> Column:
    """A column that shows ``row[name]`` under the header ``name``."""
    return (name, lambda row: row.get(name))


def cell(value: Any) -> str:
    """One table cell: ``-`` for null, yes/no, ``a, b`` for lists, ``k=v, ...`` for maps."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "-"
    return str(value)


def emit_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


def emit_list(rows: Sequence[Row], columns: Sequence[Column], output: str) -> None:
    if output == "json":
        emit_json(list(rows))
        return
    _print_table(
        [name for name, _ in columns], [[cell(get(r)) for _, get in columns] for r in rows]
    )


def emit_object(obj: Row, output: str, fields: Sequence[str] | None = None) -> None:
    """A single object; ``fields`` orders the table's rows (others follow, sorted)."""
    if output == "json":
        emit_json(obj)
        return
    order = [f for f in fields or () if f in obj]
    order += sorted(k for k in obj if k not in order)
    _print_table(["field", "value"], [[key, cell(obj[key])] for key in order])


def emit_message(text: str, data: Any, output: str) -> None:
    """A sentence for people, or ``data`` for scripts."""
    if output == "json":
        emit_json(data)
    else:
        click.echo(text)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        # Text(), not str: a value such as "[red]" must print as-is, not as rich markup.
        table.add_row(*(Text(value) for value in row))
    if sys.stdout.isatty():
        Console(highlight=False).print(table)
        return
    # Piped: no wrapping, no colour, no trailing blanks.
    buffer = io.StringIO()
    Console(file=buffer, width=1000, highlight=False, color_system=None).print(table)
    click.echo("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()))
