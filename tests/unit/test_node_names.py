"""Nodes registered without a name get a unique default one: the activation's default name,
else the host name, then ``-2``, ``-3`` ... (ten nodes from one activation are not all called
the same).  A name the operator gives is kept as given."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from control_plane.services.node_names import MAX_NAME, first_free

if TYPE_CHECKING:
    from tests.unit.conftest import Api, RunApi


async def names(api: Api, *responses: object) -> list[str]:
    out = []
    for response in responses:
        assert response.status_code == 201, response.text  # type: ignore[attr-defined]
        out.append((await api.node(response.json()["node_id"]))["name"])  # type: ignore[attr-defined]
    return out


def test_ten_nodes_registering_at_once_from_one_host_image_get_ten_names(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> list[str]:
        activation = await api.create_activation(registration_limit=10)
        answers = await asyncio.gather(
            *(api.register(activation, hostname="web") for _ in range(10))
        )
        return await names(api, *answers)

    got = run_api(scenario)
    assert sorted(got) == sorted(["web", *(f"web-{n}" for n in range(2, 11))])


def test_the_activations_default_name_comes_first_and_is_made_unique(run_api: RunApi) -> None:
    async def scenario(api: Api) -> list[str]:
        activation = await api.create_activation(name="fleet", registration_limit=3)
        return await names(
            api, *[await api.register(activation, hostname=f"h-{n}") for n in range(3)]
        )

    assert run_api(scenario) == ["fleet", "fleet-2", "fleet-3"]


def test_a_given_name_is_kept_even_when_taken_and_is_skipped_by_defaults(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> list[str]:
        activation = await api.create_activation(registration_limit=5)
        return await names(
            api,
            await api.register(activation, name="db", hostname="x"),
            await api.register(activation, name="db", hostname="y"),  # the operator's choice
            await api.register(activation, name="web-2", hostname="z"),
            await api.register(activation, hostname="web"),
            await api.register(activation, hostname="web"),
        )

    assert run_api(scenario) == ["db", "db", "web-2", "web", "web-3"]


def test_a_deregistered_nodes_name_is_free_again(run_api: RunApi) -> None:
    async def scenario(api: Api) -> list[str]:
        activation = await api.create_activation(registration_limit=3)
        first = await api.register(activation, hostname="web")
        await api.register(activation, hostname="web")  # web-2
        node_id = first.json()["node_id"]
        gone = await api.client.post(f"/v1/nodes/{node_id}/deregister", headers=api.admin)
        assert gone.status_code == 200, gone.text
        return await names(api, await api.register(activation, hostname="web"))

    assert run_api(scenario) == ["web"]


def test_like_wildcards_in_a_name_are_plain_characters(run_api: RunApi) -> None:
    async def scenario(api: Api) -> list[str]:
        a = await api.create_activation(name="50%_off", registration_limit=2)
        b = await api.create_activation(name="50xyoff")
        return await names(api, await api.register(b), await api.register(a), await api.register(a))

    assert run_api(scenario) == ["50xyoff", "50%_off", "50%_off-2"]


@pytest.mark.parametrize(
    ("base", "taken", "expected"),
    [
        ("web", set(), "web"),
        ("web", {"web"}, "web-2"),
        ("web", {"web", "web-2", "web-4"}, "web-3"),
        ("web", {"Web"}, "web"),  # names are case-sensitive, as name: globs are
        ("h" * MAX_NAME, {"h" * MAX_NAME}, "h" * (MAX_NAME - 2) + "-2"),
        ("h" * 300, set(), "h" * MAX_NAME),
    ],
)
def test_first_free(base: str, taken: set[str], expected: str) -> None:
    assert first_free(base, taken) == expected
    assert len(first_free(base, taken)) <= MAX_NAME
