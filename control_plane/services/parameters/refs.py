"""``{{ssm:...}}`` and ``{{ssm-secure:...}}`` in a command: checked and pinned when it is sent,
resolved when it is delivered.

Corral resolves references on the server with the sender's permissions (AWS resolves them on
the node with the node's own credentials): whoever sends a command must be allowed to read
every parameter it uses, and a node never reads parameters on its own.  At send time each
reference is checked (placement, existence, permission) and pinned to the version it names
now; the stored command keeps the reference and the pinned version, never a value.  At
delivery the values are read and put in the run_command message (over TLS), which no one
stores.

A secure reference may only be the whole value of a parameter with ``interpolationType:
ENV_VAR`` that the step inputs do not also paste as ``{{ name }}``: the script reads it from
``$SSM_<name>``, never from its own text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.documents import Document
from agent.documents._util import REF_RE, is_ssm_ref, single_ref, walk_strings
from control_plane.errors import AccessDenied, InvalidRequest
from control_plane.security.actions import resource_name

SECURE_PREFIX = "ssm-secure:"
MAX_REFERENCES = 100


class ParameterAccessDenied(AccessDenied):
    """The sender may not read a parameter the command references."""


@dataclass(frozen=True)
class Reference:
    text: str  # as written, without braces: "ssm-secure:/app/db-pass:3"
    selector: str  # "/app/db-pass:3"
    secure: bool


def references(doc: Document, values: dict[str, Any], found: list[str]) -> list[Reference]:
    """The references ``ssm_references`` found, checked for placement."""
    if len(found) > MAX_REFERENCES:
        raise InvalidRequest(f"at most {MAX_REFERENCES} Parameter Store references per command")
    refs = []
    for text in found:
        secure = text.startswith(SECURE_PREFIX)
        selector = text.split(":", 1)[1]
        refs.append(Reference(text, selector, secure))
    if any(r.secure for r in refs):
        _check_secure_placement(doc, values)
    return refs


def _check_secure_placement(doc: Document, values: dict[str, Any]) -> None:
    pasted: set[str] = set()
    for step in doc.steps:
        for path, text in walk_strings(step.inputs, step.inputs_path):
            for match in REF_RE.finditer(text):
                ref = match.group(1)
                if ref.startswith(SECURE_PREFIX):
                    raise InvalidRequest(
                        f"{path}: {{{{{ref}}}}} would paste a secret into the script: pass it "
                        "through a parameter with interpolationType ENV_VAR and read $SSM_<name>"
                    )
                if not is_ssm_ref(ref):
                    pasted.add(ref)
    for name, value in values.items():
        texts = [t for _, t in walk_strings(value, f"parameters.{name}")]
        if not any(SECURE_PREFIX in t for t in texts):
            continue
        spec = doc.parameters.get(name)
        whole = len(texts) == 1 and (single_ref(texts[0]) or "").startswith(SECURE_PREFIX)
        if spec is None or not spec.env_var or not whole:
            raise InvalidRequest(
                f"parameter {name}: a {{{{ssm-secure:...}}}} reference must be the whole value "
                "of a parameter with interpolationType ENV_VAR"
            )
        if name in pasted:
            raise InvalidRequest(
                f"parameter {name} holds a secure reference but the steps paste {{{{ {name} }}}} "
                f"into the script: read $SSM_{name} instead"
            )


# (action, resource, the parameter's type) -> allowed
Decide = Callable[[str, str, str], bool]


def resource(name: str) -> str:
    return resource_name("parameter", name)


def check_access(refs: list[Reference], names: dict[str, tuple[str, str]], allowed: Decide) -> None:
    """``names``: reference text -> (parameter name, its type).  Refuses the whole command if
    the sender may not read one of them (secure ones need parameters:GetDecrypted)."""
    for ref in refs:
        name, type_ = names[ref.text]
        if type_ == "SecureString" and not ref.secure:
            raise InvalidRequest(
                f"{{{{{ref.text}}}}}: {name} is a SecureString: reference it as "
                f"{{{{ssm-secure:{ref.selector}}}}}"
            )
        needed = ["parameters:Get"]
        if ref.secure:
            needed.append("parameters:GetDecrypted")
        for action in needed:
            if not allowed(action, resource(name), type_):
                raise ParameterAccessDenied(
                    action,
                    resource(name),
                    f"the command uses {{{{{ref.text}}}}} but you may not {action} on {name}",
                )
