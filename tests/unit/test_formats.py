"""The formats' decoders and the request/response join: exact columns, and every refusal's reason.

No broker: messages are built here as each serving system writes them (OIP JSON as MLServer
does, CloudEvents with the `cloudevents` package in binary mode, protobuf with tritonclient's
generated classes, Avro with confluent-kafka's serializer and its in-memory Schema Registry).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from contract.formats import FORMAT_REASONS, paired_decoder
from contract.formats.layout import (
    KSERVE_REQUEST,
    KSERVE_RESPONSE,
    PairedLayout,
    Source,
    parse_messages,
)
from contract.formats.rows import RequestRows, ResponseRows
from contract.rules import REJECTION_REASONS, Rejection
from contract.schema import SchemaError
from contract.schema_file import parse_schema

CLASSIFIER = parse_schema(
    {
        "name": "toy",
        "task": "classification",
        "target": "y",
        "classes": ["no", "yes"],
        "features": [
            {"name": "x", "type": "numeric", "range": {"ge": 0, "le": 100}},
            {"name": "c", "type": "categorical", "categories": ["a", "b"]},
            {"name": "k", "type": "categorical", "categories": [1, 2, 3]},
        ],
    }
)
REGRESSOR = parse_schema(
    {
        "name": "toy",
        "task": "regression",
        "target": "y",
        "features": [
            {"name": "x", "type": "numeric"},
            {"name": "c", "type": "categorical", "categories": ["a", "b"]},
        ],
    }
)


def fail(key: str, message: str) -> SchemaError:
    return SchemaError(f"toy.yaml: {key}: {message}")


def layout(fmt: str = "oip-v2", task: str = "classification", **keys) -> PairedLayout:
    if task == "classification" and "probabilities" not in keys:
        keys["probabilities"] = "predict_proba"
    return parse_messages({"format": fmt, **keys}, name="toy", task=task, fail=fail)[1]


def tensor(name: str, datatype: str, shape: list, data: list) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def request(ident: str | None = "r1", **replace) -> bytes:
    inputs = {
        "x": tensor("x", "FP64", [3, 1], [1.5, 2, 99.0]),
        "c": tensor("c", "BYTES", [3, 1], ["a", "b", "zz"]),
        "k": tensor("k", "INT64", [3, 1], [1, 2, 7]),
    }
    inputs.update(replace)
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [v for v in inputs.values() if v is not None],
    }
    if ident is not None:
        body["id"] = ident
    return json.dumps(body).encode()


def response(ident: str = "r1", **replace) -> bytes:
    outputs = {
        "predict": tensor("predict", "BYTES", [3, 1], ["no", "yes", "no"]),
        "predict_proba": tensor("predict_proba", "FP64", [3, 2], [0.75, 0.25, 0.5, 0.5, 1.0, 0.0]),
    }
    outputs.update(replace)
    return json.dumps(
        {
            "model_name": "toy",
            "model_version": "v1",
            "id": ident,
            "parameters": {},
            "outputs": [v for v in outputs.values() if v is not None],
        }
    ).encode()


def columns(rows: RequestRows | ResponseRows) -> dict:
    """A decoded message as plain lists, for exact comparison."""
    out = {
        "id": rows.id,
        "valid": rows.valid.tolist(),
        "rejected": [(i, r.reason) for i, r in rows.rejected],
    }
    if isinstance(rows, RequestRows):
        out.update(
            ts=rows.ts.tolist(),
            numeric={k: v.tolist() for k, v in rows.numeric.items()},
            categorical={k: v.tolist() for k, v in rows.categorical.items()},
        )
    else:
        out.update(
            predictions=rows.predictions.tolist(),
            probabilities={k: v.tolist() for k, v in rows.probabilities.items()},
        )
    return out


# -- the messages: block ---------------------------------------------------------------------------
def test_each_format_has_defaults_a_user_can_copy():
    oip = layout()
    assert (oip.requests, oip.responses, oip.id, oip.timestamp, oip.row_id) == (
        "mlserver-input",
        "mlserver-output",
        (Source("key"), Source("body")),
        Source("kafka"),
        "{id}:{row}",
    )
    seldon = layout("seldon-v2", namespace="prod", model="churn")
    assert (seldon.requests, seldon.responses, seldon.id) == (
        "seldon.prod.model.churn.inputs",
        "seldon.prod.model.churn.outputs",
        (Source("header", "x-request-id"), Source("key")),
    )
    kserve = layout("kserve-cloudevents", body="v1", timestamp="header:ce_time")
    assert (kserve.requests, kserve.responses, kserve.id, kserve.timestamp, kserve.body) == (
        "toy.inference-log",
        "toy.inference-log",
        (Source("header", "ce_id"),),
        Source("header", "ce_time"),
        "v1",
    )
    assert parse_messages(
        {"format": "avro", "id": "request_id", "features": None},
        name="toy",
        task="regression",
        fail=fail,
    ) == ("avro", None, {"id": "request_id", "features": None})
    assert parse_messages(None, name="toy", task="regression", fail=fail) == ("json", None, {})
    assert layout().row_ids("m", 3) == ["m:0", "m:1", "m:2"]
    assert layout(row_id="{id}").row_ids("m", 1) == ["m"]


@pytest.mark.parametrize(
    "block, message",
    [
        ({"format": "protobuf"}, "messages.format: 'protobuf': use one of json, oip-v2"),
        ({"format": "oip-v2", "namespace": "x"}, "messages.namespace: not a key of format oip-v2"),
        ({"format": "avro", "requests": "x"}, "messages.requests: not a key of format avro"),
        (
            {"format": "oip-v2", "id": "cookie"},
            "messages.id: 'cookie': the source is one of key, body, header, parameter",
        ),
        ({"format": "oip-v2", "id": "header"}, "messages.id: 'header': say which header"),
        (
            {"format": "oip-v2", "timestamp": "body"},
            "messages.timestamp: 'body': the source is one of kafka",
        ),
        ({"format": "oip-v2", "row_id": "{row}"}, "messages.row_id: '{row}': a template with {id}"),
        ({"format": "oip-v2", "row_id": "{id}-{col}"}, "messages.row_id: '{id}-{col}': a template"),
        (
            {"format": "oip-v2", "responses": "mlserver-input"},
            "messages.responses: requests and responses need",
        ),
        ({"format": "oip-v2", "requests": "a b"}, "messages.requests: 'a b' is not a topic name"),
        (
            {"format": "oip-v2", "probabilities": "predict_proba"},
            "messages.probabilities: only a classifier",
        ),
        ({"format": "kserve-cloudevents", "body": "v3"}, "messages.body: 'v3': use oip-v2 or v1"),
        (
            {"format": "kserve-cloudevents", "body": "v1", "timestamp": "input:ts"},
            "messages.timestamp: a v1 body",
        ),
    ],
)
def test_a_wrong_messages_block_names_the_key_and_the_fix(block, message):
    with pytest.raises(SchemaError) as error:
        parse_messages(block, name="toy", task="regression", fail=fail)
    assert str(error.value).startswith(f"toy.yaml: {message}")


def test_the_formats_reasons_do_not_reuse_the_json_reasons():
    assert not set(FORMAT_REASONS) & set(REJECTION_REASONS)


# -- OIP JSON (MLServer) -------------------------------------------------------------------------
def test_an_oip_request_becomes_columns_and_bad_rows_are_refused_alone():
    decoder = paired_decoder(CLASSIFIER, layout())
    rows = decoder.request(request(), b"key-1", [("mlserver-model", b"toy")], 1_700_000_000_000)
    assert columns(rows) == {
        "id": "key-1",
        "valid": [True, True, True],
        "rejected": [],
        "ts": [1_700_000_000_000] * 3,
        "numeric": {"x": [1.5, 2.0, 99.0]},
        "categorical": {"c": ["a", "b", "zz"], "k": ["1", "2", "7"]},
    }  # unseen categories are data, not errors
    out_of_range = decoder.request(
        request(x=tensor("x", "FP64", [3, 1], [1.5, -2, 101])), None, None, 5
    )
    assert columns(out_of_range)["valid"] == [True, False, False]
    assert out_of_range.rejected == [
        (1, Rejection("out_of_range", "row 1: 'x' outside [0, 100]")),
        (2, Rejection("out_of_range", "row 2: 'x' outside [0, 100]")),
    ]
    assert out_of_range.id == "r1"  # no key: the body's id


@pytest.mark.parametrize(
    "x",
    [
        tensor("x", "FP64", [3], [1.5, 2, 99.0]),  # shape [n]
        tensor("x", "FP64", [3, 1], [[1.5], [2], [99.0]]),  # nested
        tensor("x", "FP32", [3, 1], [1.5, 2, 99]),
        tensor("x", "INT32", [3, 1], [1, 2, 99]),
    ],
)
def test_flat_or_nested_data_and_shapes_n_or_n_by_1_give_the_same_column(x):
    rows = paired_decoder(CLASSIFIER, layout()).request(request(x=x), None, None, 1)
    assert rows.numeric["x"].tolist() == [
        int(v) if x["datatype"] == "INT32" else v for v in [1.5, 2.0, 99.0]
    ]


def test_one_matrix_input_holds_the_features_in_schema_order():
    matrix = layout(inputs="predict")
    body = {"id": "m", "inputs": [tensor("predict", "FP32", [2, 3], [[1.0, 0, 2], [3.5, 1, 3]])]}
    rows = paired_decoder(REGRESSOR if False else CLASSIFIER, matrix).request(
        json.dumps(body).encode(), None, None, 1
    )
    assert isinstance(rows, Rejection) is False
    assert columns(rows)["categorical"] == {"c": ["0", "1"], "k": ["2", "3"]}
    assert rows.numeric["x"].tolist() == [1.0, 3.5]


@pytest.mark.parametrize(
    "value, reason, detail",
    [
        (
            request(x=tensor("x", "FP64", [4, 1], [1.5, 2, 99.0])),
            "shape_mismatch",
            "tensor 'x' has shape [4, 1] but 3 values",
        ),
        (
            request(x=tensor("x", "FP64", [2, 1], [1.5, 2])),
            "shape_mismatch",
            "tensors of one message have different row counts: x 2, c 3, k 3",
        ),
        (
            request(x=tensor("x", "FP64", [3, 1, 1], [1.5, 2, 9])),
            "shape_mismatch",
            "tensor 'x' has shape [3, 1, 1]: a column is [n] or [n, 1], a matrix [n, k]",
        ),
        (
            request(x=tensor("x", "FP64", [3, 1], [[1.5, 2], [9]])),
            "shape_mismatch",
            "tensor 'x': nested rows of different lengths",
        ),
        (
            request(x=tensor("x", "FLOAT", [3, 1], [1.5, 2, 9])),
            "unknown_datatype",
            "tensor 'x' has datatype 'FLOAT'",
        ),
        (
            request(x=tensor("x", "FP64", [3, 1], ["1.5", 2, 9])),
            "wrong_type",
            "tensor 'x' (FP64) holds a str at [0]: numbers must be JSON numbers, not strings",
        ),
        (
            request(k=tensor("k", "INT64", [3, 1], [1, 2.5, 3])),
            "wrong_type",
            "tensor 'k' (INT64) holds a float at [1]",
        ),
        (
            request(x=tensor("x", "FP64", [3, 1], [1.5, None, 9])),
            "not_finite",
            "tensor 'x' (FP64) holds null at [1] (NaN)",
        ),
        (
            request(c=tensor("c", "BYTES", [3, 1], ["a", 1, "b"])),
            "wrong_type",
            "tensor 'c' (BYTES) holds a int at [1]",
        ),
        (
            request(x=tensor("x", "BOOL", [3, 1], [True, False, True])),
            "wrong_type",
            "'x' must be numbers, got a BOOL tensor",
        ),
        (request(x=None), "missing_field", "the request has no tensor 'x' (it has 'c', 'k')"),
        (request(ident=None), "missing_field", "no id in key, body"),
        (b'{"inputs": [', "not_json", "not JSON"),
        (b"[1, 2]", "not_object", "an OIP request is a JSON object"),
        (
            b'{"id": "r1"}',
            "missing_field",
            "not an OIP request: Object missing required field `inputs`",
        ),
        (None, "missing_field", "the message has no value (a tombstone)"),
    ],
)
def test_a_bad_request_is_refused_with_its_reason(value, reason, detail):
    refused = paired_decoder(CLASSIFIER, layout()).request(value, None, None, 1)
    assert isinstance(refused, Rejection) and refused.reason == reason
    assert refused.detail.startswith(detail)


def test_a_response_becomes_predictions_and_class_probabilities():
    decoder = paired_decoder(CLASSIFIER, layout())
    rows = decoder.response(response(), b"r1", [("Ce-Id", b"r1")], 9)
    assert columns(rows) == {
        "id": "r1",
        "valid": [True, True, True],
        "rejected": [],
        "predictions": ["no", "yes", "no"],
        "probabilities": {"no": [0.75, 0.5, 1.0], "yes": [0.25, 0.5, 0.0]},
    }
    bad = decoder.response(
        response(
            predict_proba=tensor("predict_proba", "FP64", [3, 2], [0.75, 0.25, 1.5, -0.5, 1, 0])
        )
    )
    assert (
        columns(bad)["valid"] == [True, False, True] and bad.rejected[0][1].reason == "out_of_range"
    )
    regression = paired_decoder(REGRESSOR, layout(task="regression"))
    numbers = regression.response(
        response(predict=tensor("predict", "FP64", [2], [3.25, 4]), predict_proba=None)
    )
    assert numbers.predictions.tolist() == [3.25, 4.0] and numbers.probabilities == {}


@pytest.mark.parametrize(
    "value, reason, detail",
    [
        (
            response(predict_proba=tensor("predict_proba", "FP64", [3, 3], [0.1] * 9)),
            "shape_mismatch",
            "output 'predict_proba' must be [n, 2] floats",
        ),
        (
            response(predict_proba=tensor("predict_proba", "FP64", [3, 2], [0.1] * 5)),
            "shape_mismatch",
            "tensor 'predict_proba' has shape [3, 2] but 5 values",
        ),
        (response(predict=None), "missing_field", "the response has no tensor 'predict'"),
        (
            response(predict=tensor("predict", "BYTES", [3, 2], ["a"] * 6)),
            "shape_mismatch",
            "output 'predict' has 2 columns, one expected",
        ),
        (
            response(predict=tensor("predict", "BYTES", [2, 1], ["a"] * 2)),
            "shape_mismatch",
            "tensors of one message have different row counts",
        ),
    ],
)
def test_a_bad_response_is_refused_with_its_reason(value, reason, detail):
    refused = paired_decoder(CLASSIFIER, layout()).response(value, None, None, 1)
    assert isinstance(refused, Rejection) and (refused.reason, refused.detail[: len(detail)]) == (
        reason,
        detail,
    )


def test_event_time_from_a_header_an_input_or_a_parameter():
    header = paired_decoder(CLASSIFIER, layout(timestamp="header:event-ms"))
    assert (
        header.request(request(), None, [("event-ms", b"1700000000123")], 1).ts.tolist()
        == [1700000000123] * 3
    )
    iso = paired_decoder(CLASSIFIER, layout(timestamp="header:ce_time"), timestamp_format="iso8601")
    assert (
        iso.request(request(), None, [("ce_time", b"2023-11-14T22:13:20.5Z")], 1).ts.tolist()
        == [1700000000500] * 3
    )
    per_row = paired_decoder(CLASSIFIER, layout(timestamp="input:ts"))
    rows = per_row.request(request(ts=tensor("ts", "INT64", [3, 1], [10, 20, 30])), None, None, 1)
    assert rows.ts.tolist() == [10, 20, 30]
    parameter = paired_decoder(CLASSIFIER, layout(timestamp="parameter:ts"))
    body = json.loads(request())
    body["parameters"]["ts"] = 77
    assert parameter.request(json.dumps(body).encode(), None, None, 1).ts.tolist() == [77] * 3
    assert header.request(request(), None, [], 1) == Rejection(
        "missing_field", "no event time in header:event-ms"
    )
    assert (
        paired_decoder(CLASSIFIER, layout()).request(request(), None, None, None).reason
        == "missing_field"
    )


def test_a_batched_message_needs_a_row_in_its_row_id():
    refused = paired_decoder(CLASSIFIER, layout(row_id="{id}")).request(request(), None, None, 1)
    assert refused.reason == "batched"


# -- KServe CloudEvents --------------------------------------------------------------------------
def cloud_event(kind: str, ident: str, data, content_type: str = "application/json"):
    from cloudevents.core.bindings.kafka import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    event = CloudEvent(
        attributes={
            "type": kind,
            "source": "http://localhost:9081/",
            "id": ident,
            "datacontenttype": content_type,
            "time": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC),
            "inferenceservicename": "toy",
            "namespace": "default",
        },
        data=data,
    )
    message = to_binary(event, JSONFormat())
    return message.value, message.key, list(message.headers.items()), 1_700_000_000_000


def test_kserve_binary_events_with_v1_bodies():
    decoder = paired_decoder(CLASSIFIER, layout("kserve-cloudevents", body="v1"))
    value, key, headers, ts = cloud_event(
        KSERVE_REQUEST, "e1", {"instances": [[1.5, "a", 1], [2, "b", 3]]}
    )
    assert ("ce_id", b"e1") in headers and ("ce_type", KSERVE_REQUEST.encode()) in headers
    assert decoder.side("any-topic", headers) == "request"
    rows = decoder.request(value, key, headers, ts)
    assert columns(rows) == {
        "id": "e1",
        "valid": [True, True],
        "rejected": [],
        "ts": [ts, ts],
        "numeric": {"x": [1.5, 2.0]},
        "categorical": {"c": ["a", "b"], "k": ["1", "3"]},
    }
    by_name = decoder.request(
        *cloud_event(KSERVE_REQUEST, "e2", {"instances": [{"k": 2, "c": "b", "x": 4}]})
    )
    assert columns(by_name)["categorical"] == {"c": ["b"], "k": ["2"]}
    answer = decoder.response(
        *cloud_event(KSERVE_RESPONSE, "e1", {"predictions": [[0.2, 0.8], [0.5, 0.5]]})
    )
    # The predicted class is the most probable one, the first on a tie (as scikit-learn's predict).
    assert columns(answer) == {
        "id": "e1",
        "valid": [True, True],
        "rejected": [],
        "predictions": ["yes", "no"],
        "probabilities": {"no": [0.2, 0.5], "yes": [0.8, 0.5]},
    }
    labels = paired_decoder(CLASSIFIER, layout("kserve-cloudevents", body="v1", probabilities=None))
    assert labels.response(
        *cloud_event(KSERVE_RESPONSE, "e1", {"predictions": ["yes", "no"]})
    ).predictions.tolist() == ["yes", "no"]


def test_kserve_events_with_oip_bodies_and_the_event_time_header():
    decoder = paired_decoder(
        CLASSIFIER, layout("kserve-cloudevents", timestamp="header:ce_time"), "iso8601"
    )
    rows = decoder.request(*cloud_event(KSERVE_REQUEST, "e9", json.loads(request("ignored"))))
    assert rows.id == "e9" and rows.ts.tolist() == [1_700_000_000_000] * 3


@pytest.mark.parametrize(
    "side, message, reason, detail",
    [
        (
            "request",
            cloud_event(KSERVE_RESPONSE, "e1", {"predictions": [1]}),
            "unknown_event",
            "ce_type 'org.kubeflow.serving.inference.response' is not an inference request",
        ),
        (
            "request",
            cloud_event("com.example.other", "e1", {}),
            "unknown_event",
            "ce_type 'com.example.other'",
        ),
        (
            "request",
            (b"{}", None, [("content-type", b"application/cloudevents+json")], 1),
            "unknown_event",
            "a structured-mode CloudEvent",
        ),
        ("request", (b"{}", None, [], 1), "missing_field", "no ce_type header"),
        (
            "request",
            cloud_event(KSERVE_REQUEST, "e1", {"instances": [[1.5, "a"]]}),
            "shape_mismatch",
            "a v1 instance is a list of 3 values",
        ),
        (
            "request",
            cloud_event(KSERVE_REQUEST, "e1", {"instances": [["1.5", "a", 1]]}),
            "wrong_type",
            "'x' must be numbers, got a BYTES tensor",
        ),
        (
            "request",
            cloud_event(KSERVE_REQUEST, "e1", {"inputs": []}),
            "missing_field",
            "a v1 request has a list 'instances'",
        ),
        (
            "response",
            cloud_event(KSERVE_RESPONSE, "e1", {"predictions": [[0.2, 0.3, 0.5]]}),
            "shape_mismatch",
            "a v1 prediction is 2 class probabilities",
        ),
    ],
)
def test_a_bad_kserve_event_is_refused_with_its_reason(side, message, reason, detail):
    decoder = paired_decoder(CLASSIFIER, layout("kserve-cloudevents", body="v1"))
    refused = getattr(decoder, side)(*message)
    assert isinstance(refused, Rejection) and (refused.reason, refused.detail[: len(detail)]) == (
        reason,
        detail,
    )


# -- Seldon Core 2 protobuf ----------------------------------------------------------------------
def seldon_request(raw: bool = False) -> bytes:
    from tritonclient.grpc import service_pb2 as pb

    message = pb.ModelInferRequest(model_name="toy", id="s1")
    x = message.inputs.add(name="x", datatype="FP64", shape=[2, 1])
    c = message.inputs.add(name="c", datatype="BYTES", shape=[2, 1])
    k = message.inputs.add(name="k", datatype="INT32", shape=[2])
    if raw:
        message.raw_input_contents.extend(
            [
                np.array([1.5, 2.0], "<f8").tobytes(),
                b"\x01\x00\x00\x00a\x01\x00\x00\x00b",
                np.array([1, 3], "<i4").tobytes(),
            ]
        )
    else:
        x.contents.fp64_contents.extend([1.5, 2.0])
        c.contents.bytes_contents.extend([b"a", b"b"])
        k.contents.int_contents.extend([1, 3])
    return message.SerializeToString()


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_seldon_protobuf_requests_and_responses(raw):
    from tritonclient.grpc import service_pb2 as pb

    decoder = paired_decoder(CLASSIFIER, layout("seldon-v2"))
    headers = [("x-request-id", b"req-7"), ("pipeline", b"toy")]
    rows = decoder.request(seldon_request(raw), b"toy.req-7", headers, 3)
    assert columns(rows) == {
        "id": "req-7",
        "valid": [True, True],
        "rejected": [],
        "ts": [3, 3],
        "numeric": {"x": [1.5, 2.0]},
        "categorical": {"c": ["a", "b"], "k": ["1", "3"]},
    }
    answer = pb.ModelInferResponse(model_name="toy", id="s1")
    answer.outputs.add(
        name="predict", datatype="BYTES", shape=[2, 1]
    ).contents.bytes_contents.extend([b"no", b"yes"])
    answer.outputs.add(
        name="predict_proba", datatype="FP64", shape=[2, 2]
    ).contents.fp64_contents.extend([0.9, 0.1, 0.4, 0.6])
    assert columns(decoder.response(answer.SerializeToString(), b"toy.req-7", headers, 4)) == {
        "id": "req-7",
        "valid": [True, True],
        "rejected": [],
        "predictions": ["no", "yes"],
        "probabilities": {"no": [0.9, 0.4], "yes": [0.1, 0.6]},
    }


def test_a_bad_seldon_message_is_refused_with_its_reason():
    from tritonclient.grpc import service_pb2 as pb

    decoder = paired_decoder(CLASSIFIER, layout("seldon-v2"))
    value = seldon_request()
    truncated = decoder.request(value[:-3], None, [("x-request-id", b"r")], 1)
    assert truncated.reason == "not_protobuf" and truncated.detail.startswith(
        "not a ModelInferRequest"
    )
    wrong = pb.ModelInferRequest.FromString(value)
    wrong.inputs[0].datatype = "FP32"  # values still in fp64_contents
    refused = decoder.request(wrong.SerializeToString(), None, [("x-request-id", b"r")], 1)
    assert refused == Rejection(
        "wrong_type", "tensor 'x' is FP32 but its values are in fp64_contents"
    )
    assert (
        decoder.request(seldon_request(), None, [], 1).reason == "missing_field"
    )  # the default: header, key
    with_body = paired_decoder(
        CLASSIFIER, layout("seldon-v2", id=["header:x-request-id", "key", "body"])
    )
    assert with_body.request(seldon_request(), None, [], 1).id == "s1"


# -- Avro with Schema Registry framing -----------------------------------------------------------
AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Prediction",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "prediction", "type": "string"},
            {
                "name": "probabilities",
                "type": {
                    "type": "record",
                    "name": "P",
                    "fields": [{"name": "no", "type": "double"}, {"name": "yes", "type": "double"}],
                },
            },
            {
                "name": "features",
                "type": {
                    "type": "record",
                    "name": "F",
                    "fields": [
                        {"name": "x", "type": "double"},
                        {"name": "c", "type": "string"},
                        {"name": "k", "type": "long"},
                    ],
                },
            },
        ],
    }
)
RECORD = {
    "id": "p1",
    "ts": 1_700_000_000_123,
    "prediction": "yes",
    "probabilities": {"no": 0.25, "yes": 0.75},
    "features": {"x": 2.5, "c": "a", "k": 3},
}


@pytest.fixture
def avro():
    from confluent_kafka.schema_registry import SchemaRegistryClient, header_schema_id_serializer
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from contract.formats.avro import AvroReader

    registry = SchemaRegistryClient.new_client(
        {"url": "mock://formats"}
    )  # the library's in-memory registry

    def write(record: dict, guid: bool = False) -> tuple[bytes, list]:
        conf = {"schema.id.serializer": header_schema_id_serializer} if guid else None
        context = SerializationContext("toy.predictions", MessageField.VALUE, [])
        return AvroSerializer(registry, AVRO_SCHEMA, conf=conf)(record, context), context.headers

    return AvroReader(registry), write


def test_avro_records_read_through_the_json_path(avro):
    from contract.schema_file import load_schema  # noqa: F401  (the JSON path is the schema's own)
    from monitor.decode import Decoder

    reader, write = avro
    framed, _ = write(RECORD)
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") >= 1
    assert (
        json.loads(reader.read(framed, "toy.predictions")) == RECORD
    )  # timestamp-millis back to epoch ms
    guid_value, headers = write({**RECORD, "id": "p2"}, guid=True)
    assert headers[0][0] == "__value_schema_id" and guid_value[0] != 0
    values, positions, rejected = reader.read_batch(
        [framed, b"\x07" + framed[1:], guid_value], "toy.predictions", [None, None, headers]
    )
    assert positions == [0, 2] and [(p, r.reason) for p, r in rejected] == [(1, "bad_magic")]
    schema = parse_schema(
        {
            **CLASSIFIER.to_yaml(),
            "messages": {**CLASSIFIER.to_yaml()["messages"], "probabilities": "probabilities"},
        }
    )
    batch, refused = Decoder(schema).predictions(values)
    assert (
        not refused
        and batch.ids.tolist() == ["p1", "p2"]
        and batch.ts.tolist() == [1_700_000_000_123] * 2
    )
    assert batch.categorical["k"].tolist() == ["3", "3"] and batch.probabilities[
        "yes"
    ].tolist() == [0.75, 0.75]


def test_a_bad_avro_value_is_refused_with_its_reason(avro):
    reader, write = avro
    framed, _ = write(RECORD)
    unknown = framed[:1] + (4242).to_bytes(4, "big") + framed[5:]
    assert reader.read(b"\x05" + framed[1:], "t").reason == "bad_magic"
    assert reader.read(unknown, "t").reason == "unknown_schema"
    assert reader.read(framed[:9], "t").reason == "not_avro"
    assert reader.read(b"", "t") == Rejection("not_avro", "empty value")
    assert (
        reader.read(framed[5:], "t", [("__value_schema_id", b"\x01" + bytes(16))]).reason
        == "unknown_schema"
    )


# -- the join of requests and responses ----------------------------------------------------------
def requested(ident: str, n: int, kafka_ms: int, valid: list[bool] | None = None) -> RequestRows:
    from contract.formats.rows import RequestColumns

    mask = np.array(valid if valid is not None else [True] * n)
    columns = RequestColumns(
        np.full(n, kafka_ms, dtype=np.int64),
        {"x": np.arange(n, dtype=np.float64)},
        {"c": np.array(["a"] * n, dtype=object), "k": np.array(["1"] * n, dtype=object)},
        mask,
        bool(mask.all()),
    )
    return RequestRows(ident, columns, 0, n, (), kafka_ms)


def answered(ident: str, n: int, kafka_ms: int) -> ResponseRows:
    from contract.formats.rows import ResponseColumns

    columns = ResponseColumns(
        np.array(["yes"] * n, dtype=object),
        {"no": np.full(n, 0.25), "yes": np.full(n, 0.75)},
        np.ones(n, dtype=bool),
    )
    return ResponseRows(ident, columns, 0, n, (), kafka_ms)


def test_responses_before_their_requests_join_and_rows_are_named_by_row_id():
    from monitor.pairing import RowJoin

    join = RowJoin(layout())
    first = join.add(responses=[answered("b", 2, 1_000), answered("a", 1, 1_000)])
    assert first.batch is None and join.pending == (0, 3)
    second = join.add(
        requests=[
            requested("a", 1, 990),
            requested("b", 2, 995, valid=[True, False]),
            requested("c", 1, 999),
        ]
    )
    batch = second.batch
    assert batch.ids.tolist() == ["a:0", "b:0"]  # b's row 1 failed the request's checks
    assert batch.ts.tolist() == [990, 995] and batch.numeric["x"].tolist() == [0.0, 0.0]
    assert batch.predictions.tolist() == ["yes", "yes"] and batch.probabilities["yes"].tolist() == [
        0.75,
        0.75,
    ]
    assert batch.categorical == {"c": batch.categorical["c"], "k": batch.categorical["k"]}
    assert (
        join.pending == (1, 0)
        and join.counters["joined_messages"] == 2
        and join.counters["joined_rows"] == 2
    )


def test_unjoined_messages_expire_against_the_other_sides_clock_and_are_counted():
    from monitor.pairing import RowJoin

    join = RowJoin(layout(), ttl_ms=1_000, request_partitions=2)
    join.add(
        requests=[requested("lost", 1, 10_000)],
        request_refs=[("requests", 0, 5)],
        request_partition=0,
    )
    join.add(responses=[answered("orphan", 1, 10_000)], response_refs=[("responses", 1, 7)])
    # The responses' clock passes the request by more than ttl: it expires. The requests' clock has
    # only one of its two partitions: the orphan response waits.
    out = join.add(responses=[answered("later", 1, 11_001)])
    assert out.expired == [
        (
            ("requests", 0, 5),
            Rejection("no_response", "request 'lost': none came within 1000 ms of Kafka time"),
        )
    ]
    out = join.add(
        requests=[requested("r", 1, 11_500)], request_partition=1
    )  # partition 1 reports: watermark 10,000
    assert out.expired == []
    out = join.add(requests=[requested("s", 1, 12_000)], request_partition=0)  # watermark 11,500
    assert [(ref, r.reason) for ref, r in out.expired] == [(("responses", 1, 7), "no_request")]
    assert join.counters["expired_requests"] == 1 and join.counters["expired_responses"] == 1


def test_pending_rows_are_bounded_by_count():
    from monitor.pairing import RowJoin

    join = RowJoin(layout(), max_pending_rows=5)
    out = join.add(requests=[requested("a", 3, 1), requested("b", 2, 2), requested("c", 1, 3)])
    assert [(ref, r.reason) for ref, r in out.expired] == [("a", "no_response")]
    assert (
        join.pending == (3, 0) and "evicted, more than 5 rows pending" in out.expired[0][1].detail
    )


def test_redelivered_messages_join_once_and_a_row_count_mismatch_refuses_both():
    from monitor.pairing import RowJoin

    join = RowJoin(layout())
    join.add(
        requests=[requested("a", 1, 1), requested("a", 1, 2)]
    )  # redelivered before its response
    assert len(join.add(responses=[answered("a", 1, 3)]).batch) == 1
    again = join.add(responses=[answered("a", 1, 4)], requests=[requested("a", 1, 4)])
    assert again.batch is None and join.pending == (0, 0) and join.counters["duplicates"] == 3
    out = join.add(requests=[requested("m", 2, 5)], responses=[answered("m", 3, 5)])
    assert out.batch is None and [r.reason for _, r in out.refused] == ["shape_mismatch"] * 2
    assert join.counters["mismatched"] == 1
    with pytest.raises(ValueError):
        RowJoin(layout(), ttl_ms=0)


@pytest.mark.parametrize(
    "block",
    [
        {
            "format": "oip-v2",
            "requests": "in",
            "responses": "out",
            "model": "churn",
            "inputs": "features",
        },
        {
            "format": "kserve-cloudevents",
            "body": "v1",
            "timestamp": "header:ce_time",
            "probabilities": "p",
        },
        {
            "format": "seldon-v2",
            "namespace": "prod",
            "model": "churn",
            "id": ["header:x-request-id"],
            "row_id": "{id}/{row}",
        },
    ],
)
def test_a_layout_writes_the_block_it_was_read_from(block):
    read = layout(task="classification", **block)
    assert layout(task="classification", **read.to_yaml()) == read
    schema = parse_schema({**CLASSIFIER.to_yaml(), "messages": block})
    assert parse_schema(schema.to_yaml()) == schema


def test_another_models_messages_are_told_from_this_ones_by_their_header():
    """One MLServer serves several models on one pair of topics; KServe's broker carries every
    InferenceService's events: the monitor skips the other models' (monitor.sources counts them)."""
    oip = paired_decoder(CLASSIFIER, layout())  # model: the schema's name, "toy"
    assert oip.other_model("request", [("mlserver-model", b"toy")]) is None
    assert oip.other_model("request", [("mlserver-model", b"fraud")]) == "fraud"
    assert oip.other_model("response", [("Ce-Modelid", b"fraud")]) == "fraud"
    assert (
        oip.other_model("request", []) is None
    )  # names none: this model's, checked like any other
    named = paired_decoder(CLASSIFIER, layout(model="churn-v2"))
    assert named.other_model("request", [("mlserver-model", b"churn-v2")]) is None
    kserve = paired_decoder(CLASSIFIER, layout("kserve-cloudevents"))
    assert kserve.other_model("response", [("ce_inferenceservicename", b"fraud")]) == "fraud"
    seldon = paired_decoder(CLASSIFIER, layout("seldon-v2"))  # the topics are the model's own
    assert seldon.other_model("request", [("mlserver-model", b"fraud")]) is None
