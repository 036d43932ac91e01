"""The schema: one file per model, checked at load with messages that say what to change, and the
record rules derived from it (typed C decoders and the checks that name a refusal's reason agree)."""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import msgspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.artifacts import read_reference
from contract.decoders import (
    check_label,
    check_prediction,
    check_record,
    decode_records,
    epoch_ms,
    verdict,
)
from contract.rules import MAX_RECORD_BYTES, REJECTION_REASONS, Rejection, category_text
from contract.schema import DEFAULT_SCHEMA, SchemaError
from contract.schema_file import load_schema, parse_schema
from tests.support import decoders_of

DIAMONDS = load_schema(DEFAULT_SCHEMA)
VALID = {
    "id": "r-1",
    "ts": 1_700_000_000_000,
    "carat": 0.7,
    "cut": "Ideal",
    "color": "E",
    "clarity": "SI1",
    "depth": 61.5,
    "table": 55.0,
}


def with_(**changes) -> bytes:
    record = {**VALID, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def record_verdict(schema, raw: bytes):
    """The batch path's verdict (typed decoder, then the checks for what it refused) on one record."""
    d = decoders_of(schema)
    records, rejections = decode_records(
        [raw], d.record, lambda r: verdict(check_record, decoders_of(schema), r)
    )
    return rejections[0][1] if rejections else records[0]


# -- diamonds: today's contract, now read from the schema file -------------------------------------
def test_the_diamonds_schema_describes_todays_model():
    assert (DIAMONDS.name, DIAMONDS.task, DIAMONDS.target) == ("diamonds", "regression", "price")
    assert DIAMONDS.feature_names == ("carat", "cut", "color", "clarity", "depth", "table")
    assert DIAMONDS.numeric == ("carat", "depth", "table") and DIAMONDS.categorical == (
        "cut",
        "color",
        "clarity",
    )
    assert DIAMONDS.feature("cut").known == {"Fair", "Good", "Very Good", "Premium", "Ideal"}
    assert (
        str(DIAMONDS.feature("carat").bounds) == "(0, 20]"
        and str(DIAMONDS.target_bounds) == "(0, 1e+07]"
    )
    record = record_verdict(DIAMONDS, json.dumps(VALID).encode())
    assert (record.id, record.ts, record.carat, record.cut, record.table) == (
        "r-1",
        VALID["ts"],
        0.7,
        "Ideal",
        55.0,
    )


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[" * 100_000 + b"]" * 100_000, "oversize"),
        (b"[" * 4000 + b"]" * 4000, "not_json"),  # under the size limit, too deep to parse
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (with_(carat=...), "missing_field"),
        (with_(id=...), "missing_field"),
        (with_(ts=...), "missing_field"),
        (with_(carat="0.7"), "wrong_type"),
        (with_(carat=True), "wrong_type"),
        (with_(cut=3), "wrong_type"),
        (with_(ts=1.5), "wrong_type"),
        (with_(id=None), "wrong_type"),
        (
            b'{"id":"a","ts":1,"carat":NaN,"cut":"Ideal","color":"E","clarity":"SI1","depth":61,"table":55}',
            "not_finite",
        ),
        (
            b'{"id":"a","ts":1,"carat":1,"cut":"Ideal","color":"E","clarity":"SI1","depth":Infinity,"table":55}',
            "not_finite",
        ),
        (with_(carat=-0.5), "out_of_range"),
        (with_(carat=0), "out_of_range"),
        (with_(table=101), "out_of_range"),
        (with_(ts=-1), "out_of_range"),
        (with_(cut=""), "out_of_range"),
        (with_(id="x" * 129), "out_of_range"),
        (with_(price=-3), "out_of_range"),
        (with_(carat=10**400), "out_of_range"),
        (with_(ts=2**60), "out_of_range"),
    ],
)
def test_each_bad_input_class_is_rejected_with_its_reason(raw, reason):
    result = record_verdict(DIAMONDS, raw)
    assert isinstance(result, Rejection) and result.reason == reason, result


def test_integer_ids_extra_fields_labels_and_unseen_categories_are_accepted():
    record = record_verdict(DIAMONDS, with_(id=17, note="extra", price=1234, clarity="I2"))
    assert (record.id, record.price, record.clarity) == ("17", 1234.0, "I2")
    assert (
        "I2" not in DIAMONDS.feature("clarity").known
    )  # valid, and counted as unseen by the services


def test_oversize_is_judged_on_bytes_before_parsing():
    assert record_verdict(DIAMONDS, with_(pad="x" * MAX_RECORD_BYTES)).reason == "oversize"


def test_labels_and_predictions_of_diamonds():
    assert (
        verdict(check_label, decoders_of(DIAMONDS), b'{"id":"a","ts":5,"price":326}').price == 326.0
    )
    assert (
        verdict(check_label, decoders_of(DIAMONDS), b'{"id":"a","ts":5}').reason == "missing_field"
    )
    assert (
        verdict(check_label, decoders_of(DIAMONDS), b'{"id":"a","ts":5,"price":"cheap"}').reason
        == "wrong_type"
    )
    good = {
        "id": "a",
        "ts": 5,
        "prediction": 512.5,
        "features": {k: v for k, v in VALID.items() if k not in ("id", "ts")},
    }
    assert (
        verdict(check_prediction, decoders_of(DIAMONDS), json.dumps(good).encode()).features.cut
        == "Ideal"
    )
    assert (
        verdict(
            check_prediction, decoders_of(DIAMONDS), json.dumps({**good, "features": 3}).encode()
        ).reason
        == "wrong_type"
    )
    assert (
        verdict(
            check_prediction,
            decoders_of(DIAMONDS),
            json.dumps({**good, "prediction": None}).encode(),
        ).reason
        == "wrong_type"
    )


# -- another model: classification, ISO timestamps, top-level features, integer categories ---------
LOANS = textwrap.dedent("""\
    name: loans
    task: classification
    target: repaid
    classes: [no, yes, late]
    prediction: predicted
    features:
      - {name: income, type: numeric, range: {ge: 0}}
      - {name: channel, type: categorical, categories: [web, branch, partner]}
      - {name: grade, type: categorical, categories: [1, 2, 3, 4]}
      - {name: insured, type: categorical, categories: [true, false]}
    messages:
      id: request_id
      timestamp: at
      timestamp_format: iso8601
      prediction: label
      probabilities: scores
      features: null
    labels: {id: request_id, timestamp: at, target: outcome}
    """)


@pytest.fixture
def loans(tmp_path):
    path = tmp_path / "loans.yaml"
    path.write_text(LOANS)
    return load_schema(path)


def test_a_classification_schema_with_its_own_layout(loans):
    assert loans.classes == ("no", "yes", "late")  # YAML 1.2: no and yes stay strings
    assert [f.kind for f in loans.features] == ["number", "string", "integer", "boolean"]
    assert loans.feature("insured").known == {"true", "false"} and category_text(3) == "3"
    assert loans.probability_columns == ("proba_no", "proba_yes", "proba_late")
    message = {
        "request_id": 7,
        "at": "2026-01-02T03:04:05.5+01:00",
        "label": "late",
        "income": 1200,
        "channel": "web",
        "grade": 2,
        "insured": False,
        "scores": {"no": 0.1, "yes": 0.2, "late": 0.7},
        "x": 1,
    }
    decoded = verdict(check_prediction, decoders_of(loans), json.dumps(message).encode())
    assert (
        decoded.request_id == "7"
        and decoded.label == "late"
        and decoded.grade == 2
        and decoded.insured is False
    )
    assert epoch_ms([decoded.at], "iso8601").tolist() == [1767319445500]
    # The typed decoder refuses the integer id; with a string id it takes the message in C.
    typed = decoders_of(loans).prediction.decode(
        json.dumps({**message, "request_id": "7"}).encode()
    )
    assert typed == decoded
    for change, reason in [
        ({"grade": "2"}, "wrong_type"),
        ({"insured": "no"}, "wrong_type"),
        ({"income": -1}, "out_of_range"),
        ({"at": "yesterday"}, "wrong_type"),
        ({"at": 1767319445500}, "wrong_type"),
        ({"scores": {"no": 0.5, "yes": 0.5}}, "missing_field"),
        ({"scores": {"no": 1.5, "yes": 0.0, "late": 0.0}}, "out_of_range"),
        ({"label": 3}, "wrong_type"),
    ]:
        assert (
            verdict(
                check_prediction, decoders_of(loans), json.dumps({**message, **change}).encode()
            ).reason
            == reason
        ), change
    label = decoders_of(loans).label.decode(
        b'{"request_id":"7","at":"2026-01-02T03:04:05Z","outcome":"maybe"}'
    )
    assert (
        label.outcome == "maybe"
    )  # a class the schema does not list is valid: the monitor counts it
    assert loans.label_record("7", 1767319445500, "yes") == {
        "request_id": "7",
        "at": "2026-01-02T02:04:05.500Z",
        "outcome": "yes",
    }


def test_naive_iso_timestamps_are_utc():
    naive, aware = (
        dt.datetime(2026, 1, 1),
        dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )
    assert epoch_ms([naive, aware], "iso8601").tolist() == [
        1767225600000,
        1767225600000 - 7_200_000,
    ]


def test_to_yaml_round_trips(loans):
    assert parse_schema(loans.to_yaml(), loans.source) == loans
    assert parse_schema(DIAMONDS.to_yaml(), DIAMONDS.source) == DIAMONDS


@pytest.mark.parametrize(
    "change, message",
    [
        ("task: ranking", r"task: 'ranking' is not a task: use regression or classification"),
        (
            "features:\n  - {name: a, type: numeric}\n  - {name: a, type: categorical, categories: [x]}",
            r"features\[1\] \(a\): feature 'a' is listed twice: keep one",
        ),
        (
            "features:\n  - {name: a, type: text}",
            r"features\[0\] \(a\).type: 'text' is not a feature type: use numeric or categorical",
        ),
        ("features:\n  - {name: y, type: numeric}", r"the target 'y' is among the features"),
        (
            "features:\n  - {name: a, type: categorical, categories: []}",
            r"categories: must be a non-empty list",
        ),
        (
            "features:\n  - {name: a, type: categorical, categories: [x, 1]}",
            r"all strings, all integers or all booleans",
        ),
        (
            "features:\n  - {name: a, type: numeric, range: {gt: 5, lt: 1}}",
            r"lower bound 5 must be below the upper bound 1",
        ),
        (
            "features:\n  - {name: a, type: numeric, range: {min: 0}}",
            r"must be a mapping of gt, ge",
        ),
        ("colour: red", r"colour: unknown key"),
        ("task: regression\ntask: regression", r"key 'task' is given twice \(line \d+\): keep one"),
        ("task: classification", r"classes: missing"),
        (
            "messages: {probabilities: p}",
            r"messages.probabilities: only a classifier's messages carry class probabilities",
        ),
        ("messages: {timestamp_format: unix}", r"'unix': use epoch_ms, epoch_s or iso8601"),
        (
            "messages: {features: null}\nfeatures:\n  - {name: prediction2, type: numeric}\n"
            "  - {name: ts2, type: numeric}",
            None,
        ),  # top-level features whose names do not clash are fine
        (
            "messages: {features: null, prediction: a}\nfeatures:\n  - {name: a, type: numeric}",
            r"top-level feature 'a' clashes with a message field",
        ),
        ("name: 'my model'", r"name: 'my model' must be 1-64 letters"),
        (
            "task: classification\nclasses: [0, 1]\nmessages: {probabilities: {2: p}}",
            r"messages.probabilities.2: not one of the classes \(0, 1\)",
        ),
        (
            "task: classification\nclasses: [a, b, c]\nmessages: {probabilities: {a: p}}",
            r"messages.probabilities: name a field for every class \(a, b, c\); only a binary model may name one",
        ),
        (
            "task: classification\nclasses: [0, 1]\nmessages: {probabilities: {0: p, 1: p}}",
            r"messages.probabilities: each class needs its own field",
        ),
        (
            "task: classification\nclasses: [0, 1]\nprobabilities: {1: p}",
            r"probabilities: the reference's probability columns are only read when the messages carry probabilities",
        ),
        (
            "task: classification\nclasses: [0, 1]\nprobabilities: {0: p}\nmessages: {probabilities: {1: p}}",
            r"probabilities: name a reference column for each class whose probability the messages carry: 1",
        ),
        (
            "task: classification\nclasses: [0, 1]\nprobabilities: {1: a}\nmessages: {probabilities: {1: p}}",
            r"probabilities: 'a' is the target, the prediction or a feature, not a probability column",
        ),
    ],
)
def test_a_bad_schema_names_the_file_the_key_and_what_to_change(tmp_path, change, message):
    base = {
        "name": "m",
        "task": "regression",
        "target": "y",
        "features": "features:\n  - {name: a, type: numeric}",
    }
    lines = [f"name: {base['name']}", f"task: {base['task']}", f"target: {base['target']}"]
    keys = {line.split(":")[0] for line in change.splitlines() if not line.startswith(" ")}
    text = "\n".join(line for line in lines if line.split(":")[0] not in keys) + "\n"
    if "features" not in keys:
        text += base["features"] + "\n"
    path = tmp_path / "schema.yaml"
    path.write_text(text + change + "\n")
    if message is None:
        load_schema(path)
        return
    with pytest.raises(SchemaError, match=message) as raised:
        load_schema(path)
    assert str(raised.value).startswith(str(path))


def test_unreadable_and_not_yaml_schemas(tmp_path):
    with pytest.raises(SchemaError, match="cannot read schema"):
        load_schema(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SchemaError, match=r"bad.yaml is not valid YAML.*line"):
        load_schema(tmp_path / "bad.yaml")


def test_a_reference_is_checked_against_the_schema(tmp_path, loans):
    frame = pd.DataFrame(
        {
            "income": [1.0, 2.0],
            "channel": ["web", "web"],
            "grade": [1, 2],
            "insured": [True, False],
            "repaid": ["no", "yes"],
            "predicted": ["no", "no"],
            "proba_no": [0.6, 0.7],
            "proba_yes": [0.3, 0.2],
            "proba_late": [0.1, 0.1],
        }
    )
    path = tmp_path / "reference.csv"
    frame.to_csv(path, index=False)
    read = read_reference(path, loans)
    assert read["grade"].tolist() == [1, 2] and read["insured"].tolist() == [True, False]
    frame.to_parquet(tmp_path / "reference.parquet")
    assert read_reference(tmp_path / "reference.parquet", loans).equals(read)
    frame.drop(columns="proba_late").to_csv(path, index=False)
    with pytest.raises(
        SchemaError, match=r"reference.csv: no column 'proba_late', which .*loans.yaml needs"
    ):
        read_reference(path, loans)
    frame.assign(grade=[1.5, 2]).to_csv(path, index=False)
    with pytest.raises(
        SchemaError, match="'grade' holds integer categories in the schema but has 1.5"
    ):
        read_reference(path, loans)
    frame.assign(income=[1.0, None]).to_csv(path, index=False)
    with pytest.raises(SchemaError, match="'income' is empty in 1 of 2 rows"):
        read_reference(path, loans)


def test_a_reference_holding_the_event_time_must_hold_the_schemas_format(tmp_path, loans):
    """A log written like its reference: text times in a reference whose schema says epoch ms would
    have every message refused, so the monitor refuses at start, naming the column and a value."""
    frame = pd.DataFrame(
        {
            "income": [1.0, 2.0],
            "channel": ["web", "web"],
            "grade": [1, 2],
            "insured": [True, False],
            "repaid": ["no", "yes"],
            "predicted": ["no", "no"],
            "proba_no": [0.6, 0.7],
            "proba_yes": [0.3, 0.2],
            "proba_late": [0.1, 0.1],
            "at": ["2018-10-30 18:00:00.000", "2018-10-30 18:07:00.000"],
        }
    )
    path = tmp_path / "reference.csv"
    frame.to_csv(path, index=False)
    assert loans.messages.timestamp == "at" and loans.messages.timestamp_format == "iso8601"
    assert len(read_reference(path, loans)) == 2
    epoch = parse_schema(
        {
            **loans.to_yaml(),
            "messages": {**loans.to_yaml()["messages"], "timestamp_format": "epoch_ms"},
        },
        "epoch.yaml",
    )
    with pytest.raises(
        SchemaError,
        match=r"reference.csv: column 'at' holds '2018-10-30 18:00:00.000', not epoch_ms "
        r"as epoch.yaml says \(messages.timestamp_format",
    ):
        read_reference(path, epoch)


def test_a_binary_models_one_probability_column_is_its_positive_class():
    schema = parse_schema(
        {
            "name": "m",
            "task": "classification",
            "target": "y",
            "classes": [0, 1],
            "prediction": "y_pred",
            "probabilities": {1: "y_pred_proba"},
            "features": [{"name": "a", "type": "numeric"}],
            "messages": {"probabilities": {1: "y_pred_proba"}, "features": None},
        },
        "m.yaml",
    )
    assert schema.probability_classes == ("1",) and schema.probability_columns == ("y_pred_proba",)
    assert (
        schema.messages.probability_fields == (("1", "y_pred_proba"),)
        and schema.messages.probabilities is None
    )
    assert parse_schema(schema.to_yaml(), "m.yaml") == schema
    every = parse_schema(
        {
            **schema.to_yaml(),
            "probabilities": {0: "p0", 1: "p1"},
            "messages": {"probabilities": "scores"},
        },
        "m.yaml",
    )
    assert every.probability_classes == ("0", "1") and every.probability_columns == ("p0", "p1")


# -- the typed decoders accept only what the checks accept, for any layout ------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
LOAN_RECORD = {
    "request_id": "r",
    "at": "2026-01-02T03:04:05Z",
    "income": 10.0,
    "channel": "web",
    "grade": 2,
    "insured": True,
}
mutated = st.builds(
    lambda drop, changes: {**{k: v for k, v in LOAN_RECORD.items() if k not in drop}, **changes},
    st.sets(st.sampled_from(sorted(LOAN_RECORD))),
    st.dictionaries(st.sampled_from(sorted(LOAN_RECORD) + ["repaid"]), json_values, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(record=mutated)
def test_typed_record_decoder_accepts_only_what_the_checks_accept(tmp_path_factory, record):
    path = tmp_path_factory.getbasetemp() / "loans.yaml"
    if not path.exists():
        path.write_text(LOANS)
    loans = load_schema(path)
    raw = json.dumps(record, allow_nan=True).encode()
    checked = verdict(check_record, decoders_of(loans), raw)
    try:
        typed = decoders_of(loans).record.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        typed = None
    if typed is not None:
        assert not isinstance(checked, Rejection) and typed == checked
    if isinstance(checked, Rejection):
        assert checked.reason in REJECTION_REASONS and checked.detail
    batch = record_verdict(loans, raw)
    assert batch == checked


def test_decode_records_keeps_positions_of_rejections():
    values = [
        json.dumps(VALID).encode(),
        b"oops",
        with_(carat=-1),
        json.dumps({**VALID, "id": 5}).encode(),
    ]
    records, rejections = decode_records(
        values,
        decoders_of(DIAMONDS).record,
        lambda r: verdict(check_record, decoders_of(DIAMONDS), r),
    )
    assert [r.id for r in records] == ["r-1", "5"]
    assert [(i, r.reason) for i, r in rejections] == [(1, "not_json"), (2, "out_of_range")]
    ids = list(map(decoders_of(DIAMONDS).getter("record", "carat"), records))
    assert np.array_equal(ids, [0.7, 0.7])
