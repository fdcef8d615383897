"""Starting the local stack on this machine: broker, database and the three services.

Used by `make run` and by the tests, so both run the same processes the same way. No Docker
here (see docs/getting-started.md): the broker is Apache Kafka (KRaft, one combined broker and
controller), run by the JDK from the jars `make install` fetched with Maven
(deploy/local/kafka/pom.xml); the MongoDB protocol comes from SecantusDB in its own virtual
environment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / ".local"


class PortInUse(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(port: int, what: str) -> None:
    with socket.socket() as sock:
        # As the servers themselves bind: connections of a stopped run lingering in TIME_WAIT
        # do not block the port, a process listening on it does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUse(
                f"port {port} ({what}) is already in use on 127.0.0.1; stop what holds it or "
                f"choose another port with {what}=..."
            ) from exc


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before port {port} opened"
            )
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


KAFKA_POM = REPO / "deploy" / "local" / "kafka" / "pom.xml"
KAFKA_LOG4J = REPO / "deploy" / "local" / "kafka" / "log4j.properties"
KAFKA_LIB = LOCAL / "kafka" / "lib"
# The broker's JVM: a small heap and the serial collector (two cores shared with the services
# and the database; measured in docs/getting-started.md). KAFKA_HEAP_OPTS replaces the heap, as
# it does for Kafka's own scripts.
KAFKA_HEAP_OPTS = "-Xms64m -Xmx512m"
KAFKA_JVM_OPTS = ["-XX:+UseSerialGC", "-XX:-UsePerfData", "-Djava.awt.headless=true"]


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The Apache Kafka version deploy/local/kafka/pom.xml pins."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if found is None:
        raise RuntimeError(f"no <kafka.version> in {pom}")
    return found.group(1)


def kafka_java_command(main_class: str, *args: str) -> list[str]:
    """`java` running one of Apache Kafka's main classes from the jars under .local/kafka."""
    if not (KAFKA_LIB / f"kafka_2.13-{kafka_version()}.jar").exists():
        raise RuntimeError(f"Apache Kafka is not installed in {KAFKA_LIB}: run `make install`")
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None:
        raise RuntimeError("no java on PATH: run `make install`")
    heap = os.environ.get("KAFKA_HEAP_OPTS", KAFKA_HEAP_OPTS).split()
    return [
        java,
        *heap,
        *KAFKA_JVM_OPTS,
        f"-Dlog4j.configuration={KAFKA_LOG4J.as_uri()}",
        "-cp",
        str(KAFKA_LIB / "*"),
        main_class,
        *args,
    ]


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, and not starting
    with `-` (the storage tool would read it as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node of a local cluster: broker and controller in one process."""

    node_id: int
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


# The production topology's durability (docker-compose.yml's x-kafka-env, held to these by
# tests/unit/test_deploy_compose.py): three replicas, two in sync for acks=all, no unclean
# leader, so one broker down loses nothing acknowledged and refuses nothing.
CLUSTER_DURABILITY = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "unclean.leader.election.enable": "false",
}
SINGLE_NODE_DURABILITY = {
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
}


def kafka_properties(
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = 1,
    voters: tuple[KafkaNode, ...] = (),
) -> str:
    """A KRaft node whose one process is broker and controller: alone (everything replicated
    once), or one of `voters` (the production topology, `CLUSTER_DURABILITY`). Topics are
    created by `init` (shared/adapters/kafka.py: ensure_topics) with the replication factor
    and configs of the settings, as in production, so automatic creation is off here too."""
    quorum = voters or (KafkaNode(node_id, port, controller_port),)
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(
            f"{voter.node_id}@127.0.0.1:{voter.controller_port}" for voter in quorum
        ),
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        **(CLUSTER_DURABILITY if len(quorum) > 1 else SINGLE_NODE_DURABILITY),
        # Fewer internal partitions start, load and recover faster; a local cluster gains
        # nothing from more.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        # A group's first member is assigned at once instead of after 3 s.
        "group.initial.rebalance.delay.ms": "0",
        # The tests' consumers use 2 s sessions, so that a killed member's partitions move on
        # quickly; the broker refuses sessions shorter than this (6 s by default).
        "group.min.session.timeout.ms": "1000",
        # After a kill -9 the controller refuses the broker's new incarnation until the old
        # one's session expires: 9 s by default, which a restarted broker would wait out.
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "2",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def wait_for_metadata(
    bootstrap: str, timeout_s: float, process: subprocess.Popen[bytes] | None
) -> None:
    """Until the broker answers a metadata request naming itself: a listening port comes
    before the broker has caught up with its controller."""
    from aiokafka.admin import AIOKafkaAdminClient  # the stack's own process may not need it

    async def answered() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except Exception:  # not yet: any failure to answer means ask again
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    deadline = time.monotonic() + timeout_s
    # A loop of its own, on a thread of its own: callers may be inside a running loop.
    with ThreadPoolExecutor(1) as thread:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"Kafka exited with {process.returncode} before it answered metadata"
                )
            if thread.submit(asyncio.run, answered()).result():
                return
            time.sleep(0.1)
    raise TimeoutError(f"Kafka at {bootstrap} did not answer metadata after {timeout_s} s")


def secantusd_command() -> list[str]:
    """SecantusDB, started through deploy/local/secantusd.py (its update-path check made
    linear) by the database's own interpreter; SECANTUSD names another server to run."""
    configured = os.environ.get("SECANTUSD")
    if configured:
        return [configured]
    python = LOCAL / "venv-db" / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `make install`")
    return [str(python), str(REPO / "deploy" / "local" / "secantusd.py")]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class LocalStack:
    data_dir: Path
    log_dir: Path
    kafka_port: int
    mongo_port: int
    kafka_controller_port: int
    processes: list[Process] = field(default_factory=list)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"

    def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None, cwd: Path = REPO
    ) -> Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops us in order
        )
        log_file.close()
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    def kafka_partition_dirs(self, topic: str) -> list[Path]:
        """The folders the broker keeps `topic`'s partitions in (`<topic>-<partition>`)."""
        pattern = re.compile(re.escape(topic) + r"-\d+")
        found = (self.kafka_dir / "log").glob(f"{topic}-*")
        return sorted(path for path in found if pattern.fullmatch(path.name))

    def start_broker(self) -> None:
        """Apache Kafka, its storage formatted on the first start."""
        check_port_free(self.kafka_port, "KAFKA_PORT")
        check_port_free(self.kafka_controller_port, "KAFKA_CONTROLLER_PORT")
        self.start_kafka()

    def start_kafka(self) -> Process:
        """The broker on the stack's data (formatted if new), once it answers metadata; also
        how a broker killed by a test comes back."""
        properties = kafka_properties(
            self.kafka_port, self.kafka_controller_port, self.kafka_dir / "log"
        )
        broker = self.spawn_kafka("kafka", self.kafka_dir, properties, new_cluster_id())
        self.wait_for_kafka(broker, self.kafka_port, self.kafka_bootstrap)
        return broker

    def spawn_kafka(self, name: str, node_dir: Path, properties: str, cluster_id: str) -> Process:
        """A KRaft node's process on `node_dir` (its storage formatted with `cluster_id` on the
        first start), not yet waited for: a node of a cluster answers only once a quorum of
        its voters runs."""
        config = node_dir / "server.properties"
        log_dir = node_dir / "log"
        node_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(properties)
        if not (log_dir / "meta.properties").exists():
            formatting = self.spawn(
                f"{name}-storage",
                kafka_java_command(
                    "kafka.tools.StorageTool",
                    "format",
                    "--config",
                    str(config),
                    "--cluster-id",
                    cluster_id,
                    "--ignore-formatted",
                ),
                cwd=node_dir,
            )
            code = formatting.popen.wait(120)
            self.processes.remove(formatting)
            if code != 0:
                raise RuntimeError(
                    f"formatting Kafka's storage failed ({code}): see {formatting.log_path}"
                )
        return self.spawn(
            name,
            kafka_java_command("kafka.Kafka", str(config)),
            cwd=node_dir,  # where a JVM crash report would land
        )

    def wait_for_kafka(self, broker: Process, port: int, bootstrap: str) -> None:
        try:
            wait_for_port(port, 60, broker.popen)
            wait_for_metadata(bootstrap, 60, broker.popen)
        except (RuntimeError, TimeoutError) as exc:
            self.kill(broker)
            raise RuntimeError(f"{exc} (log: {broker.log_path})") from exc

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def start_database(self) -> Process:
        check_port_free(self.mongo_port, "MONGODB_PORT")
        mongo_dir = self.data_dir / "mongo"
        mongo_dir.mkdir(parents=True, exist_ok=True)
        database = self.spawn(
            "secantusd",
            [
                *secantusd_command(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.mongo_port),
                "--storage-path",
                str(mongo_dir),
                "--log-level",
                "WARNING",
            ],
            cwd=mongo_dir,  # it reads ./secantusd.toml if one is there: never ours by accident
        )
        wait_for_port(self.mongo_port, 60, database.popen)
        return database

    def start_service(self, name: str, port: int, env: Mapping[str, str]) -> Process:
        check_port_free(port, f"{name.upper()}_PORT")
        process = self.spawn(name, [sys.executable, "-m", f"services.{name}"], env=env)
        try:
            wait_for_port(port, 60, process.popen)
        except (RuntimeError, TimeoutError):
            self.kill(process)
            raise
        return process

    def stop(self, process: Process, timeout_s: float = 25) -> int | None:
        if process.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGTERM)
            try:
                process.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        if process in self.processes:
            self.processes.remove(process)
        return process.popen.returncode

    def kill(self, process: Process) -> None:
        """kill -9: what a crash looks like."""
        with contextlib.suppress(ProcessLookupError):
            process.popen.kill()
        process.popen.wait()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            self.stop(process)


# Throwaway servers keep their data in memory-backed files when the machine has them, so that
# a disk shared with other tenants does not set the pace: measured with the aggregator on
# 50,000 events, 918-1,525 events/s with its database on /tmp against 2,569-2,720 on /dev/shm,
# alternating in one sitting. A kill -9 of a server keeps its files either way (they live in
# the kernel, not the process), so crash and restart tests test the same recovery.
MEMORY_FS = Path(os.environ.get("STACK_MEMORY_FS", "/dev/shm"))
MEMORY_FS_MIN_FREE = 4 << 30


def scratch_data_dir(
    fallback: Path, memory_fs: Path = MEMORY_FS, min_free: int = MEMORY_FS_MIN_FREE
) -> Path:
    """A fresh directory for throwaway server data: on `memory_fs` if it is a writable
    directory with `min_free` bytes free, else `fallback`. The directory's name carries this
    process's id, and those of processes that are gone (a test run killed before it could
    clean up) are removed first: memory-backed files would otherwise hold memory until a
    reboot."""
    with contextlib.suppress(OSError):
        _remove_orphans(memory_fs)
        usage = os.statvfs(memory_fs)
        if os.access(memory_fs, os.W_OK) and usage.f_bavail * usage.f_frsize >= min_free:
            return Path(tempfile.mkdtemp(prefix=f"stack-data-{os.getpid()}-", dir=memory_fs))
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def memory_backed(path: Path) -> bool:
    """Whether `path` was made by `scratch_data_dir` on the memory filesystem."""
    return path.is_relative_to(MEMORY_FS)


def _remove_orphans(memory_fs: Path) -> None:
    for entry in memory_fs.glob("stack-data-*-*"):
        owner = entry.name.split("-")[2]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def _running(stack: LocalStack) -> Iterator[None]:
    try:
        stack.start_broker()
        stack.start_database()
        yield
    finally:
        for process in reversed(list(stack.processes)):
            stack.kill(process)
        if memory_backed(stack.data_dir):
            shutil.rmtree(stack.data_dir, ignore_errors=True)


@contextlib.contextmanager
def started_stack(root: Path) -> Iterator[LocalStack]:
    """A broker and a database of their own, on free ports, logs under `root` and data in
    `scratch_data_dir`, killed on exit and their data removed (the tests' and the benchmarks'
    servers: their data is thrown away, so the database's closing checkpoint, seconds after
    half a million events, would buy nothing; `make run` stops its servers gracefully)."""
    data_dir = scratch_data_dir(root / "data")
    stack = LocalStack(
        data_dir=data_dir,
        log_dir=root / "logs",
        kafka_port=free_port(),
        mongo_port=free_port(),
        kafka_controller_port=free_port(),
    )
    with _running(stack):
        yield stack


@dataclass
class ClusterStack(LocalStack):
    """A stack whose broker is a cluster of KRaft nodes in the production topology
    (`CLUSTER_DURABILITY`): the fault suite kills one of them under load."""

    nodes: tuple[KafkaNode, ...] = ()
    cluster_id: str = field(default_factory=new_cluster_id)

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node_dir(self, node: KafkaNode) -> Path:
        return self.kafka_dir / f"node-{node.node_id}"

    def start_broker(self) -> None:
        for node in self.nodes:
            check_port_free(node.port, f"node {node.node_id}'s port")
            check_port_free(node.controller_port, f"node {node.node_id}'s controller port")
        # All at once: no node answers before a quorum of voters runs.
        started = [self._spawn_node(node) for node in self.nodes]
        for node, broker in zip(self.nodes, started, strict=True):
            self.wait_for_kafka(broker, node.port, node.address)

    def _spawn_node(self, node: KafkaNode) -> Process:
        node_dir = self.node_dir(node)
        properties = kafka_properties(
            node.port, node.controller_port, node_dir / "log", node.node_id, self.nodes
        )
        return self.spawn_kafka(f"kafka-{node.node_id}", node_dir, properties, self.cluster_id)

    def start_node(self, node: KafkaNode) -> Process:
        """A node (back) on its data, once it answers metadata."""
        broker = self._spawn_node(node)
        self.wait_for_kafka(broker, node.port, node.address)
        return broker

    def node_process(self, node: KafkaNode) -> Process:
        return self.process(f"kafka-{node.node_id}")

    def active_controller(self) -> KafkaNode:
        """The node the KRaft quorum elected leader, as a running node's quorum state on disk
        says (`__cluster_metadata-0/quorum-state`; every voter keeps it)."""
        running = {p.name for p in self.processes if p.popen.poll() is None}
        for node in self.nodes:
            if f"kafka-{node.node_id}" not in running:
                continue
            state_file = self.node_dir(node) / "log" / "__cluster_metadata-0" / "quorum-state"
            with contextlib.suppress(OSError, ValueError):
                leader = json.loads(state_file.read_text()).get("leaderId")
                for candidate in self.nodes:
                    if candidate.node_id == leader:
                        return candidate
        raise RuntimeError("no running node knows the quorum's leader")


@contextlib.contextmanager
def started_cluster(root: Path, size: int = 3) -> Iterator[ClusterStack]:
    """`started_stack` with a cluster of `size` KRaft nodes as its broker."""
    data_dir = scratch_data_dir(root / "data")
    nodes = tuple(KafkaNode(n, free_port(), free_port()) for n in range(1, size + 1))
    stack = ClusterStack(
        data_dir=data_dir,
        log_dir=root / "logs",
        kafka_port=nodes[0].port,
        mongo_port=free_port(),
        kafka_controller_port=nodes[0].controller_port,
        nodes=nodes,
    )
    with _running(stack):
        yield stack
