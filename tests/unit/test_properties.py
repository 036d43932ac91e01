"""Property-based checks: the scorer's decoding and POST /predict never crash on any input, and
the batch path gives the schema's verdict on every record. (The monitor's decoders have theirs in
the monitor's own property tests.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from contract.decoders import check_record, verdict
from contract.rules import REJECTION_REASONS, Rejection
from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema
from scorer.api import create_app
from scorer.model import check_against_schema, load
from scorer.scoring import BatchCodec, predictor_of, score_batch
from tests.support import decoders_of

SCHEMA = load_schema(DEFAULT_SCHEMA)
CODEC = BatchCodec(SCHEMA)
VALID = {
    "id": "r",
    "ts": 1,
    "carat": 0.7,
    "cut": "Ideal",
    "color": "E",
    "clarity": "SI1",
    "depth": 61.5,
    "table": 55.0,
}
FIELDS = ("id", "ts", *SCHEMA.feature_names)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
# A valid record with any field replaced, removed, or joined by extra fields.
mutated_records = st.builds(
    lambda drop, changes, extra: {
        **{k: v for k, v in VALID.items() if k not in drop},
        **changes,
        **extra,
    },
    st.sets(st.sampled_from(sorted(VALID))),
    st.dictionaries(st.sampled_from(sorted(VALID)), json_values, max_size=3),
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in VALID and k != "price"),
        json_values,
        max_size=3,
    ),
)
# ... and sometimes the label (a published record may carry it; it is checked too).
mutated_with_price = st.builds(
    lambda record, price: {**record, **price},
    mutated_records,
    st.one_of(
        st.just({}), st.dictionaries(st.just("price"), json_values | st.floats(1, 1e7), max_size=1)
    ),
)


def to_bytes(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def schema_verdict(raw: bytes):
    return verdict(check_record, decoders_of(SCHEMA), raw)


def values_of(record) -> tuple:
    return tuple(decoders_of(SCHEMA).getter("record", name)(record) for name in FIELDS)


@given(st.binary(max_size=10_000))
def test_any_bytes_decode_to_a_record_or_a_named_reason(raw):
    result = schema_verdict(raw)
    assert isinstance(result, (Rejection, decoders_of(SCHEMA).record_type))
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS and result.detail


@settings(max_examples=300)
@given(mutated_records)
def test_mutated_records_are_valid_exactly_when_the_schema_holds(record):
    result = schema_verdict(to_bytes(record))
    if not isinstance(result, Rejection):
        assert set(VALID) <= set(record)
        # What was accepted keeps its values (integer ids become strings).
        expected = {
            **record,
            "id": str(record["id"]),
            **{k: float(record[k]) for k in SCHEMA.numeric},
        }
        assert values_of(result) == tuple(expected[k] for k in FIELDS)
    else:
        assert result.reason in REJECTION_REASONS


@given(st.integers(min_value=1, max_value=3000))
def test_deep_json_is_refused_not_crashed(depth):
    assert isinstance(schema_verdict(b"[" * depth + b"]" * depth), Rejection)


@pytest.fixture(scope="module")
def model(model_dir):
    return load(model_dir)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(mutated_records | json_values, min_size=1, max_size=20))
def test_a_batch_scores_every_valid_record_and_rejects_the_rest(model, items):
    values = [to_bytes(item) for item in items]
    batch = score_batch(values, predictor_of(model.pipeline, CODEC), model.version, 0, CODEC)
    assert len(batch.predictions) + len(batch.rejections) == len(values)
    valid = [i for i, v in enumerate(values) if not isinstance(schema_verdict(v), Rejection)]
    assert len(batch.predictions) == len(valid)
    assert [p for p, _ in batch.rejections] == [i for i in range(len(values)) if i not in valid]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.binary(max_size=3000)
    | st.lists(mutated_records, min_size=1, max_size=10).map(to_bytes)
    | mutated_records.map(to_bytes)
)
def test_predict_endpoint_never_answers_500(model, body):
    codec = BatchCodec(SCHEMA, check_against_schema(model, SCHEMA))
    client = create_app(
        model, codec, CollectorRegistry(), max_body_bytes=2048, max_batch=5
    ).test_client()
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code in (200, 400, 413)
    if response.status_code == 400:
        assert all(e["reason"] for e in response.json["errors"])


@settings(max_examples=400)
@given(mutated_with_price)
def test_the_batch_path_gives_the_schemas_verdict_on_every_record(record):
    """The scorer's fast path (the typed decoder) may refuse more (it then asks `check_record`),
    never accept more, and what it publishes are the values the checks accept."""
    raw = to_bytes(record)
    expected = schema_verdict(raw)
    try:
        typed = decoders_of(SCHEMA).record.decode(raw)
    except Exception:  # noqa: BLE001 - msgspec's ValidationError or DecodeError: refused
        typed = None
    if typed is not None:
        assert not isinstance(expected, Rejection) and values_of(typed) == values_of(expected)
    batch = score_batch([raw], lambda frame: np.ones(len(frame)), "v", 0, CODEC)
    if isinstance(expected, Rejection):
        assert [r.reason for _, r in batch.rejections] == [
            expected.reason
        ] and not batch.predictions
    else:
        assert not batch.rejections
        published = json.loads(batch.predictions[0][1])
        assert (published["id"], published["ts"], *published["features"].values()) == values_of(
            expected
        )
