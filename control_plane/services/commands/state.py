"""The in-memory state machine of one command's fan-out: SSM's rate and error control.

Pure (no I/O): the dispatcher feeds it events and persists the decisions it returns.

- Rate control: at most ``concurrency`` nodes in flight, reached by ramp-up: one node first,
  then two more for each node that acknowledges (1, 3, 7, 15, ...), so a command that breaks
  nodes is caught early; as each node finishes the next starts.  The ramp holds back only
  nodes that could run the command now: a node that is offline when its turn comes is sent
  all the same (Delayed: it takes a concurrency slot until it acknowledges or its delivery
  times out) and the ramp goes on to the next one, so an offline first target never stalls
  the command; a node that can no longer be reached ends Undeliverable and takes nothing.
- Error control: once errors (finished invocations that are Failed or TimedOut in execution)
  exceed the threshold no new node starts; the ones not started end Cancelled/Terminated;
  running ones finish.  Delivery timeouts and Undeliverable do not count (as SSM).
- The server ends what no agent will: a node deregistered mid-command (Undeliverable if its
  agent never said it started, else Cancelled), an invocation whose node went silent past its
  execution timeout plus a grace (TimedOut, "no report from node").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agent import wire

# Status details the server writes when it ends an invocation itself (the reason, as SSM's
# StatusDetails; the agent never sends these).
DETAIL_NODE_DEREGISTERED = "node deregistered"
DETAIL_NO_REPORT = "no report from node"

# What reach(node) answers for a node whose turn has come: it is connected, it is not (it
# gets the command when it returns), or why it can never get it (the Undeliverable details).
ONLINE = "online"
OFFLINE = "offline"
Reach = Callable[[str], str]


def is_error(status: str, details: str) -> bool:
    """An invocation that counts against MaxErrors: it ended Failed, or TimedOut in execution
    (whoever decided it: the agent's ExecutionTimedOut, the server's "no report from node")."""
    return status == wire.ST_FAILED or (
        status == wire.ST_TIMED_OUT and details != wire.DETAIL_DELIVERY_TIMED_OUT
    )


def is_delivery_timeout(status: str, details: str) -> bool:
    return status == wire.ST_TIMED_OUT and details == wire.DETAIL_DELIVERY_TIMED_OUT


@dataclass
class Change:
    """An invocation's new status, decided here, to be persisted."""

    node_id: str
    status: str
    details: str
    stored: bool = False  # already written (by the channel handler that stored the report)


@dataclass
class Sends:
    """What ``next_to_send`` decided: the nodes to send to, and their new statuses."""

    nodes: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


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
            if is_error(status, details):
                self.errors += 1
            if is_delivery_timeout(status, details):
                self.delivery_timeouts += 1
        return Change(node_id, status, details)

    def is_terminal(self, node_id: str) -> bool:
        return self.statuses.get(node_id, ("", ""))[0] in wire.TERMINAL_STATUSES

    # Decisions ----------------------------------------------------------------------------
    def next_to_send(self, reach: Reach = lambda _node: ONLINE) -> Sends:
        """Nodes to start now, within concurrency and the ramp-up allowance: at most one more
        node sent while it is online and not acknowledged yet than nodes acknowledged."""
        out = Sends()
        if self.cancelled or self.stopped:
            return out
        live = sum(1 for n in self.sent if self.statuses[n][0] == wire.ST_IN_PROGRESS)
        while self.pending and len(self.sent) + len(self.running) < self.concurrency:
            where = reach(self.pending[0])
            if where == ONLINE and live >= 1 + self.acknowledged:
                break  # the ramp: wait for acknowledgements before starting more
            node_id = self.pending.popleft()
            if where not in (ONLINE, OFFLINE):
                out.changes.append(self._set(node_id, wire.ST_UNDELIVERABLE, where))
                continue
            self.sent.add(node_id)
            self.started += 1
            live += where == ONLINE
            out.nodes.append(node_id)
            out.changes.append(self.mark_sent(node_id, delayed=where == OFFLINE))
        return out

    def mark_sent(self, node_id: str, delayed: bool) -> Change:
        if delayed:
            return self._set(node_id, wire.ST_DELAYED, wire.ST_DELAYED)
        return self._set(node_id, wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS)

    def node_gone(self, node_id: str, reason: str = DETAIL_NODE_DEREGISTERED) -> Change | None:
        """The node was deregistered: what it never acknowledged is Undeliverable; what it
        said it started is Cancelled (Corral stops following it: no report can come).  Both
        carry ``reason``; neither counts as an error."""
        if self.is_terminal(node_id) or node_id not in self.statuses:
            return None
        if node_id in self.running:
            return self._set(node_id, wire.ST_CANCELLED, reason)
        if node_id in self.pending:
            self.pending.remove(node_id)
        self.sent.discard(node_id)
        return self._set(node_id, wire.ST_UNDELIVERABLE, reason)

    def no_report(self, node_id: str) -> Change | None:
        """A started invocation whose node said nothing past its execution timeout plus the
        grace: TimedOut, an error as an execution timeout is."""
        if node_id not in self.running:
            return None
        return self._set(node_id, wire.ST_TIMED_OUT, DETAIL_NO_REPORT)

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
        """The command's whole time ran out (as SSM's ExpiresAfter): what started and went
        silent has no report; whatever else is not terminal is DeliveryTimedOut."""
        silent = sorted(self.running)
        changes = [self._set(n, wire.ST_TIMED_OUT, DETAIL_NO_REPORT) for n in silent]
        left = [n for n in self.statuses if not self.is_terminal(n)]
        self.pending.clear()
        changes += [self._set(n, wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT) for n in left]
        return changes

    def overall(self) -> tuple[str, str]:
        """The command's Status and StatusDetails, by SSM's rules."""
        if not self.done:
            if self.started or self.completed:
                return wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS
            return wire.ST_PENDING, wire.ST_PENDING
        if self.cancelled:
            return wire.ST_CANCELLED, wire.ST_CANCELLED
        # Undeliverable invocations neither fail a command nor keep it from Success; a
        # command that reached none of its nodes is Failed.
        results = [st for st, _ in self.statuses.values() if st != wire.ST_UNDELIVERABLE]
        if not results:
            return wire.ST_FAILED, wire.ST_UNDELIVERABLE
        if all(st == wire.ST_SUCCESS for st in results):
            return wire.ST_SUCCESS, wire.ST_SUCCESS
        if self.errors > self.error_threshold:
            timed_out = sum(
                1
                for st, d in self.statuses.values()
                if st == wire.ST_TIMED_OUT and not is_delivery_timeout(st, d)
            )
            if timed_out * 2 > self.errors:
                return wire.ST_TIMED_OUT, wire.DETAIL_EXECUTION_TIMED_OUT
            return wire.ST_FAILED, wire.ST_FAILED
        if self.delivery_timeouts > self.error_threshold:
            return wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT
        return wire.ST_FAILED, "Incomplete"
