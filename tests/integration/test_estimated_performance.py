"""The performance estimated before any label, through the real broker: simulator (no labels at all)
-> scorer -> `monitor run --schema --reference` -> gauges. A harmful covariate shift drops the
estimate past its calibrated threshold; a harmless one and a calm stream never do.

Measured on the references (bench/ESTIMATE_RESULTS.md): diamonds `tilt:carat:1.2` (more big stones)
raises the realized MSE x1.65, `carat-shift` (tilt:carat:0.8) lowers it x0.48; affairs
`mix:rate_marriage:2=0.3,3=0.4,4=0.3` (no "very good" marriages) raises the realized error rate
from 0.272 to 0.339."""

from __future__ import annotations

import math

import pytest

from tests.support import run_stream

pytestmark = pytest.mark.broker

HARMFUL_AFFAIRS = "mix:rate_marriage:2=0.3,3=0.4,4=0.3"


def estimated(samples, model: str) -> dict[str, float]:
    return {
        name: value
        for (name, labels), value in samples.items()
        if (name.startswith("estimated_") or name == "outside_support_ratio")
        and dict(labels).get("model") == model
    }


@pytest.mark.parametrize(
    "scenario, fires", [("tilt:carat:1.2", True), ("carat-shift", False), ("none", False)]
)
def test_diamonds_estimated_mse_before_labels(kafka, tmp_path, model_dir, scenario, fires):
    samples = run_stream(kafka, tmp_path, model_dir, scenario, 12_000, 6000, labels=False)
    got = estimated(samples, "diamonds")
    assert math.isnan(
        samples[("rolling_mse", (("model", "diamonds"),))]
    )  # no label: nothing realized
    assert (got["estimated_concept_drift_detections_total"] > 0) == fires, got
    assert got["estimated_concept_drift_detected"] == float(fires)
    assert (
        got["estimated_mse"] > 0
        and got["estimated_mae"] > 0
        and 0 <= got["outside_support_ratio"] < 0.05
    )
    if scenario != "none":  # the estimate moved the way the realized MSE does under this shift
        assert (got["estimated_concept_drift"] > 0) == (scenario == "tilt:carat:1.2"), got


@pytest.mark.parametrize("scenario, fires", [(HARMFUL_AFFAIRS, True), ("none", False)])
def test_affairs_estimated_error_rate_before_labels(kafka, tmp_path, affairs_dir, scenario, fires):
    samples = run_stream(kafka, tmp_path, affairs_dir, scenario, 10_000, 5000, labels=False)
    got = estimated(samples, "affairs")
    assert (got["estimated_concept_drift_detections_total"] > 0) == fires, got
    assert 0 < got["estimated_error_rate"] < 1 and got["estimated_accuracy"] == pytest.approx(
        1 - got["estimated_error_rate"]
    )
    for name in (
        "estimated_precision",
        "estimated_recall",
        "estimated_f1",
    ):  # a binary model's confusion matrix
        assert 0 <= got[name] <= 1, name
