"""The fault suite breaks its own broker and database, so it never disturbs other tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.local.stack import LocalStack, started_stack
from tests.conftest import Pipeline, running_pipeline


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory.mktemp("fault-stack")) as stack:
        yield stack


@pytest.fixture()
def line(fault_stack: LocalStack) -> Iterator[Pipeline]:
    """Fresh topics and database for each scenario, on the suite's own servers."""
    # Ingest gives up on the broker after 3 s (10 by default), so a broker restart is seen by
    # clients as 503s, as it would be in a longer outage.
    # The aggregator's /healthz turns 503 after 3 s without a commit (60 by default).
    env = {"PUBLISH_TIMEOUT_S": "3", "AGGREGATOR_UNHEALTHY_AFTER_S": "3"}
    with running_pipeline(fault_stack, env) as pipeline:
        yield pipeline
