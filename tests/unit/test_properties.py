"""Property-based checks: the decoder and POST /predict never crash on any input."""
from __future__ import annotations

import json

import numpy as np
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


# -- the typed (msgspec) decoders on the hot paths agree with the contract's validators -----------
mutated_with_price = st.builds(
    lambda record, price: {**record, **price}, mutated_records,
    st.one_of(st.just({}), st.dictionaries(st.just("price"), json_values | st.floats(1, 1e7), max_size=1)),
)


def typed_decode(decoder, raw: bytes):
    """The typed decoder's record, or None when it refuses."""
    from contract import wire

    try:
        return decoder.decode(raw)
    except wire.DecodeFailure:
        return None


@settings(max_examples=400)
@given(mutated_with_price)
def test_typed_feature_decoder_accepts_only_what_the_contract_accepts(record):
    """The scorer's fast path may refuse more (it then asks `decode_features`), never accept more,
    and what it accepts has the contract's values."""
    from contract import wire

    raw = to_bytes(record)
    typed = typed_decode(wire.feature_decoder, raw)
    contract = decode_features(raw)
    if typed is not None:
        assert isinstance(contract, FeatureRecord)
        assert tuple(contract) == (typed.id, typed.ts, typed.carat, typed.cut, typed.color, typed.clarity, typed.depth,
                                   typed.table, typed.price)
    # and the batch path gives the contract's verdict either way
    batch = score_batch([raw], lambda frame: np.ones(len(frame)), "v", 0)
    if isinstance(contract, FeatureRecord):
        assert not batch.rejections and json.loads(batch.predictions[0][1])["features"] == contract.features()
    else:
        assert [r.reason for _, r in batch.rejections] == [contract.reason] and not batch.predictions


@settings(max_examples=400)
@given(mutated_records, st.one_of(json_values, st.floats(-1e9, 1e9)))
def test_typed_prediction_and_label_decoders_accept_only_what_the_contract_accepts(record, value):
    from contract import wire
    from contract.records import decode_label
    from monitor.service import _prediction, decode_labels, decode_predictions

    features = {k: v for k, v in record.items() if k not in ("id", "ts")}
    message = {k: record[k] for k in ("id", "ts") if k in record} | {"prediction": value, "features": features}
    raw = to_bytes(message)
    batch, rejected = decode_predictions([raw])
    try:
        expected = _prediction(raw)
    except Exception as invalid:  # InvalidRecord: the same reason must come out of the batch path
        assert len(batch) == 0 and [r.reason for _, r in rejected] == [invalid.rejection.reason]
    else:
        assert not rejected and len(batch) == 1
        got = (batch.ids[0], int(batch.ts[0]), float(batch.predictions[0]), *(float(batch.numeric[c][0]) for c in
               ("carat", "depth", "table")), *(batch.categorical[c][0] for c in ("cut", "color", "clarity")))
        assert got == expected
    label = {k: record[k] for k in ("id", "ts") if k in record} | {"price": value}
    raw = to_bytes(label)
    ids, ts, prices, rejected = decode_labels([raw])
    expected = decode_label(raw)
    if isinstance(expected, Rejection):
        assert not ids and [r.reason for _, r in rejected] == [expected.reason]
    else:
        assert (ids, ts.tolist(), prices.tolist(), rejected) == ([expected.id], [expected.ts], [expected.price], [])
    assert typed_decode(wire.label_decoder, raw) is None or not isinstance(expected, Rejection)
