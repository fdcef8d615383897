"""The production topology on genuine Apache Kafka: three KRaft nodes, replication 3,
`min.insync.replicas` 2, acks=all (docker-compose.yml; deploy/local/stack.py's
CLUSTER_DURABILITY). One node is killed with kill -9 and later restarted while 100,000 events
(`FAULT_EVENTS`) stream through ingest: nothing acknowledged is lost or counted twice, ingest
answers only 202 or 503 meanwhile, and counting goes on without a restart of our services.
Then the same with the node that holds the active controller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.stack import ClusterStack, KafkaNode, started_cluster
from tests.conftest import Pipeline, running_pipeline
from tests.faults.harness import BackgroundDelivery
from tests.faults.test_faults import EVENTS, run_scenario


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    with started_cluster(tmp_path_factory.mktemp("cluster"), size=3) as stack:
        yield stack


@pytest.fixture()
def cluster_line(cluster: ClusterStack) -> Iterator[Pipeline]:
    env = {
        # As production: init creates the topics replicated three times, two in sync.
        "KAFKA_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        # Ingest gives up on the broker after 3 s (10 by default): a send that waits for a
        # new partition leader is a 503, never a hang.
        "PUBLISH_TIMEOUT_S": "3",
    }
    with running_pipeline(cluster, env) as pipeline:
        yield pipeline


def replica_counts(bootstrap: str, topic: str) -> list[int]:
    async def describe() -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_topics([topic])
            return [len(partition["replicas"]) for partition in described["partitions"]]
        finally:
            await admin.close()

    return asyncio.run(describe())


def kill_and_restart(
    cluster: ClusterStack, choose: Callable[[], KafkaNode], seen: dict[str, object]
) -> Callable[[BackgroundDelivery], None]:
    def break_things(background: BackgroundDelivery) -> None:
        background.wait_for(EVENTS * 3 // 10)
        victim = choose()
        seen["victim"] = victim
        cluster.kill(cluster.node_process(victim))
        # Longer than ingest waits for the broker and than a broker's session (3 s): the
        # cluster has moved the victim's leaders and its controller role by now.
        time.sleep(8)
        seen["controller meanwhile"] = cluster.active_controller()
        cluster.start_node(victim)
        seen["statuses"] = background.join().statuses

    return break_things


def services_pids(line: Pipeline) -> dict[str, int]:
    return {name: process.popen.pid for name, process in line.services.items()}


def assert_only_202_and_503(statuses: object) -> None:
    assert isinstance(statuses, dict), statuses
    assert set(statuses) <= {202, 503}, statuses
    assert "503 without Retry-After" not in statuses, statuses


def test_a_broker_killed_and_restarted_loses_nothing(
    cluster_line: Pipeline, cluster: ClusterStack
) -> None:
    assert set(replica_counts(cluster.kafka_bootstrap, cluster_line.env["EVENTS_TOPIC"])) == {3}
    before = services_pids(cluster_line)
    controller = cluster.active_controller()
    seen: dict[str, object] = {}

    def not_the_controller() -> KafkaNode:
        return next(node for node in cluster.nodes if node != controller)

    run_scenario(
        cluster_line,
        "3 brokers, one kill -9 and restart",
        kill_and_restart(cluster, not_the_controller, seen),
        seed=21,
    )
    assert seen["victim"] != controller
    assert_only_202_and_503(seen["statuses"])
    # Counting went on in the same processes: none of ours was restarted.
    assert services_pids(cluster_line) == before
    assert all(p.popen.poll() is None for p in cluster_line.services.values())


def test_the_active_controller_killed_and_restarted_loses_nothing(
    cluster_line: Pipeline, cluster: ClusterStack
) -> None:
    before = services_pids(cluster_line)
    seen: dict[str, object] = {}
    run_scenario(
        cluster_line,
        "3 brokers, the active controller kill -9 and restart",
        kill_and_restart(cluster, cluster.active_controller, seen),
        seed=22,
    )
    # The quorum elected another leader while the old one was down.
    assert seen["controller meanwhile"] != seen["victim"]
    assert_only_202_and_503(seen["statuses"])
    assert services_pids(cluster_line) == before
    assert all(p.popen.poll() is None for p in cluster_line.services.values())
