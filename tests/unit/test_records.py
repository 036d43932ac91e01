"""The record contract: every bad-input class has its own reason, valid records round-trip."""
from __future__ import annotations

import json

import pytest

from contract.records import (
    MAX_RECORD_BYTES, FeatureRecord, Rejection, decode_features, decode_label, encode, prediction_message,
)

VALID = {"id": "r-1", "ts": 1_700_000_000_000, "carat": 0.7, "cut": "Ideal", "color": "E", "clarity": "SI1",
         "depth": 61.5, "table": 55.0}


def with_(**changes):
    record = {**VALID, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def test_valid_record_decodes_to_its_fields():
    record = decode_features(json.dumps(VALID).encode())
    assert record == FeatureRecord("r-1", 1_700_000_000_000, 0.7, "Ideal", "E", "SI1", 61.5, 55.0)
    assert record.unseen_categories == ()
    assert record.to_json() == VALID


@pytest.mark.parametrize("raw, reason", [
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
    (b'{"id":"a","ts":1,"carat":NaN,"cut":"Ideal","color":"E","clarity":"SI1","depth":61,"table":55}', "not_finite"),
    (b'{"id":"a","ts":1,"carat":1,"cut":"Ideal","color":"E","clarity":"SI1","depth":Infinity,"table":55}', "not_finite"),
    (with_(carat=-0.5), "out_of_range"),
    (with_(carat=0), "out_of_range"),
    (with_(table=101), "out_of_range"),
    (with_(ts=-1), "out_of_range"),
    (with_(cut=""), "out_of_range"),
    (with_(id="x" * 129), "out_of_range"),
])
def test_each_bad_input_class_is_rejected_with_its_reason(raw, reason):
    result = decode_features(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason, result.detail


def test_oversize_is_judged_on_bytes_before_parsing():
    raw = with_(pad="x" * MAX_RECORD_BYTES)
    assert decode_features(raw).reason == "oversize"


def test_unseen_category_is_valid_and_named():
    record = decode_features(with_(clarity="I2", color="Z"))
    assert isinstance(record, FeatureRecord)
    assert record.unseen_categories == ("color", "clarity")


def test_integer_ids_and_extra_fields_are_accepted():
    record = decode_features(with_(id=17, note="extra"))
    assert record.id == "17"


def test_price_in_a_feature_record_is_kept_for_labels():
    assert decode_features(with_(price=1234)).price == 1234.0
    assert decode_features(with_(price=-3)).reason == "out_of_range"


def test_label_decoding():
    assert decode_label(b'{"id":"a","ts":5,"price":326}').price == 326.0
    assert decode_label(b'{"id":"a","ts":5}').reason == "missing_field"
    assert decode_label(b'{"id":"a","ts":5,"price":"cheap"}').reason == "wrong_type"


def test_prediction_message_shape_and_encoding():
    record = decode_features(json.dumps(VALID).encode())
    message = json.loads(encode(prediction_message(record, 2500.5, "v1", 42)))
    assert message == {"id": "r-1", "ts": VALID["ts"], "scored_at": 42, "model_version": "v1",
                       "prediction": 2500.5, "features": {k: VALID[k] for k in
                                                          ("carat", "cut", "color", "clarity", "depth", "table")}}
    with pytest.raises(ValueError, match="model returned nan"):
        prediction_message(record, float("nan"), "v1", 42)


def test_integers_too_large_for_a_float_are_out_of_range():
    assert decode_features(with_(carat=10**400)).reason == "out_of_range"
    # orjson reads integers beyond 64 bits as floats, so such a ts is reported as not an integer.
    assert decode_features(with_(ts=10**30)).reason == "wrong_type"
    assert decode_features(with_(ts=2**60)).reason == "out_of_range"
