"""docker-compose.yml, checked without Docker (no engine on these machines).

The Compose Specification JSON schema in compose_spec.json is vendored unchanged from the
PyPI package docker-compose 1.29.2 (file compose/config/compose_spec.json of its wheel;
Apache License 2.0, Copyright Docker, Inc.). It is the 2021 schema, so the compose file keeps
to keys it knows. Validated with jsonschema's Draft 2019-09 validator, as the schema declares.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft201909Validator

from tests.support import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).with_name("compose_spec.json")
# Long-running services with something to probe; the simulator is a plain client.
NEED_HEALTHCHECK = {
    "kafka",
    "scorer",
    "monitor",
    "webhook-sink",
    "prometheus",
    "alertmanager",
    "grafana",
}
ONE_SHOT = {"topics", "train", "grafana-password"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_compose_file_matches_the_compose_specification(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft201909Validator.check_schema(schema)
    validator = Draft201909Validator(schema, format_checker=Draft201909Validator.FORMAT_CHECKER)
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(compose)]
    assert errors == []


def test_schema_rejects_a_misspelt_key(compose):
    """The schema is strict enough to catch a typo (guards against validating nothing)."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["healthcheck"]["intervall"] = "1s"
    assert not Draft201909Validator(json.loads(SCHEMA_FILE.read_text())).is_valid(broken)


def test_product_services_are_all_there(services):
    assert set(services) >= NEED_HEALTHCHECK | ONE_SHOT | {"simulator"}


def test_depends_on_targets_exist_and_conditions_fit(services):
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target} to be healthy, but it has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, (
                    f"{name} waits for {target} to complete, but it is not a one-shot service"
                )
            else:
                assert condition == "service_started", f"{name} -> {target}: {condition}"


def test_every_image_is_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image name (services built locally still get a tagged one)"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: image {image} uses :latest"


def test_long_running_services_have_healthchecks(services):
    for name in NEED_HEALTHCHECK:
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name


def test_one_shot_services_do_not_restart(services):
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", name


def test_mounted_files_exist(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|WEBHOOK|API_KEY", re.IGNORECASE)
DISCORD_TOKEN_URL = re.compile(r"discord(app)?\.com/api/webhooks/\d+/[\w-]+")


def test_no_committed_secrets(services):
    for name, service in services.items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment as a mapping, please"
        for key, value in environment.items():
            if SECRET_KEY.search(key) and not key.endswith("__FILE"):
                assert isinstance(value, str) and value.startswith("${"), (
                    f"{name}: {key} is set literally: {value!r}"
                )
    assert "GF_SECURITY_ADMIN_PASSWORD" not in (services["grafana"].get("environment") or {})
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith(
        "/run/grafana-secrets/"
    )
    for path in [
        COMPOSE_FILE,
        ROOT / "prometheus.yml",
        *ROOT.glob("alertmanager/**/*"),
        *ROOT.glob("grafana/**/*"),
    ]:
        if path.is_file():
            assert not DISCORD_TOKEN_URL.search(path.read_text()), (
                f"{path} holds a Discord webhook URL with its token"
            )


def test_discord_defaults_point_at_the_webhook_sink(services):
    grafana_url = services["grafana"]["environment"]["DISCORD_WEBHOOK_URL"]
    assert grafana_url == "${DISCORD_WEBHOOK_URL:-http://webhook-sink:9095/grafana}"
    assert services["webhook-sink"]["command"][-2:] == ["--port", "9095"]
    am = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    urls = [d["webhook_url"] for r in am["receivers"] for d in r.get("discord_configs", [])]
    script = services["alertmanager"]["entrypoint"][-1]
    assert urls and all(f"placeholder='{url}'" in script for url in urls)


def _render_alertmanager_config(services, tmp_path: Path, discord_url: str | None) -> Path:
    """Run the alertmanager service's entrypoint here, with paths moved into tmp_path and
    `amtool check-config` in place of the server."""
    script = services["alertmanager"]["entrypoint"][-1].replace("$$", "$")  # compose's escape
    source, rendered = tmp_path / "src", tmp_path / "rendered"
    shutil.copytree(ROOT / "alertmanager", source)
    script = script.replace("/etc/alertmanager-src", str(source)).replace(
        "/tmp/alertmanager", str(rendered)
    )
    script = re.sub(
        r"exec /bin/alertmanager .*",
        f'exec amtool check-config "{rendered}/alertmanager.yml"',
        script,
    )
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}
    if discord_url is not None:
        env["DISCORD_WEBHOOK_URL"] = discord_url
    if shutil.which("amtool") is None:
        pytest.fail("amtool not found: run `bash scripts/install-observability.sh` (as root)")
    result = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return rendered / "alertmanager.yml"


def test_alertmanager_entrypoint_keeps_the_sink_without_discord_url(services, tmp_path):
    rendered = _render_alertmanager_config(services, tmp_path, None)
    assert (ROOT / "alertmanager" / "alertmanager.yml").read_text() == rendered.read_text()


def test_alertmanager_entrypoint_substitutes_discord_url(services, tmp_path):
    url = "https://discord.com/api/webhooks/123/abc-DEF_ghi?wait=true&thread_id=7"
    rendered = _render_alertmanager_config(services, tmp_path, url)
    config = yaml.safe_load(rendered.read_text())
    assert [d["webhook_url"] for r in config["receivers"] for d in r["discord_configs"]] == [url]


def test_dockerfile_builds_the_app_image():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install -r requirements.txt" in dockerfile
    for package in ("contract", "producer", "scorer", "monitor", "devstack"):
        assert f"COPY {package} ./{package}" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and ".git" in ignored


def test_inline_shell_scripts_parse(services):
    """`sh -c` / `bash -c` scripts in entrypoints and commands are valid shell (`-n`: parse only)."""
    checked = 0
    for name, service in services.items():
        for key in ("entrypoint", "command"):
            words = service.get(key)
            if isinstance(words, list) and len(words) == 3 and words[1] == "-c":
                shell = Path(words[0]).name
                script = words[2].replace("$$", "$")  # compose's escape for a literal $
                result = subprocess.run(
                    [shell, "-n", "-c", script], capture_output=True, text=True, timeout=30
                )
                assert result.returncode == 0, f"{name} {key}: {result.stderr}"
                checked += 1
    assert checked >= 5
