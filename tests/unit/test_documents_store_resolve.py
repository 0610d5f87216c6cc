"""DocumentService.resolve: what the command dispatcher gets for a name and a version."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from agent.documents import Document, builtin_documents, resolve_parameters
from control_plane.errors import InvalidRequest, NotFound
from tests.unit.test_documents_store_api import YAML, created, text, update

if TYPE_CHECKING:
    from tests.unit.conftest import Api, RunApi


def test_resolve_picks_the_default_latest_a_number_or_a_version_name(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        first = await created(api, content=YAML, version_name="yaml")
        second = (await update(api, "hello", text("echo two"), version_name="two")).json()
        docs = api.cp.documents

        for version in (None, "$DEFAULT", "1", "yaml"):
            got = await docs.resolve("hello", version)
            assert (got.name, got.version, got.sha256) == ("hello", "1", first["sha256"])
            assert got.document.sha256 == first["sha256"]
            assert got.document.description == "Say hello in YAML"
        for version in ("$LATEST", "2", "two"):
            got = await docs.resolve("hello", version)
            assert (got.version, got.sha256) == ("2", second["sha256"])
            assert got.document.content["mainSteps"][0]["inputs"]["runCommand"] == ["echo two"]
        assert resolve_parameters(got.document, {}) == {"who": "world"}

        await api.client.put(
            "/v1/documents/hello/default", json={"version": "2"}, headers=api.admin
        )
        assert (await docs.resolve("hello", None)).version == "2"
        # The same immutable version gives the same Document.
        assert (await docs.resolve("hello", "2")).document is (
            await docs.resolve("hello", "two")
        ).document

    run_api(scenario)


def test_resolve_gives_the_builtins_as_version_1(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        builtins = builtin_documents()
        assert set(builtins) == {
            "AWS-GatherSoftwareInventory",
            "AWS-RunShellScript",
            "AWS-RunPatchBaseline",
            "AWS-RunPowerShellScript",
            "Corral-EnsureFile",
            "Corral-EnsurePackage",
            "Corral-EnsureService",
            "Corral-RunDocument",
            "Corral-UpdateAgent",
        }
        for name, expected in builtins.items():
            for version in (None, "$DEFAULT", "$LATEST", "1"):
                got = await api.cp.documents.resolve(name, version)
                assert (got.name, got.version, got.sha256) == (name, "1", expected.sha256)
                assert isinstance(got.document, Document)
                assert got.document.content == expected.content
            with pytest.raises(NotFound):
                await api.cp.documents.resolve(name, "2")
            with pytest.raises(NotFound):
                await api.cp.documents.resolve(name, "some-name")

    run_api(scenario)


def test_resolve_refuses_bad_names_and_versions(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await created(api)
        docs = api.cp.documents
        with pytest.raises(NotFound, match="not found"):
            await docs.resolve("missing", None)
        with pytest.raises(NotFound, match="no version 3"):
            await docs.resolve("hello", "3")
        with pytest.raises(NotFound, match="no version v9"):
            await docs.resolve("hello", "v9")
        for name in ("ab", "a b", "x" * 129, ""):
            with pytest.raises(InvalidRequest, match="3 to 128 characters"):
                await docs.resolve(name, None)
        for version in ("0", "$latest", "two words", ""):
            with pytest.raises(InvalidRequest, match="version number"):
                await docs.resolve("hello", version)

    run_api(scenario)


def test_a_resolved_document_is_frozen(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        got = await api.cp.documents.resolve("AWS-RunShellScript", None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.version = "2"  # type: ignore[misc]

    run_api(scenario)
