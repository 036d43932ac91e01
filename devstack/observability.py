"""Run real Prometheus and Alertmanager as local processes (no Docker here), for tests and demos.

Both binaries come from Debian (`scripts/install-observability.sh`). Configs are generated
from the project's own files, so what runs here is what the compose stack runs:

- `alertmanager_config` takes alertmanager/alertmanager.yml and points its Discord receiver
  at a given URL (a local webhook sink), with optional faster grouping timings;
- `alert_rules` takes prometheus/alerts.yml and may shorten the `for` durations, keeping
  every expression, label and annotation as written;
- `start_prometheus` / `start_alertmanager` launch the binaries on free loopback ports and
  wait until they report ready; `Process.stop()` ends them.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.broker import free_port, terminate

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
ALERT_RULES = ROOT / "prometheus" / "alerts.yml"
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_TEMPLATES = ROOT / "alertmanager" / "templates"
INSTALL_HINT = (
    "run `bash scripts/install-observability.sh` (as root) to install Prometheus and Alertmanager"
)


def binary(name: str) -> str:
    """Absolute path of a Prometheus/Alertmanager tool, or a RuntimeError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH: {INSTALL_HINT}")
    return path


@dataclass
class Process:
    """A started Prometheus or Alertmanager: its HTTP base URL and process."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.process, timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


DRIFT_ALERTS = frozenset(
    {
        "FeatureDataDrift",
        "ConceptDrift",
        "ConceptErrorDrift",
        "PredictionDrift",
        "EstimatedPerformanceDrop",
    }
)


def alert_rules(
    for_: str | None = None, source: Path = ALERT_RULES, only: frozenset[str] | None = None
) -> dict[str, Any]:
    """The rule groups of alerts.yml; with `for_`, the `for` of every rule (or of the alerts named in
    `only`) replaced by it (e.g. "0s"), every expression, label and annotation kept."""
    rules = yaml.safe_load(source.read_text())
    if for_ is not None:
        for group in rules["groups"]:
            for rule in group["rules"]:
                if only is None or rule.get("alert") in only:
                    rule["for"] = for_
    return rules


def alertmanager_config(
    webhook_url: str,
    group_wait: str | None = None,
    group_interval: str | None = None,
    repeat_interval: str | None = None,
    source: Path = ALERTMANAGER_CONFIG,
    templates: Path = ALERTMANAGER_TEMPLATES,
) -> dict[str, Any]:
    """alertmanager.yml with every Discord receiver sent to `webhook_url` and the given timings."""
    config = yaml.safe_load(source.read_text())
    for receiver in config["receivers"]:
        for discord in receiver.get("discord_configs", []):
            discord["webhook_url"] = webhook_url
    for key, value in (
        ("group_wait", group_wait),
        ("group_interval", group_interval),
        ("repeat_interval", repeat_interval),
    ):
        if value is not None:
            config["route"][key] = value
    config["templates"] = [str(templates / "*.tmpl")]
    return config


def prometheus_config(
    targets: Mapping[str, list[str]],
    rule_file: Path,
    alertmanager: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> dict[str, Any]:
    """A Prometheus config scraping `targets` ({job: ["host:port", ...]}) and alerting `alertmanager`."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(rule_file)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
        ],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def _launch(name: str, command: list[str], url: str, workdir: Path, timeout: float) -> Process:
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    started = Process(name, url, process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{started.log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    log.info("%s ready at %s", name, url)
                    return started
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            started.stop()
            raise TimeoutError(
                f"{name} not ready at {url} after {timeout} s:\n{started.log_tail()}"
            )
        time.sleep(0.1)


def start_alertmanager(
    config: Mapping[str, Any], workdir: Path, port: int | None = None, timeout: float = 30.0
) -> Process:
    """Alertmanager on 127.0.0.1 with `config`, state in `workdir`; no gossip cluster."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    command = [
        binary("prometheus-alertmanager"),
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return _launch("alertmanager", command, f"http://127.0.0.1:{port}", workdir, timeout)


def start_prometheus(
    targets: Mapping[str, list[str]],
    workdir: Path,
    rules: Mapping[str, Any] | None = None,
    alertmanager: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    port: int | None = None,
    timeout: float = 30.0,
) -> Process:
    """Prometheus on 127.0.0.1 scraping `targets` with `rules` (default: alerts.yml as written)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    rule_file = workdir / "alerts.yml"
    rule_file.write_text(
        yaml.safe_dump(dict(rules if rules is not None else alert_rules()), sort_keys=False)
    )
    config_path = workdir / "prometheus.yml"
    config_path.write_text(
        yaml.safe_dump(
            prometheus_config(
                targets, rule_file, alertmanager, scrape_interval, evaluation_interval
            ),
            sort_keys=False,
        )
    )
    command = [
        binary("prometheus"),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return _launch("prometheus", command, f"http://127.0.0.1:{port}", workdir, timeout)


def query(prometheus_url: str, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Instant query: the result vector, `[{"metric": {...}, "value": [t, "v"]}, ...]`."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        payload = json.load(response)
    if payload.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {payload}")
    return payload["data"]["result"]
