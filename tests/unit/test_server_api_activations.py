"""/v1/activations: create (the code is shown once), list, show, delete, and bad input."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

from tests.unit.conftest import assert_error

if TYPE_CHECKING:
    from tests.unit.conftest import Api, RunApi


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def test_create_list_show_delete(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        now = api.clock()
        created = await api.create_activation(
            name="web",
            description="web servers",
            registration_limit=10,
            expires_in_seconds=3600,
            tags={"env": "prod", "team": ""},
        )
        activation_id = created["activation_id"]
        code = created.pop("activation_code")
        assert len(code) == 20 and code.isalnum()
        assert created == {
            "activation_id": activation_id,
            "name": "web",
            "description": "web servers",
            "registration_limit": 10,
            "registrations_count": 0,
            "expires_at": rfc3339(now + 3600),
            "expired": False,
            "created_at": rfc3339(now),
            "tags": {"env": "prod", "team": ""},
        }
        shown = await api.client.get(f"/v1/activations/{activation_id}", headers=api.admin)
        assert shown.status_code == 200
        assert shown.json() == created  # the code is never shown again
        api.clock.advance(1)
        other = await api.create_activation()
        listed = await api.client.get("/v1/activations", headers=api.admin)
        assert [a["activation_id"] for a in listed.json()["activations"]] == [
            activation_id,
            other["activation_id"],
        ]
        assert all("activation_code" not in a for a in listed.json()["activations"])

        deleted = await api.client.delete(f"/v1/activations/{activation_id}", headers=api.admin)
        assert (deleted.status_code, deleted.json()) == (200, {"deleted": activation_id})
        gone = await api.client.get(f"/v1/activations/{activation_id}", headers=api.admin)
        assert_error(gone, 404, "not_found")
        again = await api.client.delete(f"/v1/activations/{activation_id}", headers=api.admin)
        assert_error(again, 404, "not_found")
        listed = await api.client.get("/v1/activations", headers=api.admin)
        assert [a["activation_id"] for a in listed.json()["activations"]] == [
            other["activation_id"]
        ]

    run_api(scenario)


def test_defaults_are_one_registration_within_a_day(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        created = await api.create_activation()
        assert created["registration_limit"] == 1
        assert created["expires_at"] == rfc3339(api.clock() + 24 * 3600)
        assert (created["name"], created["description"], created["tags"]) == ("", "", {})

    run_api(scenario)


def test_every_activation_gets_its_own_id_and_code(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        made = [await api.create_activation() for _ in range(5)]
        assert len({a["activation_id"] for a in made}) == 5
        assert len({a["activation_code"] for a in made}) == 5

    run_api(scenario)


def test_an_activation_shows_expired_once_the_clock_passes_it(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        created = await api.create_activation(expires_in_seconds=60)
        api.clock.advance(59)
        shown = await api.client.get(
            f"/v1/activations/{created['activation_id']}", headers=api.admin
        )
        assert shown.json()["expired"] is False
        api.clock.advance(1)
        shown = await api.client.get(
            f"/v1/activations/{created['activation_id']}", headers=api.admin
        )
        assert shown.json()["expired"] is True

    run_api(scenario)


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"registration_limit": 0}, "registration_limit must be 1 to 1000"),
        ({"registration_limit": 1001}, "registration_limit must be 1 to 1000"),
        ({"registration_limit": -5}, "registration_limit must be 1 to 1000"),
        ({"registration_limit": True}, "registration_limit"),
        ({"registration_limit": "5"}, "registration_limit"),
        ({"registration_limit": 1.5}, "registration_limit"),
        ({"expires_in_seconds": 59}, "between 1 minute and 30 days"),
        ({"expires_in_seconds": 30 * 24 * 3600 + 1}, "between 1 minute and 30 days"),
        ({"expires_in_seconds": "3600"}, "expires_in_seconds"),
        ({"name": "n" * 257}, "name"),
        ({"name": "line\nbreak"}, "control characters"),
        ({"description": "d" * 257}, "description"),
        ({"description": "tab\there"}, "control characters"),
        ({"name": 5}, "name"),
        ({"tags": {"aws:owner": "x"}}, "may not start with 'aws:'"),
        ({"tags": {"AWS:owner": "x"}}, "may not start with 'aws:'"),
        ({"tags": {"": "x"}}, "1 to 128 characters"),
        ({"tags": {"k" * 129: "x"}}, "1 to 128 characters"),
        ({"tags": {"k": "v" * 257}}, "at most 256 characters"),
        ({"tags": {"k": "a*b"}}, "may contain only"),
        ({"tags": {f"k{i}": "v" for i in range(51)}}, "at most 50 tags"),
        ({"tags": {"k": 5}}, "tags"),
        ({"tags": ["env"]}, "tags"),
        ({"code": "mine"}, "code"),  # unknown field
    ],
)
def test_bad_input_is_400_and_creates_nothing(
    run_api: RunApi, body: dict[str, Any], hint: str
) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.post("/v1/activations", json=body, headers=api.admin)
        assert hint in assert_error(response, 400, "invalid_request")
        listed = await api.client.get("/v1/activations", headers=api.admin)
        assert listed.json() == {"activations": [], "next_token": None}

    run_api(scenario)


def test_limits_at_the_edges_are_accepted(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        low = await api.create_activation(registration_limit=1, expires_in_seconds=60)
        high = await api.create_activation(
            registration_limit=1000,
            expires_in_seconds=30 * 24 * 3600,
            name="n" * 256,
            tags={f"k{i}": "v" * 256 for i in range(50)},
        )
        assert low["registration_limit"] == 1
        assert high["registration_limit"] == 1000 and len(high["tags"]) == 50

    run_api(scenario)
