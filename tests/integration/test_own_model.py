"""A user's own model, end to end through the real broker, as the README's "Monitor your own model"
walks it: held-out rows -> `scorer reference` -> `monitor profile` -> `scorer run` + `monitor run
--schema --reference` -> the simulator's scenarios. The data is generated here (no diamonds code
knows it): numeric and categorical columns, one rare category, an integer category.

One partition per topic, so the monitor sees records in the simulator's order."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support import KafkaEnv, flagged, run_stream

pytestmark = pytest.mark.broker

SITES = ["north", "south", "east", "west", "lab"]  # "lab" is rare: 2% of rows
FEATURES = ("temp", "load", "site", "shift")


def generate(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sensor_id": [f"s{i:06d}" for i in range(rows)],  # an id column: profile leaves it out
            "temp": np.round(rng.normal(20.0, 5.0, rows), 3),
            "load": np.round(rng.exponential(2.0, rows), 3),
            "site": rng.choice(SITES, rows, p=[0.3, 0.3, 0.2, 0.18, 0.02]),
            "shift": rng.integers(1, 4, rows),  # an integer category: 1, 2 or 3
        }
    )
    site_effect = frame["site"].map(
        {"north": 0.0, "south": 2.0, "east": -1.0, "west": 1.0, "lab": 5.0}
    )
    frame["output"] = (
        3 * frame["temp"]
        + 2 * frame["load"]
        + site_effect
        + frame["shift"]
        + rng.normal(0, 1.0, rows)
    )
    score = (
        0.3 * (frame["temp"] - 20) + 0.8 * (frame["load"] - 2) + site_effect - 0.5 * frame["shift"]
    )
    frame["status"] = np.where(score + rng.normal(0, 1.5, rows) > 0.5, "alert", "ok")
    return frame


def fit(frame: pd.DataFrame, target: str):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer(
        [("categories", OneHotEncoder(handle_unknown="ignore"), ["site", "shift"])],
        remainder="passthrough",
    )
    estimator = (
        HistGradientBoostingClassifier if target == "status" else HistGradientBoostingRegressor
    )(max_iter=60, random_state=0)
    return Pipeline([("encode", encode), ("model", estimator)]).fit(
        frame[list(FEATURES)], frame[target]
    )


@pytest.fixture(scope="module")
def build_model(tmp_path_factory, broker):
    """A model dir as a user builds it with our commands, from their held-out CSV (one per task)."""
    built: dict[str, Path] = {}

    def build(target: str) -> Path:
        if target in built:
            return built[target]
        folder = tmp_path_factory.mktemp(f"own-{target}")
        train, heldout = generate(8000, seed=1), generate(4000, seed=2)
        joblib.dump(fit(train, target), folder / "model.joblib")
        other = "status" if target == "output" else "output"
        heldout.drop(columns=other).to_csv(folder / "heldout.csv", index=False)
        env = KafkaEnv(broker.bootstrap, "unused", folder)
        made = env.run(
            "scorer",
            "reference",
            "--model-dir",
            str(folder),
            "--heldout",
            str(folder / "heldout.csv"),
            "--target",
            target,
        )
        assert made.returncode == 0, made.stderr.decode()[-2000:]
        profiled = env.run(
            "monitor",
            "profile",
            str(folder / "reference.csv"),
            "--target",
            target,
            "--prediction",
            "prediction",
            "--id",
            "sensor_id",
            "--name",
            f"sensors-{target}",
            "-o",
            str(folder / "schema.yaml"),
        )
        assert profiled.returncode == 0, profiled.stderr.decode()[-2000:]
        built[target] = folder
        return folder

    return build


@pytest.fixture(params=["output", "status"], ids=["regression", "classification"])
def user_model(request, build_model) -> Path:
    return build_model(request.param)


def test_profile_writes_the_schema_a_user_would(user_model):
    schema = yaml.safe_load((user_model / "schema.yaml").read_text())
    text = (user_model / "schema.yaml").read_text()
    kinds = {f["name"]: f["type"] for f in schema["features"]}
    assert kinds == {
        "temp": "numeric",
        "load": "numeric",
        "site": "categorical",
        "shift": "categorical",
    }
    assert "sensor_id" not in kinds and schema["messages"]["id"] == "sensor_id"
    site = next(f for f in schema["features"] if f["name"] == "site")
    assert sorted(site["categories"]) == sorted(SITES)  # the rare category is known
    assert next(f for f in schema["features"] if f["name"] == "shift")["categories"] == [1, 2, 3]
    assert "integer" in text  # the note on the integer column chosen as categorical
    if schema["task"] == "classification":
        assert schema["classes"] == ["alert", "ok"] and schema["messages"]["probabilities"]


def test_a_calm_stream_flags_nothing(kafka, tmp_path, user_model):
    samples = run_stream(kafka, tmp_path, user_model, "none", 12_000, 0)
    name = yaml.safe_load((user_model / "schema.yaml").read_text())["name"]
    assert flagged(samples) == dict.fromkeys(FEATURES, 0)
    model = (("model", name),)
    for counter in (
        "drift_dataset_detections_total",
        "prediction_drift_detections_total",
        "concept_drift_detections_total",
    ):
        assert samples[(counter, model)] == 0, counter
    assert (
        samples[("window_records", model)] == 1000
        and samples[("monitor_evaluations_total", model)] == 12_000 // 250
    )
    assert not np.isnan(samples[("concept_drift", model)])
    assert all(v == 0 for (n, _), v in samples.items() if n == "monitor_invalid_records_total")


def test_a_shift_in_one_feature_flags_that_feature_alone(kafka, tmp_path, user_model):
    samples = run_stream(kafka, tmp_path, user_model, "shift:temp:+3", 12_000, 6000)
    found = flagged(samples)
    assert found.pop("temp") > 0 and found == dict.fromkeys(found, 0), flagged(samples)


def test_label_flips_of_a_classifier_flag_concept_drift_and_no_feature(
    kafka, tmp_path, build_model
):
    samples = run_stream(kafka, tmp_path, build_model("status"), "labels:flip:0.3", 12_000, 6000)
    model = next(labels for (name, labels) in samples if name == "concept_drift_detections_total")
    assert flagged(samples) == dict.fromkeys(FEATURES, 0)
    assert (
        samples[("concept_drift_detections_total", model)] > 0
        and samples[("concept_drift_detected", model)] == 1
    )
    assert samples[("drift_dataset_detections_total", model)] == 0
    assert samples[("rolling_error_rate", model)] > samples[("reference_error_rate", model)]
