"""publish validates JSONL lines with the model's schema (the scorer's own rules) and reports the
invalid ones by line number and reason; what it would publish is the record without its label."""

from __future__ import annotations

import json

import msgspec

from contract.decoders import Decoders
from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema, parse_schema
from producer.publish import read_records
from tests.unit.test_scenarios import CHURN

DIAMONDS = load_schema(DEFAULT_SCHEMA)


def lines(*objects) -> list[bytes]:
    return [o if isinstance(o, bytes) else json.dumps(o).encode() + b"\n" for o in objects]


def test_valid_lines_decode_and_invalid_ones_name_their_line_and_reason():
    valid = {
        "id": "a",
        "ts": 1,
        "carat": 0.5,
        "cut": "Ideal",
        "color": "E",
        "clarity": "SI1",
        "depth": 61.0,
        "table": 55.0,
    }
    records, invalid = read_records(
        lines(
            valid,
            {**valid, "id": "b", "price": 6000},
            b"\n",
            {"id": "c", "ts": 3, "carat": "heavy"},
            b"not json\n",
            {**valid, "id": 7},
        ),
        Decoders(DIAMONDS),
    )
    assert [str(line) for line in invalid] == [
        "line 4: wrong_type: 'carat' must be a number, got str",
        "line 5: not_json: not JSON: Expecting value: line 1 column 1 (char 0)",
    ]
    assert [r.id for r in records] == [
        "a",
        "b",
        "7",
    ]  # an integer id is normalised to text, as the scorer does
    assert [r.price for r in records] == [None, 6000.0, None]
    # Encoded as published: the features record without its label, in the schema's order.
    assert (
        msgspec.json.encode(records[0])
        == b'{"id":"a","ts":1,"carat":0.5,"cut":"Ideal","color":"E","clarity":"SI1","depth":61.0,"table":55.0}'
    )


def test_the_schema_decides_what_a_valid_line_is():
    churn = parse_schema(CHURN)
    line = {
        "event_id": "e1",
        "event_time": "2024-05-01T12:00:00Z",
        "tenure": 3.5,
        "spend": 10.0,
        "plan": "pro",
        "region": 2,
        "churned": "leave",
    }
    records, invalid = read_records(
        lines(
            line,
            {**line, "region": "2"},
            {**line, "event_time": 1714564800000},
            {**line, "churned": 1},
        ),
        Decoders(churn),
    )
    assert len(records) == 1 and records[0].churned == "leave"
    assert [(i.number, i.rejection.reason) for i in invalid] == [
        (2, "wrong_type"),
        (3, "wrong_type"),
        (4, "wrong_type"),
    ]
    assert "'region' must be an integer" in invalid[0].rejection.detail


class FakeProducer:
    """Stands in for confluent_kafka.Producer: keeps what is produced, acknowledges it at once."""

    def __init__(self, config: dict) -> None:
        assert "session.timeout.ms" not in config  # a producer's settings, not a consumer's
        self.sent: list[tuple[str, bytes, str]] = []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None) -> None:
        self.sent.append((topic, value, key))
        on_delivery(None, None)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_publish_sends_each_record_without_its_label_and_the_label_as_the_schema_lays_it_out(
    tmp_path, monkeypatch
):
    import io

    import producer.publish as publish_module
    from contract.settings import Topics

    producers: list[FakeProducer] = []
    monkeypatch.setattr(
        publish_module,
        "Producer",
        lambda config: producers.append(FakeProducer(config)) or producers[-1],
    )
    monkeypatch.setenv("KAFKA_SESSION_TIMEOUT_MS", "6000")
    churn = parse_schema(CHURN)
    line = {
        "event_id": 12,
        "event_time": "2024-05-01T12:00:00.250Z",
        "tenure": 3.5,
        "spend": 10.0,
        "plan": "pro",
        "region": 2,
        "churned": "leave",
        "extra": "ignored",
    }
    path = tmp_path / "records.jsonl"
    path.write_bytes(
        b"".join(lines(line, {**line, "event_id": "e2", "churned": None}, {**line, "tenure": -1}))
    )
    out = io.StringIO()
    assert (
        publish_module.publish(str(path), churn, Topics.for_model("churn", {}), out=out) == 1
    )  # one line invalid
    assert out.getvalue().splitlines() == [
        f"{path}: line 3: out_of_range: 'tenure'=-1 outside [0, 1000]",
        "published 2 records and 1 labels, 1 invalid lines skipped, delivered 3, failed 0",
    ]
    # The event time as msgspec writes a decoded date-time: the same instant, to the microsecond.
    record = {
        "event_id": "12",
        "event_time": "2024-05-01T12:00:00.250000Z",
        "tenure": 3.5,
        "spend": 10.0,
        "plan": "pro",
        "region": 2,
    }
    assert [(topic, json.loads(value), key) for topic, value, key in producers[0].sent] == [
        ("churn", record, "12"),
        (
            "churn.labels",
            {"event_id": "12", "event_time": "2024-05-01T12:00:00.250000Z", "churned": "leave"},
            "12",
        ),
        ("churn", {**record, "event_id": "e2"}, "e2"),
    ]
