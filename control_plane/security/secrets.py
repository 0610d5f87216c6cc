"""Operator tokens and activation codes: random secrets stored only as SHA-256 digests.

A 256-bit random secret needs no slow hash: SHA-256 of it is as strong as the secret itself.
Token secrets carry the ``crl_`` prefix so secret scanners can find leaked ones.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

TOKEN_PREFIX = "crl_"
_CODE_ALPHABET = string.ascii_letters + string.digits


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_activation_code() -> str:
    """20 characters from [A-Za-z0-9] (~119 bits), the shape of an SSM activation code."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(20))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
