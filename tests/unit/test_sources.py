"""The monitor's prediction sources (monitor.sources): what `monitor run` makes of each log format's
messages, without a broker (a message is anything with Message's methods)."""

from __future__ import annotations

import orjson

from contract.schema_file import parse_schema
from contract.settings import Topics
from monitor.sources import PairedPredictions, prediction_source
from tests.unit.test_formats import CLASSIFIER, request, response, tensor


class Message:
    """The methods of confluent_kafka.Message the sources call."""

    def __init__(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers=None,
        timestamp: int = 0,
        partition: int = 0,
        offset: int = 0,
    ) -> None:
        self._fields = (topic, value, key, headers or [], timestamp, partition, offset)

    def topic(self):
        return self._fields[0]

    def value(self):
        return self._fields[1]

    def key(self):
        return self._fields[2]

    def headers(self):
        return self._fields[3]

    def timestamp(self):
        return 1, self._fields[4]

    def partition(self):
        return self._fields[5]

    def offset(self):
        return self._fields[6]


MLSERVER = parse_schema(
    {**CLASSIFIER.to_yaml(), "messages": {"format": "oip-v2", "probabilities": "predict_proba"}}
)
TOY = [("mlserver-model", b"toy")]


def source() -> PairedPredictions:
    made = prediction_source(MLSERVER, Topics.for_model("toy", {}))
    made.expect_partitions({"mlserver-input": 1, "mlserver-output": 1})
    return made


def test_a_request_waits_for_its_response_across_a_restart():
    """The pending half is saved with the window (as JSON, like the state topic's snapshot) and
    joins its response after the restart: rows named by row id, the refused row a dead letter."""
    first = source()
    out_of_range = tensor("x", "FP64", [3, 1], [1.5, 150.0, 99.0])  # x is in [0, 100]
    read = first.read(
        [Message("mlserver-input", request("r1", x=out_of_range), b"r1", TOY, 1_000, offset=5)]
    )
    assert read.batch is None and [(m.offset(), why.reason) for m, why in read.rejected] == [
        (5, "out_of_range")
    ]
    state = orjson.loads(orjson.dumps(first.to_dict()))
    second = source()
    second.load_dict(state)
    joined = second.read(
        [Message("mlserver-output", response("r1"), b"r1", [("Ce-Modelid", b"toy")], 1_010)]
    )
    assert joined.batch.ids.tolist() == ["r1:0", "r1:2"] and joined.batch.ts.tolist() == [
        1_000,
        1_000,
    ]
    assert joined.batch.predictions.tolist() == ["no", "no"] and joined.sent_ms.tolist() == [
        1_000,
        1_000,
    ]
    assert joined.batch.categorical["c"].tolist() == [
        "a",
        "zz",
    ]  # an unseen category is drift, not an error
    assert joined.rejected == []


def test_other_models_messages_are_skipped_and_strangers_refused():
    made = source()
    other = [("mlserver-model", b"fraud")]
    read = made.read(
        [
            Message("mlserver-input", request("f1"), b"f1", other, 1_000),
            Message("elsewhere", b"{}", None, TOY, 1_000, offset=9),
        ]
    )
    assert read.batch is None and made.skipped == {"fraud": 1}
    [(message, why)] = read.rejected
    assert (message.topic(), message.offset(), why.reason) == ("elsewhere", 9, "unknown_event")


def test_a_response_whose_request_never_comes_expires_as_a_dead_letter_naming_its_place():
    made = source()
    made.read(
        [
            Message(
                "mlserver-output",
                response("lost"),
                b"lost",
                [("Ce-Modelid", b"toy")],
                1_000,
                offset=3,
            )
        ]
    )
    read = made.read(
        [Message("mlserver-input", request("r2"), b"r2", TOY, 1_000 + 301_000, offset=4)]
    )
    expired = [
        (m.topic(), m.offset(), why.reason)
        for m, why in read.rejected
        if why.reason == "no_request"
    ]
    assert expired == [("mlserver-output", 3, "no_request")]
