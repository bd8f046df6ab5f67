"""Schemathesis against a live `feedctl serve`, from the schema it publishes: no 500 and no
response that the schema does not describe (status, content type, body, headers). Examples
are bounded and derandomized, so the test is repeatable and takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from feedctl.context import Context
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything
from serving import TOKEN, serving

EXAMPLES = 25  # per operation
DOCS_SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture
def world(ctx: Context) -> Context:
    seed(ctx.conn, SeedSpec(users=30, communities=3, posts=60, days=3, seed=9))
    fan_out_everything(ctx)
    return ctx


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    world: Context, tmp_path: Path
) -> None:
    with serving(world.settings, tmp_path) as served:
        schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
        assert schema.raw_schema == json.loads(DOCS_SCHEMA.read_text())  # docs/ is what runs
        auth = {"Authorization": f"Bearer {TOKEN}"}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 7
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=served.url,
                    headers=auth,
                    timeout=30,
                    # A cursor is opaque and signed: text that fits its schema may still be a
                    # forgery, refused with 422 by design, so "schema-valid is accepted" cannot
                    # hold for it. Every other check runs.
                    excluded_checks=[positive_data_acceptance],
                )

            check()
        assert served.terminate() == 0
    assert "Traceback" not in served.log_text()
