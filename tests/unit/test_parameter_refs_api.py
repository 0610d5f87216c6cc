"""Parameter Store references in commands: checked and pinned at send with the sender's
permissions, resolved only when the run_command is delivered."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.conftest import Api, RunApi, ServerDir, assert_error

SECRET = "hunter2-UNIQUE-5150"


def document(*commands: str, secure_param: bool = True) -> str:
    params: dict[str, Any] = {
        "pw": {
            "type": "String",
            "default": "{{ssm-secure:/app/pw}}",
            "interpolationType": "ENV_VAR",
        },
        "host": {"type": "String", "default": "{{ssm:/app/host}}"},
    }
    if not secure_param:
        params["pw"].pop("interpolationType")
    return json.dumps(
        {
            "schemaVersion": "2.2",
            "description": "refs",
            "parameters": params,
            "mainSteps": [
                {
                    "action": "aws:runShellScript",
                    "name": "s",
                    "inputs": {"runCommand": list(commands)},
                }
            ],
        }
    )


async def setup(api: Api) -> str:
    for name, value, type_ in (("/app/pw", SECRET, "SecureString"), ("/app/host", "db1", "String")):
        made = await api.client.put(
            "/v1/parameters", json={"name": name, "value": value, "type": type_}, headers=api.admin
        )
        assert made.status_code == 200, made.text
    node = await api.new_node()
    return node.node_id


async def create_doc(api: Api, name: str, content: str) -> None:
    made = await api.client.post(
        "/v1/documents", json={"name": name, "content": content}, headers=api.admin
    )
    assert made.status_code == 201, made.text


async def send(api: Api, node_id: str, doc: str, headers: dict[str, str] | None = None) -> Any:
    return await api.client.post(
        "/v1/commands", json={"targets": [node_id], "document": doc}, headers=headers or api.admin
    )


def test_references_are_pinned_and_resolved_at_delivery(
    run_api: RunApi, server_dir: ServerDir
) -> None:
    async def scenario(api: Api) -> None:
        node_id = await setup(api)
        await create_doc(api, "good", document('echo "$SSM_pw" {{ host }}'))
        sent = await send(api, node_id, "good")
        assert sent.status_code == 201, sent.text
        command_id = sent.json()["command_id"]
        body = await api.cp.dispatcher.expand({"command_id": command_id})
        assert body["ssm_values"] == {"ssm-secure:/app/pw": SECRET, "ssm:/app/host": "db1"}
        shown = await api.client.get(f"/v1/commands/{command_id}", headers=api.admin)
        assert SECRET not in shown.text

    run_api(scenario)
    db = b"".join(p.read_bytes() for p in server_dir.path.glob("corral.db*") if p.is_file())
    assert SECRET.encode() not in db


def test_bad_references_refuse_the_whole_command(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node_id = await setup(api)
        cases = {
            "pasted": (document("echo {{ssm-secure:/app/pw}}"), 400, "paste"),
            "pasted-param": (document("echo {{ pw }}"), 400, "$SSM_pw"),
            "not-env": (document("echo hi", secure_param=False), 400, "ENV_VAR"),
            "missing": (document("echo hi").replace("/app/host", "/app/nope"), 404, "/app/nope"),
            "insecure": (document("echo hi").replace("ssm:/app/host", "ssm:/app/pw"), 400,
                         "SecureString"),
        }  # fmt: skip
        for name, (content, status, needle) in cases.items():
            await create_doc(api, name, content)
            response = await send(api, node_id, name)
            assert response.status_code == status, (name, response.text)
            assert needle in response.json()["error"]["message"], (name, response.text)
            assert SECRET not in response.text

        made = await api.client.post(
            "/v1/tokens", json={"name": "ops", "role": "operator"}, headers=api.admin
        )
        ops = {"authorization": f"Bearer {made.json()['secret']}"}
        await create_doc(api, "good", document('echo "$SSM_pw"'))
        refused = await send(api, node_id, "good", ops)
        assert "GetDecrypted" in assert_error(refused, 403, "forbidden")
        listed = await api.client.get("/v1/commands", headers=api.admin)
        assert listed.json()["commands"] == []
        audit = await api.client.get(
            "/v1/audit", params={"action": "parameters:GetDecrypted"}, headers=api.admin
        )
        assert [e["outcome"] for e in audit.json()["entries"]] == ["denied"]

    run_api(scenario)
