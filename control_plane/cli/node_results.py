"""One node's result as an operator reads it after ``corral run --wait``: a header line, then
what its steps printed, as ``salt '*' cmd.run`` and Ansible's ad-hoc mode show it.

::

    mi-0123456789abcdef0 web-1 | Success | rc=0
    hello
    [stderr]
    a warning

A step's record holds its first 24,000 characters of output (8,000 of errors); where it was
cut, a note names the ``corral commands output`` call that prints the whole of it.
"""

from __future__ import annotations

from typing import Any

import click

RECORD_CHARS = {"stdout": 24_000, "stderr": 8_000}


def header(inv: dict[str, Any]) -> str:
    name = f" {inv['node_name']}" if inv.get("node_name") else ""
    details = inv.get("status_details") or ""
    status = inv["status"] if details in ("", inv["status"]) else f"{inv['status']} ({details})"
    code = inv.get("response_code")
    return f"{inv['node_id']}{name} | {status} | rc={'-' if code is None else code}"


def echo_result(inv: dict[str, Any], *, output: bool = True) -> None:
    """Print the node's header and, with ``output``, what each step printed."""
    ok = inv["status"] == "Success"
    click.echo(click.style(header(inv), fg="green" if ok else "red", bold=True))
    if inv.get("note"):  # e.g. a result that came after the server had ended the invocation
        click.echo(f"({inv['note']})")
    if not output:
        return
    if inv.get("output_omitted"):
        click.echo(f"({inv['output_omitted']})")
        return
    steps = [s for s in inv.get("steps", []) if s.get("stdout") or s.get("stderr")]
    for step in steps:
        if len(inv["steps"]) > 1:
            code = step.get("response_code")
            click.echo(f"--- step {step.get('name')}: {step.get('status')} rc={code}")
        for stream in ("stdout", "stderr"):
            text = step.get(stream) or ""
            if not text:
                continue
            if stream == "stderr":
                click.echo("[stderr]")
            click.echo(text, nl=not text.endswith("\n"))
            note = cut_note(inv, step, stream)
            if note:
                click.echo(note)


def cut_note(inv: dict[str, Any], step: dict[str, Any], stream: str) -> str:
    """A note when the record holds less than the step printed, else ''."""
    text = step.get(stream) or ""
    total = int(step.get(f"{stream}_bytes") or 0)
    if total <= len(text.encode("utf-8", "surrogatepass")):
        return ""
    flag = " --stderr" if stream == "stderr" else ""
    return (
        f"... cut at {RECORD_CHARS[stream]:,} characters of {total:,} bytes; all of it: "
        f"corral commands output {inv['command_id']} --node {inv['node_id']} "
        f"--step {step.get('name')}{flag}"
    )
