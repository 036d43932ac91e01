"""Property-based checks: the decoder and POST /predict never crash on any input."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from contract.records import REJECTION_REASONS, FeatureRecord, Rejection, decode_features, encode
from scorer.api import create_app
from scorer.model import load
from scorer.scoring import score_batch

VALID = {"id": "r", "ts": 1, "carat": 0.7, "cut": "Ideal", "color": "E", "clarity": "SI1", "depth": 61.5, "table": 55.0}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
# A valid record with any field replaced, removed, or joined by extra fields.
mutated_records = st.builds(
    lambda drop, changes, extra: {**{k: v for k, v in VALID.items() if k not in drop}, **changes, **extra},
    st.sets(st.sampled_from(sorted(VALID))),
    st.dictionaries(st.sampled_from(sorted(VALID)), json_values, max_size=3),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in VALID and k != "price"), json_values, max_size=3),
)


def to_bytes(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


@given(st.binary(max_size=10_000))
def test_any_bytes_decode_to_a_record_or_a_named_reason(raw):
    result = decode_features(raw)
    assert isinstance(result, (FeatureRecord, Rejection))
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS and result.detail


@settings(max_examples=300)
@given(mutated_records)
def test_mutated_records_are_valid_exactly_when_the_contract_holds(record):
    result = decode_features(to_bytes(record))
    if isinstance(result, FeatureRecord):
        assert set(VALID) <= set(record)
        # What was accepted keeps its values (integer ids become strings).
        expected = {**record, "id": str(record["id"]), **{k: float(record[k]) for k in ("carat", "depth", "table")}}
        assert json.loads(encode(result.to_json())) == {k: expected[k] for k in VALID}
    else:
        assert result.reason in REJECTION_REASONS


@given(st.integers(min_value=1, max_value=3000))
def test_deep_json_is_refused_not_crashed(depth):
    assert isinstance(decode_features(b"[" * depth + b"]" * depth), Rejection)


@pytest.fixture(scope="module")
def model(model_dir):
    return load(model_dir)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(mutated_records | json_values, min_size=1, max_size=20))
def test_a_batch_scores_every_valid_record_and_rejects_the_rest(model, items):
    values = [to_bytes(item) for item in items]
    batch = score_batch(values, model.predict, model.version, 0)
    assert len(batch.predictions) + len(batch.rejections) == len(values)
    valid = [i for i, v in enumerate(values) if isinstance(decode_features(v), FeatureRecord)]
    assert len(batch.predictions) == len(valid)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000) | st.lists(mutated_records, min_size=1, max_size=10).map(to_bytes) | mutated_records.map(to_bytes))
def test_predict_endpoint_never_answers_500(model, body):
    client = create_app(model, CollectorRegistry(), max_body_bytes=2048, max_batch=5).test_client()
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code in (200, 400, 413)
    if response.status_code == 400:
        assert all(e["reason"] for e in response.json["errors"])
