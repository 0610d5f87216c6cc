"""Node credential renewal against a real server: a new key, a new certificate, the old key
refused afterwards, and recovery when the agent died between the server's answer and saving."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import pytest
from nacl.signing import SigningKey

from agent import wire
from agent.config import load_config
from agent.credentials import Credentials
from agent.identity import NodeKey
from agent.state import load_registration
from tests.integration.harness import Agent, Server, wait_for

pytestmark = pytest.mark.integration


def test_renewal_rotates_the_key_and_recovers_from_a_crash(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    assert agent.register().returncode == 0
    config = load_config(agent.state_dir)
    old_key = config.key_file.read_bytes()
    old_cert = config.cert_file.read_text()
    old_expiry = load_registration(config).credential_expires_at

    async def renew_once() -> None:
        creds = Credentials(config, load_registration(config))
        try:
            assert creds.renewal_due(creds.registration.credential_issued_at + 365 * 86400)
            assert not creds.renewal_due(creds.registration.credential_issued_at)
            await creds.renew()
            creds.invalidate()
            assert (await creds.token()).startswith("nat.")
        finally:
            await creds.aclose()

    asyncio.run(renew_once())
    assert config.key_file.read_bytes() != old_key
    assert config.cert_file.read_text() != old_cert
    assert load_registration(config).credential_expires_at >= old_expiry
    assert not config.next_key_file.exists()

    async def old_key_refused() -> None:
        creds = Credentials(config, load_registration(config))
        try:
            old = NodeKey(SigningKey(base64.b64decode(old_key)))
            challenge = await creds.client.post(
                wire.ROUTE_CHALLENGE, json={"node_id": creds.node_id}
            )
            nonce, stamp = challenge.json()["nonce"], int(time.time())
            signature = old.sign_b64(wire.token_signing_payload(creds.node_id, nonce, stamp))
            answer = await creds.client.post(
                wire.ROUTE_TOKEN,
                json={
                    "node_id": creds.node_id,
                    "nonce": nonce,
                    "timestamp": stamp,
                    "signature": signature,
                },
            )
            assert answer.status_code == 401
        finally:
            await creds.aclose()

    asyncio.run(old_key_refused())

    # A crash after the server accepted a new key but before the agent swapped files:
    async def half_renewal() -> None:
        creds = Credentials(config, load_registration(config))
        try:
            new_key = NodeKey.generate()
            new_key.save(config.next_key_file)
            proof = new_key.sign_b64(
                wire.renew_signing_payload(creds.node_id, new_key.public_key_b64)
            )
            token = await creds.token()
            response = await creds.client.post(
                wire.ROUTE_RENEW,
                json={"public_key": new_key.public_key_b64, "proof": proof},
                headers={"authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200
        finally:
            await creds.aclose()

    asyncio.run(half_renewal())
    agent.start()  # the daemon's renew loop first recovers the key
    with server.api() as api:

        def pong() -> bool:
            return (
                api.post(f"/v1/nodes/{agent.node_id}/ping", json={"timeout_seconds": 5}).status_code
                == 200
            )

        wait_for(pong, 30, "agent answers with the recovered key")
    assert not config.next_key_file.exists()
