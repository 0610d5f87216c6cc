"""The answer to "may this caller do this action on this resource?"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from control_plane.security.policy_conditions import quote

Reason = Literal["explicit-deny", "allow", "implicit-deny"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed or not, why, and the deciding statement (all None for an implicit deny).

    Every statement holds its own Decision, built at parse time, so evaluating a request
    allocates nothing.
    """

    allowed: bool
    reason: Reason
    policy_name: str | None = None
    statement_index: int | None = None
    sid: str | None = None

    def describe(self) -> str:
        """``allowed by operator Statement[0] ("Everything")``, ``denied: no statement...``."""
        if self.policy_name is None:
            return "denied: no statement allows it"
        sid = f" ({quote(self.sid)})" if self.sid else ""
        verb = "allowed by" if self.allowed else "denied by"
        return f"{verb} {self.policy_name} Statement[{self.statement_index}]{sid}"


IMPLICIT_DENY = Decision(False, "implicit-deny")
