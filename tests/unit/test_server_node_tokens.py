"""Node access tokens and the signed challenges that buy them."""

from __future__ import annotations

import base64
import json
import time
import types

import pytest

from agent import wire
from agent.identity import NodeKey
from control_plane.errors import TokenExpired, Unauthorized
from control_plane.security import node_tokens
from control_plane.security.node_tokens import NodeTokenSigner

NODE = "mi-0123456789abcdef0"
OTHER = "mi-fedcba98765432100"
KEY = b"k" * 32


def signer(ttl: float = 900.0, key: bytes = KEY) -> NodeTokenSigner:
    return NodeTokenSigner(key, ttl)


def raw_public(key: NodeKey) -> bytes:
    return base64.b64decode(key.public_key_b64)


def answer(
    s: NodeTokenSigner, node_id: str, nonce: str, key: NodeKey, stamp: int | None = None
) -> None:
    stamp = int(time.time()) if stamp is None else stamp
    signature = base64.b64decode(key.sign_b64(wire.token_signing_payload(node_id, nonce, stamp)))
    s.check_challenge_response(node_id, nonce, stamp, signature, raw_public(key))


# Tokens ---------------------------------------------------------------------------------------


def test_issued_token_verifies_with_its_claims() -> None:
    s = signer(ttl=900)
    before = time.time()
    token, expires = s.issue(NODE, 3)
    assert token.startswith("nat.")
    claims = s.verify(token)
    assert (claims.node_id, claims.generation, claims.expires_at) == (NODE, 3, expires)
    assert before + 900 <= expires <= time.time() + 900


def test_token_verifies_on_another_signer_with_the_same_key() -> None:
    token, _ = signer().issue(NODE, 1)
    assert signer().verify(token).node_id == NODE


def test_expired_token_is_token_expired() -> None:
    token, expires = signer(ttl=-1).issue(NODE, 1)
    assert expires < time.time()
    with pytest.raises(TokenExpired, match="expired") as caught:
        signer().verify(token)
    assert caught.value.code == wire.ERR_TOKEN_EXPIRED and caught.value.status == 401


def tamper_claims(token: str, **changes: object) -> str:
    body, _, mac = token.rpartition(".")
    payload = json.loads(base64.urlsafe_b64decode(body.removeprefix("nat.") + "=="))
    payload.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"nat.{forged}.{mac}"


@pytest.mark.parametrize("changes", [{"n": OTHER}, {"g": 2}, {"e": time.time() + 10 * 365 * 86400}])
def test_token_with_changed_claims_is_refused(changes: dict[str, object]) -> None:
    token, _ = signer().issue(NODE, 1)
    with pytest.raises(Unauthorized, match="does not verify") as caught:
        signer().verify(tamper_claims(token, **changes))
    assert type(caught.value) is Unauthorized


def test_expired_token_with_a_pushed_expiry_is_not_revived() -> None:
    token, _ = signer(ttl=-1).issue(NODE, 1)
    with pytest.raises(Unauthorized, match="does not verify"):
        signer().verify(tamper_claims(token, e=time.time() + 3600))


def test_token_from_another_server_is_refused() -> None:
    token, _ = signer(key=b"x" * 32).issue(NODE, 1)
    with pytest.raises(Unauthorized, match="does not verify"):
        signer().verify(token)


@pytest.mark.parametrize(
    "token",
    ["", "nat.", "nat.abc", "nat.a.b.c", "crl_abc", "Bearer nat.a.b", "nat.!!!.???", "nat..x"],
)
def test_malformed_token_is_unauthorized(token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        signer().verify(token)
    assert type(caught.value) is Unauthorized


def test_a_challenge_is_not_a_token() -> None:
    s = signer()
    nonce, _ = s.new_challenge(NODE)
    with pytest.raises(Unauthorized, match="malformed"):
        s.verify(nonce)


def test_non_ascii_token_is_unauthorized() -> None:
    with pytest.raises(Unauthorized):
        signer().verify("nat.abc.\u00e9")


# Challenges -----------------------------------------------------------------------------------


def test_signed_challenge_is_accepted_once() -> None:
    s = signer()
    key = NodeKey.generate()
    nonce, expires = s.new_challenge(NODE)
    assert nonce.startswith("chl.")
    assert time.time() < expires <= time.time() + node_tokens.CHALLENGE_TTL
    answer(s, NODE, nonce, key)
    with pytest.raises(Unauthorized, match="challenge already used"):
        answer(s, NODE, nonce, key)


def test_each_challenge_is_new() -> None:
    s = signer()
    assert s.new_challenge(NODE)[0] != s.new_challenge(NODE)[0]


def test_signature_by_another_key_is_refused() -> None:
    s = signer()
    nonce, _ = s.new_challenge(NODE)
    stamp = int(time.time())
    wrong = NodeKey.generate()
    signature = base64.b64decode(wrong.sign_b64(wire.token_signing_payload(NODE, nonce, stamp)))
    with pytest.raises(Unauthorized, match="signature does not match the node's key"):
        s.check_challenge_response(NODE, nonce, stamp, signature, raw_public(NodeKey.generate()))


def test_signature_over_other_data_is_refused() -> None:
    s = signer()
    key = NodeKey.generate()
    nonce, _ = s.new_challenge(NODE)
    stamp = int(time.time())
    # A signature made for key renewal (another context) cannot buy a token.
    renewal = base64.b64decode(key.sign_b64(wire.renew_signing_payload(NODE, nonce)))
    with pytest.raises(Unauthorized, match="signature does not match"):
        s.check_challenge_response(NODE, nonce, stamp, renewal, raw_public(key))
    # Nor can a signature over another timestamp than the one sent.
    signature = base64.b64decode(key.sign_b64(wire.token_signing_payload(NODE, nonce, stamp)))
    with pytest.raises(Unauthorized, match="signature does not match"):
        s.check_challenge_response(NODE, nonce, stamp + 1, signature, raw_public(key))


def test_malformed_public_key_is_refused() -> None:
    s = signer()
    nonce, _ = s.new_challenge(NODE)
    with pytest.raises(Unauthorized, match="signature does not match"):
        s.check_challenge_response(NODE, nonce, int(time.time()), b"sig", b"short")


def test_challenge_for_another_node_is_refused() -> None:
    s = signer()
    key = NodeKey.generate()
    nonce, _ = s.new_challenge(OTHER)
    with pytest.raises(Unauthorized, match="issued for another node"):
        answer(s, NODE, nonce, key)


def test_challenge_from_another_server_is_refused() -> None:
    nonce, _ = signer(key=b"x" * 32).new_challenge(NODE)
    with pytest.raises(Unauthorized, match="does not verify"):
        answer(signer(), NODE, nonce, NodeKey.generate())


def test_signed_time_far_from_the_server_clock_is_refused() -> None:
    s = signer()
    key = NodeKey.generate()
    nonce, _ = s.new_challenge(NODE)
    with pytest.raises(Unauthorized, match="too far from the server's clock"):
        answer(s, NODE, nonce, key, stamp=int(time.time()) - 3600)
    # A refused attempt does not burn the challenge.
    answer(s, NODE, nonce, key)


def test_expired_challenge_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    s = signer()
    key = NodeKey.generate()
    nonce, expires = s.new_challenge(NODE)
    later = expires + 1
    monkeypatch.setattr(node_tokens, "time", types.SimpleNamespace(time=lambda: later))
    with pytest.raises(Unauthorized, match="challenge expired"):
        answer(s, NODE, nonce, key, stamp=int(later))
