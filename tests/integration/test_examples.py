"""The shipped classification example (statsmodels' `fair` data: who had an affair) end to end
through the real broker: simulator -> scorer -> monitor -> gauges."""

from __future__ import annotations

import math

import pytest

from tests.support import flagged, run_stream

pytestmark = pytest.mark.broker

FEATURES = (
    "rate_marriage",
    "age",
    "yrs_married",
    "children",
    "religious",
    "educ",
    "occupation",
    "occupation_husb",
)


def test_the_affairs_example_monitors_classes_probabilities_and_error_rate(
    kafka, tmp_path, affairs_dir
):
    samples = run_stream(kafka, tmp_path, affairs_dir, "none", 10_000, 0)
    model = (("model", "affairs"),)
    assert samples[("drift_model_info", (("model", "affairs"), ("task", "classification")))] == 1
    assert flagged(samples) == dict.fromkeys(FEATURES, 0)
    assert samples[("window_records", model)] == 1000
    assert samples[("prediction_drift_detections_total", model)] == 0
    assert samples[("concept_drift_detections_total", model)] == 0
    # the calibrated error-rate test against the held-out error rate, and a KS per class probability
    assert 0.1 < samples[("reference_error_rate", model)] < 0.45
    assert (
        abs(samples[("rolling_error_rate", model)] - samples[("reference_error_rate", model)]) < 0.1
    )
    for cls in ("no", "yes"):
        statistic = samples[("drift_probability_statistic", (("class", cls), ("model", "affairs")))]
        assert (
            0
            <= statistic
            < samples[("drift_probability_threshold", (("class", cls), ("model", "affairs")))]
        )
    assert not math.isnan(samples[("prediction_drift_statistic", model)])


def test_the_affairs_example_flags_an_occupation_mix_and_no_concept_drift(
    kafka, tmp_path, affairs_dir
):
    # mix:occupation draws real rows so that occupation is uniform: the husband's occupation (total
    # variation 0.080 on the reference) and education (KS 0.111) move with it, the marriage rating
    # (0.031), age (0.043) and years married (0.027) hardly. Every label is its row's own: the
    # error rate stays near the held-out one (x1.05 under these weights), so no concept drift.
    samples = run_stream(kafka, tmp_path, affairs_dir, "mix:occupation", 10_000, 5000)
    found = flagged(samples)
    assert found["occupation"] > 0 and all(
        found[f] == 0 for f in ("rate_marriage", "age", "yrs_married")
    ), found
    model = (("model", "affairs"),)
    assert samples[("concept_drift_detections_total", model)] == 0
    assert (
        abs(samples[("rolling_error_rate", model)] - samples[("reference_error_rate", model)]) < 0.1
    )
