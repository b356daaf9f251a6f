"""Every operation of the OpenAPI schema, fuzzed with valid and invalid data under every kind
of caller: the answer is never a server error, and every refusal is a problem+json whose errors
all carry a code from the one error table, a message and a location, with a status and code
that /openapi.json lists for the operation.

Operations on a permit are fuzzed both at random paths and at the permit on file, so that
reservation, endorsement and status bodies reach the ledger. ``POST /v1/messages`` also gets
mutations of a permit signed with the demo XA key, through the whole submission pipeline.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from epix.api.app import create_app
from epix.errors import EpixError
from epix.settings import Settings
from tests.robustness.conftest import PERMIT_NUMBER, Node, assert_problem
from tests.robustness.documents import sign_as_xa
from tests.robustness.test_core_properties import mutations

_OPENAPI = create_app(Settings(data_dir="/nonexistent")).openapi()
_SCHEMA = schemathesis.openapi.from_dict(_OPENAPI)
OPERATIONS = [result.ok() for result in _SCHEMA.get_all_operations()]
# Small on purpose: the suite must stay well under a minute on two cores. Raise EPIX_FUZZ_EXAMPLES
# locally for a deeper run.
EXAMPLES = int(os.environ.get("EPIX_FUZZ_EXAMPLES", "20"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
# No credentials, bad credentials, and one demo user per role (by username); users are drawn
# twice as often, so that bodies get past authentication to the services.
ANONYMOUS = (None, "Bearer not-a-real-key", "Basic dXNlcjpwYXNz", "Bearer ")
USERS = ("@cites-secretariat", "@xa-management_authority", "@xb-customs", "@node-admin")
CALLERS = st.one_of(st.sampled_from(ANONYMOUS), st.sampled_from(USERS), st.sampled_from(USERS))


def _auth_header(node: Node, caller: str | None) -> dict[str, str]:
    if caller is None:
        return {}
    if caller.startswith("@"):
        user = next(u for u in node.demo.users if u.username == caller[1:])
        return {"Authorization": f"Bearer {user.api_key}"}
    return {"Authorization": caller}


def _cases(operation: Any) -> st.SearchStrategy[Any]:
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{number}" in operation.path:
        on_file = {"party": "XA", "number": PERMIT_NUMBER}
        strategies += [
            operation.as_strategy(mode, path_parameters=on_file)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    return st.one_of(strategies)


def documented_refusals(operation: Any) -> set[tuple[int, str]]:
    """(status, code) of every refusal /openapi.json lists for the operation."""
    responses = _OPENAPI["paths"][operation.path][operation.method.lower()]["responses"]
    return {
        (int(status), code)
        for status, response in responses.items()
        for code in response.get("content", {})
        .get("application/problem+json", {})
        .get("examples", {})
    }


def _send(client: TestClient, kwargs: dict[str, Any]) -> Any:
    data = kwargs.get("data")
    return client.request(
        kwargs["method"],
        kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies") or None,
        content=data if isinstance(data, bytes | str) else None,
        data=data if isinstance(data, dict) else None,
        json=kwargs.get("json"),
    )


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_fuzzed_requests_never_fail_the_server_and_refusals_are_coded(
    node: Node, operation: Any
) -> None:
    client = TestClient(node.app, base_url="http://testserver")
    documented = documented_refusals(operation)

    @FUZZ
    @given(case=_cases(operation), caller=CALLERS)
    def check(case: Any, caller: str | None) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        kwargs["headers"] = {**kwargs.get("headers", {}), **_auth_header(node, caller)}
        response = _send(client, kwargs)
        if kwargs["method"] == "HEAD":  # no body to check: GET must answer with the same status
            assert response.status_code != 500 and response.content == b""
            response_status = response.status_code
            response = _send(client, {**kwargs, "method": "GET"})
            assert response.status_code == response_status
        assert_problem(
            response.status_code, response.headers.get("content-type", ""), response.content
        )
        code = response.json()["code"] if response.status_code >= 400 else "ok"
        event(f"{response.status_code} {code}")
        if response.status_code >= 400:  # the client author was told to expect it
            assert (response.status_code, code) in documented, (response.status_code, code)

    check()


@FUZZ
@given(st.data())
def test_mutated_signed_permits_are_answered_with_a_receipt_or_a_coded_refusal(
    node: Node, data: st.DataObject
) -> None:
    """Mutations before signing reach validation and rules; after signing, the verifier."""
    permit = data.draw(st.sampled_from(["mutated-then-signed", "signed-then-mutated"]))
    if permit == "mutated-then-signed":
        # A fresh number each time, so the mutation meets validation, not EPIX-MSG-007.
        number = f"XA-{uuid.uuid4().hex[:10].upper()}".encode()
        mutated = data.draw(mutations("unsigned-permit")).replace(b"XA-FUZZ-0002", number)
        try:
            body = sign_as_xa(mutated)
        except EpixError:  # not signable (not XML, say): send the bytes as they are
            body = mutated
    else:
        body = data.draw(mutations("permit"))
    client = TestClient(node.app, base_url="http://testserver")
    response = client.post(
        "/v1/messages", content=body, headers=node.submission_headers(f"msg-{uuid.uuid4().hex}")
    )
    assert_problem(response.status_code, response.headers.get("content-type", ""), response.content)
    code = response.json()["code"] if response.status_code >= 400 else "accepted"
    event(f"{permit}: {response.status_code} {code}")  # --hypothesis-show-statistics
