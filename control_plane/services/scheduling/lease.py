"""The scheduler lease: at most one server acts on schedules at a time.

A row per lease name in ``scheduler_leases`` says who holds it and until when.  The holder
renews it well before it expires; another server takes it only once it has expired (its
holder died or lost the database).  Taking and renewing are one conditional UPDATE (or the
first INSERT), so two servers racing for it cannot both win: SQLite serialises writers and
PostgreSQL locks the row.  With replicas on PostgreSQL this is where an advisory lock would
go; the row form works on both and shows who holds the lease (``corral-server`` logs it).

A holder that cannot renew (database down) stops acting as soon as its lease would have
expired by its own clock: a due run is then left to the next holder, never run twice.  Each
due run is also claimed in the same transaction that records it (see the jobs), so even two
holders for a moment could not both run it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from control_plane.services.clock import Clock
from control_plane.store import schema
from control_plane.store.db import Database

log = logging.getLogger("corral.scheduler")

LEASE_SECONDS = 30.0


def default_holder() -> str:
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        name: str = "scheduler",
        holder: str | None = None,
        seconds: float = LEASE_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self.name = name
        self.holder = holder or default_holder()
        self.seconds = seconds
        self._held_until = 0.0

    def held(self) -> bool:
        """Held by us, by our own clock (a lease we could not renew ends at its expiry)."""
        return self._clock() < self._held_until

    async def acquire(self) -> bool:
        """Take or renew the lease; True if we hold it now."""
        now = self._clock()
        until = now + self.seconds
        table = schema.scheduler_leases
        async with self._db.transaction() as conn:
            result = await conn.execute(
                sa.update(table)
                .where(table.c.name == self.name)
                .where(sa.or_(table.c.holder == self.holder, table.c.expires_at < now))
                .values(holder=self.holder, expires_at=until, renewed_at=now)
            )
            if result.rowcount == 0:
                exists = await conn.scalar(
                    sa.select(table.c.holder).where(table.c.name == self.name)
                )
                if exists is not None:
                    self._lost(str(exists))
                    return False
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            sa.insert(table).values(
                                name=self.name, holder=self.holder, expires_at=until, renewed_at=now
                            )
                        )
                except IntegrityError:
                    self._lost("another server")
                    return False
        if self._held_until <= now:
            log.info("scheduler lease taken", extra={"lease": self.name, "holder": self.holder})
        self._held_until = until
        return True

    def _lost(self, other: str) -> None:
        if self._held_until > self._clock():
            log.warning("scheduler lease lost", extra={"lease": self.name, "holder": other})
        self._held_until = 0.0

    async def release(self) -> None:
        """Give the lease up (a clean shutdown): another server may take it at once."""
        table = schema.scheduler_leases
        self._held_until = 0.0
        async with self._db.transaction() as conn:
            await conn.execute(
                sa.update(table)
                .where(table.c.name == self.name)
                .where(table.c.holder == self.holder)
                .values(expires_at=0.0)
            )
