"""Schemathesis over the gateway's OpenAPI schema, against the real gateway over HTTP:
no generated request (valid or not) may cause a 5xx. Bounded to a few examples per operation."""

from __future__ import annotations

from typing import Any

import hypothesis
import schemathesis
from schemathesis.checks import not_a_server_error

from genjob.settings import GenjobSettings
from genjob_api.main import create_app

schema = schemathesis.openapi.from_dict(create_app(GenjobSettings()).openapi())


@schema.parametrize()
@hypothesis.settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)
def test_api_schema_no_server_errors(case: schemathesis.Case, gateway: Any) -> None:
    """Every operation, with generated inputs and the admin key, answers without a 5xx (generated
    job ids never exist, so the event stream answers 404 at once instead of streaming)."""
    response = case.call(
        base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.keys['admin']}"}, timeout=10
    )
    case.validate_response(response, checks=[not_a_server_error])


def test_api_schema_documents_the_answer_to_an_undecodable_body(gateway: Any) -> None:
    """A JSON-typed body that is not UTF-8 is answered 400, and the schema says so (found by the
    stateful run: the status was undocumented)."""
    response = gateway.client("alice").post(
        "/v1/generations", content=b"\x80{}", headers={"Content-Type": "application/json"}
    )
    documented = create_app(GenjobSettings()).openapi()["paths"]["/v1/generations"]["post"]["responses"]
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert "400" in documented
