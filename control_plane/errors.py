"""The control plane's exception tree.

Every error that reaches an HTTP client maps to a stable code and status::

    CorralError                      500 internal
    ├── InvalidRequest               400 invalid_request
    │   ├── PayloadTooLarge          413 payload_too_large
    │   └── PolicyError              400 invalid_request
    ├── Unauthorized                 401 unauthorized
    │   ├── MissingToken             401 unauthorized
    │   ├── TokenExpired             401 token_expired
    │   ├── NodeDeregistered         401 node_deregistered
    │   └── CredentialExpired        401 credential_expired
    ├── Forbidden                    403 forbidden
    │   ├── AccessDenied             403 forbidden (one action on one resource, named)
    │   ├── OutOfScope               403 forbidden (targets outside the token's policies)
    │   └── ActivationInvalid        403 activation_invalid
    ├── NotFound                     404 not_found
    ├── Conflict                     409 conflict
    │   └── CalendarClosed           409 calendar_closed (a change calendar gates the run)
    ├── RateLimited                  429 rate_limited (+ Retry-After)
    ├── Timeout                      504 timeout
    └── SetupError                   (no HTTP: data dir, config, certificates)
"""

from __future__ import annotations

from typing import ClassVar

from agent import wire


class CorralError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CorralError):
    status = 400
    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class Unauthorized(CorralError):
    status = 401
    code = wire.ERR_UNAUTHORIZED


class MissingToken(Unauthorized):
    """No bearer token at all (refused, but not a guess: no slow-down)."""


class TokenExpired(Unauthorized):
    code = wire.ERR_TOKEN_EXPIRED


class NodeDeregistered(Unauthorized):
    code = wire.ERR_NODE_DEREGISTERED


class CredentialExpired(Unauthorized):
    code = wire.ERR_CREDENTIAL_EXPIRED


class Forbidden(CorralError):
    status = 403
    code = "forbidden"


class AccessDenied(Forbidden):
    """A check inside a service refused ``action`` on ``resource`` (a parameter a command
    reads, a document it nests): the API records the denial and answers 403."""

    def __init__(self, action: str, resource: str, message: str) -> None:
        super().__init__(message)
        self.action = action
        self.resource = resource


class OutOfScope(Forbidden):
    """Some target nodes are outside the caller's policies (nothing was stored)."""

    def __init__(self, nodes: list[str]) -> None:
        super().__init__(f"{len(nodes)} target node(s) out of scope")
        self.nodes = nodes


class ActivationInvalid(Forbidden):
    code = wire.ERR_ACTIVATION_INVALID


class NotFound(CorralError):
    status = 404
    code = "not_found"


class Conflict(CorralError):
    status = 409
    code = "conflict"


class NodeUnavailable(Conflict):
    """A session to a node that is not connected now (offline, or deregistered)."""

    code = "node_unavailable"


class CalendarClosed(Conflict):
    """A run gated by a change calendar that is CLOSED now: nothing was started."""

    code = "calendar_closed"


class Timeout(CorralError):
    status = 504
    code = "timeout"


class SetupError(CorralError):
    """The server cannot start or a setup command cannot proceed (data dir, config, keys)."""


class PolicyError(InvalidRequest):
    """A policy document is malformed; the message names the statement and field."""


class RateLimited(CorralError):
    """Too many requests; ``retry_after`` whole seconds go out as the Retry-After header."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class KeyRingError(SetupError):
    """The key ring is missing, malformed, too open, or lacks the key a value was sealed with."""

    code = "key_ring"


class DecryptionFailed(SetupError):
    """A SecureString blob does not verify: tampered, truncated or stored under another name."""

    code = "decryption_failed"


class ParameterMaxVersionLimitExceeded(Conflict):
    """A put would drop the oldest of 100 versions, but that version still carries labels."""

    code = "parameter_max_version_limit_exceeded"
