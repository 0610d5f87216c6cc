"""An activation as a download credential: ``X-Corral-Activation: <id>:<code>``.

The install script downloads the agent before the node has registered: the activation it is
about to register with lets it read the packages routes while it is valid (exists, the code
matches, not expired, registrations left).  Checked, never consumed.
"""

from __future__ import annotations

from control_plane.errors import ActivationInvalid
from control_plane.security import secrets as codes
from control_plane.store import activations
from control_plane.store.db import Database

HEADER = "x-corral-activation"
MAX_HEADER = 200


async def check_activation(db: Database, now: float, header: str) -> str:
    """The activation id, if ``header`` names a usable activation; else ActivationInvalid."""
    activation_id, sep, code = header.strip().partition(":")
    if not sep or not activation_id or not code or len(header) > MAX_HEADER:
        raise ActivationInvalid("X-Corral-Activation must be <activation-id>:<activation-code>")
    async with db.read() as conn:
        row = await activations.get(conn, activation_id)
    if row is None or not codes.matches(code, row["code_digest"]):
        raise ActivationInvalid("activation id or code is wrong")
    if row["expires_at"] <= now:
        raise ActivationInvalid(f"activation {activation_id} has expired")
    if row["registrations_count"] >= row["registration_limit"]:
        raise ActivationInvalid(
            f"activation {activation_id} has reached its registration limit "
            f"({row['registration_limit']})"
        )
    return activation_id
