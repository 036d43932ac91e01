"""The monitor's decoding (`monitor.decode`): bytes -> the core's columns for any schema, refusals with
the schema's reason. Two schemas: the shipped diamonds one (regression, features nested under
`features`, epoch-ms timestamps) and a classifier's inference log in another layout (top-level
features, ISO-8601 timestamps, an integer and a boolean categorical, class probabilities)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.decoders import (
    DecodeFailure,
    check_label,
    check_prediction,
    decode_records,
    epoch_ms,
    verdict,
)
from contract.rules import REJECTION_REASONS, Rejection, category_text
from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema, parse_schema
from monitor.decode import Decoder
from tests.support import decoders_of

DIAMONDS = load_schema(DEFAULT_SCHEMA)
CHURN = parse_schema(
    {
        "name": "churn",
        "task": "classification",
        "target": "churned",
        "classes": ["no", "yes"],
        "prediction": "predicted",
        "features": [
            {"name": "tenure", "type": "numeric", "range": {"ge": 0, "le": 600}},
            {"name": "plan", "type": "categorical", "categories": [1, 2, 3]},
            {"name": "region", "type": "categorical", "categories": ["eu", "us"]},
            {"name": "autopay", "type": "categorical", "categories": [True, False]},
        ],
        "messages": {
            "id": "request_id",
            "timestamp": "time",
            "timestamp_format": "iso8601",
            "prediction": "label_pred",
            "probabilities": "scores",
            "features": None,
        },
        "labels": {"id": "request_id", "timestamp": "time", "target": "churned"},
    },
    "churn.yaml",
)
DECODERS = {"diamonds": Decoder(DIAMONDS), "churn": Decoder(CHURN)}


def to_bytes(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


# -- the fast path's cases, one schema at a time ----------------------------------------------------
GOOD = (
    b'{"id":"a","ts":5,"scored_at":6,"model_version":"v","prediction":512.5,"features":{"carat":0.3,'
    b'"cut":"Ideal","color":"E","clarity":"SI1","depth":61.0,"table":55.0}}'
)


def test_bad_predictions_and_labels_become_rejections_not_exceptions():
    decoder = DECODERS["diamonds"]
    values = [
        GOOD,
        b"{nope",
        b"[1]",
        b'{"id":"b","ts":5,"prediction":1.0}',
        GOOD.replace(b"512.5", b'"x"'),
        GOOD.replace(b'"carat":0.3', b'"carat":-1'),
    ]
    batch, rejected = decoder.predictions(values)
    assert len(batch) == 1 and batch.ids.tolist() == ["a"] and batch.predictions.tolist() == [512.5]
    assert batch.numeric["carat"].tolist() == [0.3] and batch.categorical["cut"].tolist() == [
        "Ideal"
    ]
    assert [(i, r.reason) for i, r in rejected] == [
        (1, "not_json"),
        (2, "not_object"),
        (3, "missing_field"),
        (4, "wrong_type"),
        (5, "out_of_range"),
    ]
    ids, ts, prices, rejected = decoder.labels([b'{"id":"a","ts":5,"price":326.0}', b'{"id":"a"}'])
    assert ids == ["a"] and ts.tolist() == [5] and prices.tolist() == [326.0]
    assert [r.reason for _, r in rejected] == ["missing_field"]


def test_the_fast_decoding_path_accepts_only_what_the_schema_checks_accept():
    decoder = DECODERS["diamonds"]
    good = GOOD.replace(b'"scored_at":6,"model_version":"v",', b"")
    cases = {
        good: None,
        good.replace(b'"id":"a"', b'"id":7'): None,  # integer ids normalised to "7" by the checks
        good.replace(b"512.5", b"512"): None,
        # The id sits where the schema's messages.id says (the old contract also took one inside the features).
        good.replace(b'"id":"a",', b"").replace(b'"carat"', b'"id":"f","carat"'): "missing_field",
        # Extra fields are ignored, even the target's name inside the features (the old contract checked it).
        good.replace(b'"table":55.0}', b'"table":55.0,"price":-3}'): None,
        good.replace(b"512.5", b"NaN"): "not_finite",
        good.replace(b"512.5", b"1e400"): "not_finite",
        good.replace(
            b"512.5", b"1" + b"0" * 400
        ): "out_of_range",  # an integer too large for a float
        good.replace(b"512.5", b"true"): "wrong_type",
        good.replace(b'"carat":0.3', b'"carat":20.5'): "out_of_range",
        good.replace(b'"carat":0.3', b'"carat":NaN'): "not_finite",
        good.replace(b'"cut":"Ideal"', b'"cut":""'): "out_of_range",
        good.replace(b'"ts":5', b'"ts":-1'): "out_of_range",
        good.replace(b'"ts":5', b'"ts":5.0'): "wrong_type",
        good.replace(b'"id":"a"', b'"id":"' + b"x" * 129 + b'"'): "out_of_range",
        good[:-1]: "not_json",
        good[:-1] + b" " * 8200 + b"}": "oversize",
    }
    batch, rejected = decoder.predictions(list(cases))
    assert [(i, r.reason) for i, r in rejected] == [
        (i, why) for i, why in enumerate(cases.values()) if why
    ]
    accepted = [
        verdict(check_prediction, decoders_of(DIAMONDS), raw)
        for raw, why in cases.items()
        if why is None
    ]
    assert batch.ids.tolist() == [r.id for r in accepted] == ["a", "7", "a", "a"]
    assert (
        batch.predictions.tolist()
        == [r.prediction for r in accepted]
        == [512.5, 512.5, 512.0, 512.5]
    )
    assert batch.predictions.dtype == np.float64 and batch.ts.tolist() == [5] * 4
    assert (
        batch.numeric["carat"].tolist() == [0.3] * 4
        and batch.categorical["clarity"].tolist() == ["SI1"] * 4
    )
    empty, rejected = decoder.predictions([b"{}"])
    assert (
        len(empty) == 0
        and empty.numeric["carat"].dtype == np.float64
        and [r.reason for _, r in rejected] == ["missing_field"]
    )
    assert empty.categorical["cut"].dtype == object and empty.probabilities == {}
    ids, ts, prices, rejected = decoder.labels(
        [
            b'{"id":"a","ts":5,"price":326}',
            b'{"id":7,"ts":6,"price":1.5}',
            b'{"id":"b","ts":5,"price":0}',
            b'{"id":"c","ts":5,"price":NaN}',
        ]
    )
    assert (
        ids == ["a", "7"]
        and ts.tolist() == [5, 6]
        and prices.tolist() == [326.0, 1.5]
        and prices.dtype == np.float64
    )
    assert [(i, r.reason) for i, r in rejected] == [(2, "out_of_range"), (3, "not_finite")]


CHURN_GOOD = {
    "request_id": "r1",
    "time": "2024-05-01T12:00:00.250Z",
    "label_pred": "yes",
    "scores": {"no": 0.25, "yes": 0.75},
    "tenure": 12.5,
    "plan": 2,
    "region": "eu",
    "autopay": True,
    "served_by": "model-v3",
}  # extra fields are ignored
MAY_FIRST_NOON_MS = 1714564800000


def test_a_classifiers_log_decodes_to_class_texts_probabilities_and_epoch_ms():
    decoder = DECODERS["churn"]
    cases = [
        (CHURN_GOOD, None),
        (
            {**CHURN_GOOD, "request_id": 7, "time": "2024-05-01T14:00:00+02:00", "autopay": False},
            None,
        ),
        (
            {**CHURN_GOOD, "time": "2024-05-01T12:00:00", "label_pred": "maybe", "plan": 9},
            None,
        ),  # naive = UTC; unseen: drift, not bad input
        ({**CHURN_GOOD, "plan": "2"}, "wrong_type"),  # an integer category given as text
        ({**CHURN_GOOD, "autopay": "true"}, "wrong_type"),
        ({**CHURN_GOOD, "label_pred": 1}, "wrong_type"),  # classes are strings in this schema
        (
            {**CHURN_GOOD, "time": 1714564800000},
            "wrong_type",
        ),  # epoch ms where the schema says ISO-8601
        ({**CHURN_GOOD, "time": "2024-05-32T00:00:00Z"}, "wrong_type"),
        ({**CHURN_GOOD, "scores": {"no": 0.25}}, "missing_field"),
        ({**CHURN_GOOD, "scores": {"no": 0.25, "yes": 1.5}}, "out_of_range"),
        ({**CHURN_GOOD, "scores": [0.25, 0.75]}, "wrong_type"),
        ({k: v for k, v in CHURN_GOOD.items() if k != "region"}, "missing_field"),
        ({**CHURN_GOOD, "tenure": -1}, "out_of_range"),
        (
            {**CHURN_GOOD, "features": {"tenure": 1.0}, "tenure": None},
            "wrong_type",
        ),  # top level here: not nested
    ]
    batch, rejected = decoder.predictions([to_bytes(message) for message, _ in cases])
    assert [(i, r.reason) for i, r in rejected] == [
        (i, why) for i, (_, why) in enumerate(cases) if why
    ]
    assert batch.ids.tolist() == ["r1", "7", "r1"]
    assert (
        batch.ts.tolist() == [MAY_FIRST_NOON_MS + 250, MAY_FIRST_NOON_MS, MAY_FIRST_NOON_MS]
        and batch.ts.dtype == np.int64
    )
    assert (
        batch.predictions.tolist() == ["yes", "yes", "maybe"] and batch.predictions.dtype == object
    )
    assert batch.numeric == {"tenure": pytest.approx(np.array([12.5, 12.5, 12.5]))}
    assert {c: v.tolist() for c, v in batch.categorical.items()} == {
        "plan": ["2", "2", "9"],
        "region": ["eu"] * 3,
        "autopay": ["true", "false", "true"],
    }
    assert {c: v.tolist() for c, v in batch.probabilities.items()} == {
        "no": [0.25] * 3,
        "yes": [0.75] * 3,
    }
    labels = [
        {"request_id": 7, "time": "2024-05-01T12:00:00Z", "churned": "no"},
        {
            "request_id": "r1",
            "time": "2024-05-01T12:00:01Z",
            "churned": "maybe",
        },  # unseen: counted by the core
        {"request_id": "r2", "time": "2024-05-01T12:00:00Z", "churned": True},
        {"request_id": "r3", "churned": "no"},
    ]
    ids, ts, values, rejected = decoder.labels([to_bytes(label) for label in labels])
    assert ids == ["7", "r1"] and ts.tolist() == [MAY_FIRST_NOON_MS, MAY_FIRST_NOON_MS + 1000]
    assert values.tolist() == ["no", "maybe"] and values.dtype == object
    assert [(i, r.reason) for i, r in rejected] == [(2, "wrong_type"), (3, "missing_field")]


def test_integer_and_boolean_classes_become_their_text():
    schema = parse_schema({**CHURN.to_yaml(), "classes": [0, 1]}, "ints.yaml")
    schema = parse_schema(
        {**schema.to_yaml(), "messages": {**schema.to_yaml()["messages"], "probabilities": None}}
    )
    decoder = Decoder(schema)
    message = {k: v for k, v in CHURN_GOOD.items() if k != "scores"}
    batch, rejected = decoder.predictions(
        [to_bytes({**message, "label_pred": 1}), to_bytes({**message, "label_pred": "1"})]
    )
    assert batch.predictions.tolist() == ["1"] and batch.probabilities == {}
    assert [r.reason for _, r in rejected] == ["wrong_type"]
    ids, _, values, rejected = decoder.labels(
        [to_bytes({"request_id": "a", "time": "2024-05-01T12:00:00Z", "churned": 0})]
    )
    assert values.tolist() == ["0"] and not rejected


# -- property: the typed decoders accept only what the checks accept, and the batch path agrees ------
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
DIAMOND_RECORD = {
    "id": "r",
    "ts": 1,
    "carat": 0.7,
    "cut": "Ideal",
    "color": "E",
    "clarity": "SI1",
    "depth": 61.5,
    "table": 55.0,
}
CHURN_MESSAGE = {k: v for k, v in CHURN_GOOD.items() if k != "served_by"}


def mutated(valid: dict, values: st.SearchStrategy) -> st.SearchStrategy:
    """A valid object with a field or two replaced or removed, joined by extra fields (few changes,
    so that about a third of the examples stay valid and the accepting side is exercised too)."""
    return st.builds(
        lambda drop, changes, extra: {
            **{k: v for k, v in valid.items() if k not in drop},
            **changes,
            **extra,
        },
        st.sets(st.sampled_from(sorted(valid)), max_size=1),
        st.dictionaries(st.sampled_from(sorted(valid)), values, max_size=2),
        st.dictionaries(
            st.text(max_size=8).filter(lambda k: k not in valid), json_values, max_size=3
        ),
    )


diamond_predictions = st.builds(
    lambda record, value: (
        {k: record[k] for k in ("id", "ts") if k in record}
        | {
            "prediction": value,
            "features": {k: v for k, v in record.items() if k not in ("id", "ts")},
        }
    ),
    mutated(DIAMOND_RECORD, json_values),
    st.one_of(st.floats(-1e9, 1e9), st.integers(-10, 10**6), json_values),
)
diamond_labels = st.builds(
    lambda record, value: {k: record[k] for k in ("id", "ts") if k in record} | {"price": value},
    mutated(DIAMOND_RECORD, json_values),
    st.one_of(st.floats(-1, 1e7 + 1), st.integers(-1, 10**8), json_values),
)
# ISO-8601 texts msgspec may or may not take, classes known and unknown, probabilities of any shape
times = st.sampled_from(
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.123456+05:30",
        "2024-05-01 12:00:00",
        "2024-05-01",
        "2024-02-30T00:00:00Z",
        "12:00",
        "",
        "now",
    ]
) | st.datetimes().map(dt.datetime.isoformat)
classes = st.sampled_from(["no", "yes", "maybe", "", "x" * 65, 0, 1, True])
scores = st.dictionaries(
    st.sampled_from(["no", "yes", "maybe"]), json_values | st.floats(-0.5, 1.5), max_size=3
)
churn_values = (
    json_values
    | times
    | classes
    | scores
    | st.floats(-10, 700)
    | st.sampled_from([1, 2, 3, 4, "1", False])
)
churn_predictions = mutated(CHURN_MESSAGE, churn_values)
churn_labels = mutated(
    {"request_id": "r", "time": "2024-05-01T12:00:00Z", "churned": "yes"}, churn_values
)


def typed_decode(decoder, raw: bytes):
    """The typed decoder's record, or None when it refuses."""
    try:
        return decoder.decode(raw)
    except DecodeFailure:
        return None


def expected_columns(schema, record) -> tuple:
    """The columns of one checked prediction Struct: what the batch path must give for it."""
    d, m = decoders_of(schema), schema.messages
    holder = d.getter("prediction", m.features)(record) if m.features else record
    prediction = d.getter("prediction", m.prediction)(record)
    probabilities = {}
    if m.probabilities:
        struct = d.getter("prediction", m.probabilities)(record)
        probabilities = {
            text: getattr(struct, f"p{i}") for i, text in enumerate(schema.class_texts)
        }
    holder_kind = "features" if m.features else "prediction"
    return (
        d.getter("prediction", m.id)(record),
        int(epoch_ms([d.getter("prediction", m.timestamp)(record)], m.timestamp_format)[0]),
        category_text(prediction) if schema.classification else float(prediction),
        {
            f.name: float(d.getter(holder_kind, f.name)(holder))
            for f in schema.features
            if f.numeric
        },
        {
            f.name: category_text(d.getter(holder_kind, f.name)(holder))
            for f in schema.features
            if not f.numeric
        },
        probabilities,
    )


def batch_columns(batch) -> tuple:
    return (
        batch.ids[0],
        int(batch.ts[0]),
        batch.predictions[0].item() if batch.predictions.dtype != object else batch.predictions[0],
        {c: float(v[0]) for c, v in batch.numeric.items()},
        {c: v[0] for c, v in batch.categorical.items()},
        {c: float(v[0]) for c, v in batch.probabilities.items()},
    )


def check_agreement(schema, prediction: dict, label: dict) -> None:
    """The typed decoder may refuse more than the checks (they then give the verdict), never accept
    more, and what it accepts has the checks' values; the batch path gives the check's verdict."""
    decoder = DECODERS[schema.name]
    raw = to_bytes(prediction)
    expected = verdict(check_prediction, decoders_of(schema), raw)
    typed = typed_decode(decoders_of(schema).prediction, raw)
    if typed is not None:
        assert not isinstance(expected, Rejection) and typed == expected
    batch, rejected = decoder.predictions([raw])
    if isinstance(expected, Rejection):
        assert expected.reason in REJECTION_REASONS and expected.detail
        assert len(batch) == 0 and [r.reason for _, r in rejected] == [expected.reason]
    else:
        assert (
            not rejected
            and len(batch) == 1
            and batch_columns(batch) == expected_columns(schema, expected)
        )

    raw = to_bytes(label)
    expected = verdict(check_label, decoders_of(schema), raw)
    typed = typed_decode(decoders_of(schema).label, raw)
    if typed is not None:
        assert not isinstance(expected, Rejection) and typed == expected
    ids, ts, values, rejected = decoder.labels([raw])
    if isinstance(expected, Rejection):
        assert not ids and [r.reason for _, r in rejected] == [expected.reason]
    else:
        d, layout = decoders_of(schema), schema.labels
        target = d.getter("label", schema.label_field)(expected)
        assert (ids, ts.tolist(), values.tolist(), rejected) == (
            [d.getter("label", layout.id)(expected)],
            epoch_ms(
                [d.getter("label", layout.timestamp)(expected)], schema.messages.timestamp_format
            ).tolist(),
            [category_text(target) if schema.classification else float(target)],
            [],
        )


@settings(max_examples=400)
@given(diamond_predictions, diamond_labels)
def test_typed_prediction_and_label_decoders_accept_only_what_the_contract_accepts(
    prediction, label
):
    check_agreement(DIAMONDS, prediction, label)


@settings(max_examples=400)
@given(churn_predictions, churn_labels)
def test_a_classifiers_typed_decoders_accept_only_what_its_checks_accept(prediction, label):
    check_agreement(CHURN, prediction, label)


def test_decoding_imports_no_io_library():
    """monitor.decode is pure: the service hands it message values."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; import monitor.decode; "
        "bad = [m for m in ('pandas', 'confluent_kafka', 'prometheus_client', 'flask') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_integral_float_is_the_integer_class_or_category_it_writes():
    """Another team's tooling writes classes and codes as floats: 1.0 is class 1 and category 2.0 is 2,
    on the typed path and the checked one alike; 1.5 is no integer."""
    schema = parse_schema(
        {
            **CHURN.to_yaml(),
            "classes": [0, 1],
            "messages": {**CHURN.to_yaml()["messages"], "probabilities": {1: "p_one"}},
        },
        "floats.yaml",
    )
    decoder = Decoder(schema)
    message = {k: v for k, v in CHURN_GOOD.items() if k != "scores"} | {"p_one": 0.8}
    values = [
        to_bytes({**message, "label_pred": 1.0, "plan": 2.0}),
        to_bytes({**message, "label_pred": 0, "plan": 3}),
        to_bytes({**message, "label_pred": 1.5}),
        to_bytes({**message, "label_pred": 1, "plan": 2.5}),
        to_bytes({**message, "label_pred": 1, "p_one": 1.2}),
    ]
    batch, rejected = decoder.predictions(values)
    assert batch.predictions.tolist() == ["1", "0"] and batch.categorical["plan"].tolist() == [
        "2",
        "3",
    ]
    assert {c: v.tolist() for c, v in batch.probabilities.items()} == {
        "1": [0.8, 0.8]
    }  # the positive class's only
    assert [(i, r.reason, r.detail) for i, r in rejected] == [
        (2, "wrong_type", "'label_pred' must be an integer, got a fractional number"),
        (3, "wrong_type", "'plan' must be an integer, got a fractional number"),
        (4, "out_of_range", "'p_one'=1.2 outside [0, 1]"),
    ]
    ids, _, labels, rejected = decoder.labels(
        [
            to_bytes({"request_id": "a", "time": "2024-05-01T12:00:00Z", "churned": 1.0}),
            to_bytes({"request_id": "b", "time": "2024-05-01T12:00:00Z", "churned": 0.5}),
        ]
    )
    assert labels.tolist() == ["1"] and [r.reason for _, r in rejected] == ["wrong_type"]
    # every record of a batch of floats takes the typed path: the checks are never asked
    records, refused = decode_records(
        values[:2], decoders_of(schema).prediction, lambda raw: pytest.fail("slow path")
    )
    assert len(records) == 2 and not refused


def test_epoch_seconds_become_epoch_ms():
    schema = parse_schema(
        {
            **CHURN.to_yaml(),
            "messages": {**CHURN.to_yaml()["messages"], "timestamp_format": "epoch_s"},
            "labels": {"id": "request_id", "timestamp": "time", "target": "churned"},
        },
        "s.yaml",
    )
    batch, rejected = Decoder(schema).predictions(
        [
            to_bytes({**CHURN_GOOD, "time": 1714564800}),
            to_bytes({**CHURN_GOOD, "time": 1714564800.25}),
            to_bytes({**CHURN_GOOD, "time": "1714564800"}),
        ]
    )
    assert batch.ts.tolist() == [MAY_FIRST_NOON_MS, MAY_FIRST_NOON_MS + 250]
    assert [(i, r.reason) for i, r in rejected] == [(2, "wrong_type")]
