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
    jobs succeed and their images exist), pass every schemathesis check.

    Schemathesis follows links with true randomness on purpose (a live API's answers differ
    between runs of the same scenario), so Hypothesis may find that a scenario it replays draws
    differently and stop with FlakyStrategyDefinition. As in schemathesis' own engine, such a
    stop fails the test only if a check failed; otherwise the run goes on, with a new seed,
    until STATEFUL_SETTINGS.max_examples scenarios completed."""
    headers = {"Authorization": f"Bearer {gateway.keys['alice']}"}
    failed_checks: list[Exception] = []
    completed = 0

    class GatewayWorkflow(schema.as_state_machine()):
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": gateway.url, "headers": headers, "timeout": 10}

        def validate_response(self, response: Any, case: schemathesis.Case, *args: Any, **kw: Any) -> None:
            try:
                super().validate_response(response, case, *args, **kw)
            except Exception as exc:  # kept even if Hypothesis cannot replay the scenario
                failed_checks.append(exc)
                raise

        def teardown(self) -> None:
            nonlocal completed
            completed += 1
            super().teardown()

    run_settings = STATEFUL_SETTINGS
    while completed < STATEFUL_SETTINGS.max_examples:
        try:
            GatewayWorkflow.run(settings=run_settings)
            break
        except hypothesis.errors.Flaky:
            if failed_checks:
                first = failed_checks[0]
                raise AssertionError(f"{len(failed_checks)} failed check(s), first: {first}") from first
        run_settings = hypothesis.settings(STATEFUL_SETTINGS, derandomize=False)
    assert not failed_checks
