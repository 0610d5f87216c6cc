"""Every document a command runs is authorized when it is sent: the top-level one and every
document an ``aws:runDocument`` step nests, at every depth, after the step's inputs are
interpolated (issue 9, item 2)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx

from tests.unit.conftest import Api, RunApi, ServerDir, assert_error
from tests.unit.test_authz_api import audit, hdr, token

# May run "wrapper" and "allowed-*" on every node, nothing else.
WRAPPER_ONLY = {
    "Version": "2026-01-01",
    "Statement": [
        {"Effect": "Allow", "Action": ["commands:Get", "commands:List"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "commands:Send",
            "Resource": ["node/*", "document/wrapper", "document/allowed-*"],
        },
    ],
}


def shell(*commands: str, parameters: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "schemaVersion": "2.2",
            "description": "shell",
            "parameters": parameters or {},
            "mainSteps": [
                {
                    "action": "aws:runShellScript",
                    "name": "run",
                    "inputs": {"runCommand": list(commands)},
                }
            ],
        }
    )


def nesting(path: str, parameters: dict[str, Any] | None = None, **inputs: Any) -> str:
    return json.dumps(
        {
            "schemaVersion": "2.2",
            "description": "runs another document",
            "parameters": parameters or {},
            "mainSteps": [
                {
                    "action": "aws:runDocument",
                    "name": "nested",
                    "inputs": {"documentType": "SSMDocument", "documentPath": path, **inputs},
                }
            ],
        }
    )


async def create(api: Api, name: str, content: str) -> None:
    made = await api.client.post(
        "/v1/documents", json={"name": name, "content": content}, headers=api.admin
    )
    assert made.status_code == 201, made.text


async def update(api: Api, name: str, content: str) -> None:
    made = await api.client.post(
        f"/v1/documents/{name}/versions", json={"content": content}, headers=api.admin
    )
    assert made.status_code == 201, made.text


async def send(
    api: Api, node_id: str, document: str, headers: dict[str, str], **parameters: Any
) -> httpx.Response:
    return await api.client.post(
        "/v1/commands",
        json={"targets": [node_id], "document": document, "parameters": parameters},
        headers=headers,
    )


def stored_content(server_dir: ServerDir, command_id: str) -> dict[str, Any]:
    with sqlite3.connect(server_dir.path / "corral.db") as conn:
        row = conn.execute(
            "SELECT document_content FROM commands WHERE id = ?", (command_id,)
        ).fetchone()
    content: dict[str, Any] = json.loads(row[0])
    return content


def command_count(server_dir: ServerDir) -> int:
    with sqlite3.connect(server_dir.path / "corral.db") as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    return count


def test_a_nested_document_named_by_a_parameter_is_authorized(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    """The outside review's reproduction: a token allowed only ``wrapper`` ran
    ``admin-only`` through ``documentPath: "{{ target }}"``."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await create(api, "admin-only", shell("echo root things"))
        await create(api, "allowed-report", shell("echo report"))
        await create(api, "wrapper", nesting("{{ target }}", {"target": {"type": "String"}}))
        scoped = hdr(await token(api, "wrapper-only", policy=WRAPPER_ONLY))
        before = command_count(server_dir)

        refused = await send(api, node.node_id, "wrapper", scoped, target="admin-only")
        message = assert_error(refused, 403, "forbidden")
        assert "admin-only" in message and "wrapper mainSteps[0]" in message
        assert command_count(server_dir) == before
        denied = await audit(api, outcome="denied", action="commands:Send")
        assert [e["resource"] for e in denied] == ["document/admin-only"]

        sent = await send(api, node.node_id, "wrapper", scoped, target="allowed-report")
        assert sent.status_code == 201, sent.text
        command_id = sent.json()["command_id"]
        embedded = stored_content(server_dir, command_id)["__embedded"]
        assert list(embedded) == ["allowed-report"]
        assert embedded["allowed-report"]["mainSteps"][0]["inputs"]["runCommand"] == ["echo report"]
        # The audit entry names every document the command runs, with its version.
        (entry,) = await audit(api, action="commands:Send", outcome="allowed")
        assert entry["resource"] == f"command/{command_id}"
        assert entry["request"]["documents"] == ["wrapper:1", "allowed-report:1"]
        assert entry["request"]["nodes"] == [node.node_id]

    run_api(scenario)


def test_the_built_in_run_document_embeds_what_it_runs(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    """Corral-RunDocument's inputs are all ``{{ parameters }}``: they are interpolated before
    the nested document is looked for (it was never embedded before)."""

    async def scenario(api: Api) -> None:
        node = await api.new_node()
        await create(
            api, "greet", shell('echo "hi {{ who }}"', parameters={"who": {"type": "String"}})
        )
        sent = await send(
            api,
            node.node_id,
            "Corral-RunDocument",
            api.admin,
            documentPath="greet",
            documentParameters={"who": "there"},
        )
        assert sent.status_code == 201, sent.text
        content = stored_content(server_dir, sent.json()["command_id"])
        assert list(content["__embedded"]) == ["greet"]

        # The nested document's parameters are checked when the command is sent.
        bad = await send(
            api,
            node.node_id,
            "Corral-RunDocument",
            api.admin,
            documentPath="greet",
            documentParameters={"nobody": "x"},
        )
        message = assert_error(bad, 400, "invalid_request")
        assert "greet" in message and "nobody" in message
        missing = await send(
            api, node.node_id, "Corral-RunDocument", api.admin, documentPath="no-such-doc"
        )
        assert missing.status_code == 404 and "no-such-doc" in missing.text

        # A file on the node has nothing to embed or authorize on the server.
        local = await send(
            api,
            node.node_id,
            "Corral-RunDocument",
            api.admin,
            documentType="LocalPath",
            documentPath="/etc/corral/doc.json",
        )
        assert local.status_code == 201, local.text
        assert "__embedded" not in stored_content(server_dir, local.json()["command_id"])

    run_api(scenario)


def test_every_depth_and_every_version_is_checked(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        scoped = hdr(await token(api, "wrapper-only", policy=WRAPPER_ONLY))
        await create(api, "secret-doc", shell("echo secret"))
        await create(api, "allowed-middle", nesting("secret-doc"))
        await create(api, "wrapper", nesting("allowed-middle"))
        before = command_count(server_dir)
        refused = await send(api, node.node_id, "wrapper", scoped)
        message = assert_error(refused, 403, "forbidden")
        assert "secret-doc" in message and "allowed-middle mainSteps[0]" in message
        assert command_count(server_dir) == before

        # Two versions of one document nest as two entries, each with its own content.
        await create(api, "allowed-v", shell("echo one"))
        await update(api, "allowed-v", shell("echo two"))
        two_versions = json.dumps(
            {
                "schemaVersion": "2.2",
                "description": "both versions",
                "mainSteps": [
                    {
                        "action": "aws:runDocument",
                        "name": f"v{n}",
                        "inputs": {"documentType": "SSMDocument", "documentPath": f"allowed-v:{n}"},
                    }
                    for n in (1, 2)
                ],
            }
        )
        await update(api, "wrapper", two_versions)
        sent = await api.client.post(
            "/v1/commands",
            json={"targets": [node.node_id], "document": "wrapper", "document_version": "2"},
            headers=scoped,
        )
        assert sent.status_code == 201, sent.text
        embedded = stored_content(server_dir, sent.json()["command_id"])["__embedded"]
        assert {k: v["mainSteps"][0]["inputs"]["runCommand"] for k, v in embedded.items()} == {
            "allowed-v:1": ["echo one"],
            "allowed-v:2": ["echo two"],
        }

        # Nesting deeper than three documents is refused, whoever sends it.
        await create(api, "deep3", nesting("deep4"))
        await create(api, "deep2", nesting("deep3"))
        await create(api, "deep1", nesting("deep2"))
        await create(api, "deep4", shell("true"))
        deep = await send(api, node.node_id, "deep1", api.admin)
        assert "nest deeper than 3" in assert_error(deep, 400, "invalid_request")

    run_api(scenario)


def test_bad_nested_inputs_are_one_line_errors(run_api: RunApi, server_dir: ServerDir) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        put = await api.client.put(
            "/v1/parameters", json={"name": "/app/doc", "value": "x"}, headers=api.admin
        )
        assert put.status_code == 200, put.text
        before = command_count(server_dir)
        for params, expected in (
            ({"documentPath": "x", "documentParameters": "not json"}, "StringMap"),
            ({"documentPath": "{{ssm:/app/doc}}"}, "must name a document"),
        ):
            response = await send(api, node.node_id, "Corral-RunDocument", api.admin, **params)
            assert response.status_code == 400, (params, response.text)
            assert expected in response.json()["error"]["message"], response.text
        assert command_count(server_dir) == before

    run_api(scenario)
