"""Serving systems' inference logs, monitored end to end by `monitor run` (README "Serving systems").

One stream of the diamonds example, 2,000 calm records then 2,000 with carat scaled by 1.3 (`producer
simulate --scenario scale:carat:1.3 --onset 2000`: that column alone), with its labels, is written five ways:
- our own pipeline: the scorer's log (JSON, one prediction a message), the reference run;
- the real MLServer 1.7.1 in Kafka mode (`oip-v2`), serving the same model.joblib, sent the records
  as OIP requests of 100 rows (one MLServer also serves a second model, `warmup`, on the same
  topics: the monitor skips its messages);
- the same MLServer traffic as KServe's logger writes it (`kserve-cloudevents`, binary mode, with
  OIP bodies and with v1 bodies), written by the `cloudevents` package;
- as Seldon Core 2 writes it (`seldon-v2`, OIP protobuf by MLServer's own converters, on
  seldon.<namespace>.model.diamonds.inputs / .outputs);
- the scorer's log in Avro with Schema Registry framing (`avro`), written by confluent-kafka's
  AvroSerializer. No registry server runs here: the serializer and this one monitor (run in the
  test's process) share the library's in-memory MockSchemaRegistryClient.
Labels of the batched rows are keyed by row id (`<request id>:<row>`).

About 90 s on two cores, shared by the tests below: the scorer's run, MLServer's start, six monitors.

Each log is monitored on count windows of 2,000 (one calm evaluation, one shifted): carat is flagged
on the shifted window alone and nothing on the calm one, and every window's numbers equal, to 1e-9,
those from the scorer's log. Each log starts with bad messages of its format (shape mismatch, numbers
as strings, unknown datatype, a response without a request, truncated protobuf, an unknown event,
a wrong magic byte, an unknown schema id): each reaches the monitor DLQ with its reason and is
counted, and the rows after them are monitored.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import pandas as pd
import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from contract.formats.layout import KSERVE_REQUEST
from devstack.broker import free_port
from devstack.mlserver import ServedModel, probe, start_mlserver
from tests.serving import cloud_event, kserve_events, oip_request, seldon_messages
from tests.support import (
    KafkaEnv,
    Samples,
    scrape,
    start_scorer,
    stop_process,
    wait_for_log,
    wait_until,
)

pytestmark = pytest.mark.broker

N, BATCH = 2000, 100  # records a window (two windows: calm, shifted); rows an OIP request
FEATURES = ("carat", "cut", "color", "clarity", "depth", "table")
TEN_MINUTES = 600_000


@dataclass
class Log:
    """A log of the stream in one format: its schema's messages block, the topics to write, the
    labels topic its monitor reads, and the reasons of the bad messages at its head."""

    block: dict
    messages: dict  # topic -> [(value, key, headers, Kafka timestamp)]
    labels: str
    reasons: dict  # reason -> count expected in the DLQ and monitor_invalid_records_total
    registry: object = None  # the Avro log's Schema Registry client


@pytest.fixture(scope="module")
def stream(broker, model_dir, tmp_path_factory):
    """The records, the scorer's predictions (JSON values) and the labels, in simulator order."""
    folder = tmp_path_factory.mktemp("serving")
    kafka = KafkaEnv(broker.bootstrap, uuid.uuid4().hex[:10], model_dir)
    scorer = start_scorer(kafka, folder / "scorer.log", model_dir)
    try:
        wait_for_log(folder / "scorer.log", "scoring ")
        produced = kafka.run(
            "producer",
            "simulate",
            "--model-dir",
            str(model_dir),
            "--count",
            str(2 * N),
            "--rate",
            "0",
            "--scenario",
            "scale:carat:1.3",
            "--onset",
            str(N),
            "--seed",
            "5",
            "--label-delay",
            "0",
            TOPIC_PARTITIONS="1",
        )
        assert produced.returncode == 0, produced.stderr.decode()[-2000:]
        records = [orjson.loads(m.value()) for m in kafka.consume("FEATURES_TOPIC", 2 * N)]
        predictions = [m.value() for m in kafka.consume("PREDICTIONS_TOPIC", 2 * N)]
        labels = [orjson.loads(m.value()) for m in kafka.consume("LABELS_TOPIC", 2 * N)]
    finally:
        stop_process(scorer)
    assert (
        [orjson.loads(p)["id"] for p in predictions]
        == [r["id"] for r in records]
        == [x["id"] for x in labels]
    )
    return kafka, folder, records, predictions, labels


def features_of(record: dict) -> dict:
    return record.get("features", record)


def create(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        future.result()


def publish(bootstrap: str, messages: dict) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, values in messages.items():
        for value, key, headers, when in values:
            producer.produce(topic, value, key=key, headers=headers, timestamp=when or 0)
    assert producer.flush(30) == 0


def bad_request(ident: str, **tensor) -> bytes:
    """A one-row diamonds request with one tensor replaced."""
    body = oip_request_row(ident)
    body["inputs"] = [tensor.get(t["name"], t) for t in body["inputs"]]
    return json.dumps(body).encode()


def oip_request_row(ident: str) -> dict:
    row = {
        "carat": 0.5,
        "cut": "Ideal",
        "color": "E",
        "clarity": "SI1",
        "depth": 61.0,
        "table": 57.0,
    }
    return oip_request(pd.DataFrame([row]), ident, ["predict"])


@pytest.fixture(scope="module")
def mlserver(stream, broker, model_dir):
    """The stream through the real MLServer: (requests, responses) of the diamonds model as read
    back from its topics, the row id of each record, the label of each row, and the topics.

    Its topics start with bad messages, written before MLServer starts: its group-less consumer
    begins at the latest offset and never reads them (they are for the monitor). The calm
    requests go first and are all answered before the shifted ones are sent, so the first window
    of joined rows is the calm one whatever order MLServer answers in."""
    from confluent_kafka import Consumer

    kafka, folder, records, _, labels = stream
    requests_topic, responses_topic = f"mlserver-in-{kafka.suffix}", f"mlserver-out-{kafka.suffix}"
    create(broker.bootstrap, [requests_topic, responses_topic])
    first_ts = records[0]["ts"]
    diamonds = [("mlserver-model", b"diamonds")]
    publish(
        broker.bootstrap,
        {
            requests_topic: [
                (
                    bad_request(
                        "bad-shape",
                        carat={"name": "carat", "datatype": "FP64", "shape": [2, 1], "data": [0.5]},
                    ),
                    b"bad-shape",
                    diamonds,
                    first_ts,
                ),
                (
                    bad_request(
                        "bad-text",
                        depth={
                            "name": "depth",
                            "datatype": "FP64",
                            "shape": [1, 1],
                            "data": ["61.0"],
                        },
                    ),
                    b"bad-text",
                    diamonds,
                    first_ts,
                ),
                (
                    bad_request(
                        "bad-type",
                        table={
                            "name": "table",
                            "datatype": "FLOAT",
                            "shape": [1, 1],
                            "data": [57.0],
                        },
                    ),
                    b"bad-type",
                    diamonds,
                    first_ts,
                ),
            ],
            # a response whose request never came, 10 minutes older than the requests: it expires
            responses_topic: [
                (
                    json.dumps(
                        {
                            "model_name": "diamonds",
                            "id": "orphan",
                            "outputs": [
                                {
                                    "name": "predict",
                                    "datatype": "FP64",
                                    "shape": [1, 1],
                                    "data": [500.0],
                                }
                            ],
                        }
                    ).encode(),
                    b"orphan",
                    [("Ce-Modelid", b"diamonds")],
                    first_ts - TEN_MINUTES,
                )
            ],
        },
    )

    server = start_mlserver(
        [
            ServedModel("diamonds", model_dir / "model.joblib"),
            ServedModel("warmup", model_dir / "model.joblib"),
        ],
        broker.bootstrap,
        requests_topic,
        responses_topic,
        folder / "repository",
        log_path=folder / "mlserver.log",
    )
    try:
        probe(
            broker.bootstrap, server, "warmup", oip_request_row("warm")
        )  # ready: a round trip of the other model
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
        consumer.subscribe([responses_topic])
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        row_ids, row_labels, answered = [], [], 0
        for half in (range(0, N, BATCH), range(N, 2 * N, BATCH)):
            sent = 0
            for start in half:
                ident = f"b{start // BATCH}"
                part = records[start : start + BATCH]
                frame = pd.DataFrame([{f: features_of(r)[f] for f in FEATURES} for r in part])
                producer.produce(
                    requests_topic,
                    json.dumps(oip_request(frame, ident, ["predict"])).encode(),
                    key=ident.encode(),
                    headers=diamonds,
                )
                row_ids += [f"{ident}:{row}" for row in range(len(part))]
                sent += 1
            producer.flush(30)
            deadline = time.monotonic() + 120
            goal = answered + sent
            while (
                answered < goal
            ):  # every request of this half answered before the next half is sent
                assert time.monotonic() < deadline, (
                    f"MLServer answered {answered} of {goal} (log: {folder})"
                )
                for m in consumer.consume(100, 0.5):
                    if (
                        not m.error()
                        and dict(m.headers() or []).get("Ce-Modelid") == b"diamonds"
                        and re.fullmatch(rb"b\d+", m.key() or b"")
                    ):
                        answered += 1
        consumer.close()
    finally:
        server.stop()
    requests, responses = (
        read_topic(broker.bootstrap, topic, at_least)
        for topic, at_least in (
            (requests_topic, 2 * N // BATCH + 3),
            (responses_topic, 2 * N // BATCH + 1),
        )
    )
    # the labels of the rows: the record's label, named by its row id, at its request's Kafka time
    sent_at = {
        json.loads(v)["id"]: when
        for v, _, h, when in requests
        if dict(h or []).get("mlserver-model") == b"diamonds"
    }
    for label, row_id in zip(labels, row_ids):
        row_labels.append({**label, "id": row_id, "ts": sent_at[row_id.split(":")[0]]})
    return requests, responses, row_labels, (requests_topic, responses_topic)


def read_topic(bootstrap: str, topic: str, at_least: int, quiet: float = 1.0) -> list[tuple]:
    """Every message of a topic, as (value, key, headers, Kafka timestamp), once at least `at_least`
    have come and none for `quiet` seconds."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    out, last, deadline = [], time.monotonic(), time.monotonic() + 90
    try:
        while len(out) < at_least or time.monotonic() - last < quiet:
            assert time.monotonic() < deadline, f"{len(out)} of {at_least} messages on {topic}"
            for m in consumer.consume(500, 0.2):
                if not m.error():
                    out.append((m.value(), m.key(), m.headers() or [], m.timestamp()[1]))
                    last = time.monotonic()
    finally:
        consumer.close()
    return out


def model_of(message: tuple, name: str) -> bool:
    """A message of the diamonds traffic (not a bad one, not the warmup model's)."""
    value, key, headers, _ = message
    named = dict(headers).get(name)
    return named == b"diamonds" and re.fullmatch(rb"b\d+", key or b"") is not None


def avro_schema_of(message: dict) -> str:
    """The Avro record schema of a scorer message (numbers double, texts string, objects records)."""

    def field_type(name: str, value):
        if isinstance(value, dict):
            return {
                "type": "record",
                "name": name.capitalize(),
                "fields": [{"name": k, "type": field_type(k, v)} for k, v in value.items()],
            }
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "long"
        return "double" if isinstance(value, float) else "string"

    return json.dumps(field_type("prediction", message))


@pytest.fixture(scope="module")
def logs(stream, mlserver, broker) -> dict[str, Log]:
    """The stream in each format, bad messages first, ready to publish (the MLServer log is on its
    topics already)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    kafka, _, records, predictions, _ = stream
    requests, responses, _, (requests_topic, responses_topic) = mlserver
    suffix, first_ts = kafka.suffix, records[0]["ts"]
    rows = f"row-labels-{suffix}"
    ours = (
        [m for m in requests if model_of(m, "mlserver-model")],
        [m for m in responses if model_of(m, "Ce-Modelid")],
    )
    assert [len(side) for side in ours] == [2 * N // BATCH] * 2
    out = {
        "json": Log({}, {}, kafka.topics["LABELS_TOPIC"], {}),
        "oip-v2": Log(
            {"format": "oip-v2", "requests": requests_topic, "responses": responses_topic},
            {},
            rows,
            {"shape_mismatch": 1, "wrong_type": 1, "unknown_datatype": 1, "no_request": 1},
        ),
    }

    for body in ("oip-v2", "v1"):
        topic = f"kserve-{body}-{suffix}"
        bad = [
            cloud_event("org.example.audit", "x1", {"anything": 1}, first_ts, "diamonds"),
            cloud_event(
                KSERVE_REQUEST,
                "x2",
                {"instances": [[0.5, "Ideal", "E"]]}
                if body == "v1"
                else json.loads(
                    bad_request(
                        "x2",
                        carat={"name": "carat", "datatype": "FP64", "shape": [3], "data": [0.5]},
                    )
                ),
                first_ts,
                "diamonds",
            ),
        ]
        events = kserve_events(*ours, body, "diamonds", FEATURES)
        out[f"kserve-{body}"] = Log(
            {"format": "kserve-cloudevents", "requests": topic, "responses": topic, "body": body},
            {topic: bad + [event for _, event in events]},
            rows,
            {"unknown_event": 1, "shape_mismatch": 1},
        )

    namespace = f"t{suffix}"
    converted = seldon_messages(
        "diamonds",
        [("request", False, m) for m in ours[0]] + [("response", True, m) for m in ours[1]],
    )
    seldon_requests, seldon_responses = converted[: len(ours[0])], converted[len(ours[0]) :]
    value, key, _, when = seldon_requests[0]
    truncated = (value[:-3], b"diamonds.cut", [("x-request-id", b"cut")], when)
    orphan = (
        seldon_responses[0][0],
        b"diamonds.orphan",
        [("x-request-id", b"orphan")],
        first_ts - TEN_MINUTES,
    )
    base = f"seldon.{namespace}.model.diamonds"
    out["seldon-v2"] = Log(
        {"format": "seldon-v2", "namespace": namespace, "model": "diamonds"},
        {
            f"{base}.inputs": [truncated] + seldon_requests,
            f"{base}.outputs": [orphan] + seldon_responses,
        },
        rows,
        {"not_protobuf": 1, "no_request": 1},
    )

    registry = SchemaRegistryClient.new_client(
        {"url": "mock://serving"}
    )  # the library's in-memory registry
    topic = f"avro-{suffix}"
    serialize = AvroSerializer(registry, avro_schema_of(orjson.loads(predictions[0])))
    framed = [
        serialize(orjson.loads(p), SerializationContext(topic, MessageField.VALUE))
        for p in predictions
    ]
    bad = [b"\x05" + framed[0][1:], framed[0][:1] + (4242).to_bytes(4, "big") + framed[0][5:]]
    out["avro"] = Log(
        {"format": "avro"},
        {topic: [(v, None, [], None) for v in bad + framed]},
        kafka.topics["LABELS_TOPIC"],
        {"bad_magic": 1, "unknown_schema": 1},
        registry,
    )
    return out


def schema_file(model_dir: Path, folder: Path, name: str, block: dict) -> Path:
    """The diamonds schema with the log's messages block (json keeps the scorer's)."""
    raw = yaml.safe_load((model_dir / "schema.yaml").read_text())
    if block.get("format") == "avro":
        raw["messages"] = {**raw["messages"], **block}
    elif block:
        raw["messages"] = block
    path = folder / f"schema-{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def complete(samples: Samples, labels_topic: str, invalid: int) -> bool:
    """Every row in the windows, every label joined, every bad message counted."""
    refused = sum(v for (name, _), v in samples.items() if name == "monitor_invalid_records_total")
    return (
        samples.get(("monitor_stream_records", ())) == 2 * N
        and samples.get(("monitor_records_consumed_total", (("topic", labels_topic),))) == 2 * N
        and samples.get(("label_coverage_ratio", ())) == 1.0
        and refused == invalid
    )


def registry_samples(registry) -> Samples:
    """A registry's samples as `scrape` gives a /metrics page (model label dropped)."""
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "model"))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def dead_letters(bootstrap: str, topic: str, count: int) -> list[str]:
    return sorted(
        dict(headers)["reason"].decode() for _, _, headers, _ in read_topic(bootstrap, topic, count)
    )


@pytest.fixture(scope="module")
def monitored(
    stream, mlserver, logs, broker, model_dir
) -> dict[str, tuple[Samples, list[str], str]]:
    """{log: (the monitor's samples once complete, the DLQ's reasons, the monitor's log)}: five
    `monitor run` processes at once; the Avro log's monitor in this process (its registry is here)."""
    kafka, folder, records, predictions, labels = stream
    _, _, row_labels, _ = mlserver
    rows_topic = logs["oip-v2"].labels
    create(broker.bootstrap, [rows_topic] + [t for log in logs.values() for t in log.messages])
    publish(
        broker.bootstrap,
        {
            rows_topic: [(orjson.dumps(x), x["id"].encode(), [], None) for x in row_labels],
            **{t: m for log in logs.values() for t, m in log.messages.items()},
        },
    )
    window = ("--window", str(N), "--step", str(N))
    started = {}
    for name, log in logs.items():
        if name == "avro":
            continue
        port, path = free_port(), folder / f"monitor-{name}.log"
        process = kafka.start(
            "monitor",
            "run",
            "--schema",
            str(schema_file(model_dir, folder, name, log.block)),
            "--reference",
            str(model_dir / "reference.csv"),
            "--group",
            f"monitor-{name}-{kafka.suffix}",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            *window,
            log=path,
            MODEL_DIR="/nonexistent",
            TOPIC_PARTITIONS="1",
            LABELS_TOPIC=log.labels,
            MONITOR_DLQ_TOPIC=f"dlq-{name}-{kafka.suffix}",
            MONITOR_STATE_TOPIC=f"state-{name}-{kafka.suffix}",
        )
        started[name] = (process, port, path)
    out = {"avro": monitor_avro(kafka, folder, model_dir, logs["avro"])}
    try:
        for name, (process, port, path) in started.items():
            log = logs[name]
            expected = sum(log.reasons.values())
            wait_until(
                lambda port=port, log=log, expected=expected: complete(
                    scrape(port), log.labels, expected
                ),
                timeout=240,
                interval=0.5,
                message=f"the {name} log monitored (see {path})",
            )
            samples = scrape(port)
            assert stop_process(process) == 0
            out[name] = (
                samples,
                dead_letters(broker.bootstrap, f"dlq-{name}-{kafka.suffix}", expected),
                path.read_text(),
            )
    finally:
        for process, _, _ in started.values():
            stop_process(process)
    return out


def monitor_avro(
    kafka: KafkaEnv, folder: Path, model_dir: Path, log: Log
) -> tuple[Samples, list[str], str]:
    """`monitor run`'s loop in this process, reading the Avro log with the in-memory registry."""
    from prometheus_client import CollectorRegistry

    from contract.schema_file import load_schema
    from contract.settings import Topics, ensure_topics
    from monitor.baseline import load_baseline
    from monitor.config import MonitorConfig
    from monitor.run import run
    from monitor.sources import AvroPredictions
    from monitor.state import create_state_topic

    [topic] = log.messages
    env = {
        **kafka.env(),
        "PREDICTIONS_TOPIC": topic,
        "LABELS_TOPIC": log.labels,
        "MONITOR_DLQ_TOPIC": f"dlq-avro-{kafka.suffix}",
        "MONITOR_STATE_TOPIC": f"state-avro-{kafka.suffix}",
    }
    expected = sum(log.reasons.values())
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        schema = load_schema(schema_file(model_dir, folder, "avro", log.block))
        topics = Topics.for_model(schema.name)
        config = MonitorConfig(
            group=f"monitor-avro-{kafka.suffix}", window=str(N), step=str(N), metrics_port=0
        )
        baseline = load_baseline(schema, model_dir / "reference.csv", config.estimate)
        create_state_topic(topics.monitor_state)
        ensure_topics([topics.monitor_dlq], 1)
        registry, stop = CollectorRegistry(), threading.Event()
        source = AvroPredictions(schema, topics, registry=log.registry)
        loop = threading.Thread(
            target=run, args=(config, schema, baseline, topics, registry, stop, source)
        )
        loop.start()
        try:
            wait_until(
                lambda: complete(registry_samples(registry), log.labels, expected),
                timeout=240,
                interval=0.5,
                message="the avro log monitored",
            )
            samples = registry_samples(registry)
        finally:
            stop.set()
            loop.join(60)
        assert not loop.is_alive()
        return samples, dead_letters(kafka.bootstrap, topics.monitor_dlq, expected), ""


# -- the tests -------------------------------------------------------------------------------------
def detections(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["feature"]: value
        for (name, labels), value in samples.items()
        if name == "drift_feature_detections_total"
    }


def test_the_scorers_log_flags_carat_on_the_shifted_window_alone(monitored):
    samples, reasons, _ = monitored["json"]
    assert detections(samples) == {f: float(f == "carat") for f in FEATURES}
    assert reasons == []


FORMATS = ["oip-v2", "kserve-oip-v2", "kserve-v1", "seldon-v2", "avro"]


@pytest.mark.parametrize("name", FORMATS)
def test_each_serving_log_gives_the_scorers_windows(monitored, name):
    """Carat flagged on the shifted window alone, nothing on the calm one, and the last window's
    numbers (every drift, estimate and error gauge) equal to 1e-9 to those of the scorer's log."""
    samples, _, _ = monitored[name]
    reference, _, _ = monitored["json"]
    assert (
        detections(samples) == detections(reference) == {f: float(f == "carat") for f in FEATURES}
    )
    assert (
        samples[("drift_feature_detected", (("feature", "carat"),))] == 1.0
    )  # the shifted window's
    numbers = window_numbers(reference)
    assert len(numbers) >= 60 and numbers[("window_records", ())] == N
    mismatched = {
        key: (samples.get(key), value)
        for key, value in numbers.items()
        if not same(samples.get(key), value)
    }
    assert not mismatched


def window_numbers(samples: Samples) -> Samples:
    """What the windows say: every drift, estimate and error gauge and detection count (not the
    process's own counters, timings and lags)."""
    return {
        key: value
        for key, value in samples.items()
        if not key[0].startswith(("monitor_", "python_", "process_"))
        and not key[0].endswith("_created")
    }


def same(value: float | None, expected: float) -> bool:
    if value is None:
        return False
    return (math.isnan(value) and math.isnan(expected)) or abs(value - expected) <= 1e-9


@pytest.mark.parametrize("name", FORMATS)
def test_bad_messages_reach_the_dlq_with_their_reason_and_the_rest_is_monitored(
    monitored, logs, name
):
    samples, reasons, _ = monitored[name]
    expected = logs[name].reasons
    assert reasons == sorted(reason for reason, n in expected.items() for _ in range(n))
    counted = {}
    for (metric, labels), value in samples.items():
        if metric == "monitor_invalid_records_total" and value:
            reason = dict(labels)["reason"]
            counted[reason] = counted.get(reason, 0) + value
    assert counted == expected
    assert samples[("monitor_stream_records", ())] == 2 * N  # every row after them


def test_another_models_messages_on_mlservers_topics_are_skipped_not_refused(monitored):
    _, reasons, log = monitored["oip-v2"]
    assert "skipping the messages of model 'warmup'" in log
    assert "no_response" not in reasons  # the warmup requests were never held for a response
