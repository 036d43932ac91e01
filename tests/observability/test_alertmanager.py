"""alertmanager/alertmanager.yml and its Discord template, checked by amtool."""

from __future__ import annotations

import json

import yaml

from tests.observability._tools import run_tool
from tests.support import ROOT

CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
TEMPLATES = str(ROOT / "alertmanager" / "templates" / "*.tmpl")


def test_amtool_check_config():
    result = run_tool("amtool", "check-config", str(CONFIG))
    assert "SUCCESS" in result.stdout


def test_route_groups_by_model_and_feature_and_discord_sends_resolved():
    config = yaml.safe_load(CONFIG.read_text())
    # Several models on one Prometheus: one notification per alert, model and feature.
    assert config["route"]["group_by"] == ["alertname", "model", "feature"]
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    discord = receivers[config["route"]["receiver"]]["discord_configs"]
    assert discord and all(d["send_resolved"] is True for d in discord)
    assert all("webhook_url_file" not in d for d in discord)  # Alertmanager 0.27+ only


def render(text: str, data: dict, tmp_path) -> str:
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    return run_tool(
        "amtool",
        "template",
        "render",
        f"--template.glob={TEMPLATES}",
        f"--template.text={text}",
        f"--template.data={data_file}",
    ).stdout


def drift_alert(status: str, model: str = "diamonds", statistic: str = "0.31") -> dict:
    labels = {
        "alertname": "FeatureDataDrift",
        "model": model,
        "feature": "carat",
        "severity": "warning",
        "kind": "data-drift",
        "variant": "calibrated",
        "instance": "monitor:8000",
        "job": "monitor",
    }
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": f"[{model}] Data drift on feature carat",
            "description": f"Feature carat drifted: ks statistic {statistic} above threshold 0.0451 (p-value 0.0001) "
            f"over a window of 1000 records of model {model}.",
        },
        "startsAt": "2026-01-02T03:04:05Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "0123456789abcdef",
    }


def group_data(status: str, alerts: list[dict]) -> dict:
    """Alertmanager's data for one notification: the group's alerts, their common labels."""
    common = {
        k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)
    }
    group = {k: common[k] for k in ("alertname", "model", "feature") if k in common}
    return {
        "receiver": "discord",
        "status": status,
        "alerts": alerts,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": alerts[0]["annotations"] if len(alerts) == 1 else {},
        "externalURL": "http://alertmanager:9093",
    }


def alert_data(status: str, model: str = "diamonds") -> dict:
    return group_data(status, [drift_alert(status, model)])


def test_discord_template_names_model_feature_statistic_threshold_and_window(tmp_path):
    title = render('{{ template "drift.discord.title" . }}', alert_data("firing"), tmp_path)
    assert title.strip() == "[FIRING:1] diamonds: FeatureDataDrift on carat"
    message = render('{{ template "drift.discord.message" . }}', alert_data("firing"), tmp_path)
    assert message.strip().splitlines() == [
        "🔴 **[diamonds] Data drift on feature carat** (calibrated)",
        "Feature carat drifted: ks statistic 0.31 above threshold 0.0451 (p-value 0.0001) "
        "over a window of 1000 records of model diamonds.",
        "model: `diamonds` | feature: `carat` | severity: warning | since 2026-01-02 03:04:05 UTC",
    ]


def test_two_models_drifting_on_one_feature_name_are_told_apart(tmp_path):
    # Grouped by model, each model's drift is its own notification whose title names it.
    for model in ("diamonds", "jewels"):
        title = render(
            '{{ template "drift.discord.title" . }}', alert_data("firing", model), tmp_path
        )
        assert title.strip() == f"[FIRING:1] {model}: FeatureDataDrift on carat"
    # Were they ever in one notification (a route without model in group_by), each line still says whose it is.
    both = group_data(
        "firing", [drift_alert("firing", "diamonds"), drift_alert("firing", "jewels", "0.12")]
    )
    assert (
        render('{{ template "drift.discord.title" . }}', both, tmp_path).strip()
        == "[FIRING:2] FeatureDataDrift on carat"
    )
    lines = render('{{ template "drift.discord.message" . }}', both, tmp_path).strip().splitlines()
    assert lines[0] == "🔴 **[diamonds] Data drift on feature carat** (calibrated)"
    assert lines[3] == "🔴 **[jewels] Data drift on feature carat** (calibrated)"
    assert "ks statistic 0.12" in lines[4] and lines[4].endswith("of model jewels.")
    assert lines[5].startswith("model: `jewels` | feature: `carat`")


def test_discord_template_alert_without_model_or_feature(tmp_path):
    # The scorer's pipeline alerts carry neither label: no empty "model:" or "on" appears.
    labels = {
        "alertname": "ScorerDown",
        "severity": "critical",
        "kind": "pipeline",
        "instance": "scorer:8001",
        "job": "scorer",
    }
    alert = {
        **drift_alert("firing"),
        "labels": labels,
        "annotations": {
            "summary": "Scorer scorer:8001 is down",
            "description": "Prometheus cannot scrape the scorer.",
        },
    }
    data = group_data("firing", [alert])
    assert (
        render('{{ template "drift.discord.title" . }}', data, tmp_path).strip()
        == "[FIRING:1] ScorerDown"
    )
    assert render(
        '{{ template "drift.discord.message" . }}', data, tmp_path
    ).strip().splitlines() == [
        "🔴 **Scorer scorer:8001 is down**",
        "Prometheus cannot scrape the scorer.",
        "severity: critical | since 2026-01-02 03:04:05 UTC",
    ]


def test_discord_template_resolved(tmp_path):
    title = render('{{ template "drift.discord.title" . }}', alert_data("resolved"), tmp_path)
    assert title.strip() == "[RESOLVED] diamonds: FeatureDataDrift on carat"
    message = render('{{ template "drift.discord.message" . }}', alert_data("resolved"), tmp_path)
    assert message.startswith("✅ **[diamonds] Data drift on feature carat**")
