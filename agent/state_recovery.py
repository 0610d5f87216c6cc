"""What the agent does with a state file it cannot read: it keeps running.

A file that the agent can rebuild is moved aside into ``<state dir>/corrupt/`` (named with
the time it was found, ``outbox.db.20261204T013000Z``), a fresh one takes its place, the
agent logs an error and tells the server with a ``node_event`` so the operator learns of it
(``corral nodes events NODE``):

| file | rebuilt as | what may be lost |
|---|---|---|
| ``outbox.db`` | an empty outbox | reports not yet sent (results, heartbeats) |
| ``status.json`` | written at the next contact | nothing |
| ``node.pem`` | a new certificate at once (renewal, by key proof) | nothing |
| ``ca.pem`` | fetched again from the server, checked against the pinned hash | nothing |
| a ``commands/<id>/`` entry | a Failed (Interrupted) result; never run again | its result |

The node's identity cannot be rebuilt: an unreadable ``state.json`` or ``node.key`` stops
the agent with a one-line error and exit code 78 (``EX_CONFIG``), which systemd's unit does
not restart (register the node again with ``--force``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import wire
from agent.backoff import Backoff
from agent.config import AgentConfig
from agent.errors import AgentError
from agent.outbox import Outbox, OutboxCorrupt
from agent.wire import Message

log = logging.getLogger("corral.agent")

CORRUPT_DIR = "corrupt"


@dataclass(frozen=True)
class Recovered:
    """A state file found unreadable, moved aside and replaced."""

    code: str
    file: str  # relative to the state dir
    moved_to: str  # relative to the state dir
    reason: str
    consequence: str
    command_id: str | None = None

    @property
    def message(self) -> str:
        text = (
            f"{self.file} was unreadable ({self.reason}); moved to {self.moved_to}: "
            f"{self.consequence}"
        )
        return text[: wire.MAX_REASON_CHARS]

    def event(self) -> Message:
        body: dict[str, object] = {
            "code": self.code,
            "severity": "error",
            "message": self.message,
            "time": time.time(),
            "file": self.file,
            "moved_to": self.moved_to,
        }
        if self.command_id is not None:
            body["command_id"] = self.command_id
        return wire.make_message(wire.MSG_NODE_EVENT, body)

    def log(self) -> None:
        log.error(
            "state file unreadable; moved aside",
            extra={"file": self.file, "moved_to": self.moved_to, "reason": self.reason},
        )


def quarantine(
    state_dir: Path,
    path: Path,
    *,
    reason: str,
    consequence: str,
    code: str = wire.EVENT_STATE_FILE_CORRUPT,
    command_id: str | None = None,
    siblings: tuple[str, ...] = (),
) -> Recovered:
    """Move ``path`` (and ``path`` + each suffix in ``siblings``) into ``corrupt/``."""
    folder = state_dir / CORRUPT_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = folder / f"{path.name}.{stamp}"
    for suffix in ("", *siblings):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, target.with_name(target.name + suffix))
    recovered = Recovered(
        code=code,
        file=str(path.relative_to(state_dir)),
        moved_to=str(target.relative_to(state_dir)),
        reason=reason,
        consequence=consequence,
        command_id=command_id,
    )
    recovered.log()
    return recovered


def check_status_file(config: AgentConfig) -> list[Recovered]:
    def parse(text: str) -> None:
        if not isinstance(json.loads(text), dict):
            raise ValueError("not a JSON object")

    return _check(
        config,
        config.status_file,
        parse,
        "it is written again at the next contact; nothing is lost",
    )


def check_certificate(config: AgentConfig) -> list[Recovered]:
    """The node certificate: replaced by a renewal (the caller renews at once)."""
    return _check(
        config,
        config.cert_file,
        ssl.PEM_cert_to_DER_cert,
        "a new certificate is requested now; nothing is lost",
    )


def _check(
    config: AgentConfig, path: Path, parse: Callable[[str], object], consequence: str
) -> list[Recovered]:
    """``path`` moved aside if it exists and ``parse`` cannot read its text."""
    try:
        parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return [quarantine(config.state_dir, path, reason=_why(exc), consequence=consequence)]
    return []


def ca_usable(config: AgentConfig) -> str | None:
    """Why the pinned CA file cannot be used, or None when it can."""
    try:
        ssl.create_default_context(cafile=str(config.ca_file))
    except FileNotFoundError:
        return "missing"
    except (OSError, ssl.SSLError, ValueError) as exc:
        return _why(exc)
    return None


def _why(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def open_outbox(config: AgentConfig) -> tuple[Outbox, list[Recovered]]:
    """The outbox; a corrupt one is moved aside (with its -wal and -shm) for a fresh one."""
    try:
        return Outbox(config.outbox_file), []
    except OutboxCorrupt as exc:
        recovered = quarantine(
            config.state_dir,
            config.outbox_file,
            reason=exc.message.rsplit(": ", 1)[-1],
            consequence="reports it held that were not yet sent (command results, "
            "heartbeats) are lost; a command they reported on may stay InProgress",
            siblings=("-wal", "-shm"),
        )
        return Outbox(config.outbox_file), [recovered]


async def recover_ca(
    config: AgentConfig, url: str, ca_hash: str, backoff: Backoff
) -> list[Recovered]:
    """An unusable pinned CA file is fetched again from the server, and kept only if its
    hash is the one pinned at registration; until then the agent waits, with backoff."""
    why = ca_usable(config)
    if why is None:
        return []
    found: list[Recovered] = []
    if config.ca_file.exists():
        found.append(
            quarantine(
                config.state_dir,
                config.ca_file,
                reason=why,
                consequence="fetched again from the server and checked against the pinned "
                "hash; nothing is lost",
            )
        )
    from agent.registration import fetch_pinned_ca
    from agent.state import write_atomic

    while True:
        try:
            pem = await fetch_pinned_ca(url, ca_hash)
        except AgentError as exc:  # unreachable, or a CA that is not the pinned one
            delay = backoff.next_delay()
            log.error(
                "cannot fetch the pinned CA again; retrying",
                extra={"error": exc.message, "retry_in": round(delay, 2)},
            )
            await asyncio.sleep(delay)
            continue
        write_atomic(config.ca_file, pem)
        log.info("pinned CA fetched again", extra={"file": str(config.ca_file)})
        return found
