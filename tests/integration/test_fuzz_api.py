"""Fuzz the HTTP API from its own OpenAPI spec with schemathesis: no input gets a 5xx.

Bounded for CI: a fixed number of examples per operation, against a real server (fake
engines) on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from slackwater.api.server import create_app
from slackwater.app import build
from slackwater.config import Settings
from tests.integration.conftest import fake_models
from tests.loopback import serve_in_thread


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = Settings.load(
        data_dir=tmp_path_factory.mktemp("fuzz"), models=fake_models(), max_file_bytes=100_000
    )
    with serve_in_thread(create_app(build(config))) as url:
        schema = schemathesis.openapi.from_url(url + "/openapi.json")
        schema.config.update(base_url=url)
        yield schema


def test_no_input_gets_a_server_error(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10  # every route is in the spec, uploads included
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def no_5xx(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        no_5xx()
