"""Uploading a step's full output (what its record does not hold whole), retried with backoff
until the server stores it or says it never will."""

from __future__ import annotations

import asyncio
import logging

from agent.backoff import Backoff
from agent.errors import CredentialRevoked, ServerRejected, TransportError
from agent.execution.journal import CommandDir
from agent.transport.base import Transport

log = logging.getLogger("corral.agent.execution")

# Answers that say the upload itself can never be stored (unknown command, too large, ...).
UPLOAD_REFUSED = frozenset({400, 404, 409, 413, 422})


async def upload_output(
    transport: Transport, cmd: CommandDir, index: int, stream: str, backoff: Backoff
) -> tuple[int, str] | None:
    """(size, sha256) once stored; None if the server refused it for good (the record keeps
    the output's head).  Transport failures are retried; a revoked credential is raised."""
    path = cmd.output_dir / f"{index}.{stream}"
    while True:
        try:
            return await transport.upload_output(cmd.command_id, index, stream, path)
        except CredentialRevoked:
            raise
        except ServerRejected as exc:
            if exc.status in UPLOAD_REFUSED:
                log.warning(
                    "the server refused a step's output; the record keeps its head",
                    extra={"command_id": cmd.command_id, "error": exc.message, "key": path.name},
                )
                return None
            delay = backoff.next_delay()
        except TransportError as exc:
            delay = backoff.next_delay()
            log.warning(
                "output upload failed; retrying",
                extra={
                    "command_id": cmd.command_id,
                    "error": exc.message,
                    "retry_in": round(delay, 2),
                },
            )
        await asyncio.sleep(delay)
