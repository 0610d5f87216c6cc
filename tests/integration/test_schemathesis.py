"""Schemathesis against the real server: every operation in /v1/openapi.json, fuzzed with the
admin token, must never answer 5xx and must answer what its schema says.

The server runs as in the other integration tests (``corral-server init`` + ``serve`` on a free
loopback port, TLS verified against its CA), with the rate limits raised so fuzzing measures the
handlers, not the token buckets.  A 429 from the failed-authentication slow-down is an answer,
not a server error.

Each operation gets ``MAX_EXAMPLES`` cases (derandomized: the same cases on every run), drawn
from valid and invalid inputs with random path parameters (mostly 404s) and, where the path
names one, with the id of a real resource made beforehand (a node, a command, a document, a
group, ...), so bodies reach the services rather than stopping at "not found".  Agent routes get
the admin token (they must refuse it cleanly) and, for the known-resource cases, a real node
token.  Operations that delete or revoke run last, so the others see their resources.
Document uploads also get near-valid documents (a valid one with a few fields set to arbitrary
JSON): the schema only says ``content`` is a string, and random strings stop at "not JSON".

Left out: ``GET /v1/events`` (a Server-Sent Events stream that only ends at shutdown); pinging the
real node (it has no agent: each ping would wait out its timeout).

Checks: no 5xx (``not_a_server_error``), and documented responses conform (body schema, content
type, headers).  ``status_code_conformance`` is not run: the API answers every error as
``{"error": {"code", "message"}}`` with 400/401/403/404/409/413/429 from exception handlers,
which FastAPI does not list per route, so every refused input would be a "failure".

Each operation is one pytest subtest running a Hypothesis test over ``APIOperation.as_strategy``
(schemathesis' own ``schemathesis.pytest.from_fixture`` renames pytest's ``Node._nodeid``, which
pytest 9.2 no longer has).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
import tomli_w
from hypothesis import strategies as st
from schemathesis import APIOperation, BaseSchema, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from agent import wire
from agent.identity import NodeKey
from tests.integration.harness import Server

pytestmark = pytest.mark.integration

# CORRAL_FUZZ_EXAMPLES=500 for a deeper (minutes-long) search, e.g. after changing a route.
MAX_EXAMPLES = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "25"))
STREAMING = ["/v1/events"]
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
# Routes whose non-JSON answer is not declared in the OpenAPI document yet (control_plane/api/
# audit.py: JSON Lines and a PEM key documented as application/json).  Every other check runs.
UNDECLARED_MEDIA_TYPE: set[str] = set()
# Document uploads get this many times MAX_EXAMPLES: their content is a language of its own.
DOCUMENT_UPLOADS = {"POST /v1/documents": 4, "POST /v1/documents/{name}/versions": 2}
DESTRUCTIVE = ("DELETE ", "/deregister", "/revoke", "/cancel")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DOC = {
    "schemaVersion": "2.2",
    "description": "Say hello",
    "parameters": {"who": {"type": "String", "default": "world"}},
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "hello",
            "inputs": {"runCommand": ["echo hello {{ who }}"]},
        }
    ],
}


# Arbitrary JSON, with the words documents are made of more likely than random text.
WORDS = ["{{ who }}", "{{ ssm:x }}", "{{", "aws:runShellScript", "aws:runDocument", ".*"]
WORDS += ["String", "StringList", "Integer", "2.2", "1.2", "exit", "step:hello", "ENV_VAR", "("]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(WORDS),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["action", "inputs", "runCommand", "type", "x"]), inner)
    ),
    max_leaves=8,
)
DOC_PATHS = st.one_of(
    st.tuples(st.sampled_from([*DOC, "runtimeConfig", "documentType", "x"])),
    st.tuples(
        st.just("parameters"),
        st.just("who"),
        st.sampled_from(
            ["type", "default", "allowedValues", "allowedPattern", "minItems", "maxChars", "x"]
        ),
    ),
    st.tuples(st.just("mainSteps"), st.integers(0, 1)),
    st.tuples(
        st.just("mainSteps"),
        st.just(0),
        st.sampled_from(
            ["action", "name", "inputs", "precondition", "timeoutSeconds", "onFailure", "x"]
        ),
    ),
    st.tuples(
        st.just("mainSteps"),
        st.just(0),
        st.just("inputs"),
        st.sampled_from(["runCommand", "workingDirectory", "timeoutSeconds", "documentPath", "x"]),
    ),
)


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> None:
    *parents, last = path
    for key in parents:
        document = document[key]
    if isinstance(document, list) and last >= len(document):
        document.append(value)
    else:
        document[last] = value


def near_valid_documents() -> st.SearchStrategy[str]:
    """A valid document with one to three fields set to arbitrary JSON: what reaches the
    document parser's checks, where a random string stops at "not JSON"."""

    def build(changes: list[tuple[tuple[Any, ...], Any]]) -> str:
        document = json.loads(json.dumps(DOC))
        for path, value in changes:
            with contextlib.suppress(LookupError, TypeError):  # an earlier change removed it
                _replaced(document, path, value)
        return json.dumps(document)

    return st.lists(st.tuples(DOC_PATHS, JSON), min_size=1, max_size=3).map(build)


@pytest.fixture
def fuzzed_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    config_file = srv.data_dir / "config.toml"
    config = tomllib.loads(config_file.read_text())
    config["server"].update(
        rate_limit_per_second=10000,
        rate_limit_burst=100000,
        node_rate_limit_per_second=10000,
        node_rate_limit_burst=100000,
        poll_hold_seconds=0.5,  # a node's long-poll answers at once instead of in 20 s
    )
    config_file.write_text(tomli_w.dumps(config))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


class Known:
    """Real resources on the server, for the path parameters that name one."""

    def __init__(self, srv: Server) -> None:
        with srv.api() as api:
            self.activation = self._created(
                api.post("/v1/activations", json={"registration_limit": 2})
            )
            key = NodeKey.generate()
            node = self._created(
                api.post(
                    wire.ROUTE_REGISTER,
                    json={
                        "activation_id": self.activation["activation_id"],
                        "activation_code": self.activation["activation_code"],
                        "public_key": key.public_key_b64,
                        "hostname": "fuzz-1",
                    },
                )
            )
            self.node_id: str = node["node_id"]
            self.node_token = self._node_token(api, key)
            command = self._created(
                api.post(
                    "/v1/commands",
                    json={"targets": [self.node_id], "parameters": {"commands": ["true"]}},
                )
            )
            self.command_id: str = command["command_id"]
            self._created(
                api.post("/v1/documents", json={"name": "fuzz-doc", "content": json.dumps(DOC)})
            )
            self._created(api.post("/v1/groups", json={"name": "fuzz", "targets": ["all"]}))
            hook = self._created(api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}))
            self.webhook_id: str = hook["webhook_id"]
            token = self._created(api.post("/v1/tokens", json={"name": "spare", "role": "viewer"}))
            self.token_id: str = token["token_id"]

    @staticmethod
    def _created(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def _node_token(self, api: httpx.Client, key: NodeKey) -> str:
        nonce = api.post(wire.ROUTE_CHALLENGE, json={"node_id": self.node_id}).json()["nonce"]
        stamp = int(time.time())
        answer = api.post(
            wire.ROUTE_TOKEN,
            json={
                "node_id": self.node_id,
                "nonce": nonce,
                "timestamp": stamp,
                "signature": key.sign_b64(wire.token_signing_payload(self.node_id, nonce, stamp)),
            },
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    def path_parameters(self, operation: APIOperation) -> dict[str, Any] | None:
        """Real ids for this operation's path, or None where it names nothing we made."""
        path = operation.path
        if path.endswith("/ping"):
            return None
        names = {
            "/v1/documents/": "fuzz-doc",
            "/v1/groups/": "fuzz",
            "/v1/policies/": "viewer",
        }
        by_param = {
            "node_id": self.node_id,
            "command_id": self.command_id,
            "activation_id": self.activation["activation_id"],
            "webhook_id": self.webhook_id,
            "token_id": self.token_id,
            "name": next((v for k, v in names.items() if path.startswith(k)), None),
            "step_index": 0,
            "stream": "stdout",
        }
        wanted = [p.name for p in operation.path_parameters]
        if not wanted or any(by_param.get(name) is None for name in wanted):
            return None
        return {name: by_param[name] for name in wanted}


@pytest.fixture
def api_schema(fuzzed_server: Server) -> BaseSchema:
    schema = schemathesis.openapi.from_url(
        fuzzed_server.url + "/v1/openapi.json", verify=fuzzed_server.ca_file, timeout=30
    )
    schema.config.update(
        base_url=fuzzed_server.url, tls_verify=fuzzed_server.ca_file, request_timeout=30
    )
    return schema.exclude(path=STREAMING)


def loopback_webhooks(case: schemathesis.Case) -> schemathesis.Case:
    """A generated webhook URL that names a real host is pointed at loopback instead: the
    server would deliver command events to it, and tests send nothing off this machine."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("url"), str):
        host = urllib.parse.urlsplit(body["url"]).hostname
        if host and host not in LOOPBACK:
            body["url"] = "http://127.0.0.1:9/" + urllib.parse.quote(body["url"], safe="")
    return case


def cases(operation: APIOperation, known: Known) -> st.SearchStrategy[schemathesis.Case]:
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    path_parameters = known.path_parameters(operation)
    if path_parameters is not None or operation.path.startswith(wire.AGENT_PREFIX):
        headers = None
        if operation.path.startswith(wire.AGENT_PREFIX):
            headers = {"authorization": f"Bearer {known.node_token}"}
        strategies += [
            operation.as_strategy(mode, path_parameters=path_parameters, headers=headers)
            for mode in GenerationMode
        ]
    drawn = st.one_of(strategies)
    if operation.label in DOCUMENT_UPLOADS:
        # Mostly near-valid documents: the schema only says "content" is a string.
        fields: dict[str, st.SearchStrategy[str]] = {"content": near_valid_documents()}
        if "{name}" not in operation.path:
            fields["name"] = st.just("fuzz-doc-2")
        near_valid = st.fixed_dictionaries(fields).flatmap(
            lambda body: operation.as_strategy(path_parameters=path_parameters, body=body)
        )
        drawn = st.one_of(drawn, near_valid, near_valid, near_valid)
    if operation.label == "POST /v1/webhooks":
        drawn = drawn.map(loopback_webhooks)
    return drawn


def fuzz(operation: APIOperation, known: Known, session: requests.Session) -> None:
    """MAX_EXAMPLES cases of ``operation`` (more for document uploads), valid and invalid
    ones, each checked."""
    examples = MAX_EXAMPLES * DOCUMENT_UPLOADS.get(operation.label, 1)
    checks = CHECKS
    if operation.label in UNDECLARED_MEDIA_TYPE:
        checks = [c for c in CHECKS if c is not content_type_conformance]

    @hypothesis.given(case=cases(operation, known))
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(session=session, checks=checks)

    run()


def test_api_never_fails_on_any_input(
    api_schema: BaseSchema, fuzzed_server: Server, subtests: pytest.Subtests
) -> None:
    known = Known(fuzzed_server)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40  # the whole API, not an empty or truncated document
    operations.sort(key=lambda op: any(word in op.label for word in DESTRUCTIVE))
    with requests.Session() as session:
        session.headers["authorization"] = f"Bearer {fuzzed_server.token}"
        for operation in operations:
            with subtests.test(operation.label):
                fuzz(operation, known, session)
