"""POST /predict equals offline model.predict (and predict_proba), refuses bad input with reasons,
and follows the model's schema."""

from __future__ import annotations

import json
import socket

import pytest
from prometheus_client import CollectorRegistry

from contract.artifacts import load_model_schema, read_reference
from scorer.__main__ import main
from scorer.api import create_app
from scorer.model import check_against_schema, load, load_reference
from scorer.scoring import BatchCodec
from tests.unit.test_scoring import PET_FEATURES, build_classifier_dir


@pytest.fixture(scope="module")
def model(model_dir):
    return load(model_dir)


@pytest.fixture(scope="module")
def codec(model, model_dir):
    schema = load_model_schema(model_dir)
    return BatchCodec(schema, check_against_schema(model, schema))


@pytest.fixture
def client(model, codec):
    return create_app(
        model, codec, CollectorRegistry(), max_body_bytes=64 * 1024, max_batch=100
    ).test_client()


def test_one_record_and_a_list_match_offline(client, model, model_dir, codec):
    rows = load_reference(model_dir).head(20)
    records = [{c: row[c] for c in codec.schema.feature_names} for _, row in rows.iterrows()]
    one = client.post("/predict", json=records[0])
    assert one.status_code == 200
    assert one.json["prediction"] == pytest.approx(rows["prediction"].iloc[0], abs=1e-9)
    assert one.json["id"] == "0" and one.json["unseen_categories"] == []
    many = client.post("/predict", json=records)
    assert many.status_code == 200
    assert [p["prediction"] for p in many.json["predictions"]] == pytest.approx(
        list(rows["prediction"]), abs=1e-9
    )
    assert {p["model_version"] for p in many.json["predictions"]} == {model.version}
    unseen = client.post("/predict", json={**records[0], "id": "mine", "clarity": "I2"}).json
    assert (unseen["id"], unseen["unseen_categories"]) == ("mine", ["clarity"])
    assert "probabilities" not in unseen


def test_bad_input_is_a_400_with_reasons(client):
    good = {
        "carat": 1.0,
        "cut": "Ideal",
        "color": "E",
        "clarity": "SI1",
        "depth": 61.0,
        "table": 56.0,
    }
    response = client.post(
        "/predict", json=[good, {**good, "carat": "x"}, {**good, "depth": -1}, 5]
    )
    assert response.status_code == 400
    assert response.json["errors"] == [
        {"index": 1, "reason": "wrong_type", "detail": "'carat' must be a number, got str"},
        {"index": 2, "reason": "out_of_range", "detail": "'depth'=-1 outside (0, 100]"},
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
    assert client.get("/healthz").json == {
        "status": "ok",
        "model": "diamonds",
        "model_version": model.version,
    }
    client.post(
        "/predict",
        json={
            "carat": 1.0,
            "cut": "Ideal",
            "color": "E",
            "clarity": "SI1",
            "depth": 61.0,
            "table": 56.0,
        },
    )
    text = client.get("/metrics").data.decode()
    assert (
        'api_requests_total{status="200"} 1.0' in text
        and 'api_requests_total{status="413"} 1.0' in text
    )


def test_a_classifier_answers_its_class_and_probabilities(tmp_path):
    folder = build_classifier_dir(tmp_path / "pets")
    schema, model = load_model_schema(folder), load(folder)
    app = create_app(
        model, BatchCodec(schema, check_against_schema(model, schema)), CollectorRegistry()
    )
    rows = read_reference(folder / "reference.csv", schema).head(30)
    records = [
        {c: row[c].item() if hasattr(row[c], "item") else row[c] for c in PET_FEATURES}
        for _, row in rows.iterrows()
    ]
    answers = app.test_client().post("/predict", json=records).json["predictions"]
    assert [a["prediction"] for a in answers] == rows["prediction"].tolist()
    for answer, (_, row) in zip(answers, rows.iterrows()):
        assert list(answer["probabilities"]) == ["dog", "cat", "bird"]
        assert answer["probabilities"] == pytest.approx(
            {c: row[f"proba_{c}"] for c in ("dog", "cat", "bird")}, abs=1e-12
        )
    refused = app.test_client().post("/predict", json={**records[0], "legs": 4.5}).json
    assert refused["errors"][0]["reason"] == "wrong_type"


def test_serve_on_a_taken_port_says_which_flag_changes_it(model_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model-dir", str(model_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and f"port {port}" in err
        and "--port" in err
        and "Traceback" not in err
    )
