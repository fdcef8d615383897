"""Property-based attack on both services' OpenAPI schemas (schemathesis), with the admin
token, so every operation is reachable: valid and invalid inputs alike must never answer 5xx,
and every answer must be documented and match its schema.

It runs on a pipeline of its own: with the admin token, generated requests add units, set
campaigns and revoke tokens, which must not disturb the other tests' data.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deploy.local.stack import LocalStack
from tests.conftest import Pipeline, running_pipeline

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Bounded so the whole file stays well under a minute on 2 cores: examples per operation and
# mode (ingest, the internet-facing one, gets more), no shrinking (a failure still shows the
# request that caused it, ready to replay). SCHEMATHESIS_EXAMPLES=200 SCHEMATHESIS_SEED=random
# attacks longer, for a hunt by hand.
EXAMPLES = {"api": 8, "ingest": 40}
ATTACK = settings(
    deadline=None,
    database=None,
    derandomize=os.environ.get("SCHEMATHESIS_SEED") != "random",
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# The live stream never ends by design; it is attacked in test_security_access.
ENDLESS = {("GET", "/v1/stream")}


@pytest.fixture(scope="module")
def attacked(infra: LocalStack) -> Iterator[Pipeline]:
    with running_pipeline(infra) as line:
        yield line


def attack_with(
    line: Pipeline,
    service: str,
    operation: Any,
    mode: GenerationMode,
    calls: Counter[GenerationMode],
) -> Callable[[], None]:
    examples = int(os.environ.get("SCHEMATHESIS_EXAMPLES", EXAMPLES[service]))

    @settings(ATTACK, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=line.headers(), checks=CHECKS, timeout=30)
        calls[mode] += 1

    return run


def attack(line: Pipeline, service: str) -> list[str]:
    """Every operation of `service`, with valid (positive) and invalid (negative) inputs; the
    failures, one line per operation and mode (hypothesis stops an operation at its first)."""
    schema = schemathesis.openapi.from_url(line.url(service, "/openapi.json"))
    failures: list[str] = []
    calls: Counter[GenerationMode] = Counter()
    nothing_to_send: list[str] = []
    results = list(schema.get_all_operations())
    broken = [result.err() for result in results if isinstance(result, Err)]
    assert not broken, f"{service}'s schema has operations schemathesis cannot read: {broken}"
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert operations, f"{service} documents no operation"
    for operation in operations:
        if (operation.method.upper(), operation.path) in ENDLESS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                attack_with(line, service, operation, mode, calls)()
            except Unsatisfiable:
                # No request violates this operation's schema in a way schemathesis can
                # express (no parameters, or only a body it cannot negate): nothing to send.
                nothing_to_send.append(f"{operation.label} ({mode.value})")
                continue
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    print(
        f"{service}: {len(operations)} operations, requests by mode: "
        f"{ {mode.value: n for mode, n in calls.items()} }; nothing to generate for: "
        f"{nothing_to_send}"
    )
    return failures


def test_api_answers_every_generated_request_as_documented(attacked: Pipeline) -> None:
    failures = attack(attacked, "api")
    assert not failures, "\n\n".join(failures)


def test_ingest_answers_every_generated_request_as_documented(attacked: Pipeline) -> None:
    failures = attack(attacked, "ingest")
    assert not failures, "\n\n".join(failures)
