"""A real Prometheus (Debian's `prometheus` package) scraping the local services, with the
project's recording and alert rules: for `make run PROMETHEUS=1` and the tests.

The config is written as JSON (a subset of YAML, so Prometheus reads it) next to copies of the
rule files, so the ports actually used are scraped without editing the checked-in config."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from deploy.local.stack import REPO, LocalStack, Process, check_port_free, wait_for_port

RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
RULE_FILES = ("recording.yml", "alerts.yml")
_FOR = re.compile(r"^(\s+for:\s*)\S+\s*$", re.MULTILINE)


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeError(
            "prometheus is not installed: `make install` installs Debian's prometheus package"
        )
    return found


def shorten_for(rules: str, duration: str) -> str:
    """The same rules with every alert's `for:` set to `duration` (tests cannot wait an hour;
    the expressions stay exactly the shipped ones)."""
    return _FOR.sub(lambda m: f"{m.group(1)}{duration}", rules)


def write_config(
    directory: Path,
    targets: Mapping[str, int],
    interval: str = "15s",
    alert_for: str | None = None,
) -> Path:
    """prometheus.yml scraping each service (job = service name) at 127.0.0.1:port."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in RULE_FILES:
        text = (RULES_DIR / name).read_text("utf-8")
        (directory / name).write_text(shorten_for(text, alert_for) if alert_for else text, "utf-8")
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
            "external_labels": {"product": "campaign-tracker"},
        },
        "rule_files": [str(directory / name) for name in RULE_FILES],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2), "utf-8")
    return path


def start_prometheus(stack: LocalStack, config: Path, port: int, data_dir: Path) -> Process:
    check_port_free(port, "PROMETHEUS_PORT")
    data_dir.mkdir(parents=True, exist_ok=True)
    process = stack.spawn(
        "prometheus",
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=15d",
            "--log.level=warn",
        ],
    )
    wait_for_port(port, 30, process.popen)
    return process
