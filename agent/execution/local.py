"""``corral-agent run-document FILE``: run a document here, now, without a server.

A sysadmin's way to try a document before sending it out: the same engine and plugins as a
command from the server, in this process, with outputs in a temporary directory.  A reboot
exit code fails its step (nothing reboots); Ctrl-C cancels the running step.  A document with
``{{ssm:...}}`` references is refused: only the server resolves them.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from agent import wire
from agent.errors import AgentError
from agent.execution.engine import DocumentRun, EngineSettings, Outcome, Reboots, file_outputs
from agent.facts import platform_type
from agent.plugins.base import StopReason


def load(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(wire.MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > wire.MAX_DOCUMENT_BYTES:
        raise AgentError(f"{path} is larger than {wire.MAX_DOCUMENT_BYTES} bytes")
    return raw.decode("utf-8", "replace")


def run_file(
    path: Path, params: list[str], timeout_seconds: int, kill_grace_seconds: float = 5.0
) -> Outcome:
    from agent.documents import (
        parse_document,
        parse_param_args,
        resolve_parameters,
        ssm_references,
    )

    text = load(path)
    fmt = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(path.suffix.lower())
    doc = parse_document(text, fmt)
    values = resolve_parameters(doc, parse_param_args(doc, params))
    refs = ssm_references(doc, values)
    if refs:
        names = ", ".join(f"{{{{{ref}}}}}" for ref in refs)
        raise AgentError(f"Parameter Store references need a server: {names}")
    with tempfile.TemporaryDirectory(prefix="corral-run-document-") as tmp:
        out_dir, work_dir = Path(tmp) / "output", Path(tmp) / "work"
        out_dir.mkdir()
        work_dir.mkdir()
        run = DocumentRun(
            doc,
            values,
            command_id="local",
            settings=EngineSettings(platform_type(), kill_grace_seconds, Reboots.LOCAL),
            outputs=file_outputs(out_dir),
            work_dir=work_dir,
            deadline=time.monotonic() + timeout_seconds,
        )

        def cancel(_sig: int, _frame: FrameType | None) -> None:
            run.request_stop(StopReason.CANCEL)

        previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return run.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def as_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "status_details": outcome.details,
        "response_code": outcome.response_code,
        "steps": outcome.steps,
    }


def print_table(outcome: Outcome, out: TextIO = sys.stdout) -> None:
    for number, step in enumerate(outcome.steps, 1):
        status, details = step.get("status"), step.get("status_details")
        line = f"[{number}] {step.get('name')}  {step.get('action')}  {status}"
        if details and details != status:
            line += f" ({details})"
        if step.get("response_code") is not None:
            line += f"  exit {step.get('response_code')}"
        out.write(line + "\n")
        for stream in ("stdout", "stderr"):
            text = str(step.get(stream) or "")
            if not text:
                continue
            out.write(f"--- {stream}\n{text}")
            if not text.endswith("\n"):
                out.write("\n")
            total = step.get("stdout_bytes" if stream == "stdout" else "stderr_bytes")
            if isinstance(total, int) and total > len(text.encode("utf-8")):
                out.write(f"--- ({total} bytes in all; the record keeps the beginning)\n")
    code = "" if outcome.response_code is None else f", response code {outcome.response_code}"
    details = "" if outcome.details == outcome.status else f" ({outcome.details})"
    out.write(f"Status: {outcome.status}{details}{code}\n")


def main(path: Path, params: list[str], output: str, timeout_seconds: int) -> int:
    outcome = run_file(path, params, timeout_seconds)
    if output == "json":
        print(json.dumps(as_json(outcome), indent=2))
    else:
        print_table(outcome)
    return 0 if outcome.status == wire.ST_SUCCESS else 1
