"""Grafana provisioning, cross-checked without a Grafana server (none runs on these machines).

Checks what makes Grafana refuse or silently mis-provision a file: datasource uids that do not
exist, thresholds that are never drawn, rule conditions naming missing refIds, intervals that
are not multiples of the 10 s minimum, policies and templates that refer to nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.observability._tools import run_tool
from tests.support import ROOT

GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
EXPRESSION_UID = "__expr__"
VISIBLE_THRESHOLD_STYLES = {"line", "dashed", "line+area", "dashed+area"}
MODEL_FILTER = 'model="$model"'
# Series the monitor exports (every one labelled `model`): its gauge names, its `drift_`,
# `monitor_`, `prediction_drift_` and `concept_drift_` families and histogram suffixes.
MONITOR_METRICS = {
    "data_drift",
    "concept_drift",
    "rolling_mse",
    "reference_mse",
    "rolling_error_rate",
    "reference_error_rate",
    "label_coverage_ratio",
    "window_records",
}
MONITOR_PREFIXES = ("drift_", "monitor_", "prediction_drift_", "concept_drift_")
# A metric name in PromQL (not a function: no "(" after it) and the selector that follows it.
METRIC = re.compile(r"(?<![\w:$\"])([a-zA-Z_:][\w:]*)(?![\w:(])\s*(\{[^}]*\})?")
DRIFT_RULES = (
    "FeatureDataDrift",
    "ConceptDrift",
    "PredictionDrift",
    "DataDriftUncalibrated",
    "ConceptDriftUncalibrated",
)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def datasource_uids() -> set[str]:
    uids = set()
    for path in (GRAFANA / "datasources").glob("*.yml"):
        for source in load(path)["datasources"]:
            assert source.get("uid"), f"{path.name}: datasource {source['name']} needs a fixed uid"
            uids.add(source["uid"])
    return uids


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    return [
        rule
        for path in (GRAFANA / "alerting").glob("*.yml")
        for group in load(path).get("groups", [])
        for rule in group["rules"]
    ]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    assert DASHBOARDS, "no dashboard JSON under grafana/dashboards"
    return json.loads((GRAFANA / "dashboards" / "drift-monitor.json").read_text())


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def is_monitor_metric(name: str) -> bool:
    return name in MONITOR_METRICS or name.startswith(MONITOR_PREFIXES)


def monitor_selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, its selector or "") of every monitor series an expression reads."""
    return [(name, selector) for name, selector in METRIC.findall(expr) if is_monitor_metric(name)]


def seconds(duration: str) -> int:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"not a duration: {duration!r}"
    hours, minutes, secs = (int(part or 0) for part in parts.groups())
    return 3600 * hours + 60 * minutes + secs


def test_datasource_is_provisioned_with_fixed_uid(datasource_uids):
    (source,) = load(GRAFANA / "datasources" / "prometheus.yml")["datasources"]
    assert (
        source["type"] == "prometheus"
        and source["url"] == "http://prometheus:9090"
        and source["access"] == "proxy"
    )
    assert datasource_uids == {"prometheus-drift"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_provisionable(path):
    text = path.read_text()
    board = json.loads(text)
    assert board["id"] is None
    assert board.get("uid")
    assert "__inputs" not in board and "${DS_" not in text


def test_every_datasource_uid_used_exists(dashboard, rules, datasource_uids):
    used = []
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        used.append(panel["datasource"]["uid"])
        used += [target["datasource"]["uid"] for target in panel["targets"]]
    used += [
        variable["datasource"]["uid"]
        for variable in dashboard["templating"]["list"]
        if "datasource" in variable
    ]
    used += [
        query["datasourceUid"]
        for rule in rules
        for query in rule["data"]
        if query["datasourceUid"] != EXPRESSION_UID
    ]
    assert used and set(used) <= datasource_uids


def test_panel_ids_unique_and_template_variables_defined(dashboard):
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    text = json.dumps(dashboard["panels"])
    assert (
        set(re.findall(r"\$(\w+)", text)) - {"__all", "__interval", "__rate_interval", "__range"}
        <= defined
    )


@pytest.mark.parametrize(
    "title, expr", [("Data drift", "data_drift"), ("Concept drift", "concept_drift")]
)
def test_tutorial_panels_draw_the_01_threshold(dashboard, title, expr):
    (panel,) = [p for p in panels(dashboard) if p["title"] == title]
    assert panel["type"] == "timeseries"
    assert [target["expr"] for target in panel["targets"]] == [f"{expr}{{{MODEL_FILTER}}}"]
    defaults = panel["fieldConfig"]["defaults"]
    assert {"color": "red", "value": 0.1} in defaults["thresholds"]["steps"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] in VISIBLE_THRESHOLD_STYLES


def test_every_threshold_on_a_timeseries_is_visible(dashboard):
    for panel in panels(dashboard):
        if panel["type"] != "timeseries":
            continue
        defaults = panel["fieldConfig"]["defaults"]
        steps = [step for step in defaults["thresholds"]["steps"] if step["value"] is not None]
        if steps:
            assert defaults["custom"]["thresholdsStyle"]["mode"] in VISIBLE_THRESHOLD_STYLES, panel[
                "title"
            ]


def test_dashboard_covers_drift_model_and_pipeline(dashboard):
    exprs = " ".join(
        target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])
    )
    for metric in (
        "data_drift",
        "concept_drift",
        "drift_feature_statistic",
        "drift_feature_threshold",
        "drift_feature_pvalue",
        "drift_feature_detected",
        "rolling_mse",
        "reference_mse",
        "label_coverage_ratio",
        "rolling_error_rate",
        "reference_error_rate",
        "drift_probability_statistic",
        "drift_probability_threshold",
        "prediction_drift_statistic",
        "prediction_drift_threshold",
        "monitor_invalid_records_total",
        "scorer_records_consumed_total",
        "monitor_records_consumed_total",
        "scorer_invalid_records_total",
        "up{",
    ):
        assert metric in exprs, metric


def test_model_variable_lists_the_monitored_models(dashboard):
    variables = dashboard["templating"]["list"]
    (model,) = [variable for variable in variables if variable["name"] == "model"]
    assert model["type"] == "query" and model["datasource"]["uid"] == "prometheus-drift"
    assert model["query"]["query"] == model["definition"] == "label_values(drift_model_info, model)"
    # One model at a time: their features, thresholds and error scales differ, so the panels
    # (and the feature variable, which depends on it and so comes after it) show one.
    assert model["multi"] is False and model["includeAll"] is False
    assert variables.index(model) == 0
    (feature,) = [variable for variable in variables if variable["name"] == "feature"]
    assert (
        feature["query"]["query"]
        == feature["definition"]
        == f"label_values(drift_feature_statistic{{{MODEL_FILTER}}}, feature)"
    )


def test_every_monitor_query_filters_by_the_model_variable(dashboard):
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    exprs += [
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if variable["name"] != "model"
    ]
    read = [
        (expr, metric, selector) for expr in exprs for metric, selector in monitor_selectors(expr)
    ]
    # The parser finds what the dashboard reads (a regex that matched nothing would pass anything)...
    assert {metric for _, metric, _ in read} >= {
        "data_drift",
        "concept_drift",
        "drift_feature_statistic",
        "rolling_error_rate",
        "drift_probability_statistic",
        "monitor_evaluation_duration_seconds_bucket",
        "monitor_records_consumed_total",
        "window_records",
    }
    assert monitor_selectors("sum by (topic) (rate(monitor_records_consumed_total[1m]))") == [
        ("monitor_records_consumed_total", "")
    ]
    # ... and every one of those reads is one model's.
    unfiltered = [(metric, expr) for expr, metric, selector in read if MODEL_FILTER not in selector]
    assert unfiltered == []
    # The scorer's series carry no model label: those panels stay unfiltered.
    assert not any(is_monitor_metric(name) for name in ("scorer_records_consumed_total", "up"))


def test_every_query_is_valid_promql(dashboard, rules, tmp_path):
    # promtool parses each expression as a recording rule, the template variables set to values.
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    exprs += [
        query["model"]["expr"]
        for rule in rules
        for query in rule["data"]
        if query["datasourceUid"] != EXPRESSION_UID
    ]
    concrete = [expr.replace("$model", "diamonds").replace("$feature", "carat") for expr in exprs]
    assert all("$" not in expr for expr in concrete), concrete
    path = tmp_path / "exprs.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "exprs",
                        "rules": [
                            {"record": f"check_{i}", "expr": expr}
                            for i, expr in enumerate(concrete)
                        ],
                    }
                ]
            }
        )
    )
    run_tool("promtool", "check", "rules", str(path))


def test_rule_refids_conditions_and_intervals(rules):
    for path in (GRAFANA / "alerting").glob("*.yml"):
        for group in load(path).get("groups", []):
            assert seconds(group["interval"]) % 10 == 0 and seconds(group["interval"]) > 0, group[
                "name"
            ]
    uids = [rule["uid"] for rule in rules]
    assert len(uids) == len(set(uids))
    for rule in rules:
        refs = [query["refId"] for query in rule["data"]]
        assert len(refs) == len(set(refs)), rule["uid"]
        assert rule["condition"] in refs, rule["uid"]
        for query in rule["data"]:
            model = query["model"]
            assert model["refId"] == query["refId"], rule["uid"]
            if query["datasourceUid"] == EXPRESSION_UID:
                assert model["expression"] in refs, (
                    f"{rule['uid']}: {query['refId']} reads missing {model['expression']}"
                )
            else:
                assert model["expr"] and model.get("instant") is True, rule["uid"]
        assert rule["noDataState"] in {"OK", "NoData", "Alerting"} and rule["execErrState"] in {
            "OK",
            "Error",
            "Alerting",
        }
        seconds(rule["for"])
        # Labels get env expansion, annotations do not: a `$` in a label would be eaten.
        assert "$" not in json.dumps(rule["labels"]), rule["uid"]


def test_rules_cover_the_prometheus_alerts(rules):
    titles = {rule["title"] for rule in rules}
    assert {*DRIFT_RULES, "ServiceDown", "DLQRateHigh", "MonitorNotConsuming"} <= titles
    by_title = {rule["title"]: rule for rule in rules}
    for title in ("DataDriftUncalibrated", "ConceptDriftUncalibrated"):
        (threshold,) = [
            q["model"]
            for q in by_title[title]["data"]
            if q["refId"] == by_title[title]["condition"]
        ]
        assert threshold["conditions"][0]["evaluator"] == {"type": "gt", "params": [0.1]}
        assert by_title[title]["labels"]["variant"] == "uncalibrated"


def test_drift_rules_keep_the_model_and_name_it(rules):
    by_title = {rule["title"]: rule for rule in rules}
    for title in (*DRIFT_RULES, "MonitorNotConsuming"):
        rule = by_title[title]
        assert rule["annotations"]["summary"].startswith("[{{ $labels.model }}] "), title
        assert "model {{ $labels.model }}" in rule["annotations"]["description"], title
        for query in rule["data"]:
            if query["datasourceUid"] == EXPRESSION_UID:
                continue
            # Each monitor series read is aggregated keeping `model`, so one model's numbers never mix with another's.
            expr = query["model"]["expr"]
            groupings = re.findall(r"\b(?:max|sum|count) by \(([^)]*)\)", expr)
            assert groupings and all(
                "model" in [label.strip() for label in labels.split(",")] for labels in groupings
            ), (title, expr)
    # The texts that depend on the task read it from drift_model_info, joined into the condition.
    for title in ("ConceptDrift", "PredictionDrift", "ConceptDriftUncalibrated"):
        rule = by_title[title]
        (condition_query,) = [q["model"]["expr"] for q in rule["data"] if q["refId"] == "A"]
        assert "group_left (task) drift_model_info" in condition_query, title
        assert '$labels.task "classification"' in rule["annotations"]["description"], title
    concept = by_title["ConceptDrift"]["annotations"]["description"]
    assert "Rolling error rate" in concept and "Rolling MSE" in concept


def test_rule_folder_differs_from_dashboard_folder():
    dashboard_folders = {
        provider.get("folder", "")
        for provider in load(GRAFANA / "dashboards" / "dashboards.yml")["providers"]
    }
    rule_folders = {
        group["folder"]
        for path in (GRAFANA / "alerting").glob("*.yml")
        for group in load(path).get("groups", [])
    }
    assert rule_folders and not rule_folders & dashboard_folders


def contact_receivers() -> list[dict]:
    return [
        receiver
        for point in load(GRAFANA / "alerting" / "contact-points.yml")["contactPoints"]
        for receiver in point["receivers"]
    ]


def test_discord_contact_point():
    (receiver,) = contact_receivers()
    settings = receiver["settings"]
    assert receiver["type"] == "discord"
    assert settings["url"] == "$DISCORD_WEBHOOK_URL"
    assert type(settings["use_discord_username"]) is bool


def test_policy_receivers_exist():
    names = {
        point["name"]
        for point in load(GRAFANA / "alerting" / "contact-points.yml")["contactPoints"]
    }

    def receivers(policy: dict) -> Iterator[str]:
        if "receiver" in policy:
            yield policy["receiver"]
        for child in policy.get("routes", []):
            yield from receivers(child)

    policies = load(GRAFANA / "alerting" / "policies.yml")["policies"]
    used = [name for policy in policies for name in receivers(policy)]
    assert used and set(used) <= names
    assert policies[0]["group_by"] == ["alertname", "model", "feature"]


def test_referenced_templates_are_defined_and_render(tmp_path):
    bodies = [
        template["template"]
        for template in load(GRAFANA / "alerting" / "templates.yml")["templates"]
    ]
    defined = {name for body in bodies for name in re.findall(r'{{-?\s*define\s+"([^"]+)"', body)}
    referenced = {
        name
        for receiver in contact_receivers()
        for value in receiver["settings"].values()
        if isinstance(value, str)
        for name in re.findall(r'{{-?\s*template\s+"([^"]+)"', value)
    }
    assert referenced and referenced <= defined
    # Grafana's notification templates are Go templates with Alertmanager's functions: amtool
    # executes them on Alertmanager-shaped data, which catches syntax and field errors.
    (tmp_path / "grafana.tmpl").write_text("\n".join(bodies))
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "FeatureDataDrift",
            "model": "jewels",
            "feature": "carat",
            "variant": "calibrated",
            "severity": "warning",
        },
        "annotations": {
            "summary": "[jewels] Data drift on feature carat",
            "description": "statistic 0.31 above threshold 0.05",
        },
        "startsAt": "2026-01-02T03:04:05Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "1",
    }
    data = {
        "receiver": "discord",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {},
        "commonLabels": alert["labels"],
        "commonAnnotations": {},
        "externalURL": "",
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    for name in sorted(referenced):
        output = run_tool(
            "amtool",
            "template",
            "render",
            f"--template.glob={tmp_path / 'grafana.tmpl'}",
            f'--template.text={{{{ template "{name}" . }}}}',
            f"--template.data={tmp_path / 'data.json'}",
        ).stdout
        assert "carat" in output and "jewels" in output, (name, output)
    title = run_tool(
        "amtool",
        "template",
        "render",
        f"--template.glob={tmp_path / 'grafana.tmpl'}",
        '--template.text={{ template "drift.discord.title" . }}',
        f"--template.data={tmp_path / 'data.json'}",
    ).stdout
    assert title.strip() == "[FIRING:1] jewels: FeatureDataDrift on carat"
