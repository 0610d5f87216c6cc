"""The agent's exception tree.

::

    AgentError                       a one-line message for the user; exit code 1
    ├── ConfigError                  bad/missing state dir, config or identity files (exit 78)
    │   └── OutboxCorrupt            (agent/outbox.py) moved aside and replaced, not fatal
    ├── OutboxUnavailable            (agent/outbox.py) locked, full or read-only disk: exit 1,
    │                                so systemd starts the agent again later
    ├── NotRegistered                the state dir holds no registration (exit 4)
    ├── AlreadyRegistered            register without --force on a registered state dir
    ├── RegistrationError            the server refused the activation, CA hash mismatch, ...
    ├── DocumentError                a document or its parameters are invalid (names the path)
    ├── ScheduleError                (agent/schedules) a bad cron/rate/at expression, time zone
    │                                or schedule offset; the message names what was wrong
    └── TransportError               the server could not be reached or answered 5xx (retry)
        └── ServerRejected           the server answered 4xx: retrying the same thing won't help
            └── CredentialRevoked    node deregistered / credential expired: stop (exit 3)

An unreadable state file that the agent can rebuild is not an error at all: see
agent/state_recovery.py.
"""

from __future__ import annotations


class AgentError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Exit codes that restarting cannot fix (systemd/corral-agent.service lists them in
# RestartPreventExitStatus, with 2: bad usage): fix the configuration or register again.
EXIT_DEREGISTERED = 3
EXIT_NOT_REGISTERED = 4
EXIT_CONFIG = 78  # EX_CONFIG of sysexits.h


class ConfigError(AgentError):
    exit_code = EXIT_CONFIG


class NotRegistered(AgentError):
    exit_code = EXIT_NOT_REGISTERED


class AlreadyRegistered(AgentError):
    pass


class RegistrationError(AgentError):
    pass


class DocumentError(AgentError):
    """A document, a parameter value or a step input is invalid.  ``path`` names where, in
    the form ``mainSteps[1].inputs.runCommand``; the message starts with it."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message


class ScheduleError(AgentError):
    """A schedule expression, time zone or schedule offset is invalid: one line that starts
    with the expression (or names the zone) and says what was wrong."""


class TransportError(AgentError):
    pass


class ServerRejected(TransportError):
    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CredentialRevoked(ServerRejected):
    exit_code = EXIT_DEREGISTERED
