"""One local Ray for the session (2 CPUs, started here): Ray takes seconds to start, so
every Ray test shares it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.acceptance.conftest import processes  # noqa: F401  (the same processes)
from tests.integration.conftest import server_factory  # noqa: F401  (the same servers)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    # A custom resource, as nodes of a spot pool would be labelled.
    ray.init(
        num_cpus=2,
        resources={"spot": 4},
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()
