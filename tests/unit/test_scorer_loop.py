"""The scorer's loop with its Kafka clients replaced by recording fakes (the real predict process):
batch N+1 is consumed while N is predicted, and each batch's offsets are stored only after every
one of its outputs was delivered, in consumption order. The broker tests run the same loop for real."""

from __future__ import annotations

import json
import logging
import socket
import threading

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import scorer.service as service
from contract.artifacts import load_model_schema
from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema
from contract.settings import Topics
from scorer.__main__ import main
from scorer.model import HandedOver, LoadedModel, check_against_schema, load
from scorer.predictor import PredictorFailed, PredictProcess
from scorer.scoring import BatchCodec
from tests.unit.test_scoring import PET_FEATURES, build_classifier_dir, pets

DIAMONDS = BatchCodec(load_schema(DEFAULT_SCHEMA))


class CaratTimesThousand:
    def predict(self, frame):
        return frame["carat"].to_numpy() * 1000


class FirstColumn:
    """A final step that accepts only a matrix: given a frame, the test would fail."""

    def fit(self, x, y=None):
        return self

    def predict(self, x):
        assert isinstance(x, np.ndarray), type(x)
        return x[:, 0]


class Exploding:
    def predict(self, frame):
        raise ValueError("no")


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes, key: bytes | None = None) -> None:
        self._partition, self._offset, self._value, self._key = partition, offset, value, key

    def value(self):
        return self._value

    def key(self):
        return self._key

    def topic(self):
        return "features"

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def error(self):
        return None

    def timestamp(self):
        return (1, 0)


class FakeConsumer:
    """Hands out the scripted batches, then sets `stop` and returns nothing.

    Each scripted batch is what is waiting at one moment, and consume() behaves as librdkafka's:
    up to `num_messages` of it; a call that gets fewer than it asked for has seen the end of it,
    so the next call starts the next batch (a call that got exactly what it asked for has not:
    the next one finds nothing waiting). Every call is recorded in `calls` as (asked, timeout, got)."""

    def __init__(
        self, batches: list[list[FakeMessage]], stop: threading.Event, events: list
    ) -> None:
        self.batches, self.stop, self.events = list(batches), stop, events
        self.waiting: list[FakeMessage] = []
        self.seen_end = True
        self.calls: list[tuple[int, float, int]] = []
        self.closed = False

    def subscribe(self, topics):
        pass

    def consume(self, num_messages: int, timeout: float):
        if not self.waiting and self.seen_end:
            if not self.batches:
                self.stop.set()
                self.calls.append((num_messages, timeout, 0))
                return []
            self.waiting, self.seen_end = self.batches.pop(0), False
        got, self.waiting = self.waiting[:num_messages], self.waiting[num_messages:]
        self.seen_end = self.seen_end or len(got) < num_messages
        self.calls.append((num_messages, timeout, len(got)))
        if got:
            self.events.append(("consume", [m.offset() for m in got]))
        return got

    def store_offsets(self, offsets):
        self.events.append(("store", sorted((tp.partition, tp.offset) for tp in offsets)))

    def commit(self, asynchronous: bool):
        pass

    def close(self):
        self.closed = True


class FakeProducer:
    def __init__(self, events: list) -> None:
        self.events, self.pending = events, []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        self.pending.append((topic, value, key, dict(headers or []), on_delivery))

    def flush(self, timeout: float | None = None) -> int:
        for (
            topic,
            value,
            key,
            headers,
            _on_delivery,
        ) in self.pending:  # acknowledged: no callback (errors only)
            self.events.append(("delivered", topic, key, value, headers))
        self.pending = []
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


def record(record_id: str, carat: float) -> bytes:
    return json.dumps(
        {
            "id": record_id,
            "ts": 1,
            "carat": carat,
            "cut": "Ideal",
            "color": "E",
            "clarity": "SI1",
            "depth": 61.0,
            "table": 55.0,
        }
    ).encode()


@pytest.fixture
def fakes(monkeypatch):
    events: list = []
    stop = threading.Event()
    started: list[PredictProcess] = []

    class RecordedPredictProcess(PredictProcess):
        def __init__(self, model, outputs):
            super().__init__(model, outputs)
            self.model, self.batches = model, []
            started.append(self)

        def submit(self, batch):
            self.batches.append(batch)
            super().submit(batch)

    def install(batches):
        consumer = FakeConsumer(batches, stop, events)
        monkeypatch.setattr(service, "Consumer", lambda config: consumer)
        monkeypatch.setattr(service, "resending_producer", lambda errors_only: FakeProducer(events))
        monkeypatch.setattr(
            service, "freeze_startup_heap", lambda: None
        )  # not the test process's heap
        monkeypatch.setattr(service, "PredictProcess", RecordedPredictProcess)
        return consumer

    return events, stop, started, install


def run(
    pipeline,
    stop,
    model: LoadedModel | None = None,
    codec: BatchCodec = DIAMONDS,
    registry: CollectorRegistry | None = None,
    batch_size: int = 100,
):
    topics = Topics(features="features", predictions="predictions", labels="labels", dlq="dlq")
    return service.run(
        service.ScorerConfig(metrics_port=0, batch_size=batch_size),
        model or LoadedModel(pipeline, {"model_version": "v1"}),
        codec,
        topics,
        registry or CollectorRegistry(),
        stop,
    )


def test_batches_overlap_and_each_is_committed_after_its_outputs_in_order(fakes):
    events, stop, started, install = fakes
    consumer = install(
        [
            [
                FakeMessage(0, 0, record("a0", 0.5)),
                FakeMessage(0, 1, record("a1", 1.0)),
                FakeMessage(0, 2, record("a2", 1.5)),
            ],
            [
                FakeMessage(1, 0, record("b0", 2.0)),
                FakeMessage(1, 1, b"garbage"),
                FakeMessage(1, 2, record("b2", 0.25)),
            ],
            [FakeMessage(0, 3, b"{}"), FakeMessage(0, 4, b"[1]")],  # nothing to predict: DLQ only
        ]
    )

    assert run(CaratTimesThousand(), stop) == 0

    delivered = [e for e in events if e[0] == "delivered"]
    predictions = {
        json.loads(value)["id"]: json.loads(value)["prediction"]
        for _, topic, _, value, _ in delivered
        if topic == "predictions"
    }
    assert predictions == {"a0": 500.0, "a1": 1000.0, "a2": 1500.0, "b0": 2000.0, "b2": 250.0}
    assert [
        (h["source_partition"], h["source_offset"], h["reason"])
        for _, topic, _, _, h in delivered
        if topic == "dlq"
    ] == [(b"1", b"1", b"not_json"), (b"0", b"3", b"missing_field"), (b"0", b"4", b"not_object")]
    kinds = [
        (e[0], e[1])
        if e[0] != "delivered"
        else (
            "delivered",
            json.loads(e[3])["id"]
            if e[1] == "predictions"
            else f"dlq@{e[4]['source_offset'].decode()}",
        )
        for e in events
    ]
    stores = [i for i, (kind, _) in enumerate(kinds) if kind == "store"]
    assert [kinds[i][1] for i in stores] == [
        [(0, 3)],
        [(1, 3)],
        [(0, 5)],
    ]  # in order, past each batch's last offset
    # Every output of a batch is delivered before its offsets are stored, none of the next batch's before.
    assert {k[1] for k in kinds[: stores[0]] if k[0] == "delivered"} == {"a0", "a1", "a2"}
    assert {k[1] for k in kinds[stores[0] : stores[1]] if k[0] == "delivered"} == {
        "b0",
        "b2",
        "dlq@1",
    }
    assert {k[1] for k in kinds[stores[1] : stores[2]] if k[0] == "delivered"} == {"dlq@3", "dlq@4"}
    # Pipelined: the second batch was consumed before the first was delivered.
    assert kinds.index(("consume", [0, 1, 2])) < kinds.index(("delivered", "a0"))
    assert consumer.closed and started[0]._process.poll() is not None


def test_a_batch_is_what_is_waiting_when_the_predict_process_is_free_never_held_to_fill(fakes):
    """No timer fills a batch: a lone record is scored alone, what piled up meanwhile is the next
    batch (up to --batch-size), and the loop waits in consume() only with nothing in hand."""
    events, stop, started, install = fakes
    waiting = [
        [FakeMessage(0, 0, record("lone", 0.5))],
        [FakeMessage(0, 1 + i, record(f"m{i}", 1.0)) for i in range(3)],
        [FakeMessage(1, i, record(f"b{i}", 1.0)) for i in range(250)],  # a backlog: over the cap
        [],  # a lull: nothing waiting while the last batch is predicted
        [FakeMessage(0, 4, record("late", 2.0))],
    ]
    consumer = install(waiting)

    assert run(CaratTimesThousand(), stop, batch_size=100) == 0

    assert [len(batch) for batch in started[0].batches] == [1, 3, 100, 100, 50, 1]
    wait = service.IDLE_WAIT_SECONDS
    assert consumer.calls == [
        (1, wait, 1),
        (99, 0, 0),  # nothing in hand: wait for one record, then take what else is there
        (100, 0, 3),
        (100, 0, 100),
        (100, 0, 100),
        (100, 0, 50),  # a batch in flight: never wait
        (100, 0, 0),  # the lull: the batch in flight is delivered at once
        (1, wait, 1),
        (99, 0, 0),
        (100, 0, 0),
    ]
    predicted = {json.loads(e[3])["id"] for e in events if e[0] == "delivered"}
    assert len(predicted) == 255 and {"lone", "late"} <= predicted
    assert (
        service.consume_wait(predicting=True) == 0 < service.consume_wait(predicting=False) == wait
    )


def test_a_pipeline_is_split_the_predict_process_gets_the_final_step_and_encoded_batches(fakes):
    events, stop, started, install = fakes
    install(
        [
            [FakeMessage(0, 0, record("a0", 0.5)), FakeMessage(0, 1, record("a1", 1.0))],
            [FakeMessage(0, 2, record("a2", 2.0))],
        ]
    )
    carat_only = ColumnTransformer([("carat", "passthrough", ["carat"])])
    pipeline = Pipeline(
        [
            ("encode", carat_only),
            ("times", FunctionTransformer(lambda x: x * 1000)),
            ("model", FirstColumn()),
        ]
    )
    pipeline.fit(pd.DataFrame({"carat": [1.0]}))

    model = LoadedModel(pipeline, {"model_version": "v1"})
    assert run(pipeline, stop, model) == 0

    predictions = {
        json.loads(e[3])["id"]: json.loads(e[3])["prediction"]
        for e in events
        if e[0] == "delivered"
    }
    assert predictions == {"a0": 500.0, "a1": 1000.0, "a2": 2000.0}
    assert isinstance(
        model.pipeline, HandedOver
    )  # the scorer's process does not keep a second forest
    assert isinstance(
        started[0].model, FirstColumn
    )  # the transforms ran in the scorer, not in the predict process
    assert [type(batch) for batch in started[0].batches] == [np.ndarray, np.ndarray]


def test_a_failed_prediction_commits_nothing_and_ends_the_predict_process(fakes):
    events, stop, started, install = fakes
    consumer = install(
        [[FakeMessage(0, 0, record("a0", 0.5))], [FakeMessage(0, 1, record("a1", 1.0))]]
    )

    with pytest.raises(PredictorFailed, match="ValueError: no"):
        run(Exploding(), stop)

    assert not [e for e in events if e[0] in ("store", "delivered")]
    assert consumer.closed and started[0]._process.poll() is not None


class RevokedConsumer:
    def __init__(self, code: int) -> None:
        self.code, self.committed = code, False

    def store_offsets(self, offsets):
        raise KafkaException(KafkaError(self.code))

    def commit(self, asynchronous: bool):
        self.committed = True


def test_a_batch_whose_partitions_were_revoked_is_left_to_their_new_owner(caplog):
    revoked = RevokedConsumer(KafkaError._STATE)
    with caplog.at_level(logging.WARNING, logger="scorer.service"):
        service.commit(revoked, [FakeMessage(0, 7, b"")])
    assert not revoked.committed and "scored again by their new owner" in caplog.text
    with pytest.raises(KafkaException):
        service.commit(RevokedConsumer(KafkaError._INVALID_ARG), [FakeMessage(0, 7, b"")])


def test_a_classifier_gets_classes_and_probabilities_from_the_predict_process_in_one_round_trip(
    fakes, tmp_path
):
    events, stop, started, install = fakes
    folder = build_classifier_dir(tmp_path / "pets")
    schema, model = load_model_schema(folder), load(folder)
    codec = BatchCodec(schema, check_against_schema(model, schema))
    rows = pets(7, seed=9)
    values = [
        json.dumps(
            {
                "id": f"p{i}",
                "ts": 5,
                **{c: row[c].item() if hasattr(row[c], "item") else row[c] for c in PET_FEATURES},
            }
        ).encode()
        for i, (_, row) in enumerate(rows.iterrows())
    ]
    install(
        [
            [FakeMessage(0, i, v) for i, v in enumerate(values[:4])],
            [FakeMessage(0, 4 + i, v) for i, v in enumerate(values[4:])],
        ]
    )
    offline = load(folder).pipeline  # the scorer hands its own copy's final step over
    registry = CollectorRegistry()

    assert run(None, stop, model, codec, registry) == 0

    messages = {json.loads(e[3])["id"]: json.loads(e[3]) for e in events if e[0] == "delivered"}
    assert [messages[f"p{i}"]["prediction"] for i in range(7)] == offline.predict(
        rows[PET_FEATURES]
    ).tolist()
    expected = offline.predict_proba(rows[PET_FEATURES])
    for i in range(7):
        got = messages[f"p{i}"]["probabilities"]
        assert list(got) == ["dog", "cat", "bird"]
        assert [got["bird"], got["cat"], got["dog"]] == pytest.approx(
            expected[i].tolist(), abs=1e-12
        )
    assert [type(batch) for batch in started[0].batches] == [
        np.ndarray,
        np.ndarray,
    ]  # transformed in the scorer
    assert (
        registry.get_sample_value("scorer_unseen_category_total", {"feature": "colour"}) == 0
    )  # exported before one


def test_run_on_a_taken_metrics_port_says_which_flag_changes_it(model_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            [
                "run",
                "--model-dir",
                str(model_dir),
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(port),
            ]
        )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"port {port}" in err and "--metrics-port" in err
