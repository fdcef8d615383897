"""The fault suite breaks its own broker and database, so it never disturbs other tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.stack import LocalStack, free_port
from tests.conftest import Pipeline, running_pipeline


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root: Path = tmp_path_factory.mktemp("fault-stack")
    stack = LocalStack(
        data_dir=root / "data",
        log_dir=root / "logs",
        kafka_port=free_port(),
        mongo_port=free_port(),
        s3_port=free_port(),
    )
    try:
        stack.start_broker()
        stack.start_database()
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture()
def line(fault_stack: LocalStack) -> Iterator[Pipeline]:
    """Fresh topics and database for each scenario, on the suite's own servers."""
    with running_pipeline(fault_stack) as pipeline:
        yield pipeline
