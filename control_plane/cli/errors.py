"""The CLI's exception tree, caught once in :meth:`main.CorralGroup.main`.

Each error prints as one line ``error: <message>`` on stderr and exits with ``exit_code``::

    CliError                     exit 1   anything the CLI reports without a traceback
    ├── ConfigError              exit 1   config file and profile problems
    │   ├── ConfigCorrupt        exit 1   config.toml unreadable or malformed (names the file)
    │   └── NoProfile            exit 1   nothing to connect with: run `corral login`
    ├── ConnectionFailed         exit 1   cannot reach the server: refused, TLS, timeout
    ├── ApiError                 exit 1   the server answered {"error": {"code", "message"}}
    ├── BadResponse              exit 1   the server answered something that is not the API
    ├── LoginRefused             exit 1   `corral login` checks failed
    │   └── CaHashMismatch       exit 1   the served CA does not match --ca-hash
    └── InternalError            exit 1   a bug: an unexpected exception (see --debug)

Bad usage (unknown option, bad --expires, bad tag ...) is not in this tree: it raises
``click.UsageError`` / ``click.BadParameter`` and exits 2, like any click program.
This module imports nothing, so every other module may import it at no cost.
"""

from __future__ import annotations

from typing import ClassVar


def one_line(text: str) -> str:
    """Collapse newlines and runs of blanks: every message the CLI prints is one line."""
    return " ".join(text.split())


class CliError(Exception):
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))
        self.message = one_line(message)

    def __str__(self) -> str:
        return self.message


class ConfigError(CliError):
    pass


class ConfigCorrupt(ConfigError):
    pass


class NoProfile(ConfigError):
    pass


class ConnectionFailed(CliError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = one_line(reason)


class ApiError(CliError):
    """The server refused the request; prints as ``<message> (<code>)``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.status = status
        self.code = code


class BadResponse(CliError):
    pass


class LoginRefused(CliError):
    pass


class CaHashMismatch(LoginRefused):
    pass


class InternalError(CliError):
    pass
