"""The parsed shape of a Command document: parameters, steps, the document itself, and the
verdict of a step's precondition.  Plain frozen dataclasses; no parsing happens here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

# The actions Corral's agent knows (the plugin table lives in agent/plugins/).  Used to pick the
# input schema of a step; an action outside this set is not a validation error: it fails its
# step when the document runs, as the SSM agent does.
RUN_SHELL_SCRIPT: Final = "aws:runShellScript"
RUN_POWERSHELL_SCRIPT: Final = "aws:runPowerShellScript"
RUN_DOCUMENT: Final = "aws:runDocument"
DOWNLOAD_CONTENT: Final = "aws:downloadContent"
KNOWN_ACTIONS: Final = frozenset(
    {RUN_SHELL_SCRIPT, RUN_POWERSHELL_SCRIPT, RUN_DOCUMENT, DOWNLOAD_CONTENT}
)
SCRIPT_ACTIONS: Final = frozenset({RUN_SHELL_SCRIPT, RUN_POWERSHELL_SCRIPT})

PARAMETER_TYPES: Final = ("String", "StringList", "Boolean", "Integer", "MapList", "StringMap")
SCHEMA_VERSIONS: Final = ("1.2", "2.0", "2.2")

# timeoutSeconds of the script actions: the default and the allowed range (AWS's numbers).
DEFAULT_TIMEOUT_SECONDS: Final = 3600
MIN_TIMEOUT_SECONDS: Final = 5
MAX_TIMEOUT_SECONDS: Final = 172_800

# The shared step inputs (inside ``inputs``, as AWS documents them).
ON_FAILURE_VALUES: Final = ("exit", "successAndExit")
ON_SUCCESS_VALUES: Final = ("exit",)
SHARED_INPUTS: Final = ("onFailure", "onSuccess", "finallyStep")

_DIGITS = re.compile(r"[0-9]+")


class _Missing:
    """The type of MISSING: a parameter declared without a default."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()


def parse_timeout(value: Any) -> int | None:
    """A timeoutSeconds value as seconds: None when absent or empty (the default applies).

    Raises ValueError when it is not a whole number; the range is the caller's check."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _DIGITS.fullmatch(text):
            return int(text)
    raise ValueError("not an integer")


def timeout_in_range(seconds: int) -> bool:
    return MIN_TIMEOUT_SECONDS <= seconds <= MAX_TIMEOUT_SECONDS


@dataclass(frozen=True)
class ParameterSpec:
    """One entry of the document's ``parameters``."""

    name: str
    type: str
    default: Any = MISSING
    description: str = ""
    allowed_values: list[Any] | None = None
    allowed_pattern: str | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    display_type: str | None = None
    env_var: bool = False  # interpolationType == "ENV_VAR"

    @property
    def required(self) -> bool:
        """A parameter without a default must be given."""
        return self.default is MISSING


@dataclass(frozen=True)
class Step:
    """One step: a ``mainSteps`` entry, or one ``properties`` entry of a schema 1.2 plugin.

    ``inputs`` holds the action's own inputs, without the shared onFailure / onSuccess /
    finallyStep (they are the fields below).  ``inputs_path`` is where the inputs sit in the
    document (``mainSteps[1].inputs``), for error messages."""

    index: int
    name: str
    action: str
    inputs: dict[str, Any]
    precondition: Any | None = None
    on_failure: str | None = None
    on_success: str | None = None
    finally_step: bool = False
    inputs_path: str = ""

    @property
    def timeout_seconds(self) -> int:
        """``inputs.timeoutSeconds`` when it is a number (or a numeral), else 3600.  A value
        interpolated at run time ("{{ executionTimeout }}") is known only after
        ``interpolate_step``, whose inputs carry it as an int."""
        try:
            seconds = parse_timeout(self.inputs.get("timeoutSeconds"))
        except ValueError:
            return DEFAULT_TIMEOUT_SECONDS
        return DEFAULT_TIMEOUT_SECONDS if seconds is None else seconds


@dataclass(frozen=True)
class Document:
    """A validated Command document.  ``content`` is the parsed document (JSON-serializable:
    what the server stores and sends); ``sha256`` is the hex digest of its canonical JSON."""

    schema_version: str
    description: str
    parameters: dict[str, ParameterSpec]
    steps: list[Step]
    content: dict[str, Any]
    sha256: str


@dataclass(frozen=True)
class PreconditionResult:
    """What a step's precondition says: ``run`` it, ``skip`` it (status Skipped, with
    ``reason``), or ``fail`` it (an unrecognized precondition: status Failed, with ``reason``)."""

    outcome: Literal["run", "skip", "fail"]
    reason: str = ""

    @property
    def run(self) -> bool:
        return self.outcome == "run"
