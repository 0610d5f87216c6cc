"""Every IAM policy in the docs does what its prose says (issue 9, item 9).

Each ```json block of README.md or docs/*.md that holds a ``"Statement"`` is a policy; right
after its closing fence comes a comment, invisible when rendered, listing requests and the
decision the prose promises, one per line::

    <!-- policy-check
    allow commands:Send node/mi-0123456789abcdef0 node:tag/team=web
    deny  commands:Send node/mi-0123456789abcdef0 node:tag/team=db source_ip=192.0.2.1
    -->

A line is ``allow|deny ACTION RESOURCE [KEY=VALUE ...]``; the values are the request's
condition keys (``source_ip`` an address, ``current_time`` an ISO 8601 time, otherwise text).
Requests are evaluated as the API evaluates them, over HTTPS at 2026-06-01T00:00:00Z unless
the line says otherwise.  A policy without checks, a check the engine disagrees with, or a
policy the engine refuses fails here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from control_plane.security.policy import evaluate, parse_policy
from control_plane.security.policy_conditions import ContextValue

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```json\n(.*?)\n```\n(<!-- policy-check\n(.*?)-->)?", re.DOTALL)
DEFAULT_TIME = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class DocPolicy:
    where: str
    text: str
    checks: list[str]


def doc_policies() -> list[DocPolicy]:
    found = []
    for path in DOCS:
        content = path.read_text()
        for match in BLOCK.finditer(content):
            if '"Statement"' not in match.group(1):
                continue
            line = content[: match.start()].count("\n") + 1
            checks = [c.strip() for c in (match.group(3) or "").splitlines() if c.strip()]
            found.append(DocPolicy(f"{path.relative_to(ROOT)}:{line}", match.group(1), checks))
    return found


def context_of(pairs: list[str]) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = {"current_time": DEFAULT_TIME, "secure_transport": True}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key == "source_ip":
            context[key] = ipaddress.ip_address(value)
        elif key == "current_time":
            context[key] = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            context[key] = value
    return context


POLICIES = doc_policies()


def test_the_docs_have_policies() -> None:
    assert len(POLICIES) >= 6


@pytest.mark.parametrize("doc", POLICIES, ids=[p.where for p in POLICIES])
def test_each_docs_policy_decides_what_its_prose_claims(doc: DocPolicy) -> None:
    policy = parse_policy(doc.text, name=doc.where)
    assert doc.checks, f"{doc.where}: add a <!-- policy-check ... --> comment after the policy"
    wrong = []
    for check in doc.checks:
        expected, action, resource, *pairs = check.split()
        assert expected in ("allow", "deny"), f"{doc.where}: {check!r}"
        decision = evaluate([policy], action, resource, context_of(pairs))
        if decision.allowed != (expected == "allow"):
            wrong.append(f"{check}  -> {decision.describe()}")
    assert not wrong, f"{doc.where} does not do what the docs say:\n" + "\n".join(wrong)
