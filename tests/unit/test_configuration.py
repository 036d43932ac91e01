"""Configuration: every Kafka client takes the KAFKA_* settings, bad settings stop the start with a
message that says what to change, and no secret is committed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from tests.support import ROOT

PRODUCT_PACKAGES = ("contract", "producer", "scorer", "monitor")
CONFIG_BUILDERS = ("client_config(", "consumer_config(", "producer_config(", "reader_config(")


def client_constructions() -> list[tuple[str, int, str]]:
    """(file, line, source of the first argument) of every Consumer/Producer/AdminClient built by the product."""
    found = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            source = path.read_text()
            tree = ast.parse(source)
            assigned = {
                target.id: ast.get_source_segment(source, node.value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("Consumer", "Producer", "AdminClient")
                ):
                    assert node.args, (
                        f"{path.name}:{node.lineno} builds a client without a configuration"
                    )
                    argument = node.args[0]
                    text = ast.get_source_segment(source, argument)
                    if isinstance(
                        argument, ast.Name
                    ):  # config = client_config(...); AdminClient(config)
                        text = assigned.get(argument.id, text)
                    found.append((f"{package}/{path.name}", node.lineno, text))
    return found


def test_every_kafka_client_is_configured_from_the_kafka_env_vars():
    clients = client_constructions()
    assert len(clients) >= 10, clients  # the scan sees the services' clients, not nothing
    unconfigured = [c for c in clients if not any(builder in c[2] for builder in CONFIG_BUILDERS)]
    assert unconfigured == [], (
        "clients that would miss KAFKA_SECURITY_PROTOCOL, SASL and SSL settings"
    )


# -- bad configuration fails at start, saying what to change ---------------------------------------
def run_cli(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    # A broker address nothing listens on: every case must fail before it would be needed.
    environment = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "module, args, message",
    [
        (
            "producer",
            ["simulate", "--scenario", "carat-drift"],
            r"unknown scenario 'carat-drift': use one of none, scale:COL:FACTOR",
        ),
        (
            "producer",
            ["simulate", "--rate", "-5"],
            r"--rate must be >= 0 \(0 is as fast as possible\)",
        ),
        ("producer", ["simulate", "--bad-share", "2"], r"--bad-share must be between 0 and 1"),
        (
            "monitor",
            ["run", "--window", "100", "--step", "250"],
            r"--step \(250\) is longer than --window \(100\).*lower --step or raise --window",
        ),
        (
            "monitor",
            ["run", "--window", "1000", "--step", "300"],
            r"--window \(1000\) must be a multiple of --step \(300\)",
        ),
        (
            "monitor",
            ["run", "--window", "5m", "--step", "250"],
            r"must both be record counts or both durations",
        ),
        (
            "monitor",
            ["run", "--window", "ten"],
            r"--window must be a positive record count \(1000\) or a duration",
        ),
        (
            "monitor",
            ["run", "--label-ttl", "1000"],
            r"--label-ttl must be a duration with a unit \(30s, 5m, 1h\)",
        ),
        (
            "monitor",
            ["run", "--thresholds", "loose"],
            r"invalid choice: 'loose' \(choose from 'calibrated', 'fixed'\)",
        ),
        (
            "monitor",
            ["run", "--ert", "0"],
            r"--ert \(expected records between false alarms\) must be > 0",
        ),
        ("scorer", ["run", "--batch-size", "0"], r"--batch-size must be at least 1"),
        (
            "scorer",
            ["serve", "--max-batch", "0"],
            r"--max-body-bytes and --max-batch must be at least 1",
        ),
    ],
)
def test_bad_settings_fail_at_start_with_what_to_change(module, args, message, model_dir):
    result = run_cli(module, *args, MODEL_DIR=str(model_dir))
    assert result.returncode == 2, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "module, args",
    [("scorer", ["run"]), ("scorer", ["serve"]), ("monitor", ["run"]), ("producer", ["simulate"])],
)
def test_a_missing_model_says_how_to_make_one(module, args, tmp_path):
    result = run_cli(module, *args, MODEL_DIR=str(tmp_path / "nothing-here"))
    assert result.returncode == 2, result.stderr
    assert "python -m scorer train" in result.stderr and "MODEL_DIR" in result.stderr, result.stderr
    assert str(tmp_path / "nothing-here") in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    "module, args",
    [
        ("scorer", ["run"]),
        ("scorer", ["serve"]),
        ("monitor", ["run"]),
        ("producer", ["simulate"]),
        ("producer", ["publish", "-"]),
    ],
)
def test_a_bad_schema_stops_every_service_naming_the_file_and_key(
    module, args, tmp_path, model_dir
):
    for name in ("model.joblib", "reference.csv", "metadata.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    (tmp_path / "schema.yaml").write_text(
        (model_dir / "schema.yaml").read_text().replace("task: regression", "task: ranking")
    )
    result = run_cli(module, *args, MODEL_DIR=str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert (
        f"{tmp_path / 'schema.yaml'}: task: 'ranking' is not a task: use regression or classification"
        in result.stderr
    )
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
        result.stderr
    )


def test_monitor_help_names_every_topic_and_group_setting():
    result = run_cli("monitor", "run", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for variable in (
        "MONITOR_STATE_TOPIC",
        "MONITOR_DLQ_TOPIC",
        "PREDICTIONS_TOPIC",
        "LABELS_TOPIC",
        "MONITOR_GROUP",
    ):
        assert variable in text, variable


@pytest.mark.broker
@pytest.mark.parametrize(
    "module, args, flag",
    [
        ("scorer", ["run", "--metrics-host", "127.0.0.1", "--metrics-port"], "--metrics-port"),
        ("monitor", ["run", "--metrics-host", "127.0.0.1", "--metrics-port"], "--metrics-port"),
        (
            "producer",
            ["simulate", "--count", "1", "--metrics-host", "127.0.0.1", "--metrics-port"],
            "--metrics-port",
        ),
        ("scorer", ["serve", "--host", "127.0.0.1", "--port"], "--port"),
    ],
)
def test_a_port_in_use_stops_the_start_naming_the_port_and_the_flag(kafka, module, args, flag):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = kafka.run(module, *args, str(port), timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr[-2000:]
    assert f"port {port} on 127.0.0.1 is already in use: choose another with {flag}" in stderr, (
        stderr[-2000:]
    )
    assert "Traceback" not in stderr


@pytest.mark.broker
def test_consumer_only_kafka_settings_do_not_warn_in_producers(kafka):
    """KafkaEnv sets KAFKA_SESSION_TIMEOUT_MS (a consumer setting) for every process."""
    result = kafka.run("producer", "simulate", "--count", "10", "--rate", "0", "--label-delay", "0")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "CONFWARN" not in result.stderr.decode(), result.stderr.decode()[-2000:]


# -- secrets ---------------------------------------------------------------------------------------
SECRET_PATTERNS = {
    "Discord webhook with its token": re.compile(r"discord(app)?\.com/api/webhooks/\d+/[\w-]{20,}"),
    "AWS access key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password set in a URL": re.compile(r"://[^/\s:@]+:[^/\s:@$]{6,}@"),
}


def test_no_secret_is_committed():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "README.md" in files and "docker-compose.yml" in files
    leaks = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        leaks += [(name, what) for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert leaks == []


def test_the_secret_patterns_catch_what_they_are_for():
    # Built from pieces, so this file does not trip the scan above.
    samples = {
        "Discord webhook with its token": "https://discord.com/api/"
        + "webhooks/123456789/"
        + "a1_-" * 8,
        "AWS access key": "AK" + "IA" + "ABCDEFGHIJKLMNOP",
        "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
        "password set in a URL": "postgres://admin:" + "hunter22@db:5432/x",
    }
    assert {
        what: bool(SECRET_PATTERNS[what].search(text)) for what, text in samples.items()
    } == dict.fromkeys(samples, True)
    assert not SECRET_PATTERNS["password set in a URL"].search(
        "${DISCORD_WEBHOOK_URL:-http://webhook-sink:9095/x}"
    )


def test_the_image_never_holds_env_files_or_model_artifacts():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "*.env", ".git", "artifacts"} <= set(ignored)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.search(
        r"^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN|WEBHOOK)", dockerfile, re.M | re.I
    )
