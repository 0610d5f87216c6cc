"""Parameter Store through the API: versions, labels, SecureString and who may read it,
policies on an advanceable clock, concurrency, key rotation, and no plaintext at rest."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx

from control_plane.security.keyring import KeyRing
from control_plane.services.ratelimit import RateLimits
from tests.unit.conftest import Api, RunApi, ServerDir, assert_error

SECRET = "pa55-w0rd-XYZZY-1234"


async def put(api: Api, name: str, value: str, **fields: Any) -> httpx.Response:
    return await api.client.put(
        "/v1/parameters", json={"name": name, "value": value, **fields}, headers=api.admin
    )


async def get(api: Api, selector: str, headers: dict[str, str] | None = None, **q: Any) -> Any:
    response = await api.client.get(
        "/v1/parameters/get", params={"name": selector, **q}, headers=headers or api.admin
    )
    return response


def test_versions_labels_and_history(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        assert (await put(api, "/app/prod/db-url", "postgres://a")).json()["version"] == 1
        again = await put(api, "/app/prod/db-url", "postgres://b")
        assert "--overwrite" in assert_error(again, 409, "conflict")
        assert (await put(api, "/app/prod/db-url", "postgres://b", overwrite=True)).json()[
            "version"
        ] == 2
        labelled = await api.client.post(
            "/v1/parameters/label",
            json={"name": "/app/prod/db-url", "version": 1, "labels": ["stable"]},
            headers=api.admin,
        )
        assert labelled.status_code == 200, labelled.text
        assert (await get(api, "/app/prod/db-url:stable")).json()["value"] == "postgres://a"
        assert (await get(api, "/app/prod/db-url:2")).json()["value"] == "postgres://b"
        assert (await get(api, "/app/prod/db-url")).json()["version"] == 2
        assert_error(await get(api, "/app/prod/db-url:7"), 404, "not_found")
        assert_error(await get(api, "/app/prod/db-url:nolabel"), 404, "not_found")
        # a label moves when put on another version
        await api.client.post(
            "/v1/parameters/label",
            json={"name": "/app/prod/db-url", "version": 2, "labels": ["stable"]},
            headers=api.admin,
        )
        assert (await get(api, "/app/prod/db-url:stable")).json()["version"] == 2
        history = await api.client.get(
            "/v1/parameters/history", params={"name": "/app/prod/db-url"}, headers=api.admin
        )
        assert [(v["version"], v["labels"]) for v in history.json()["versions"]] == [
            (1, []),
            (2, ["stable"]),
        ]
        await put(api, "/app/prod/sub/x", "1")
        await put(api, "/app/other", "2")
        shallow = await api.client.get(
            "/v1/parameters/by-path", params={"path": "/app/prod"}, headers=api.admin
        )
        assert [p["name"] for p in shallow.json()["parameters"]] == ["/app/prod/db-url"]
        deep = await api.client.get(
            "/v1/parameters/by-path",
            params={"path": "/app/prod", "recursive": "true"},
            headers=api.admin,
        )
        assert [p["name"] for p in deep.json()["parameters"]] == [
            "/app/prod/db-url",
            "/app/prod/sub/x",
        ]

    run_api(scenario)


def test_bad_input_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for name in ("awsKey", "/aws/x", "/SSM-x", "has space", "a/b", "/a//b", "/" + "x/" * 15):
            assert (await put(api, name, "v")).status_code == 400, name
        assert (await put(api, "/v/braces", "a {{ b }}")).status_code == 400
        assert (await put(api, "/v/big", "x" * 4097)).status_code == 400
        assert (await put(api, "/v/big", "x" * 4097, tier="Advanced")).status_code == 200
        assert (await put(api, "/v/pat", "abc", allowed_pattern="^[0-9]+$")).status_code == 400
        assert (await put(api, "/v/pat", "123", allowed_pattern="([")).status_code == 400
        policies = [{"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": "x"}}]
        assert (
            await put(api, "/v/pol", "1", tier="Advanced", policies=policies)
        ).status_code == 400
        good = [
            {
                "Type": "Expiration",
                "Version": "1.0",
                "Attributes": {"Timestamp": "2999-01-01T00:00:00Z"},
            }
        ]
        assert (await put(api, "/v/pol", "1", policies=good)).status_code == 400  # Standard
        secure = await put(api, "/v/sec", SECRET, type="SecureString", allowed_pattern="^[0-9]+$")
        assert secure.status_code == 400 and SECRET not in secure.text

    run_api(scenario)


def test_secure_strings_need_get_decrypted(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        assert (await put(api, "/app/prod/db-pass", SECRET, type="SecureString")).status_code == 200
        masked = (await get(api, "/app/prod/db-pass")).json()
        assert masked["value"] == "****" and masked["type"] == "SecureString"
        plain = (await get(api, "/app/prod/db-pass", decrypt="true")).json()
        assert plain["value"] == SECRET
        made = await api.client.post(
            "/v1/tokens", json={"name": "ops", "role": "operator"}, headers=api.admin
        )
        operator = {"authorization": f"Bearer {made.json()['secret']}"}
        shown = (await get(api, "/app/prod/db-pass", operator, decrypt="true")).json()
        assert shown["value"] == "****" and "GetDecrypted" in shown["note"]
        audit = await api.client.get("/v1/audit", params={"limit": 1000}, headers=api.admin)
        assert SECRET not in audit.text
        history = await api.client.get(
            "/v1/parameters/history", params={"name": "/app/prod/db-pass"}, headers=operator
        )
        assert SECRET not in history.text

    run_api(scenario)
    database = (server_dir.path / "corral.db").read_bytes()
    for name in ("corral.db-wal",):
        path = server_dir.path / name
        if path.exists():
            database += path.read_bytes()
    assert SECRET.encode() not in database


def test_twenty_concurrent_puts_make_twenty_versions(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await put(api, "/c/x", "v0")
        results = await asyncio.gather(
            *(put(api, "/c/x", f"v{i}", overwrite=True) for i in range(1, 21))
        )
        versions = sorted(r.json()["version"] for r in results)
        assert versions == list(range(2, 22))

    run_api(scenario)


def test_at_most_100_versions_and_a_labelled_oldest_blocks(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        api.cp.rate_limits = RateLimits(operator_rate=0, auth_base_delay=0, clock=api.clock)
        for i in range(100):
            assert (await put(api, "/many", f"v{i}", overwrite=True)).status_code == 200
        assert (await put(api, "/many", "v100", overwrite=True)).json()["version"] == 101
        assert_error(await get(api, "/many:1"), 404, "not_found")
        await api.client.post(
            "/v1/parameters/label",
            json={"name": "/many", "version": 2, "labels": ["keep"]},
            headers=api.admin,
        )
        refused = await put(api, "/many", "v101", overwrite=True)
        assert refused.status_code == 409 and "keep" in refused.text

    run_api(scenario)


def test_policies_fire_on_the_clock(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        events = api.cp.events.subscribe()
        expires = dt.datetime.fromtimestamp(api.clock() + 3 * 86400, dt.UTC)
        policies = [
            {
                "Type": "Expiration",
                "Version": "1.0",
                "Attributes": {"Timestamp": expires.isoformat().replace("+00:00", "Z")},
            },
            {
                "Type": "ExpirationNotification",
                "Version": "1.0",
                "Attributes": {"Before": "1", "Unit": "Days"},
            },
            {
                "Type": "NoChangeNotification",
                "Version": "1.0",
                "Attributes": {"After": "12", "Unit": "Hours"},
            },
        ]
        made = await put(api, "/p/x", "1", tier="Advanced", policies=policies)
        assert made.status_code == 200, made.text
        assert (await events.get())["type"] == "parameter.changed"
        assert await api.cp.parameters.fire_due() == 0
        api.clock.advance(13 * 3600)
        assert await api.cp.parameters.fire_due() == 1
        assert (await events.get())["type"] == "parameter.no_change_notification"
        api.clock.advance(2 * 86400)
        assert await api.cp.parameters.fire_due() == 1
        assert (await events.get())["type"] == "parameter.expiration_notification"
        api.clock.advance(86400)
        assert await api.cp.parameters.fire_due() == 1
        assert (await events.get())["type"] == "parameter.expired"
        assert_error(await get(api, "/p/x"), 404, "not_found")
        assert await api.cp.parameters.fire_due() == 0

    run_api(scenario)


def test_key_rotation_keeps_old_values_readable(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        await put(api, "/k/old", SECRET, type="SecureString")
        ring = KeyRing.load(server_dir.path)
        old = ring.current().key_id
        ring.rotate()
        api.cp._keyring = None  # what a restart does
        await put(api, "/k/new", "new-secret", type="SecureString")
        assert (await get(api, "/k/old", decrypt="true")).json()["value"] == SECRET
        assert await api.cp.parameters.rewrap_all() == 2
        ring.remove(old)
        api.cp._keyring = None
        assert (await get(api, "/k/old", decrypt="true")).json()["value"] == SECRET
        assert (await get(api, "/k/new", decrypt="true")).json()["value"] == "new-secret"

    run_api(scenario)


def test_a_missing_or_wrong_key_ring_is_a_clear_error_and_changes_nothing(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    async def scenario(api: Api) -> None:
        assert (await put(api, "/k/s", SECRET, type="SecureString")).status_code == 200
        ring_file = server_dir.path / "keyring.json"
        saved = ring_file.read_bytes()
        ring_file.unlink()
        api.cp._keyring = None
        refused = await put(api, "/k/s2", "x", type="SecureString")
        assert refused.status_code >= 400 and "keys create" in refused.json()["error"]["message"]
        unreadable = await get(api, "/k/s", decrypt="true")
        assert unreadable.status_code >= 400 and SECRET not in unreadable.text
        assert "key" in unreadable.json()["error"]["message"]
        # A different key ring (a wrong key): refused the same way, nothing decrypted.
        KeyRing.load_or_create(server_dir.path)
        api.cp._keyring = None
        wrong = await get(api, "/k/s", decrypt="true")
        assert wrong.status_code >= 400 and SECRET not in wrong.text
        # Nothing was corrupted: with the right key ring back, the value reads again.
        ring_file.write_bytes(saved)
        ring_file.chmod(0o600)
        api.cp._keyring = None
        assert (await get(api, "/k/s", decrypt="true")).json()["value"] == SECRET
        assert_error(await get(api, "/k/s2"), 404, "not_found")

    run_api(scenario)
