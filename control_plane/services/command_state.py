"""The in-memory state machine of one command's fan-out: SSM's rate and error control.

Pure (no I/O): the dispatcher feeds it events and persists the decisions it returns.

- Rate control: at most ``concurrency`` nodes in flight, reached by ramp-up: one node first,
  then two more for each node that acknowledges (1, 3, 7, 15, ...), so a command that breaks
  nodes is caught early; as each node finishes the next starts.
- Error control: once errors (Failed, execution TimedOut) exceed the threshold no new node
  starts; the ones not started end Cancelled/Terminated; running ones finish.  Delivery
  timeouts do not count.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from agent import wire

ERROR_DETAILS = frozenset({"Failed", wire.DETAIL_EXECUTION_TIMED_OUT, wire.DETAIL_INTERRUPTED})


@dataclass
class Change:
    """An invocation's new status, decided here, to be persisted."""

    node_id: str
    status: str
    details: str
    stored: bool = False  # already written (by the channel handler that stored the report)


@dataclass
class CommandState:
    command_id: str
    target_count: int
    concurrency: int
    error_threshold: int
    pending: deque[str] = field(default_factory=deque)
    sent: set[str] = field(default_factory=set)  # delivered to the inbox, not acknowledged yet
    running: set[str] = field(default_factory=set)  # the agent said it started
    statuses: dict[str, tuple[str, str]] = field(default_factory=dict)
    acknowledged: int = 0
    started: int = 0
    errors: int = 0
    delivery_timeouts: int = 0
    completed: int = 0
    cancelled: bool = False

    @property
    def stopped(self) -> bool:
        return self.errors > self.error_threshold

    @property
    def done(self) -> bool:
        return self.completed == self.target_count

    def _set(self, node_id: str, status: str, details: str) -> Change:
        previous = self.statuses.get(node_id, (wire.ST_PENDING, wire.ST_PENDING))[0]
        self.statuses[node_id] = (status, details)
        if status in wire.TERMINAL_STATUSES and previous not in wire.TERMINAL_STATUSES:
            self.completed += 1
            self.sent.discard(node_id)
            self.running.discard(node_id)
            if details in ERROR_DETAILS or (status == wire.ST_FAILED):
                self.errors += 1
            if details == wire.DETAIL_DELIVERY_TIMED_OUT:
                self.delivery_timeouts += 1
        return Change(node_id, status, details)

    def is_terminal(self, node_id: str) -> bool:
        return self.statuses.get(node_id, ("", ""))[0] in wire.TERMINAL_STATUSES

    # Decisions ----------------------------------------------------------------------------
    def next_to_send(self) -> list[str]:
        """Nodes to start now, within concurrency and the ramp-up allowance."""
        if self.cancelled or self.stopped:
            return []
        out: list[str] = []
        ramp = 1 + 2 * self.acknowledged
        while self.pending:
            in_flight = len(self.sent) + len(self.running)
            if in_flight >= self.concurrency or self.started >= ramp:
                break
            node_id = self.pending.popleft()
            self.sent.add(node_id)
            self.started += 1
            out.append(node_id)
        return out

    def mark_sent(self, node_id: str, delayed: bool) -> Change:
        if delayed:
            return self._set(node_id, wire.ST_DELAYED, wire.ST_DELAYED)
        return self._set(node_id, wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS)

    def undeliverable(self, node_id: str) -> Change:
        self.sent.discard(node_id)
        return self._set(node_id, wire.ST_UNDELIVERABLE, wire.ST_UNDELIVERABLE)

    def agent_update(self, node_id: str, status: str, details: str) -> Change | None:
        """What the agent reported.  Anything after a terminal status is ignored."""
        if self.is_terminal(node_id) or (node_id not in self.statuses and node_id not in self.sent):
            return None
        if node_id in self.sent:
            self.sent.discard(node_id)
            self.acknowledged += 1
            if status not in wire.TERMINAL_STATUSES:
                self.running.add(node_id)
        return self._set(node_id, status, details or status)

    def stop_pending(self) -> list[Change]:
        """After a cancel or too many errors, nodes not started never start."""
        if not (self.cancelled or self.stopped):
            return []
        details = wire.ST_CANCELLED if self.cancelled else wire.DETAIL_TERMINATED
        changes = [self._set(n, wire.ST_CANCELLED, details) for n in self.pending]
        self.pending.clear()
        return changes

    def delivery_timed_out(self) -> list[Change]:
        """The delivery deadline passed: what never reached its node times out."""
        waiting = list(self.pending) + sorted(self.sent)
        self.pending.clear()
        return [self._set(n, wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT) for n in waiting]

    def expire(self) -> list[Change]:
        """The command's whole time ran out: whatever is not terminal is DeliveryTimedOut (as
        SSM's ExpiresAfter)."""
        left = [n for n in self.statuses if not self.is_terminal(n)] + list(self.pending)
        self.pending.clear()
        return [self._set(n, wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT) for n in left]

    def overall(self) -> tuple[str, str]:
        """The command's Status and StatusDetails, by SSM's rules."""
        if not self.done:
            if self.started or self.completed:
                return wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS
            return wire.ST_PENDING, wire.ST_PENDING
        if self.cancelled:
            return wire.ST_CANCELLED, wire.ST_CANCELLED
        results = [s for s, _ in self.statuses.values()]
        if all(s == wire.ST_SUCCESS for s in results):
            return wire.ST_SUCCESS, wire.ST_SUCCESS
        if self.errors > self.error_threshold:
            timed_out = sum(
                1 for _, d in self.statuses.values() if d == wire.DETAIL_EXECUTION_TIMED_OUT
            )
            if timed_out * 2 > self.errors:
                return wire.ST_TIMED_OUT, wire.DETAIL_EXECUTION_TIMED_OUT
            return wire.ST_FAILED, wire.ST_FAILED
        if self.delivery_timeouts > self.error_threshold:
            return wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT
        return wire.ST_FAILED, "Incomplete"
