"""The compose files and the Dockerfile, checked without Docker: valid against the Compose
specification's JSON schema, and coherent with the code they run (commands, settings, ports,
health checks, mounts, the Prometheus, Grafana, gateway and MongoDB set-up files)."""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

from deploy.compose import files, healthcheck, image
from deploy.local.stack import CLUSTER_DURABILITY, KafkaNode, kafka_properties, kafka_version
from shared.settings import Settings

REPO = files.REPO
SCHEMA = json.loads((REPO / "tests/fixtures/compose-spec/compose-spec.json").read_text())
COMPOSE = {"production": files.PRODUCTION, "development": files.DEVELOPMENT}
# The environment each file is checked with: production's documented example `.env`;
# the laptop file needs none.
ENVIRONMENTS = {"production": files.read_env_file(), "development": {}}
ROLES = healthcheck.SERVICES  # the long-running project services, by compose name too


def compose(which: str) -> dict[str, Any]:
    return files.load(COMPOSE[which], ENVIRONMENTS[which])


def services(which: str) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose(which)["services"]
    return result


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as a service with this environment gets them (and nothing of this process's)."""
    fields = {
        key.lower(): value for key, value in env.items() if key.lower() in Settings.model_fields
    }
    return Settings.model_validate(fields)


def settings_env_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def variables_code_reads() -> set[str]:
    """Environment variables the services' code reads directly (not through Settings): every
    `os.environ.get(X)`, `os.environ[X]`, `os.getenv(X)` in the packages the image holds, with
    X a string or a module constant naming one."""
    names: set[str] = set()
    sources = [*REPO.glob("shared/**/*.py"), *REPO.glob("services/**/*.py")]
    sources.append(REPO / "deploy/compose/healthcheck.py")
    for path in sources:
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            argument: ast.expr | None = None
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "os.environ.get",
                "os.getenv",
            ):
                argument = node.args[0] if node.args else None
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                argument = node.slice
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                names.add(argument.value)
            elif isinstance(argument, ast.Name) and argument.id in constants:
                names.add(constants[argument.id])
    return names


# -- the specification ---------------------------------------------------------------------


@pytest.mark.parametrize("which", COMPOSE)
def test_valid_against_the_compose_specification(which: str) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for document in (files.load_raw(COMPOSE[which]), compose(which)):
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, "\n".join(errors)


def test_the_schema_catches_a_mistake() -> None:
    broken = compose("production")
    broken["services"]["api"]["helthcheck"] = {"test": ["CMD", "true"]}
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(broken)


def test_production_refuses_to_start_without_its_secrets() -> None:
    variables = files.variables(files.PRODUCTION)
    required = {name for name, op in variables.items() if op in (":?", "?")}
    assert {"ADMIN_TOKEN", "MONGO_APP_PASSWORD", "MONGO_ROOT_PASSWORD"} <= required
    with pytest.raises(files.MissingVariable):
        files.load(files.PRODUCTION, {})
    # Every variable is in the example `.env` that docs/operations/deployment.md tells the
    # operator to copy, and the example names nothing the file does not use.
    assert set(variables) == set(files.read_env_file())
    # The laptop file starts with nothing set.
    assert not {op for op in files.variables(files.DEVELOPMENT).values() if op in (":?", "?")}


# -- what the services run -------------------------------------------------------------------


def module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], f"not `python -m MODULE`: {command}"
    return command[2]


def assert_module_in_image(module: str) -> None:
    """The module exists in the repository, inside a package the Dockerfile copies."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"no module {module}"
    relative = Path(spec.origin).resolve().relative_to(REPO).as_posix()
    copied = [
        word
        for copy in image.build_stage(image.load()).all("COPY")
        for word in copy.arguments.split()[:-1]
    ]
    assert any(
        relative == source or relative.startswith(source.rstrip("/") + "/") for source in copied
    ), f"{relative} is not copied into the image"


@pytest.mark.parametrize("which", COMPOSE)
def test_every_command_exists_in_the_project(which: str) -> None:
    project = files.project_services(compose(which))
    assert set(ROLES) | {"init"} <= set(project)
    for name, service in project.items():
        command = [str(word) for word in service["command"]]
        assert_module_in_image(module_of(command))
        if name in ROLES:
            assert command == ["python", "-m", f"services.{name}"]
        check = files.healthcheck_command(service)
        if name in ROLES:
            assert check == ["python", "-m", "deploy.compose.healthcheck", name]
            assert_module_in_image(module_of(check))
    # `init` is a sub-command the admin CLI knows.
    assert cli_accepts(tuple(str(word) for word in project["init"]["command"][2:]))


@functools.cache
def cli_accepts(module_and_arguments: tuple[str, ...]) -> bool:
    result = subprocess.run(
        [sys.executable, "-m", *module_and_arguments, "--help"], capture_output=True, check=False
    )
    return result.returncode == 0


def test_the_image_runs_what_exists() -> None:
    runtime = image.load()[-1]
    assert_module_in_image(module_of(image.exec_form(runtime.last("CMD").arguments)))
    assert_module_in_image(module_of(image.healthcheck_command(runtime)))


@pytest.mark.parametrize("which", COMPOSE)
def test_every_variable_a_service_gets_is_read_and_the_needed_ones_are_set(which: str) -> None:
    known = settings_env_names() | variables_code_reads()
    # Settings whose default only works on the developer's machine (loopback addresses).
    needed = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "127.0.0.1" in str(field.default)
    }
    assert {"KAFKA_BOOTSTRAP", "MONGODB_URI"} <= needed
    for name, service in files.project_services(compose(which)).items():
        env = files.environment(service)
        unknown = sorted(set(env) - known)
        assert not unknown, f"{which} {name}: nothing reads {unknown}"
        assert needed <= set(env), f"{which} {name}: {sorted(needed - set(env))} unset"
        assert env.get("ADMIN_TOKEN") or env.get("ADMIN_TOKEN_FILE"), f"{name}: no admin token"
        # The values are valid settings (types, ranges, the security combinations).
        settings_from(env)


@pytest.mark.parametrize("which", COMPOSE)
def test_the_compose_brokers_run_the_kafka_version_the_local_broker_runs(which: str) -> None:
    """What `make run` and the tests run (deploy/local/kafka/pom.xml) is what ships."""
    images = {
        name: str(s["image"])
        for name, s in services(which).items()
        if str(s.get("image", "")).startswith("apache/kafka:")
    }
    assert images
    assert set(images.values()) == {f"apache/kafka:{kafka_version()}"}, images


def broker_properties(service: dict[str, Any]) -> dict[str, str]:
    """The server properties the apache/kafka image makes of a service's KAFKA_* variables
    (KAFKA_MIN_INSYNC_REPLICAS is min.insync.replicas)."""
    env = service.get("environment") or {}
    return {
        key[len("KAFKA_") :].lower().replace("_", "."): str(value)
        for key, value in env.items()
        if key.startswith("KAFKA_") and key not in ("KAFKA_HEAP_OPTS", "KAFKA_NODE_ID")
    }


def test_production_brokers_have_the_three_node_tests_kraft_settings(tmp_path: Path) -> None:
    """The cluster the fault suite kills a node of (tests/faults/test_cluster.py) is the
    production topology: the same roles, listeners' names, quorum size and durability."""
    nodes = tuple(KafkaNode(n, 9092, 9093) for n in (1, 2, 3))
    local = dict(
        line.split("=", 1) for line in kafka_properties(9092, 9093, tmp_path, 1, nodes).splitlines()
    )
    brokers = {
        name: broker_properties(s)
        for name, s in services("production").items()
        if str(s.get("image", "")).startswith("apache/kafka:")
    }
    assert len(brokers) == len(nodes)
    compared = [
        "process.roles",
        "controller.listener.names",
        "inter.broker.listener.name",
        "listener.security.protocol.map",
        "auto.create.topics.enable",
        *CLUSTER_DURABILITY,
    ]
    for name, production in brokers.items():
        assert {key: production.get(key) for key in compared} == {
            key: local[key] for key in compared
        }, name
        voters = production["controller.quorum.voters"].split(",")
        assert [v.split("@")[0] for v in voters] == [
            v.split("@")[0] for v in local["controller.quorum.voters"].split(",")
        ], name


@pytest.mark.parametrize("which", COMPOSE)
def test_brokers_and_database_are_the_ones_in_the_file(which: str) -> None:
    all_services = services(which)
    env = files.environment(files.project_services(compose(which))["api"])
    kafka = {
        name: files.environment(s)
        for name, s in all_services.items()
        if str(s.get("image", "")).startswith("apache/kafka:")
    }
    for server in env["KAFKA_BOOTSTRAP"].split(","):
        host, _, port = server.partition(":")
        assert host in kafka, f"{server} is no Kafka service"
        assert f"PLAINTEXT://{host}:{port}" in kafka[host]["KAFKA_ADVERTISED_LISTENERS"]
    voters = {env_["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env_ in kafka.values()}
    assert len(voters) == 1, "every broker must name the same controller quorum"
    node_ids = {env_["KAFKA_NODE_ID"] for env_ in kafka.values()}
    assert len(node_ids) == len(kafka)
    assert {v.split("@")[1].split(":")[0] for v in voters.pop().split(",")} == set(kafka)
    replication = int(env["KAFKA_REPLICATION_FACTOR"])
    assert replication <= len(kafka)
    if len(kafka) >= 3:
        # acks=all must survive one broker down: fewer in-sync replicas needed than copies.
        assert replication == 3 and int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        for env_ in kafka.values():
            assert env_["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
            assert env_["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
            assert env_["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"

    uri = urlsplit(env["MONGODB_URI"])
    replica_set = parse_qs(uri.query)["replicaSet"][0]
    members = [host.split(":")[0] for host in uri.netloc.split("@")[-1].split(",")]
    for member in members:
        command = [str(word) for word in all_services[member]["command"]]
        assert command[command.index("--replSet") + 1] == replica_set
    # The replica set is initiated with exactly these members, and the services' user is the
    # one the initiation creates.
    init_env = files.environment(all_services["mongo-init"])
    assert init_env["RS_NAME"] == replica_set
    assert [h.split(":")[0] for h in init_env["RS_MEMBERS"].split(",")] == members
    assert all_services["mongo-init"]["network_mode"] == f"service:{members[0]}"
    if "MONGODB_USERNAME" in env:
        assert init_env["MONGO_APP_USERNAME"] == env["MONGODB_USERNAME"]
        assert init_env["MONGO_APP_PASSWORD"] == env["MONGODB_PASSWORD"]
        assert init_env["MONGO_APP_DB"] == env["MONGODB_DB"]
        for member in members:
            assert "--keyFile" in [str(w) for w in all_services[member]["command"]]


def test_the_aggregator_scales_within_the_partitions() -> None:
    aggregator = services("production")["aggregator"]
    replicas = int(aggregator["deploy"]["replicas"])
    partitions = int(files.environment(aggregator)["EVENT_PARTITIONS"])
    assert 1 < replicas <= partitions
    assert not aggregator.get("ports"), "a published port would stop `--scale`"
    assert "container_name" not in aggregator


# -- ports, health checks, stopping -------------------------------------------------------------


def uvicorn_drain_s(settings: Settings) -> float:
    """The drain of a service run with `settings` (its compose environment's)."""
    source = (REPO / "shared/adapters/serve.py").read_text()
    assert "timeout_graceful_shutdown=settings.graceful_stop_s" in source, (
        "serve.py no longer sets uvicorn's graceful-shutdown timeout"
    )
    return float(settings.graceful_stop_s)


@pytest.mark.parametrize("which", COMPOSE)
def test_ports_and_health_checks_are_coherent(which: str) -> None:
    all_services = services(which)
    for name, service in files.project_services(compose(which)).items():
        env = files.environment(service)
        settings = settings_from(env)
        grace = files.duration_s(str(service["stop_grace_period"]))
        assert grace > uvicorn_drain_s(settings), f"{name}: stopped before it drained"
        assert str(service.get("stop_signal", "SIGTERM")) == "SIGTERM"
        if name not in ROLES:
            assert service["restart"] == "no", f"{name} is a one-shot job"
            continue
        port = healthcheck.port_of(name, settings)
        assert files.container_ports(service) == {port}, f"{name} listens on {port}"
        assert service["restart"] == "unless-stopped"
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    published: list[str] = []
    for name, service in all_services.items():
        published += files.host_ports(service)
        long_running = service.get("restart", "no") != "no"
        has_check = files.healthcheck_command(service) is not None
        assert has_check or not long_running or "profiles" in service, f"{name}: no health check"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            target = all_services[dependency]
            if condition == "service_healthy":
                assert files.healthcheck_command(target), f"{dependency} has no health check"
            if condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} never completes"
        for source, _ in files.bind_mounts(service):
            assert (REPO / source).exists(), f"{name} mounts missing {source}"
    assert len(published) == len(set(published)), f"a host port is published twice: {published}"


def test_production_publishes_only_the_gateway_and_a_loopback_prometheus() -> None:
    published = {n: files.host_ports(s) for n, s in services("production").items()}
    assert {n for n, ports in published.items() if ports} == {"gateway", "prometheus"}
    assert all(p.startswith("127.0.0.1:") for p in published["prometheus"])


def test_the_gateway_routes_to_the_services_ports() -> None:
    all_services = services("production")
    config = (REPO / "deploy/compose/nginx/gateway.conf").read_text()
    gateway = all_services["gateway"]
    assert files.bind_mounts(gateway)[0][1] == "/etc/nginx/conf.d/default.conf"
    listen = re.search(r"listen (\d+);", config)
    assert listen and files.container_ports(gateway) == {int(listen[1])}
    check = files.healthcheck_command(gateway)
    assert check and f"127.0.0.1:{listen[1]}/gateway/healthz" in check[-1]
    upstreams = dict(re.findall(r"set \$(\w+) http://([\w.-]+:\d+);", config))
    assert set(upstreams) == {"api", "ingest", "grafana"}
    for upstream in upstreams.values():
        host, _, port = upstream.partition(":")
        assert int(port) in service_ports(all_services, host), upstream
    assert re.search(r"location = /v1/events \{\s*proxy_pass \$ingest;", config)
    assert re.search(r"location = /v1/stream \{[^}]*proxy_buffering off;", config)
    grafana_env = files.environment(all_services["grafana"])
    assert grafana_env["GF_SERVER_ROOT_URL"].endswith("/grafana/")
    assert grafana_env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"


def service_ports(all_services: dict[str, dict[str, Any]], name: str) -> set[int]:
    """Where a service listens: its settings for the project's, its health check's URL (or
    Prometheus' listen address) for the others."""
    service = all_services[name]
    if name in ROLES:
        env = files.environment(service)
        return {int(env[f"{name.upper()}_PORT"])}
    ports = files.container_ports(service)
    check = " ".join(files.healthcheck_command(service) or [])
    ports |= {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)/", check)}
    for word in service.get("command") or []:
        if str(word).startswith("--web.listen-address=:"):
            ports.add(int(str(word).rsplit(":", 1)[1]))
    return ports


# -- Prometheus and Grafana --------------------------------------------------------------------


def mounted(service: dict[str, Any], source: str) -> str:
    return next(target for src, target in files.bind_mounts(service) if src == source)


@pytest.mark.parametrize("which", COMPOSE)
def test_prometheus_scrapes_every_service_with_the_project_rules(
    which: str, tmp_path: Path
) -> None:
    all_services = services(which)
    prometheus = all_services["prometheus"]
    config_path = REPO / "deploy/compose/prometheus/prometheus.yml"
    assert mounted(prometheus, "./deploy/compose/prometheus/prometheus.yml") == (
        "/etc/prometheus/prometheus.yml"
    )
    assert mounted(prometheus, "./deploy/prometheus/rules") == "/etc/prometheus/rules"
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == ["rules/recording.yml", "rules/alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(ROLES), "the alert rules expect the jobs ingest, api, aggregator"
    for role, job in jobs.items():
        targets = [t for group in job.get("static_configs", []) for t in group["targets"]]
        targets += [f"{n}:{d['port']}" for d in job.get("dns_sd_configs", []) for n in d["names"]]
        assert targets == [f"{role}:{next(iter(service_ports(all_services, role)))}"]
    # The aggregator's replicas are each scraped, not one at random behind the service name.
    assert "dns_sd_configs" in jobs["aggregator"]
    if shutil.which("promtool") is None:
        pytest.skip("promtool is missing (make install puts it there)")
    (tmp_path / "prometheus.yml").write_text(config_path.read_text())
    shutil.copytree(REPO / "deploy/prometheus/rules", tmp_path / "rules")
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("which", COMPOSE)
def test_grafana_gets_the_project_dashboards_and_prometheus(which: str) -> None:
    all_services = services(which)
    grafana = all_services["grafana"]
    provisioning = REPO / "deploy/compose/grafana/provisioning"
    assert mounted(grafana, "./deploy/compose/grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_target = mounted(grafana, "./deploy/grafana")
    (provider,) = yaml.safe_load((provisioning / "dashboards/campaign-tracker.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == dashboards_target
    home = files.environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_target + "/")
    dashboard = REPO / "deploy/grafana" / home.removeprefix(dashboards_target + "/")
    assert json.loads(dashboard.read_text())["panels"]
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert url.hostname in all_services and url.port in service_ports(all_services, "prometheus")


def test_the_replica_set_script_is_valid_javascript() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is missing")
    script = REPO / "deploy/compose/mongo/rs-init.js"
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("RS_NAME", "RS_MEMBERS", "MONGO_ROOT_USERNAME", "MONGO_APP_PASSWORD"):
        assert f"env.{name}" in script.read_text()


# -- the Dockerfile ------------------------------------------------------------------------------


def test_the_dockerfile_is_pinned_slim_non_root_and_stops_gracefully() -> None:
    all_stages = image.load()
    runtime = all_stages[-1]
    pyproject = (REPO / "pyproject.toml").read_text()
    python = re.search(r'requires-python = ">=(\d+\.\d+)', pyproject)
    assert python is not None
    for stage in all_stages:
        # An exact Python release on Debian's slim variant: no `latest`, no floating minor.
        assert re.fullmatch(rf"python:{re.escape(python[1])}\.\d+-slim-\w+", stage.base), stage.base
    user = runtime.last("USER").arguments.split(":")[0]
    assert user.isdigit() and int(user) >= 1000, "the runtime runs as root"
    assert runtime.last("STOPSIGNAL").arguments == "SIGTERM"
    assert runtime.last("HEALTHCHECK")
    assert image.exec_form(runtime.last("CMD").arguments)  # exec form: python gets SIGTERM
    build = image.build_stage(all_stages)
    (install,) = [r.arguments for r in build.all("RUN") if "pip install" in r.arguments]
    assert "--constraint deploy/compose/constraints.txt" in install
    assert "--no-cache-dir" in install
    # The runtime stage takes only the virtual environment from the build stage.
    copies = runtime.all("COPY")
    assert [c.arguments for c in copies] == [f"--from={build.name} /opt/venv /opt/venv"]
    env = image.environment(runtime, Path("/"), {"PATH": "/usr/bin"})
    assert env["BIND_HOST"] == "0.0.0.0" and env["PATH"].startswith("/opt/venv/bin:")


def dockerignore_admits(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for the allowlist: the last pattern matching the path or one of
    its parents decides."""
    admitted = True
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if Path(candidate).match(bare) or candidate == bare:
                admitted = negated
    return admitted


def test_the_build_context_holds_what_the_image_copies_and_no_secret() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in image.build_stage(image.load()).all("COPY"):
        for source in copy.arguments.split()[:-1]:
            assert (REPO / source).exists(), source
            assert dockerignore_admits(source, patterns), f"{source} is not in the context"
    for secret in (".env", ".local/venv", "tests/artifacts", ".git"):
        assert not dockerignore_admits(secret, patterns), f"{secret} would be sent to Docker"


def test_the_constraints_pin_the_runtime_dependencies() -> None:
    pins = image.pinned(image.CONSTRAINTS.read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.DOTALL | re.MULTILINE)
    assert block is not None
    for requirement in re.findall(r'"([^"]+)"', block[1]):
        name, _, version = requirement.partition("==")
        assert pins.get(image.canonical(name.split("[")[0])) == version, requirement
