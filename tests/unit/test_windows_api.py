"""Maintenance windows through the API: what is shown, and bad input refused with a one-line
error naming what was wrong, nothing stored (a test per case, issue 11's list)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import Api, RunApi, assert_error
from tests.unit.test_windows_job import ok, targets, window

GOOD = {"name": "patch-sunday", "schedule": "cron(0 2 ? * SUN *)", "duration": 3, "cutoff": 1}


async def windows(api: Api) -> list[dict[str, Any]]:
    found = await ok(await api.client.get("/v1/windows", headers=api.admin))
    return list(found["windows"])


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"schedule": "cron(0 2 ? * SUN * * *)"}, "cron(0 2 ? * SUN * * *)"),
        ({"schedule": "cron(0 2 ? * ? *)"}, "?"),
        ({"schedule": "cron(0 25 ? * SUN *)"}, "25"),
        ({"schedule": "rate(0 minutes)"}, "rate(0 minutes)"),
        ({"schedule": "every sunday"}, "every sunday"),
        ({"schedule_timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"duration": 1, "cutoff": 1}, "cutoff + 1"),
        ({"duration": 25}, "duration"),
        ({"cutoff": -1}, "cutoff"),
        ({"schedule_offset": 7}, "schedule offset"),
        ({"schedule": "rate(7 days)", "schedule_offset": 2}, "offset"),
        ({"start_date": "2030-02-01T00:00:00Z", "end_date": "2030-01-01T00:00:00Z"}, "end date"),
        ({"end_date": "2001-01-01T00:00:00Z"}, "past"),
        ({"start_date": "next monday"}, "start date"),
        ({"schedule": "at(2001-01-01T02:00:00)"}, "never start"),
        ({"end_date": "2099-01-01T00:00:00Z", "start_date": "2098-12-31T23:00:00Z"}, "never"),
        ({"name": "ab"}, "name"),
        ({"name": "patch sunday!"}, "name"),
        ({"name": "x" * 129}, "name"),
    ],
)
def test_bad_windows_are_refused_and_nothing_is_stored(
    run_api: RunApi, fields: dict[str, Any], says: str
) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.post("/v1/windows", json={**GOOD, **fields}, headers=api.admin)
        if response.status_code == 422:  # refused by the body's schema (a length bound)
            return
        message = assert_error(response, 400, "invalid_request")
        assert "\n" not in message and says in message, message
        assert await windows(api) == []

    run_api(scenario)


SHELL = {"commands": ["echo hi"]}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"document": "No-Such-Document"}, "No-Such-Document"),
        ({"document_version": "99"}, "99"),
        ({"parameters": {"commands": ["x"], "executionTimeout": "soon"}}, "allowedPattern"),
        ({"parameters": {"commands": 5}}, "commands"),
        ({"parameters": {"unknown": "x"}}, "unknown"),
        ({"max_concurrency": "0"}, "max_concurrency"),
        ({"max_errors": "x"}, "max_errors"),
        ({"priority": -1}, "priority"),
        ({"cutoff_behavior": "STOP"}, "cutoff behavior"),
        ({"task_type": "LAMBDA"}, "LAMBDA"),
        ({"targets": ["tag:role=web"]}, "unassociated"),
        ({"targets": ["window-target:nope"]}, "nope"),
        ({"name": "a b"}, "name"),
        ({"timeout_seconds": 1}, "timeout"),
    ],
)
def test_bad_tasks_are_refused_and_nothing_is_stored(
    run_api: RunApi, fields: dict[str, Any], says: str
) -> None:
    async def scenario(api: Api) -> None:
        created = await window(api)
        wid = created["window_id"]
        await targets(api, wid, "tag:role=web")
        body = {"document": "AWS-RunShellScript", "parameters": SHELL, **fields}
        response = await api.client.post(f"/v1/windows/{wid}/tasks", json=body, headers=api.admin)
        message = assert_error(response, 400, "invalid_request")
        assert "\n" not in message and says in message, message
        shown = await ok(await api.client.get(f"/v1/windows/{wid}", headers=api.admin))
        assert shown["tasks"] == []

    run_api(scenario)


def test_a_task_without_targets_needs_registered_targets(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        wid = (await window(api))["window_id"]
        body = {"document": "AWS-RunShellScript", "parameters": SHELL}
        response = await api.client.post(f"/v1/windows/{wid}/tasks", json=body, headers=api.admin)
        assert "no registered targets" in assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_bad_targets_are_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        wid = (await window(api))["window_id"]
        response = await api.client.post(
            f"/v1/windows/{wid}/targets", json={"targets": ["tag:=x"]}, headers=api.admin
        )
        assert_error(response, 400, "invalid_request")
        shown = await ok(await api.client.get(f"/v1/windows/{wid}", headers=api.admin))
        assert shown["targets"] == []

    run_api(scenario)


def test_a_window_is_shown_listed_and_deleted(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        created = await window(
            api,
            schedule="cron(0 2 ? * SUN#1 *)",
            schedule_timezone="Europe/Berlin",
            schedule_offset=2,
            allow_unassociated_targets=True,
        )
        wid = created["window_id"]
        assert wid.startswith("mw-") and len(wid) == 20
        assert created["enabled"] and created["next_execution_time"]
        target = await targets(api, wid, "tag:role=web")
        task_body = {
            "document": "AWS-RunShellScript",
            "parameters": {"commands": ["echo {{WINDOW_ID}}"]},
            "targets": [f"window-target:{target}", "mi-0123456789abcdef0"],
        }
        await ok(
            await api.client.post(f"/v1/windows/{wid}/tasks", json=task_body, headers=api.admin),
            201,
        )
        shown = await ok(await api.client.get(f"/v1/windows/{wid}", headers=api.admin))
        assert [t["window_target_id"] for t in shown["targets"]] == [target]
        assert shown["tasks"][0]["parameters"] == {"commands": ["echo {{WINDOW_ID}}"]}
        # A target a task uses stays until the task goes.
        response = await api.client.delete(f"/v1/windows/{wid}/targets/{target}", headers=api.admin)
        assert_error(response, 409, "conflict")
        assert [w["window_id"] for w in await windows(api)] == [wid]
        await ok(await api.client.delete(f"/v1/windows/{wid}", headers=api.admin))
        assert await windows(api) == []
        response = await api.client.get(f"/v1/windows/{wid}", headers=api.admin)
        assert_error(response, 404, "not_found")

    run_api(scenario)


def test_unknown_query_parameters_are_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.get("/v1/windows?state=open", headers=api.admin)
        assert_error(response, 400, "invalid_request")

    run_api(scenario)


def test_every_change_is_audited_on_the_window_or_calendar_it_changed(run_api: RunApi) -> None:
    from tests.unit.test_audit_resources import entries_of

    async def scenario(api: Api) -> None:
        async def call(method: str, path: str, body: Any = None) -> tuple[dict[str, Any], str]:
            request_id = f"audit-{len(seen):04d}"
            response = await api.client.request(
                method, path, json=body, headers={**api.admin, "x-request-id": request_id}
            )
            assert response.status_code in (200, 201), response.text
            (entry,) = await entries_of(api, request_id)
            seen.append(entry["resource"])
            return response.json(), entry["resource"]

        seen: list[str] = []
        made, resource = await call("POST", "/v1/windows", GOOD)
        wid = made["window_id"]
        assert resource == f"window/{wid}"
        target, resource = await call(
            "POST", f"/v1/windows/{wid}/targets", {"targets": ["tag:role=web"]}
        )
        assert resource == f"window/{wid}"
        task_body = {"document": "AWS-RunShellScript", "parameters": SHELL}
        registered, resource = await call("POST", f"/v1/windows/{wid}/tasks", task_body)
        assert resource == f"window/{wid}"
        for method, path in [
            ("POST", f"/v1/windows/{wid}/disable"),
            ("POST", f"/v1/windows/{wid}/enable"),
            ("DELETE", f"/v1/windows/{wid}/tasks/{registered['window_task_id']}"),
            ("DELETE", f"/v1/windows/{wid}/targets/{target['window_target_id']}"),
            ("DELETE", f"/v1/windows/{wid}"),
        ]:
            assert (await call(method, path))[1] == f"window/{wid}", path
        calendar = {"name": "freeze", "schedule": "rate(7 days)", "duration": 1}
        assert (await call("POST", "/v1/calendars", calendar))[1] == "calendar/freeze"
        assert (await call("DELETE", "/v1/calendars/freeze"))[1] == "calendar/freeze"

    run_api(scenario)
