"""POST /predict equals offline model.predict, and refuses bad input with reasons."""
from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from contract.records import FEATURE_COLUMNS
from scorer.api import create_app
from scorer.model import load, load_reference


@pytest.fixture(scope="module")
def model(model_dir):
    return load(model_dir)


@pytest.fixture
def client(model):
    return create_app(model, CollectorRegistry(), max_body_bytes=64 * 1024, max_batch=100).test_client()


def test_one_record_and_a_list_match_offline(client, model, model_dir):
    rows = load_reference(model_dir).head(20)
    records = [{c: row[c] for c in FEATURE_COLUMNS} for _, row in rows.iterrows()]
    one = client.post("/predict", json=records[0])
    assert one.status_code == 200
    assert one.json["prediction"] == pytest.approx(rows["prediction"].iloc[0], abs=1e-9)
    many = client.post("/predict", json=records)
    assert many.status_code == 200
    assert [p["prediction"] for p in many.json["predictions"]] == pytest.approx(list(rows["prediction"]), abs=1e-9)
    assert {p["model_version"] for p in many.json["predictions"]} == {model.version}


def test_bad_input_is_a_400_with_reasons(client):
    good = {"carat": 1.0, "cut": "Ideal", "color": "E", "clarity": "SI1", "depth": 61.0, "table": 56.0}
    response = client.post("/predict", json=[good, {**good, "carat": "x"}, {**good, "depth": -1}, 5])
    assert response.status_code == 400
    assert response.json["errors"] == [
        {"index": 1, "reason": "wrong_type", "detail": "'carat' must be a number, got str"},
        {"index": 2, "reason": "out_of_range", "detail": "'depth'=-1.0 outside (0, 100]"},
        {"index": 3, "reason": "not_object", "detail": "record must be a JSON object, got int"},
    ]
    assert client.post("/predict", data=b"{oops").json["errors"][0]["reason"] == "not_json"
    assert client.post("/predict", data=b"[" * 5000 + b"]" * 5000).status_code == 400
    assert client.post("/predict", json=[good] * 101).json["errors"][0]["reason"] == "batch_size"
    assert client.post("/predict", json=[]).status_code == 400
    nan = client.post("/predict", data=json.dumps({**good, "carat": float("nan")}).encode())
    assert nan.json["errors"][0]["reason"] == "not_finite"


def test_body_limit_health_and_metrics(client, model):
    assert client.post("/predict", data=b"x" * (64 * 1024 + 1)).status_code == 413
    assert client.get("/healthz").json == {"status": "ok", "model_version": model.version}
    client.post("/predict", json={"carat": 1.0, "cut": "Ideal", "color": "E", "clarity": "SI1", "depth": 61.0, "table": 56.0})
    text = client.get("/metrics").data.decode()
    assert 'api_requests_total{status="200"} 1.0' in text and 'api_requests_total{status="413"} 1.0' in text
