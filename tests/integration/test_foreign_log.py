"""Another team's inference log, monitored as a newcomer would (README "Monitor your own model",
the path for a log that is not ours): `monitor profile` with only --target, --prediction, --id and
--ts on the other team's reference, then `monitor run --schema --reference` on their topics,
through the real broker. No scorer: the log is published here as their tooling writes it
(tests/foreign.py): float classes, one positive-class probability column, text timestamps with a
space, records 5-10 minutes apart in event time, labels published right after their predictions.

Three partitions per topic, keyed by id: the monitor reads runs of one partition at a time, so the
label join's clocks are tested per partition too."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from devstack.broker import free_port
from tests import foreign
from tests.support import (
    KafkaEnv,
    Samples,
    flagged,
    scrape,
    stop_process,
    wait_for_log,
    wait_monitored,
)

pytestmark = pytest.mark.broker

FEATURES = ("income", "age", "region", "employment", "debt_ratio")
RECORDS, ONSET, CHUNK, PARTITIONS = 6000, 3000, 500, 3


@pytest.fixture(scope="module")
def profiled(tmp_path_factory, broker) -> dict[str, tuple[Path, Path]]:
    """{task: (schema, reference)}: each reference written as the other team would, profiled as the
    README says, with nothing but the four column flags."""
    folder = tmp_path_factory.mktemp("foreign")
    out = {}
    for task, target in foreign.TARGETS.items():
        reference = folder / f"loans-{task}.csv"
        foreign.reference(task).to_csv(reference, index=False)
        schema = folder / f"loans-{task}.yaml"
        made = KafkaEnv(broker.bootstrap, "unused", folder).run(
            "monitor",
            "profile",
            str(reference),
            "--target",
            target,
            "--prediction",
            "y_pred",
            "--id",
            "loan_id",
            "--ts",
            "event_time",
            "-o",
            str(schema),
        )
        assert made.returncode == 0, made.stderr.decode()
        out[task] = (schema, reference)
    return out


def publish(kafka: KafkaEnv, predictions: list[dict], labels: list[dict]) -> None:
    """The log in chunks: a chunk's predictions, then its labels, each keyed by id (so a prediction
    and its label share a partition number; the monitor created both topics with 3 partitions)."""
    topics = [kafka.topics["PREDICTIONS_TOPIC"], kafka.topics["LABELS_TOPIC"]]
    metadata = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics
    assert [len(metadata[t].partitions) for t in topics] == [PARTITIONS, PARTITIONS]
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
    for start in range(0, len(predictions), CHUNK):
        for topic, messages in zip(topics, (predictions, labels)):
            for message in messages[start : start + CHUNK]:
                producer.produce(topic, orjson.dumps(message), key=message["loan_id"])
            assert producer.flush(30) == 0


def monitored(
    kafka: KafkaEnv, tmp_path: Path, schema: Path, reference: Path, scenario: str, *args: str
) -> Samples:
    """The monitor's /metrics (model label dropped) once it holds every prediction and label of the stream."""
    task = "classification" if "classification" in schema.name else "regression"
    predictions, labels = foreign.stream(task, RECORDS, seed=7, scenario=scenario, onset=ONSET)
    port, log = free_port(), tmp_path / "monitor.log"
    monitor = kafka.start(
        "monitor",
        "run",
        "--schema",
        str(schema),
        "--reference",
        str(reference),
        "--group",
        f"monitor-{kafka.suffix}",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        *args,
        log=log,
        MODEL_DIR="/nonexistent",
        TOPIC_PARTITIONS=str(PARTITIONS),
    )
    try:
        wait_for_log(log, "monitoring ")
        publish(kafka, predictions, labels)
        wait_monitored(port, RECORDS, kafka.topics["LABELS_TOPIC"], timeout=180)
        samples = scrape(port)
        assert stop_process(monitor) == 0
    finally:
        stop_process(monitor)
    assert "expired without it" not in log.read_text()
    return samples


def every_label_joined(samples: Samples) -> None:
    assert samples[("label_coverage_ratio", ())] == 1.0
    assert samples[("monitor_expired_joins_total", (("side", "predictions"),))] == 0
    assert samples[("monitor_expired_joins_total", (("side", "labels"),))] == 0
    assert samples[("monitor_pending_joins", ())] == 0
    assert all(
        v == 0 for (name, _), v in samples.items() if name == "monitor_invalid_records_total"
    )


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_calm_log_flags_nothing_and_every_label_joins(kafka, tmp_path, profiled, task):
    samples = monitored(kafka, tmp_path, *profiled[task], "none")
    every_label_joined(samples)
    assert flagged(samples) == dict.fromkeys(FEATURES, 0)
    for counter in (
        "drift_dataset_detections_total",
        "prediction_drift_detections_total",
        "concept_drift_detections_total",
    ):
        assert samples[(counter, ())] == 0, counter
    assert not math.isnan(samples[("concept_drift", ())])
    assert samples[("window_records", ())] == 1000


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_shift_in_one_input_is_flagged_on_that_input_alone(kafka, tmp_path, profiled, task):
    samples = monitored(kafka, tmp_path, *profiled[task], "shift")
    every_label_joined(samples)
    found = flagged(samples)
    assert found.pop(foreign.SHIFTED) > 0 and found == dict.fromkeys(found, 0), flagged(samples)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_drop_in_accuracy_fires_concept_drift(kafka, tmp_path, profiled, task):
    samples = monitored(kafka, tmp_path, *profiled[task], "flip")
    every_label_joined(samples)
    assert flagged(samples) == dict.fromkeys(FEATURES, 0)
    assert (
        samples[("concept_drift_detections_total", ())] > 0
        and samples[("concept_drift_detected", ())] == 1
    )


def test_a_tumbling_window_keeps_its_concept_gauges(kafka, tmp_path, profiled):
    """--window equal to --step, as batch tools chunk data: the concept gauges report the last
    complete window, labels included, instead of emptying at every step."""
    samples = monitored(
        kafka, tmp_path, *profiled["classification"], "flip", "--window", "1000", "--step", "1000"
    )
    every_label_joined(samples)
    assert samples[("window_records", ())] == 1000
    assert not math.isnan(samples[("concept_drift", ())]) and not math.isnan(
        samples[("rolling_error_rate", ())]
    )
    assert samples[("concept_drift_detections_total", ())] > 0
