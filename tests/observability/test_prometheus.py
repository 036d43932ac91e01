"""prometheus.yml and the alerting rules, checked by promtool (a failure fails the test)."""

from __future__ import annotations

import re

import yaml

from tests.observability._tools import run_tool
from tests.support import ROOT

RULES = ROOT / "prometheus" / "alerts.yml"
DRIFT_ALERTS = (
    "FeatureDataDrift",
    "ConceptDrift",
    "PredictionDrift",
    "DataDriftUncalibrated",
    "ConceptDriftUncalibrated",
)
# The PromQL of `printf "<query>" args... | query` (escaped quotes allowed), and its selectors.
QUERY = re.compile(r'printf "((?:[^"\\]|\\.)*)"[^|}]*\|\s*query')
SELECTOR = re.compile(r"([a-z_:][a-z0-9_:]*)\{([^}]*)\}")


def alerts() -> dict[str, dict]:
    return {
        rule["alert"]: rule
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }


def test_promtool_check_config():
    result = run_tool("promtool", "check", "config", "prometheus.yml")
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules():
    run_tool("promtool", "check", "rules", "prometheus/alerts.yml")


def test_promtool_rule_unit_tests():
    result = run_tool("promtool", "test", "rules", "alerts_test.yml", cwd=ROOT / "prometheus")
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test():
    tested = {
        case["alertname"]
        for test in yaml.safe_load((ROOT / "prometheus" / "alerts_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert set(alerts()) <= tested


def test_required_alerts_and_their_expressions():
    rules = alerts()
    assert rules["FeatureDataDrift"]["expr"] == "drift_feature_detected == 1"
    assert rules["ConceptDrift"]["expr"] == "concept_drift_detected == 1"
    assert rules["PredictionDrift"]["expr"] == "prediction_drift_detected == 1"
    assert rules["PredictionDrift"]["for"] == "1m"
    assert rules["MonitorDown"]["expr"] == 'up{job="monitor"} == 0'
    assert rules["ScorerDown"]["expr"] == 'up{job="scorer"} == 0'
    assert "scorer_invalid_records_total" in rules["DLQRateHigh"]["expr"]
    assert "rate(scorer_records_consumed_total" in rules["ScorerNotConsuming"]["expr"]
    assert "rate(monitor_records_consumed_total" in rules["MonitorNotConsuming"]["expr"]
    # The tutorial's fixed-threshold rules stay, marked as the uncalibrated variant.
    assert rules["DataDriftUncalibrated"]["expr"] == "data_drift > 0.1"
    assert rules["ConceptDriftUncalibrated"]["expr"] == "concept_drift > 0.1"
    for name in ("DataDriftUncalibrated", "ConceptDriftUncalibrated"):
        assert rules[name]["labels"]["variant"] == "uncalibrated"
    for name in ("FeatureDataDrift", "ConceptDrift", "PredictionDrift"):
        assert rules[name]["labels"]["variant"] == "calibrated"
    description = rules["FeatureDataDrift"]["annotations"]["description"]
    for gauge in ("drift_feature_statistic", "drift_feature_threshold", "window_records"):
        assert gauge in description


def test_drift_messages_name_the_model():
    rules = alerts()
    for name in (*DRIFT_ALERTS, "MonitorNotConsuming", "MonitorStateNotSaved"):
        annotations = rules[name]["annotations"]
        assert annotations["summary"].startswith("[{{ $labels.model }}] "), name
        assert "model {{ $labels.model }}" in annotations["description"], name


def test_every_companion_query_filters_by_model_and_instance():
    # Two models may share an instance or a feature name: a lookup without both labels could
    # print another model's statistic.
    queried = set()
    for name, rule in alerts().items():
        for text in rule["annotations"].values():
            for literal in QUERY.findall(text):
                selectors = SELECTOR.findall(literal)
                assert selectors, (name, literal)
                for metric, matchers in selectors:
                    assert "model=%q" in matchers and "instance=%q" in matchers, (
                        name,
                        metric,
                        matchers,
                    )
                    queried.add((name, metric))
    # The descriptions use what the monitor exports for each task.
    assert {
        ("ConceptDrift", m)
        for m in ("rolling_mse", "reference_mse", "rolling_error_rate", "reference_error_rate")
    } <= queried
    assert {
        ("PredictionDrift", m)
        for m in (
            "prediction_drift_statistic",
            "prediction_drift_threshold",
            "drift_probability_statistic",
            "drift_probability_detected",
            "drift_probability_threshold",
            "drift_model_info",
        )
    } <= queried
    assert {
        ("FeatureDataDrift", m)
        for m in (
            "drift_feature_statistic",
            "drift_feature_threshold",
            "drift_feature_pvalue",
            "window_records",
        )
    } <= queried


def test_compose_prometheus_scrapes_scorer_and_monitor_and_alerts():
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["scorer"] == ["scorer:8001"]
    assert targets["monitor"] == ["monitor:8000"]
    assert config["rule_files"] == ["prometheus/alerts.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]
