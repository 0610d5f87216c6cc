"""Who may call what: every route declares its action and resource here, in one place.

An operator route takes ``caller: Annotated[Caller, Allow("nodes:Tag", "node/{node_id}")]``:
the dependency authenticates the bearer token (slowing down a source address that keeps
failing), applies the token's rate limit, evaluates its policies (IAM's rules, with the
request's context: source IP, time, token, the node's tags for ``node/`` resources), records
a denied call in the audit trail, and marks a call that changes something for the audit trail
(written in the same transaction as the change; see control_plane/api/audit_scope.py and
control_plane/services/audit_context.py).

Routes that are not an operator's declare that too: ``Public("why")`` (health, the CA
certificate, registration with an activation code) or the node dependency (agent routes).
tests/unit/test_authz_routes.py walks every route and fails on one that declares nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import string
from typing import Any

from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from control_plane.api.deps import CP, bearer
from control_plane.errors import CorralError, Forbidden, MissingToken, RateLimited, Unauthorized
from control_plane.security.actions import ACTIONS
from control_plane.security.policy import Context, Decision, evaluate
from control_plane.security.policy_conditions import ContextValue
from control_plane.services import audit_context
from control_plane.services.audit import AuditEvent
from control_plane.services.hub import ControlPlane
from control_plane.services.operators import Operator
from control_plane.services.ratelimit import retry_after

MAX_AUDITED_BODY = 64 * 1024


class Caller:
    """An authenticated operator and the context of this request."""

    def __init__(
        self,
        cp: ControlPlane,
        operator: Operator,
        context: dict[str, ContextValue],
        ip: str,
        request_id: str | None,
    ) -> None:
        self.cp = cp
        self.operator = operator
        self.context = context
        self.ip = ip
        self.request_id = request_id
        self.request_summary: dict[str, Any] | None = None

    def decide(
        self,
        action: str,
        resource: str,
        tags: dict[str, str] | None = None,
        *,
        context: dict[str, ContextValue] | None = None,
    ) -> Decision:
        """``tags``: the node's, as ``node:tag/KEY``; ``context``: more condition keys of
        this resource (``parameter:type``)."""
        full: Context = self.context
        if tags or context:
            full = {**self.context, **(context or {})}
            full.update({f"node:tag/{k}": v for k, v in (tags or {}).items()})
        return evaluate(self.operator.policies, action, resource, full)

    def allowed(
        self,
        action: str,
        resource: str,
        tags: dict[str, str] | None = None,
        *,
        context: dict[str, ContextValue] | None = None,
    ) -> bool:
        return self.decide(action, resource, tags, context=context).allowed

    async def require(
        self,
        action: str,
        resource: str,
        tags: dict[str, str] | None = None,
        *,
        context: dict[str, ContextValue] | None = None,
    ) -> None:
        decision = self.decide(action, resource, tags, context=context)
        if not decision.allowed:
            await self.denied(action, resource, decision.describe())

    def output_access(self, command_id: str) -> OutputReader:
        """This caller as a reader of the command's output (commands:GetOutput per node)."""
        return OutputReader(self, command_id)

    def out_of_scope(self, action: str, tags_by_node: dict[str, dict[str, str]]) -> list[str]:
        """The nodes this caller may not ``action`` (checked with each node's tags)."""
        return [
            node
            for node, tags in sorted(tags_by_node.items())
            if not self.allowed(action, f"node/{node}", tags)
        ]

    async def refuse_nodes(self, action: str, out: list[str]) -> None:
        more = f" and {len(out) - 20} more" if len(out) > 20 else ""
        why = f"{len(out)} target node(s) out of scope: {', '.join(out[:20])}{more}"
        # The entry names the refused nodes, as a send's names its nodes: an audit search by
        # node (``--resource node/ID``) finds the attempt.
        nodes = {"nodes": sorted(out)[:1000], "node_count": len(out)}
        await self.denied(action, "node/" + (out[0] if len(out) == 1 else "*"), why, nodes)

    async def denied(
        self, action: str, resource: str, why: str, details: dict[str, Any] | None = None
    ) -> None:
        """Record the refusal (``details`` join the request summary), then refuse."""
        op = self.operator
        request = self.request_summary
        if details:
            request = {**(request or {}), **details}
        audit_context.discard()  # the route's "allowed" entry, if one was expected, never happens
        await self.cp.audit.record_standalone(
            AuditEvent(
                action=action,
                resource=resource,
                outcome="denied",
                identity_type="token",
                identity_id=op.token_id,
                identity_name=op.name,
                source_ip=self.ip,
                request=request,
                error=why[:500],
                request_id=self.request_id,
            )
        )
        raise Forbidden(f"{op.name} ({op.token_id}) may not {action} on {resource}: {why}")


class OutputReader:
    """``commands:GetOutput`` on ``command/ID`` and on each ``node/ID`` (with its tags): the
    :class:`control_plane.services.commands.views.OutputAccess` the views ask."""

    def __init__(self, caller: Caller, command_id: str) -> None:
        self._caller = caller
        self._command = caller.allowed("commands:GetOutput", f"command/{command_id}")

    @property
    def uses_node_tags(self) -> bool:
        return self._command and self._caller.operator.uses_node_tags

    def may_read(self, node_id: str, tags: dict[str, str] | None) -> bool:
        return self._command and self._caller.allowed("commands:GetOutput", f"node/{node_id}", tags)


def client_ip(request: HTTPConnection) -> str:
    return request.client.host if request.client else "0.0.0.0"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


async def _request_summary(request: Request, redact: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the audit entry says was asked: path and query parameters, and the JSON body
    (secret-looking fields are redacted by the audit service; ``redact`` names more)."""
    summary: dict[str, Any] = dict(request.path_params)
    if request.query_params:
        summary["query"] = dict(request.query_params)
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        length = int(request.headers.get("content-length") or 0)
        if 0 < length <= MAX_AUDITED_BODY and "json" in request.headers.get("content-type", ""):
            try:
                body = json.loads(await request.body())
            except ValueError:
                body = "(not JSON)"
            if isinstance(body, dict):
                body = {k: ("****" if k in redact else v) for k, v in body.items()}
            summary["body"] = body
    return summary


async def authenticate(request: HTTPConnection, cp: ControlPlane, action: str) -> Operator:
    """The token's operator, or 401 (recorded, and the source address slowed down).

    An address that keeps presenting bad tokens waits before its next *unknown* token is
    evaluated (429, nothing read, nothing audited one by one); a token the server knows is
    never held back, so a valid CLI or CI job behind the same NAT keeps working while an
    attacker there is slowed.  Tokens are 256-bit secrets: the slow-down is there to keep a
    flood of bad ones from costing database reads and audit entries."""
    ip = client_ip(request)
    limits = cp.rate_limits
    try:
        secret = bearer(request)
        wait = limits.auth.check(ip)
        if wait > 0 and not await cp.operators.is_known(secret):
            limits.auth.refused(ip)
            raise RateLimited(
                "too many failed authentications from this address", retry_after(wait)
            )
        operator = await cp.operators.authenticate(secret)
    except Unauthorized as exc:
        message = exc.message
        if not isinstance(exc, MissingToken):  # no token guesses nothing: no slow-down
            limits.auth.failed(ip)
            skipped = limits.auth.take_refused(ip)
            if skipped:
                message += f" ({skipped} more attempts from this address refused unevaluated)"
        await cp.audit.record_standalone(
            AuditEvent(
                action=action,
                resource=request.url.path[:200],
                outcome="denied",
                source_ip=ip,
                error=message,
                request_id=request.scope.get("state", {}).get("request_id"),
            )
        )
        raise
    wait = limits.operator(operator.token_id)
    if wait > 0:
        raise RateLimited(f"rate limit of token {operator.token_id} exceeded", retry_after(wait))
    request.state.identity = operator.name
    return operator


class Allow:
    """Dependency: the caller must be allowed ``action`` on ``resource``.

    ``resource`` may name path parameters (``node/{node_id}``).  ``per_item`` leaves the
    whole check to the route, item by item: a list shows what the caller may see, a command
    is checked on each resolved target.  ``audit`` forces an audit entry for a read
    (``audit_as`` renames the action in it).  An ``implicit`` action of the catalog
    (``identity:WhoAmI``) is every valid token's: the caller is authenticated, rate limited
    and audited, and no policy is evaluated.
    """

    def __init__(
        self,
        action: str,
        resource: str = "*",
        *,
        per_item: bool = False,
        audit: bool = False,
        audit_as: str = "",
        redact: tuple[str, ...] = (),
    ) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        self.action = action
        self.resource = resource
        self.per_item = per_item
        self.redact = redact
        self.audited = audit or not ACTIONS[action].read_only
        self.audit_as = audit_as or action
        self.implicit = ACTIONS[action].implicit
        self._fields = [f for _, f, _, _ in string.Formatter().parse(resource) if f]

    async def __call__(self, request: Request, cp: CP) -> Caller:
        caller = await connection_caller(request, cp, self.action)
        operator, ip, request_id = caller.operator, caller.ip, caller.request_id
        caller.request_summary = await _request_summary(request, self.redact)
        resource = self.resource.format(**{f: request.path_params.get(f, "") for f in self._fields})
        if not self.per_item and not self.implicit:
            tags = None
            if operator.uses_node_tags and resource.startswith("node/") and resource != "node/*":
                tags = await cp.nodes.tags_of(resource.removeprefix("node/"))
            await caller.require(self.action, resource, tags)
        if self.audited:
            audit_context.expect(
                AuditEvent(
                    action=self.audit_as,
                    resource=resource,
                    outcome="allowed",
                    identity_type="token",
                    identity_id=operator.token_id,
                    identity_name=operator.name,
                    source_ip=ip,
                    request=caller.request_summary,
                    request_id=request_id,
                )
            )
        return caller


async def connection_caller(conn: HTTPConnection, cp: ControlPlane, action: str) -> Caller:
    """The authenticated operator of a request or a websocket, with its policy context
    (nothing evaluated yet)."""
    operator = await authenticate(conn, cp, action)
    ip = client_ip(conn)
    context: dict[str, ContextValue] = {
        "current_time": dt.datetime.fromtimestamp(cp.clock(), dt.UTC),
        "secure_transport": conn.url.scheme in ("https", "wss"),
        "token:id": operator.token_id,
        "token:name": operator.name,
    }
    address = _ip(ip)
    if address is not None:
        context["source_ip"] = address
    request_id = conn.scope.get("state", {}).get("request_id")
    return Caller(cp, operator, context, ip, request_id)


async def socket_caller(websocket: WebSocket) -> Caller | CorralError:
    """Who opens an operator's websocket (a session's stream): the token's caller, whose
    policies the route evaluates on what it opens; a refusal is returned (the route answers
    it as HTTP), not raised."""
    cp: ControlPlane = websocket.app.state.control_plane
    try:
        return await connection_caller(websocket, cp, "sessions:Start")
    except CorralError as exc:
        return exc


class Public:
    """Dependency: a route anyone may call, and why (checked by the route-walk test)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def __call__(self) -> None:
        return None


def allow(action: str, resource: str = "*", **kw: Any) -> Any:
    """``caller: Annotated[Caller, allow(...)]`` for brevity in route signatures."""
    return Depends(Allow(action, resource, **kw))


def public(reason: str) -> Any:
    return Depends(Public(reason))
