"""Stateful schemathesis run over the gateway's OpenAPI links (submit -> read -> cancel -> image),
against the real gateway and worker over HTTP on a real redis-server.

Schemathesis chains operations along the schema's links, feeding each response's job id to the
next operation, with valid and invalid (negative) data on every step. Every response must pass
all of schemathesis' checks: no 5xx, status codes, content types, headers and bodies as the
schema declares them, invalid data refused, valid data accepted, a cancelled or created job
still readable. The event stream is left out: a live job's stream does not end by design
(tests/api/test_api_flow.py covers it)."""

from __future__ import annotations

from typing import Any

import hypothesis
import schemathesis
from schemathesis.config import SchemathesisConfig

from genjob.settings import GenjobSettings
from genjob_api.main import create_app

ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]

# DELETE cancels: the job stays readable as `cancelled` (its record is the audit trail), so
# schemathesis' use-after-free check (a deleted resource must 404) does not apply.
# A schema-valid submit may still exceed the key's tier limits (steps, size, images): those are
# per key, not in the schema, so a 422 is an expected answer to valid data there.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"use_after_free": {"enabled": False}},
        "operations": [
            {
                "include-name": "POST /v1/generations",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            }
        ],
    }
)
schema = schemathesis.openapi.from_dict(create_app(GenjobSettings()).openapi(), config=CONFIG).exclude(
    path_regex=r"/events$"
)
STATEFUL_SETTINGS = hypothesis.settings(
    max_examples=50,
    stateful_step_count=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)


def test_api_stateful_links_conform_to_schema(gateway: Any) -> None:
    """Scenarios along the links, as the pro key `alice` (served by the test worker, so some
    jobs succeed and their images exist), pass every schemathesis check."""
    headers = {"Authorization": f"Bearer {gateway.keys['alice']}"}

    class GatewayWorkflow(schema.as_state_machine()):
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": gateway.url, "headers": headers, "timeout": 10}

    GatewayWorkflow.run(settings=STATEFUL_SETTINGS)
