"""/v1/documents: versions, the default, built-ins, names, content limits and bad input."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.unit.conftest import assert_error

if TYPE_CHECKING:
    import httpx

    from tests.unit.conftest import Api, RunApi

BUILTINS = [
    "AWS-GatherSoftwareInventory",
    "AWS-RunPatchBaseline",
    "AWS-RunPowerShellScript",
    "AWS-RunShellScript",
    "Corral-EnsureFile",
    "Corral-EnsurePackage",
    "Corral-EnsureService",
    "Corral-RunDocument",
    "Corral-UpdateAgent",
]


def doc(*commands: str, description: str = "Say hello") -> dict[str, Any]:
    return {
        "schemaVersion": "2.2",
        "description": description,
        "parameters": {"who": {"type": "String", "default": "world"}},
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": "hello",
                "inputs": {"runCommand": list(commands or ["echo hello {{ who }}"])},
            }
        ],
    }


def text(*commands: str, description: str = "Say hello") -> str:
    content = doc(*commands, description=description)
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


NO_INPUTS = {"action": "aws:runShellScript", "name": "s", "inputs": {}}
YAML = """\
# A comment that must survive: the text is kept as uploaded.
schemaVersion: "2.2"
description: Say hello in YAML
parameters:
  who:
    type: String
    default: world
mainSteps:
  - action: aws:runShellScript
    name: hello
    inputs:
      runCommand:
        - echo hello {{ who }}
"""


async def create(api: Api, name: str = "hello", **fields: Any) -> httpx.Response:
    body = {"name": name, "content": text(), **fields}
    return await api.client.post("/v1/documents", json=body, headers=api.admin)


async def created(api: Api, name: str = "hello", **fields: Any) -> dict[str, Any]:
    response = await create(api, name, **fields)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def update(api: Api, name: str, content: str, **fields: Any) -> httpx.Response:
    body = {"content": content, **fields}
    return await api.client.post(f"/v1/documents/{name}/versions", json=body, headers=api.admin)


async def show(api: Api, name: str, **params: str) -> httpx.Response:
    return await api.client.get(f"/v1/documents/{name}", params=params, headers=api.admin)


async def shown(api: Api, name: str, **params: str) -> dict[str, Any]:
    response = await show(api, name, **params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def set_default(api: Api, name: str, version: Any) -> httpx.Response:
    return await api.client.put(
        f"/v1/documents/{name}/default", json={"version": version}, headers=api.admin
    )


async def versions(api: Api, name: str) -> list[dict[str, Any]]:
    response = await api.client.get(f"/v1/documents/{name}/versions", headers=api.admin)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["versions"]
    return rows


async def delete(api: Api, name: str, **params: str) -> httpx.Response:
    return await api.client.delete(f"/v1/documents/{name}", params=params, headers=api.admin)


async def listed(api: Api, **params: str) -> list[dict[str, Any]]:
    response = await api.client.get("/v1/documents", params=params, headers=api.admin)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["documents"]
    return rows


# --- the life of a document ---------------------------------------------------------------


def test_create_gives_version_one_as_the_default(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        now = api.clock()
        made = await created(api, tags={"team": "web"}, version_name="first")
        sha = made.pop("sha256")
        assert len(sha) == 64 and int(sha, 16) >= 0
        assert made.pop("created_at") == made.pop("version_created_at")
        assert made == {
            "name": "hello",
            "owner": "self",
            "document_type": "Command",
            "version": "1",
            "version_name": "first",
            "default_version": "1",
            "latest_version": "1",
            "schema_version": "2.2",
            "description": "Say hello",
            "format": "json",
            "size": len(text().encode()),
            "parameters": {"who": {"type": "String", "default": "world"}},
            "tags": {"team": "web"},
        }
        assert "content" not in made
        again = await shown(api, "hello")
        assert again["sha256"] == sha and again["created_at"].endswith("Z")
        assert abs(_epoch(again["created_at"]) - now) < 1
        assert "content" not in again

    run_api(scenario)


def _epoch(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp).timestamp()


def test_content_is_returned_exactly_as_uploaded_with_its_format(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        odd_json = '{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript",' + (
            '"name":"a","inputs":{"runCommand":["date"]}}]}'
        )
        await created(api, "compact", content=odd_json)
        await created(api, "yaml-doc", content=YAML)
        await created(api, "declared", content=YAML, format="yaml")
        got = await shown(api, "compact", content="true")
        assert (got["content"], got["format"]) == (odd_json, "json")
        got = await shown(api, "yaml-doc", content="true")
        assert (got["content"], got["format"]) == (YAML, "yaml")
        assert got["description"] == "Say hello in YAML"
        assert got["parameters"] == {"who": {"type": "String", "default": "world"}}
        assert (await shown(api, "declared"))["format"] == "yaml"

    run_api(scenario)


def test_update_adds_versions_and_the_default_stays(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        first = await created(api)
        response = await update(api, "hello", text("echo two"), version_name="two")
        assert response.status_code == 201, response.text
        second = response.json()
        assert (second["version"], second["version_name"]) == ("2", "two")
        assert (second["default_version"], second["latest_version"]) == ("1", "2")
        assert second["sha256"] != first["sha256"]
        response = await update(api, "hello", YAML)
        assert response.status_code == 201, response.text
        assert (response.json()["version"], response.json()["format"]) == ("3", "yaml")

        assert (await shown(api, "hello"))["version"] == "1"
        assert (await shown(api, "hello", version="$DEFAULT"))["version"] == "1"
        assert (await shown(api, "hello", version="$LATEST"))["version"] == "3"
        assert (await shown(api, "hello", version="2"))["sha256"] == second["sha256"]
        by_name = await shown(api, "hello", version="two", content="true")
        assert (by_name["version"], by_name["content"]) == ("2", text("echo two"))
        rows = await versions(api, "hello")
        assert [(v["version"], v["is_default"], v["is_latest"]) for v in rows] == [
            ("1", True, False),
            ("2", False, False),
            ("3", False, True),
        ]
        row = next(d for d in await listed(api) if d["name"] == "hello")
        assert (row["default_version"], row["latest_version"]) == ("1", "3")

    run_api(scenario)


def test_update_with_the_latest_content_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        message = assert_error(await update(api, "hello", text()), 409, "conflict")
        assert "content unchanged" in message and "version 1" in message
        assert (await update(api, "hello", text("echo two"))).status_code == 201
        assert_error(await update(api, "hello", text("echo two")), 409, "conflict")
        # Going back to an older version's content is a change to $LATEST: allowed.
        back = await update(api, "hello", text())
        assert (back.status_code, back.json()["version"]) == (201, "3")
        assert len(await versions(api, "hello")) == 3

    run_api(scenario)


def test_the_same_content_in_another_layout_or_format_is_unchanged(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api, content=YAML)
        as_json = json.dumps(
            {**doc(description="Say hello in YAML")}, separators=(",", ":"), sort_keys=True
        )
        message = assert_error(await update(api, "hello", as_json), 409, "conflict")
        assert "content unchanged" in message
        commented = "# a new comment\n" + YAML
        assert_error(await update(api, "hello", commented), 409, "conflict")
        assert [v["version"] for v in await versions(api, "hello")] == ["1"]

    run_api(scenario)


def test_concurrent_changes_get_one_name_and_distinct_version_numbers(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        results = await asyncio.gather(*(create(api, content=text(f"echo {i}")) for i in range(6)))
        assert sorted(r.status_code for r in results) == [201] + [409] * 5
        results = await asyncio.gather(
            *(update(api, "hello", text(f"echo new {i}")) for i in range(6))
        )
        assert all(r.status_code == 201 for r in results), [r.text for r in results]
        assert sorted(int(r.json()["version"]) for r in results) == [2, 3, 4, 5, 6, 7]
        rows = await versions(api, "hello")
        assert [v["version"] for v in rows] == [str(n) for n in range(1, 8)]
        assert len({v["sha256"] for v in rows}) == 7

    run_api(scenario)


def test_set_default_moves_what_runs_by_default(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        await update(api, "hello", text("echo two"), version_name="two")
        await update(api, "hello", text("echo three"))
        response = await set_default(api, "hello", "3")
        assert response.status_code == 200, response.text
        assert (response.json()["default_version"], response.json()["name"]) == ("3", "hello")
        assert (await shown(api, "hello"))["version"] == "3"
        assert (await set_default(api, "hello", 2)).json()["default_version"] == "2"
        assert (await set_default(api, "hello", "$LATEST")).json()["default_version"] == "3"
        assert (await set_default(api, "hello", "two")).json()["default_version"] == "2"
        assert [v["is_default"] for v in await versions(api, "hello")] == [False, True, False]
        row = next(d for d in await listed(api, owner="self"))
        assert row["default_version"] == "2"

        assert_error(await set_default(api, "hello", "4"), 404, "not_found")
        assert_error(await set_default(api, "nothing", "1"), 404, "not_found")
        assert_error(await set_default(api, "hello", "0"), 400, "invalid_request")
        assert_error(await set_default(api, "hello", True), 400, "invalid_request")
        assert_error(await set_default(api, "hello", None), 400, "invalid_request")
        missing = await api.client.put("/v1/documents/hello/default", json={}, headers=api.admin)
        assert_error(missing, 400, "invalid_request")
        assert (await shown(api, "hello"))["version"] == "2"

    run_api(scenario)


def test_delete_one_version_never_the_default_and_numbers_are_not_reused(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        await update(api, "hello", text("echo two"), version_name="two")
        await update(api, "hello", text("echo three"))

        message = assert_error(await delete(api, "hello", version="1"), 409, "conflict")
        assert "default version" in message
        assert_error(await delete(api, "hello", version="$DEFAULT"), 409, "conflict")
        assert_error(await delete(api, "hello", version="9"), 404, "not_found")

        response = await delete(api, "hello", version="two")
        assert response.status_code == 200, response.text
        assert response.json() == {"deleted": "hello", "version": "2"}
        response = await delete(api, "hello", version="$LATEST")
        assert response.json() == {"deleted": "hello", "version": "3"}
        assert [v["version"] for v in await versions(api, "hello")] == ["1"]
        assert (await shown(api, "hello", version="$LATEST"))["version"] == "1"
        assert_error(await show(api, "hello", version="3"), 404, "not_found")

        # Version 3 was deleted: the next one is 4, and $LATEST is compared with version 1.
        assert_error(await update(api, "hello", text()), 409, "conflict")
        response = await update(api, "hello", text("echo three"), version_name="two")
        assert (response.json()["version"], response.json()["version_name"]) == ("4", "two")

    run_api(scenario)


def test_delete_removes_every_version_and_frees_the_name(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        await update(api, "hello", text("echo two"))
        await set_default(api, "hello", "2")
        response = await delete(api, "hello")
        assert (response.status_code, response.json()) == (200, {"deleted": "hello"})
        assert_error(await show(api, "hello"), 404, "not_found")
        response = await api.client.get("/v1/documents/hello/versions", headers=api.admin)
        assert_error(response, 404, "not_found")
        assert_error(await delete(api, "hello"), 404, "not_found")
        assert_error(await update(api, "hello", text("echo x")), 404, "not_found")
        assert [d["name"] for d in await listed(api, owner="self")] == []
        again = await created(api, content=text("echo new"))
        assert (again["version"], again["latest_version"]) == ("1", "1")

    run_api(scenario)


def test_a_name_is_taken_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        message = assert_error(await create(api, content=text("echo other")), 409, "conflict")
        assert "already exists" in message
        assert [v["version"] for v in await versions(api, "hello")] == ["1"]
        # Names are case-sensitive, as in SSM.
        await created(api, "Hello")

    run_api(scenario)


def test_documents_survive_a_restart(run_api: RunApi) -> None:
    async def first(api: Api) -> str:
        await created(api, content=YAML)
        sha: str = (await update(api, "hello", text("echo two"))).json()["sha256"]
        return sha

    async def second(api: Api) -> None:
        got = await shown(api, "hello", version="$LATEST", content="true")
        assert (got["sha256"], got["content"]) == (sha, text("echo two"))
        assert (await shown(api, "hello", content="true"))["content"] == YAML

    sha = run_api(first)
    run_api(second)


# --- list and built-ins --------------------------------------------------------------------


def test_list_shows_builtins_and_mine_and_filters_by_owner(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api, "zeta", tags={"env": "prod"})
        await created(api, "alpha")
        await update(api, "alpha", text("echo two"))
        rows = await listed(api)
        assert [r["name"] for r in rows] == sorted([*BUILTINS, "alpha", "zeta"])
        by_name = {r["name"]: r for r in rows}
        assert by_name["alpha"] == {
            "name": "alpha",
            "owner": "self",
            "document_type": "Command",
            "default_version": "1",
            "latest_version": "2",
            "schema_version": "2.2",
            "description": "Say hello",
            "created_at": by_name["alpha"]["created_at"],
            "tags": {},
        }
        assert by_name["zeta"]["tags"] == {"env": "prod"}
        for name in BUILTINS:
            row = by_name[name]
            assert (row["owner"], row["default_version"], row["latest_version"]) == (
                "corral",
                "1",
                "1",
            )
            assert row["document_type"] == "Command" and row["tags"] == {}
        assert [r["name"] for r in await listed(api, owner="self")] == ["alpha", "zeta"]
        assert [r["name"] for r in await listed(api, owner="corral")] == BUILTINS
        response = await api.client.get("/v1/documents?owner=amazon", headers=api.admin)
        assert "self or corral" in assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_builtins_can_be_read_but_never_changed(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for name in BUILTINS:
            got = await shown(api, name, content="true")
            assert (got["owner"], got["version"], got["format"]) == ("corral", "1", "json")
            assert json.loads(got["content"])["schemaVersion"] == got["schema_version"]
            assert len(got["sha256"]) == 64
            assert (await shown(api, name, version="$LATEST"))["sha256"] == got["sha256"]
            assert (await shown(api, name, version="1"))["sha256"] == got["sha256"]
            assert_error(await show(api, name, version="2"), 404, "not_found")
            assert_error(await show(api, name, version="named"), 404, "not_found")
            rows = await versions(api, name)
            assert [(v["version"], v["is_default"]) for v in rows] == [("1", True)]

            for response in (
                await update(api, name, text("echo mine")),
                await set_default(api, name, "1"),
                await delete(api, name),
                await delete(api, name, version="1"),
            ):
                message = assert_error(response, 400, "invalid_request")
                assert "built-in" in message
            message = assert_error(await create(api, name), 400, "invalid_request")
            assert "reserved" in message
        assert [r["name"] for r in await listed(api, owner="corral")] == BUILTINS

    run_api(scenario)


# --- names, versions and content: bad input -------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "A.b", "a_b-c.d", "9" * 128, "awning", "Amaz0n-x"])
def test_good_names(run_api: RunApi, name: str) -> None:
    async def scenario(api: Api) -> None:
        assert (await created(api, name))["name"] == name
        assert (await shown(api, name))["name"] == name

    run_api(scenario)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("ab", "3 to 128 characters"),
        ("", "3 to 128 characters"),
        ("n" * 129, "3 to 128 characters"),
        ("my doc", "3 to 128 characters"),
        ("a/b/c", "3 to 128 characters"),
        ("héllo", "3 to 128 characters"),
        ("doc$", "3 to 128 characters"),
        ("aws-mine", "reserved"),
        ("AWS-RunShellScript", "reserved"),
        ("AwSomething", "reserved"),
        ("amazon.linux", "reserved"),
        ("AMAZON_x", "reserved"),
        ("amzn-tools", "reserved"),
        ("corral-mine", "reserved"),
        ("Corral-RunDocument", "reserved"),
        ("CORRALLED", "reserved"),
    ],
)
def test_bad_and_reserved_names_are_refused(run_api: RunApi, name: str, hint: str) -> None:
    async def scenario(api: Api) -> None:
        assert hint in assert_error(await create(api, name), 400, "invalid_request")
        assert await listed(api, owner="self") == []

    run_api(scenario)


@pytest.mark.parametrize("name", ["ab", "my%20doc", "x" * 129])
def test_bad_names_in_the_path_are_400(run_api: RunApi, name: str) -> None:
    async def scenario(api: Api) -> None:
        for response in (
            await show(api, name),
            await update(api, name, text()),
            await set_default(api, name, "1"),
            await delete(api, name),
            await api.client.get(f"/v1/documents/{name}/versions", headers=api.admin),
        ):
            assert "3 to 128 characters" in assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_unknown_documents_and_versions_are_404(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        assert "not found" in assert_error(await show(api, "nothing"), 404, "not_found")
        assert_error(await show(api, "aws-reserved-but-absent"), 404, "not_found")
        assert_error(await delete(api, "nothing", version="2"), 404, "not_found")
        await created(api)
        for version in ("2", "999999999", "nameless", "1.0", "-1"):
            message = assert_error(await show(api, "hello", version=version), 404, "not_found")
            assert version in message

    run_api(scenario)


@pytest.mark.parametrize(
    "version", ["0", "007", "00", "$latest", "$OTHER", "two words", "1234567890", "a/b", ""]
)
def test_bad_version_selectors_are_400(run_api: RunApi, version: str) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        for response in (
            await show(api, "hello", version=version),
            await set_default(api, "hello", version),
            await delete(api, "hello", version=version),
        ):
            message = assert_error(response, 400, "invalid_request")
            assert "$LATEST" in message
        assert len(await versions(api, "hello")) == 1

    run_api(scenario)


@pytest.mark.parametrize(
    ("version_name", "hint"),
    [
        ("", "1 to 128 characters"),
        ("v" * 129, "1 to 128 characters"),
        ("v 1", "1 to 128 characters"),
        ("$LATEST", "1 to 128 characters"),
        ("v/1", "1 to 128 characters"),
        ("42", "only digits"),
        (7, "version_name"),
    ],
)
def test_bad_version_names_are_refused(run_api: RunApi, version_name: Any, hint: str) -> None:
    async def scenario(api: Api) -> None:
        message = assert_error(await create(api, version_name=version_name), 400, "invalid_request")
        assert hint in message
        await created(api)
        response = await update(api, "hello", text("echo two"), version_name=version_name)
        assert hint in assert_error(response, 400, "invalid_request")
        assert len(await versions(api, "hello")) == 1

    run_api(scenario)


def test_a_version_name_is_unique_within_its_document(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api, version_name="v1.0")
        response = await update(api, "hello", text("echo two"), version_name="v1.0")
        assert "v1.0" in assert_error(response, 409, "conflict")
        assert len(await versions(api, "hello")) == 1
        # Another document may use the same version name.
        await created(api, "other", version_name="v1.0")

    run_api(scenario)


def test_content_up_to_64_kb_is_accepted_and_one_byte_more_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        base = text()
        exact = base.rstrip("\n") + " " * (64 * 1024 - len(base.encode()) + 1)
        exact = exact[:-1] + "\n"
        assert len(exact.encode()) == 64 * 1024
        assert (await created(api, "big", content=exact))["size"] == 64 * 1024
        response = await update(api, "big", exact + " ")
        message = assert_error(response, 400, "invalid_request")
        assert "65537 bytes" in message and "65536" in message
        # Multi-byte characters count as bytes, not characters.
        wide = text(description="é" * 33000)
        assert len(wide) < 64 * 1024 < len(wide.encode())
        assert "bytes" in assert_error(await create(api, content=wide), 400, "invalid_request")
        # Far over the document limit but under the request limit: still a 400, not a 413.
        huge = text(description="x" * 200_000)
        assert_error(await create(api, "huge", content=huge), 400, "invalid_request")
        assert [d["name"] for d in await listed(api, owner="self")] == ["big"]

    run_api(scenario)


@pytest.mark.parametrize(
    ("content", "fmt", "hint"),
    [
        ('{"schemaVersion": "2.2", "mainSteps": [', None, "invalid document"),
        ('{"schemaVersion": "2.2", "mainSteps": [', "json", "invalid document"),
        ("schemaVersion: '2.2'\nmainSteps: [\n", None, "invalid document"),
        ("schemaVersion: '2.2'\n  bad: indentation\n mainSteps: x\n", "yaml", "invalid document"),
        (YAML, "json", "invalid document"),
        ("", None, "invalid document"),
        ("[]", None, "invalid document"),
        ("just a string", None, "invalid document"),
        (json.dumps({**doc(), "mainSteps": [NO_INPUTS]}), None, "mainSteps[0].inputs.runCommand"),
        (json.dumps({"mainSteps": doc()["mainSteps"]}), None, "schemaVersion"),
        (json.dumps({"schemaVersion": "2.2"}), None, "mainSteps"),
        (text() + "\x00", None, "control characters"),
        ("\x1b[31m" + text(), None, "control characters"),
    ],
)
def test_invalid_content_is_400_naming_where(
    run_api: RunApi, content: str, fmt: str | None, hint: str
) -> None:
    async def scenario(api: Api) -> None:
        fields: dict[str, Any] = {"content": content}
        if fmt is not None:
            fields["format"] = fmt
        assert hint in assert_error(await create(api, **fields), 400, "invalid_request")
        await created(api)
        response = await update(api, "hello", content, **({"format": fmt} if fmt else {}))
        assert hint in assert_error(response, 400, "invalid_request")
        assert len(await versions(api, "hello")) == 1

    run_api(scenario)


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"name": "hello"}, "content"),
        ({"content": text()}, "name"),
        ({"name": "hello", "content": doc()}, "content"),
        ({"name": "hello", "content": 5}, "content"),
        ({"name": 123, "content": text()}, "name"),
        ({"name": "hello", "content": text(), "format": "xml"}, "format"),
        ({"name": "hello", "content": text(), "format": "JSON"}, "format"),
        ({"name": "hello", "content": text(), "owner": "corral"}, "owner"),
        ({"name": "hello", "content": text(), "tags": {"aws:x": "1"}}, "aws:"),
        ({"name": "hello", "content": text(), "tags": {"k": "a*b"}}, "may contain only"),
        ({"name": "hello", "content": text(), "tags": {"k": 1}}, "tags"),
        ({"name": "hello", "content": text(), "tags": ["k"]}, "tags"),
        (
            {"name": "hello", "content": text(), "tags": {f"k{i}": "" for i in range(51)}},
            "at most 50 tags",
        ),
    ],
)
def test_bad_create_bodies_are_400(run_api: RunApi, body: dict[str, Any], hint: str) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.post("/v1/documents", json=body, headers=api.admin)
        assert hint in assert_error(response, 400, "invalid_request")
        assert await listed(api, owner="self") == []

    run_api(scenario)


def test_content_that_is_not_unicode_text_is_400(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        body = '{"name": "hello", "content": "\\ud800"}'
        response = await api.client.post(
            "/v1/documents",
            content=body,
            headers={**api.admin, "content-type": "application/json"},
        )
        assert_error(response, 400, "invalid_request")
        assert await listed(api, owner="self") == []

    run_api(scenario)


def test_update_refuses_unknown_fields(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        response = await update(api, "hello", text("echo two"), tags={"a": "b"})
        assert "tags" in assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_every_route_needs_an_operator_token(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        node = await api.new_node()
        for headers in ({}, {"authorization": "Bearer crl_wrong"}, node.auth):
            for method, path, body in (
                ("POST", "/v1/documents", {"name": "other", "content": text()}),
                ("GET", "/v1/documents", None),
                ("GET", "/v1/documents/hello", None),
                ("POST", "/v1/documents/hello/versions", {"content": text("echo x")}),
                ("GET", "/v1/documents/hello/versions", None),
                ("PUT", "/v1/documents/hello/default", {"version": "1"}),
                ("DELETE", "/v1/documents/hello", None),
            ):
                response = await api.client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
        assert [v["version"] for v in await versions(api, "hello")] == ["1"]
        assert [d["name"] for d in await listed(api, owner="self")] == ["hello"]

    run_api(scenario)
