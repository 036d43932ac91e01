"""`python -m monitor status`: a running monitor's current window, for a person at a terminal.

It reads the monitor's own /metrics page (no broker, no state), and prints per feature and model
output the statistic, threshold, p-value and flag, then the dataset, concept, estimated-performance
and window lines; NaN ("not known yet") is printed as n/a."""

from __future__ import annotations

import math
import sys
from typing import TextIO


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def _flag(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else ("DRIFT" if value >= 0.5 else "no")


def status(url: str, out: TextIO, model: str | None = None) -> int:
    """Per-feature and per-output statistic, threshold, p-value and flag from a monitor's /metrics, as a
    table, then the dataset, concept and window lines; one model's (`model`, or the page's only one)."""
    from urllib.error import URLError
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except (URLError, OSError) as exc:
        print(f"error: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    # {(sample name, frozenset of labels): value}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    tasks = {
        dict(labels)["model"]: dict(labels).get("task")
        for name, labels in samples
        if name == "drift_model_info"
    }
    if not tasks:
        print(f"error: {url} has no drift_model_info: is it a drift monitor?", file=sys.stderr)
        return 1
    if model is None:
        if len(tasks) > 1:
            print(
                f"error: {url} holds the models {', '.join(sorted(tasks))}: choose one with --model",
                file=sys.stderr,
            )
            return 2
        model = next(iter(tasks))
    elif model not in tasks:
        print(
            f"error: {url} has no model {model!r} (it holds {', '.join(sorted(tasks))}): change --model",
            file=sys.stderr,
        )
        return 2
    classification = tasks[model] == "classification"

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset({"model": model, **labels}.items())))

    def labelled(name: str, key: str) -> list[dict[str, str]]:
        return [
            dict(labels)
            for n, labels in samples
            if n == name and dict(labels).get("model") == model and key in dict(labels)
        ]

    tests = {
        labels["feature"]: labels["test"]
        for labels in labelled("drift_feature_statistic", "feature")
    }
    width = max([11, *(len(name) + 2 for name in tests)])
    out.write(f"model {model} ({tasks[model]})\n")
    out.write(
        f"{'feature':<{width}}{'test':<6}{'statistic':>11}{'threshold':>11}{'p-value':>11}  {'flagged':<8}"
        f"{'evaluations flagged':>20}\n"
    )
    for feature, test in tests.items():
        out.write(
            f"{feature:<{width}}{test:<6}{_fmt(get('drift_feature_statistic', feature=feature, test=test)):>11}"
            f"{_fmt(get('drift_feature_threshold', feature=feature)):>11}"
            f"{_fmt(get('drift_feature_pvalue', feature=feature)):>11}"
            f"  {_flag(get('drift_feature_detected', feature=feature)):<8}"
            f"{_fmt(get('drift_feature_detections_total', feature=feature), '.0f'):>20}\n"
        )
    prediction_test = "chi2" if classification else "ks"
    out.write(
        f"{'prediction':<{width}}{prediction_test:<6}{_fmt(get('prediction_drift_statistic')):>11}"
        f"{_fmt(get('prediction_drift_threshold')):>11}{'':>11}  {_flag(get('prediction_drift_detected')):<8}"
        f"{_fmt(get('prediction_drift_detections_total'), '.0f'):>20}\n"
    )
    for cls in (labels["class"] for labels in labelled("drift_probability_statistic", "class")):
        out.write(
            f"{f'p({cls})':<{width}}{'ks':<6}{_fmt(get('drift_probability_statistic', **{'class': cls})):>11}"
            f"{_fmt(get('drift_probability_threshold', **{'class': cls})):>11}{'':>11}  "
            f"{_flag(get('drift_probability_detected', **{'class': cls})):<8}{'':>20}\n"
        )
    out.write(
        f"dataset: data_drift {_fmt(get('data_drift'))}, "
        f"share of features flagged {_fmt(get('drift_share_detected'), '.2f')}, "
        f"flagged {_flag(get('drift_dataset_detected'))}\n"
    )
    if classification:
        measured = (
            f"rolling error rate {_fmt(get('rolling_error_rate'), '.4f')} vs reference "
            f"{_fmt(get('reference_error_rate'), '.4f')}"
        )
    else:
        measured = f"rolling MSE {_fmt(get('rolling_mse'), ',.0f')} vs reference {_fmt(get('reference_mse'), ',.0f')}"
    out.write(
        f"concept: {measured}, ratio {_fmt(get('concept_drift'))} (threshold {_fmt(get('concept_drift_threshold'))}), "
        f"label coverage {_fmt(get('label_coverage_ratio'), '.2f')}, flagged {_flag(get('concept_drift_detected'))}\n"
    )
    if (
        get("estimated_concept_drift") is not None
    ):  # the monitor estimates the performance without labels
        estimate = (
            f"error rate {_fmt(get('estimated_error_rate'), '.4f')}"
            if classification
            else f"MSE {_fmt(get('estimated_mse'), ',.0f')}"
        )
        out.write(
            f"estimated (no labels): {estimate}, ratio {_fmt(get('estimated_concept_drift'))} (threshold "
            f"{_fmt(get('estimated_concept_drift_threshold'))}), outside the reference's support "
            f"{_fmt(get('outside_support_ratio'), '.2f')}, flagged {_flag(get('estimated_concept_drift_detected'))}\n"
        )
    out.write(
        f"window: {_fmt(get('window_records'), '.0f')} records; {_fmt(get('monitor_evaluations_total'), '.0f')} "
        f"evaluations since start\n"
    )
    return 0
