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


def test_route_groups_by_feature_and_discord_sends_resolved():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["route"]["group_by"] == ["alertname", "feature"]
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    discord = receivers[config["route"]["receiver"]]["discord_configs"]
    assert discord and all(d["send_resolved"] is True for d in discord)
    assert all("webhook_url_file" not in d for d in discord)  # Alertmanager 0.27+ only


def render(text: str, data: dict, tmp_path) -> str:
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    return run_tool("amtool", "template", "render", f"--template.glob={TEMPLATES}", f"--template.text={text}",
                    f"--template.data={data_file}").stdout


def alert_data(status: str) -> dict:
    labels = {"alertname": "FeatureDataDrift", "feature": "carat", "severity": "warning", "kind": "data-drift",
              "variant": "calibrated", "instance": "monitor:8000", "job": "monitor"}
    alert = {"status": status, "labels": labels,
             "annotations": {"summary": "Data drift on feature carat",
                             "description": "Feature carat drifted: ks statistic 0.31 above threshold 0.0451 (p-value 0.0001) over a window of 1000 records."},
             "startsAt": "2026-01-02T03:04:05Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus:9090/graph", "fingerprint": "0123456789abcdef"}
    return {"receiver": "discord", "status": status, "alerts": [alert], "groupLabels": {"alertname": "FeatureDataDrift", "feature": "carat"},
            "commonLabels": labels, "commonAnnotations": alert["annotations"], "externalURL": "http://alertmanager:9093"}


def test_discord_template_names_feature_statistic_threshold_and_window(tmp_path):
    title = render('{{ template "drift.discord.title" . }}', alert_data("firing"), tmp_path)
    assert title.strip() == "[FIRING:1] FeatureDataDrift on carat"
    message = render('{{ template "drift.discord.message" . }}', alert_data("firing"), tmp_path)
    assert message.strip().splitlines() == [
        "🔴 **Data drift on feature carat** (calibrated)",
        "Feature carat drifted: ks statistic 0.31 above threshold 0.0451 (p-value 0.0001) over a window of 1000 records.",
        "feature: `carat` | severity: warning | since 2026-01-02 03:04:05 UTC",
    ]


def test_discord_template_resolved(tmp_path):
    title = render('{{ template "drift.discord.title" . }}', alert_data("resolved"), tmp_path)
    assert title.strip() == "[RESOLVED] FeatureDataDrift on carat"
    message = render('{{ template "drift.discord.message" . }}', alert_data("resolved"), tmp_path)
    assert message.startswith("✅ **Data drift on feature carat**")
