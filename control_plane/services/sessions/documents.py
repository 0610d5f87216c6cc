"""Session documents: SSM's format (schemaVersion 1.0, ``sessionType``, ``inputs``,
``parameters``, ``properties``), Corral's five built in, and what one resolves to for a session
(``Resolved``: what the agent is told to run, and the session's preferences).

Parameters are checked by the Command documents' rules (agent/documents: types, defaults,
allowedPattern, allowedValues); ``{{ name }}`` in ``properties`` is replaced by the value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from agent import wire
from agent.documents import Document, build_parameters, resolve_parameters
from agent.errors import DocumentError
from control_plane.errors import InvalidRequest, NotFound

_PORT = (
    r"^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5])$"
)
_LOCAL_PORT = _PORT.replace("^(", "^(0|", 1)
# A host name or an IPv4/IPv6 address; no scheme, path, user or spaces.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$|^[0-9A-Fa-f:.]{{2,45}}$"
_COMMAND = r"^[^\x00]{1,4096}$"

_PORT_PARAMETERS = {
    "portNumber": {
        "type": "String",
        "description": "The port on the node (or on the remote host) to connect to.",
        "allowedPattern": _PORT,
        "default": "80",
    },
    "localPortNumber": {
        "type": "String",
        "description": "The port to listen on, on the operator's machine (0: any free one).",
        "allowedPattern": _LOCAL_PORT,
        "default": "0",
    },
}

_COMMAND_PARAMETERS = {
    "command": {
        "type": "String",
        "description": "The command line to run.",
        "allowedPattern": _COMMAND,
    }
}

BUILTIN: dict[str, dict[str, Any]] = {
    "Corral-StartShell": {
        "schemaVersion": "1.0",
        "description": "An interactive login shell on the node, in a pseudo-terminal.",
        "sessionType": wire.SESSION_TYPE_SHELL,
        "inputs": {
            "idleSessionTimeout": "",
            "maxSessionDuration": "",
            "runAsEnabled": True,
            "runAsDefaultUser": "",
            "logInput": True,
            "shellProfile": {"linux": "", "macos": "", "windows": ""},
        },
        "parameters": {},
    },
    "Corral-StartInteractiveCommand": {
        "schemaVersion": "1.0",
        "description": "One command in a pseudo-terminal (its input is not recorded: it may "
        "be a password).",
        "sessionType": wire.SESSION_TYPE_INTERACTIVE,
        "inputs": {"runAsEnabled": True, "logInput": False},
        "parameters": _COMMAND_PARAMETERS,
        "properties": {
            "linux": {"commands": "{{ command }}"},
            "macos": {"commands": "{{ command }}"},
        },
    },
    "Corral-StartNonInteractiveCommand": {
        "schemaVersion": "1.0",
        "description": "One command without a terminal: its output streams back.",
        "sessionType": wire.SESSION_TYPE_NON_INTERACTIVE,
        "inputs": {"runAsEnabled": True, "logInput": False},
        "parameters": _COMMAND_PARAMETERS,
        "properties": {
            "linux": {"commands": "{{ command }}"},
            "macos": {"commands": "{{ command }}"},
        },
    },
    "Corral-StartPortForwarding": {
        "schemaVersion": "1.0",
        "description": "Forward a local port to a port on the node.",
        "sessionType": wire.SESSION_TYPE_PORT,
        "parameters": _PORT_PARAMETERS,
        "properties": {"portNumber": "{{ portNumber }}", "type": "LocalPortForwarding"},
    },
    "Corral-StartPortForwardingToRemoteHost": {
        "schemaVersion": "1.0",
        "description": "Forward a local port to a port of a host the node reaches.",
        "sessionType": wire.SESSION_TYPE_PORT,
        "parameters": {
            "host": {
                "type": "String",
                "description": "The host name or address the node connects to.",
                "allowedPattern": _HOST,
            },
            **_PORT_PARAMETERS,
        },
        "properties": {
            "portNumber": "{{ portNumber }}",
            "type": "LocalPortForwarding",
            "host": "{{ host }}",
        },
    },
}
DEFAULT_DOCUMENT = "Corral-StartShell"
_REF = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


@dataclass(frozen=True)
class Resolved:
    name: str
    session_type: str
    parameters: dict[str, Any]
    command: str  # the shell profile, or the command line
    port: int | None
    host: str | None
    idle_timeout: float | None  # seconds; None: the server's preference
    max_duration: float | None
    run_as_default: str  # "": the server's preference
    log_input: bool


def names() -> list[str]:
    return sorted(BUILTIN)


def resolve(name: str, given: dict[str, Any], platform: str) -> Resolved:
    """The session ``name`` runs with ``given`` parameters on a node of ``platform`` (its
    platform type, ``Linux``/``MacOS``/``Windows``); InvalidRequest naming what is wrong."""
    content = BUILTIN.get(name)
    if content is None:
        raise NotFound(f"no session document {name!r} (known: {', '.join(names())})")
    _check_ports(given)
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    try:
        doc = Document(
            "1.0", content["description"], build_parameters(content), [], content, digest
        )
        values = resolve_parameters(doc, given)
    except DocumentError as exc:
        raise InvalidRequest(f"document {name}: {exc}") from None
    props = _substitute(content.get("properties", {}), values)
    inputs: dict[str, Any] = content.get("inputs", {})
    session_type = str(content["sessionType"])
    os_key = {"Windows": "windows", "MacOS": "macos"}.get(platform, "linux")
    command = ""
    port: int | None = None
    host: str | None = None
    if session_type == wire.SESSION_TYPE_SHELL:
        command = str(inputs.get("shellProfile", {}).get(os_key, ""))
    elif session_type == wire.SESSION_TYPE_PORT:
        port = int(props["portNumber"])
        host = props.get("host") or None
    else:
        command = str(props.get(os_key, props.get("linux", {})).get("commands", ""))
    return Resolved(
        name=name,
        session_type=session_type,
        parameters=values,
        command=command,
        port=port,
        host=host,
        idle_timeout=_minutes(inputs.get("idleSessionTimeout")),
        max_duration=_minutes(inputs.get("maxSessionDuration")),
        run_as_default=str(inputs.get("runAsDefaultUser") or ""),
        log_input=bool(inputs.get("logInput", True)),
    )


def _check_ports(given: dict[str, Any]) -> None:
    """A port outside 1-65535 (0 too, for the local one) is named plainly, before the
    parameter's pattern would say it less clearly."""
    for name, low in (("portNumber", 1), ("localPortNumber", 0)):
        value = given.get(name)
        value = value[0] if isinstance(value, list) and len(value) == 1 else value
        if isinstance(value, str) and value.isdigit() and not low <= int(value) <= 65535:
            raise InvalidRequest(f"parameters.{name}: {value} is outside {low}-65535")


def _substitute(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _REF.sub(lambda m: str(values.get(m.group(1), m.group(0))), value)
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    return value


def _minutes(value: Any) -> float | None:
    """SSM's inputs give minutes as text ("20"); empty: not set."""
    if value in (None, ""):
        return None
    return float(value) * 60.0
