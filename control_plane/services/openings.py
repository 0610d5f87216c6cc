"""Admission of control channels being opened: a bounded number signing in at once.

After a server restart every agent of the fleet comes back within its backoff window.  Each
channel being opened costs the single event loop a TLS handshake, the upgrade and the node's
proof; with thousands in progress at once every one of them slows down until none finishes
within its time limits, each failure brings a retry, and the fleet never gets back
(measured: 10,000 nodes, 0 back after three minutes).  A bounded number of openings keeps
each one fast; an upgrade beyond it is refused at once with 503 and a jittered Retry-After,
and the agent tries again after its backoff, which grows with every refusal.
"""

from __future__ import annotations

import random


class Ticket:
    """One channel being opened; released once it is signed in, or gone."""

    def __init__(self, openings: Openings) -> None:
        self._openings: Openings | None = openings

    def release(self) -> None:
        if self._openings is not None:
            self._openings.in_progress -= 1
            self._openings = None


class Openings:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_progress = 0

    def enter(self) -> Ticket | None:
        """A ticket, or None when ``limit`` channels are being opened already."""
        if self.in_progress >= self.limit:
            return None
        self.in_progress += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Whole seconds, spread so that refused agents do not come back together."""
        return random.randint(1, 10)
