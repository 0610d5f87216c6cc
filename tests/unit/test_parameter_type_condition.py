"""The ``parameter:type`` condition key is filled in on every parameter decision (issue 9,
item 6): a policy can keep a token away from SecureStrings whatever their names."""

from __future__ import annotations

from tests.unit.conftest import Api, RunApi
from tests.unit.test_authz_api import hdr, token
from tests.unit.test_parameter_refs_api import create_doc, document, send

NO_SECRETS = {
    "Version": "2026-01-01",
    "Statement": [
        {"Effect": "Allow", "Action": ["parameters:*", "commands:Send"], "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": ["parameters:Get*", "parameters:List", "parameters:Put"],
            "Resource": "parameter/*",
            "Condition": {"StringEquals": {"parameter:type": "SecureString"}},
        },
    ],
}


def test_a_policy_on_parameter_type_is_applied_everywhere(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        for name, kind in (("/app/host", "String"), ("/app/pw", "SecureString")):
            made = await api.client.put(
                "/v1/parameters", json={"name": name, "value": "v1", "type": kind},
                headers=api.admin,
            )  # fmt: skip
            assert made.status_code == 200, made.text
        auth = hdr(await token(api, "no-secrets", policy=NO_SECRETS))
        get = api.client.get

        ok = await get("/v1/parameters/get", params={"name": "/app/host"}, headers=auth)
        assert ok.status_code == 200
        refused = await get("/v1/parameters/get", params={"name": "/app/pw"}, headers=auth)
        assert refused.status_code == 403
        assert "parameters:Get" in refused.json()["error"]["message"]
        history = await get("/v1/parameters/history", params={"name": "/app/pw"}, headers=auth)
        assert history.status_code == 403
        listed = (await get("/v1/parameters", headers=auth)).json()["parameters"]
        assert [p["name"] for p in listed] == ["/app/host"]
        by_path = await get("/v1/parameters/by-path", params={"path": "/app"}, headers=auth)
        assert [p["name"] for p in by_path.json()["parameters"]] == ["/app/host"]

        # Overwriting a SecureString (its type kept) and making a new one are both refused.
        for body in ({"name": "/app/pw", "value": "v2", "overwrite": True},
                     {"name": "/app/new", "value": "v", "type": "SecureString"}):  # fmt: skip
            put = await api.client.put("/v1/parameters", json=body, headers=auth)
            assert put.status_code == 403, put.text
        put = await api.client.put(
            "/v1/parameters", json={"name": "/app/host", "value": "v2", "overwrite": True},
            headers=auth,
        )  # fmt: skip
        assert put.status_code == 200, put.text

        # A command that reads the SecureString is refused; one reading the String is sent.
        node = await api.new_node()
        sent = await api.client.post(
            "/v1/commands",
            json={
                "targets": [node.node_id],
                "parameters": {"commands": ["echo {{ssm:/app/host}}"]},
            },
            headers=auth,
        )
        assert sent.status_code == 201, sent.text
        await create_doc(api, "uses-secret", document('echo "$SSM_pw"'))
        sent = await send(api, node.node_id, "uses-secret", auth)
        assert sent.status_code == 403 and "/app/pw" in sent.text, sent.text

    run_api(scenario)
