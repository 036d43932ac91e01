"""The monitor service: its pure edges without a broker, then producer -> scorer -> monitor on the local broker.

Broker tests use one partition per topic, so the monitor sees records in the producer's order and
"record N" in its log is the producer's stream position N. The decoding itself is tested in
tests/unit/test_monitor_decode.py.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import math
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from confluent_kafka import KafkaError, Producer
from prometheus_client import CollectorRegistry, generate_latest

from contract.artifacts import REFERENCE_FILE, SCHEMA_FILE, read_reference
from contract.rules import Rejection
from contract.schema_file import load_schema
from devstack.broker import free_port
from tests.support import (
    ROOT,
    KafkaEnv,
    Samples,
    flagged,
    scrape,
    start_monitor,
    start_scorer,
    stop_process,
    stream_records,
    wait_for_log,
    wait_monitored,
    wait_until,
    window_view,
)

FEATURES = ("carat", "depth", "table", "cut", "color", "clarity")


@pytest.fixture(scope="module")
def diamonds(model_dir):
    """(schema, reference) of the diamonds model, as `monitor run` loads them."""
    from monitor.baseline import load_reference

    schema = load_schema(model_dir / SCHEMA_FILE)
    return schema, load_reference(schema, model_dir / REFERENCE_FILE)


# -- without a broker ----------------------------------------------------------------------------
def test_window_and_step_parse_to_counts_or_event_time():
    from monitor.config import MonitorConfig, parse_span

    assert parse_span("1000") == (1000, "records")
    assert parse_span("30s") == (30_000, "ms") and parse_span("5m") == (300_000, "ms")
    config = MonitorConfig(window="5m", step="30s", label_ttl="10m")
    assert (config.window_size, config.step_size, config.time_based, config.label_ttl_ms) == (
        300_000,
        30_000,
        True,
        600_000,
    )
    assert MonitorConfig().window_state == {"kind": "count", "window": 1000, "step": 250}
    for window, step, message in [
        ("1000", "30s", "both"),
        ("1000", "300", "multiple"),
        ("5x", "250", "positive"),
        ("0", "250", "positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            MonitorConfig(window=window, step=step)
    with pytest.raises(ValueError, match="unit"):
        MonitorConfig(label_ttl="3600")


def test_gauges_are_nan_until_the_window_is_full_and_state_round_trips(model_dir, diamonds):
    from monitor.baseline import Baseline, build_monitor
    from monitor.config import MonitorConfig
    from monitor.metrics import MonitorMetrics
    from monitor.state import decode_state, encode_state
    from monitor.windows import PredictionBatch

    schema, reference = diamonds
    registry = CollectorRegistry()
    metrics = MonitorMetrics(
        registry, reference, {"predictions": "p", "labels": "l"}, model=schema.name
    )
    config = MonitorConfig(window="1000", step="250")
    monitor = build_monitor(config, Baseline(reference))
    rows = read_reference(model_dir / REFERENCE_FILE, schema).iloc[:999]
    messages = [
        {
            "id": str(i),
            "ts": i,
            "prediction": r.prediction,
            "features": {c: getattr(r, c) for c in FEATURES},
        }
        for i, r in enumerate(rows.itertuples())
    ]
    metrics.count(
        monitor.update(PredictionBatch.from_messages(messages, FEATURES[:3], FEATURES[3:]))
    )
    metrics.show(monitor.result())

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"model": "diamonds", **labels})

    assert (
        math.isnan(get("data_drift")) and get("window_records") == 750
    )  # the count is known, the drift is not
    assert math.isnan(get("drift_feature_statistic", feature="carat", test="ks"))
    assert math.isnan(get("concept_drift")) and get("reference_mse") == pytest.approx(reference.mse)
    assert (
        get("monitor_evaluations_total") == 3
    )  # panes closed at 250, 500, 750: windows not full yet
    assert get("drift_model_info", task="regression") == 1
    more = [{**messages[0], "id": "x"}]
    metrics.count(monitor.update(PredictionBatch.from_messages(more, FEATURES[:3], FEATURES[3:])))
    metrics.show(monitor.result())
    assert (
        get("window_records") == 1000
        and 0 <= get("drift_feature_statistic", feature="carat", test="ks") < 0.1
    )

    state = decode_state(
        encode_state("g", config.window_state, {("t", 0): 1000}, monitor.to_dict())
    )
    restored = build_monitor(config, Baseline(reference))
    restored.load_dict(state["monitor"])
    assert state["offsets"] == {("t", 0): 1000} and state["window"] == config.window_state
    assert restored.result() == monitor.result()


class FakeProducer:
    """Delivers (or fails, for the topics in `failing`) what was produced when flushed, in order."""

    def __init__(self, delivered: list, failing: frozenset[str] = frozenset()) -> None:
        self.delivered, self.failing, self.queued = delivered, failing, []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None) -> None:
        self.queued.append((topic, value, key, dict(headers or []), on_delivery))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float | None = None) -> int:
        queued, self.queued = self.queued, []
        for topic, value, key, headers, on_delivery in queued:
            failed = topic in self.failing
            if not failed:
                self.delivered.append((topic, value, key, headers))
            on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT) if failed else None, None)
        return 0

    def purge(self) -> None:
        self.queued = []


class FakeMessage:
    def __init__(
        self, topic: str, partition: int, offset: int, value: bytes, key: bytes | None
    ) -> None:
        self._fields = topic, partition, offset, value, key

    def topic(self):
        return self._fields[0]

    def partition(self):
        return self._fields[1]

    def offset(self):
        return self._fields[2]

    def value(self):
        return self._fields[3]

    def key(self):
        return self._fields[4]


def test_a_snapshot_is_written_only_once_the_dead_letters_it_covers_are_acknowledged(
    diamonds, monkeypatch
):
    import monitor.checkpoint as checkpoint_module
    from monitor.baseline import Baseline, build_monitor
    from monitor.config import MonitorConfig
    from monitor.metrics import MonitorMetrics
    from monitor.state import decode_state

    schema, reference = diamonds
    delivered: list = []  # (topic, value, key, headers) in the order the broker took them
    producers = [FakeProducer(delivered, failing=frozenset({"dlq"})), FakeProducer(delivered)]
    monkeypatch.setattr(checkpoint_module, "resending_producer", lambda: producers.pop(0))
    monkeypatch.setattr(checkpoint_module, "create_state_topic", lambda *args, **kwargs: None)
    monkeypatch.setattr(checkpoint_module, "ensure_topics", lambda *args, **kwargs: None)
    registry = CollectorRegistry()
    metrics = MonitorMetrics(
        registry, reference, {"predictions": "p", "labels": "l"}, model=schema.name
    )
    config = MonitorConfig()
    positions = {("p", 0): 3}  # past the refused record at offset 2
    monitor = build_monitor(config, Baseline(reference))
    checkpoint = checkpoint_module.Checkpoint(
        state_topic="state",
        dlq_topic="dlq",
        partitions=1,
        interval=5.0,
        stop=threading.Event(),
        metrics=metrics,
    )

    def persist(
        consumer,
    ) -> bool:  # what `monitor run` saves: the group's windows and the positions they cover
        checkpoint.changed = True
        return checkpoint.save(
            [("g", config.window_state, positions, monitor.to_dict())], consumer, positions
        )

    checkpoint.dead_letter(
        FakeMessage("p", 0, 2, b"{nope", b"key-2"), Rejection("not_json", "not JSON: ...")
    )
    commits = []
    consumer = type(
        "Consumer", (), {"commit": lambda self, offsets, asynchronous: commits.append(offsets)}
    )()

    # The DLQ did not take the dead letter: no snapshot may cover offset 2 yet.
    assert persist(consumer) is False
    assert delivered == [] and commits == []
    assert (
        registry.get_sample_value("monitor_state_write_failures_total", {"model": "diamonds"}) == 1
    )
    # The next interval's producer sends the dead letter again, then the snapshot.
    assert persist(consumer) is True
    assert [topic for topic, *_ in delivered] == [
        "dlq",
        "state",
        "state",
    ]  # the dead letter, snapshot part 0, manifest
    topic, value, key, headers = delivered[0]
    assert (value, key) == (b"{nope", b"key-2")
    assert headers == {
        "reason": b"not_json",
        "detail": b"not JSON: ...",
        "source_topic": b"p",
        "source_partition": b"0",
        "source_offset": b"2",
    }
    assert decode_state(delivered[1][1])["offsets"] == {("p", 0): 3}
    assert [[(tp.topic, tp.partition, tp.offset) for tp in offsets] for offsets in commits] == [
        [("p", 0, 3)]
    ]
    assert not checkpoint.dead_letters.held and not checkpoint.changed


def test_a_metrics_port_in_use_stops_the_start_with_one_line(model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # No broker listens on port 9: the port is checked before the broker is waited for.
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "monitor",
                "run",
                "--model-dir",
                str(model_dir),
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(port),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use: choose another with "
        "--metrics-port (or stop what holds it)"
    ), result.stderr


# -- on the local broker -------------------------------------------------------------------------
def detections(samples: Samples) -> dict[str, float]:
    return {f: samples[("drift_feature_detections_total", (("feature", f),))] for f in FEATURES}


def first_detection(log: Path, name: str) -> int | None:
    match = re.search(
        rf"drift detected: {name} \(.*window: last [\d,]+ records, ending at record ([\d,]+)",
        log.read_text(),
    )
    return int(match.group(1).replace(",", "")) if match else None


def run_scenario(
    kafka: KafkaEnv, tmp_path: Path, scenario: str, count: int, onset: int
) -> tuple[Samples, Path]:
    """Produce `count` records, score them, monitor them; the monitor's /metrics once all are in."""
    produced = kafka.run(
        "producer",
        "simulate",
        "--count",
        str(count),
        "--rate",
        "0",
        "--scenario",
        scenario,
        "--onset",
        str(onset),
        "--seed",
        "7",
        "--label-delay",
        "0",
        TOPIC_PARTITIONS="1",
    )
    assert produced.returncode == 0, produced.stderr.decode()[-2000:]
    port, log = free_port(), tmp_path / "monitor.log"
    scorer = start_scorer(kafka, tmp_path / "scorer.log")
    monitor = start_monitor(kafka, log, f"monitor-{kafka.suffix}", port)
    try:
        wait_monitored(port, count, kafka.topics["LABELS_TOPIC"])  # the final window is complete
        samples = scrape(port)
        assert stop_process(monitor) == 0  # SIGTERM: finish the batch, save state, exit 0
    finally:
        stop_process(monitor)
        stop_process(scorer)
    assert samples[("monitor_evaluations_total", ())] == count // 250
    # every evaluated pane's wait, from its oldest prediction to the gauges, measured once
    assert samples[("monitor_prediction_to_gauge_seconds_count", ())] == count // 250
    assert samples[("monitor_prediction_to_gauge_seconds_sum", ())] > 0
    assert samples[("window_records", ())] == 1000 and samples[("label_coverage_ratio", ())] == 1.0
    assert all(v == 0 for k, v in samples.items() if k[0] == "monitor_invalid_records_total")
    return samples, log


@pytest.mark.broker
def test_no_drift_stream_flags_nothing(kafka, tmp_path, capsys):
    samples, _ = run_scenario(kafka, tmp_path, "none", 50_000, 0)
    assert detections(samples) == dict.fromkeys(FEATURES, 0)
    for counter in (
        "drift_dataset_detections_total",
        "prediction_drift_detections_total",
        "concept_drift_detections_total",
    ):
        assert samples[(counter, ())] == 0, counter
    assert 0 <= samples[("data_drift", ())] < 0.1 and samples[("drift_share_detected", ())] == 0
    assert (
        not math.isnan(samples[("concept_drift", ())])
        and samples[("concept_drift_detected", ())] == 0
    )


# (scenario, the feature it drifts, features it leaves where they were). Resampled rows move the
# features correlated with the drifted one too (KS/total variation on the diamonds reference):
# carat-shift moves clarity 0.053 and color 0.039 with carat, but depth 0.012, table 0.034, cut 0.030;
# cut-mix moves depth 0.198, table 0.120, clarity 0.076, carat 0.073, but color 0.011.
# new-category writes clarity in place and moves nothing else.
@pytest.mark.broker
@pytest.mark.parametrize(
    "scenario, feature, unmoved",
    [
        ("carat-shift", "carat", ("depth", "table", "cut")),
        ("cut-mix", "cut", ("color",)),
        ("new-category", "clarity", ("carat", "depth", "table", "cut", "color")),
    ],
)
def test_feature_scenario_flags_its_feature_within_a_window_and_not_what_it_leaves(
    kafka, tmp_path, diamonds, scenario, feature, unmoved
):
    from producer.grammar import parse_scenario

    onset = 6000
    samples, log = run_scenario(kafka, tmp_path, scenario, 12_000, onset)
    found = detections(samples)
    assert found[feature] > 0 and all(found[f] == 0 for f in unmoved), found
    first = first_detection(log, feature)
    assert first is not None and onset < first <= onset + 1000, (
        first
    )  # the window ending there holds drifted records
    assert samples[("drift_feature_detected", (("feature", feature),))] == 1
    assert samples[("drift_dataset_detections_total", ())] > 0
    if (
        parse_scenario(scenario, diamonds[0]).changes == "inputs"
    ):  # real rows, true labels: the relation holds
        assert samples[("concept_drift_detections_total", ())] == 0
        assert samples[("concept_drift_detected", ())] == 0


@pytest.mark.broker
def test_price_inflation_flags_concept_drift_and_no_feature(kafka, tmp_path):
    samples, log = run_scenario(kafka, tmp_path, "price-inflation", 12_000, 6000)
    assert detections(samples) == dict.fromkeys(FEATURES, 0)
    assert samples[("drift_dataset_detections_total", ())] == 0
    assert (
        samples[("concept_drift_detected", ())] == 1
        and samples[("concept_drift_detections_total", ())] > 0
    )
    assert samples[("concept_drift", ())] > samples[("concept_drift_threshold", ())]
    # Labels go straight from the producer and can join before their predictions' pane closes, so
    # the window ending exactly at the onset may already hold inflated errors; earlier is a false alarm.
    assert first_detection(log, "concept") is None or first_detection(log, "concept") >= 6000


def produce(kafka: KafkaEnv, topic_env: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    """(key, value) messages to one of the test's topics, in order, acknowledged."""
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all"})
    failed = []
    for key, value in messages:
        producer.produce(
            kafka.topics[topic_env],
            value,
            key,
            on_delivery=lambda error, _: error and failed.append(error),
        )
        producer.poll(0)
    assert producer.flush(30) == 0 and not failed, failed


@pytest.mark.broker
def test_refused_predictions_and_labels_go_to_the_monitor_dlq_with_their_reason(kafka, tmp_path):
    port, log = free_port(), tmp_path / "monitor.log"
    monitor = start_monitor(kafka, log, f"monitor-{kafka.suffix}", port)
    good = {
        "id": "g",
        "ts": 1,
        "scored_at": 2,
        "model_version": "v",
        "prediction": 512.5,
        "features": {
            "carat": 0.3,
            "cut": "Ideal",
            "color": "E",
            "clarity": "SI1",
            "depth": 61.0,
            "table": 55.0,
        },
    }
    valid = [
        (f"g{i}".encode(), json.dumps({**good, "id": f"g{i}", "ts": i}).encode())
        for i in range(300)
    ]
    bad_predictions = {  # value -> its reason
        b"{nope": "not_json",
        b"[1]": "not_object",
        json.dumps({k: v for k, v in good.items() if k != "features"}).encode(): "missing_field",
        json.dumps({**good, "prediction": "high"}).encode(): "wrong_type",
        json.dumps(
            {**good, "features": {**good["features"], "carat": -1}}
        ).encode(): "out_of_range",
        json.dumps(
            {**good, "prediction": math.nan}
        ).encode(): "not_finite",  # NaN: not JSON, but some writers send it
        json.dumps({**good, "pad": "x" * 9000}).encode(): "oversize",
    }
    bad_labels = {
        b'{"id":"g1","ts":1}': "missing_field",
        b'{"id":"g2","ts":1,"price":0}': "out_of_range",
        b'{"id":"g3","ts":1,"price":NaN}': "not_finite",
    }
    try:
        wait_for_log(log, "monitoring ")  # the monitor created the topics
        # Refused records between valid ones: positions 0, 10, 20, ... of the topic.
        predictions = []
        for i, (value, _) in enumerate(bad_predictions.items()):
            predictions += [(f"bad-{i}".encode(), value), *valid[i * 9 : (i + 1) * 9]]
        predictions += valid[len(bad_predictions) * 9 :]
        labels = [(None, value) for value in bad_labels] + [
            (None, json.dumps({"id": f"g{i}", "ts": i, "price": 400.0}).encode())
            for i in range(10, 300)
        ]
        produce(kafka, "PREDICTIONS_TOPIC", predictions)
        produce(kafka, "LABELS_TOPIC", labels)
        topics = kafka.topics
        wait_until(
            lambda: (
                (s := scrape(port)).get(
                    ("monitor_records_consumed_total", (("topic", topics["PREDICTIONS_TOPIC"]),))
                )
                == len(predictions)
                and s.get(("monitor_records_consumed_total", (("topic", topics["LABELS_TOPIC"]),)))
                == len(labels)
                and s.get(("monitor_state_writes_total", ()), 0) > 0
            ),
            timeout=60,
            message="every prediction and label consumed, a snapshot written",
        )
        samples = scrape(port)
        letters = kafka.consume("MONITOR_DLQ_TOPIC", len(bad_predictions) + len(bad_labels))
        assert stop_process(monitor) == 0
    finally:
        stop_process(monitor)
    assert samples[("monitor_stream_records", ())] == len(valid)
    invalid = {
        (dict(labels)["topic"], dict(labels)["reason"]): value
        for (name, labels), value in samples.items()
        if name == "monitor_invalid_records_total" and value
    }
    expected = [(topics["PREDICTIONS_TOPIC"], reason) for reason in bad_predictions.values()]
    expected += [(topics["LABELS_TOPIC"], reason) for reason in bad_labels.values()]
    assert invalid == dict.fromkeys(expected, 1.0)
    headers = [{k: v.decode() for k, v in m.headers()} for m in letters]
    assert [
        (h["source_topic"], h["reason"]) for h in headers
    ] == expected  # one partition each: in order
    assert [m.value() for m in letters] == [*bad_predictions, *bad_labels]  # the original bytes
    assert [m.key() for m in letters[: len(bad_predictions)]] == [
        f"bad-{i}".encode() for i in range(len(bad_predictions))
    ]
    assert [(h["source_partition"], h["source_offset"]) for h in headers] == (
        [("0", str(i * 10)) for i in range(len(bad_predictions))]
        + [("0", str(i)) for i in range(len(bad_labels))]
    )
    assert all(h["detail"] for h in headers)
    assert "refused record (not_json)" in log.read_text()


# -- a model no diamonds code knows, in a layout unlike the scorer's ----------------------------------
SITES = np.array(["north", "south", "east", "west", "lab"], dtype=object)  # "lab" is rare: 2%
SENSOR_SCHEMA = {
    "name": "sensors",
    "task": "regression",
    "target": "output",
    "prediction": "yhat",
    "features": [
        {"name": "temp", "type": "numeric"},
        {"name": "load", "type": "numeric", "range": {"ge": 0}},
        {"name": "site", "type": "categorical", "categories": SITES.tolist()},
        {"name": "shift", "type": "categorical", "categories": [1, 2, 3]},
    ],
    # Another serving system's inference log: integer ids, ISO-8601 event times, features at top level.
    "messages": {
        "id": "event_id",
        "timestamp": "event_time",
        "timestamp_format": "iso8601",
        "prediction": "yhat",
        "features": None,
    },
    "labels": {"id": "event_id", "timestamp": "event_time", "target": "output"},
}
START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def sensor_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "temp": np.round(rng.normal(20.0, 5.0, n), 2),
            "load": np.round(rng.exponential(2.0, n), 3),
            "site": SITES[rng.choice(5, n, p=[0.3, 0.3, 0.2, 0.18, 0.02])],
            "shift": rng.integers(1, 4, n),
        }
    )
    frame["yhat"] = 3 * frame["temp"] + 2 * frame["load"] + frame["shift"]
    frame["output"] = frame["yhat"] + rng.normal(0, 2.0, n)
    return frame


@pytest.mark.broker
@pytest.mark.parametrize("shifted", [None, "temp"])
def test_a_monitor_given_a_schema_and_reference_reads_another_systems_log(kafka, tmp_path, shifted):
    """`monitor run --schema X --reference Y` on records a test writes straight to the topic, no
    scorer: a calm stream flags nothing; a shift in one feature flags that feature alone."""
    (tmp_path / "sensors.yaml").write_text(yaml.safe_dump(SENSOR_SCHEMA, sort_keys=False))
    sensor_rows(5000, seed=1).to_csv(tmp_path / "held-out.csv", index=False)
    count, onset = 8000, 4000
    stream = sensor_rows(count, seed=2)
    if shifted:
        stream.loc[onset:, shifted] += 4.0  # most of a standard deviation
        stream["yhat"] = (
            3 * stream["temp"] + 2 * stream["load"] + stream["shift"]
        )  # the model sees it
        stream["output"] = stream["yhat"] + np.random.default_rng(3).normal(0, 2.0, count)
    times = [
        (START + dt.timedelta(milliseconds=10 * i)).isoformat().replace("+00:00", "Z")
        for i in range(count)
    ]
    predictions = [
        (
            None,
            json.dumps(
                {
                    "event_id": i,
                    "event_time": times[i],
                    "yhat": row.yhat,
                    "temp": row.temp,
                    "load": row.load,
                    "site": row.site,
                    "shift": int(row.shift),
                    "host": "srv-1",
                }
            ).encode(),
        )
        for i, row in enumerate(stream.itertuples())
    ]
    labels = [
        (None, json.dumps({"event_id": i, "event_time": times[i], "output": float(v)}).encode())
        for i, v in enumerate(stream["output"])
    ]
    port, log = free_port(), tmp_path / "monitor.log"
    monitor = kafka.start(
        "monitor",
        "run",
        "--schema",
        str(tmp_path / "sensors.yaml"),
        "--reference",
        str(tmp_path / "held-out.csv"),
        "--group",
        f"sensors-{kafka.suffix}",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        log=log,
        TOPIC_PARTITIONS="1",
        MODEL_DIR="/nonexistent",
    )  # everything it needs comes from --schema and --reference
    try:
        wait_for_log(log, "monitoring ")
        produce(kafka, "PREDICTIONS_TOPIC", predictions)
        produce(kafka, "LABELS_TOPIC", labels)
        wait_monitored(port, count, kafka.topics["LABELS_TOPIC"])
        samples = scrape(port, keep_model=True)
        assert stop_process(monitor) == 0
    finally:
        stop_process(monitor)
    assert "monitoring " in log.read_text() and "for model sensors" in log.read_text()
    found = flagged(samples)
    assert set(found) == {"temp", "load", "site", "shift"}
    assert samples[("drift_feature_detected", (("feature", "temp"), ("model", "sensors")))] == (
        1 if shifted else 0
    )
    assert samples[("drift_model_info", (("model", "sensors"), ("task", "regression")))] == 1
    assert all(
        v == 0 for (name, _), v in samples.items() if name == "monitor_invalid_records_total"
    )
    assert samples[("window_records", (("model", "sensors"),))] == 1000
    if shifted is None:
        assert found == dict.fromkeys(found, 0)
        for counter in (
            "drift_dataset_detections_total",
            "prediction_drift_detections_total",
            "concept_drift_detections_total",
        ):
            assert samples[(counter, (("model", "sensors"),))] == 0, counter
    else:
        assert found.pop(shifted) > 0 and found == dict.fromkeys(found, 0), flagged(samples)
        first = first_detection(log, shifted)
        assert first is not None and onset < first <= onset + 1000, first


@pytest.mark.broker
def test_sigkill_mid_stream_then_restart_ends_with_the_uninterrupted_window(kafka, tmp_path):
    count = 45_000
    scorer = start_scorer(kafka, tmp_path / "scorer.log")
    port_a, port_b = free_port(), free_port()
    log_b = tmp_path / "monitor-b.log"
    a = start_monitor(kafka, tmp_path / "monitor-a.log", "uninterrupted", port_a)
    b = start_monitor(kafka, log_b, "restarted", port_b)
    processes = [scorer, a, b]
    try:
        for log in (tmp_path / "scorer.log", tmp_path / "monitor-a.log", log_b):
            wait_for_log(log, "scoring " if log.name == "scorer.log" else "monitoring ")
        producer = kafka.start(
            "producer",
            "simulate",
            "--count",
            str(count),
            "--rate",
            "3000",
            "--scenario",
            "carat-shift",
            "--onset",
            "15000",
            "--seed",
            "11",
            "--label-delay",
            "0",
            log=tmp_path / "producer.log",
            TOPIC_PARTITIONS="1",
        )
        processes.append(producer)
        wait_until(
            lambda: stream_records(port_b) >= 6000,
            timeout=90,
            message="monitor b 6,000 records into the stream",
        )
        # A snapshot taken after that point: earlier ones may hold labels only (the scorer may join
        # its group after the monitors, and its first batch of predictions can arrive all at once).
        writes = scrape(port_b).get(("monitor_state_writes_total", ()), 0)
        wait_until(
            lambda: scrape(port_b).get(("monitor_state_writes_total", ()), 0) > writes,
            timeout=30,
            message="monitor b saved state mid-stream",
        )
        seen_before_kill = stream_records(port_b)
        b.kill()  # SIGKILL: no goodbye, whatever came after the last snapshot is replayed
        b.wait()
        assert producer.poll() is None, (
            "the stream should still be running when the monitor is killed"
        )
        port_b = free_port()
        b = start_monitor(kafka, log_b, "restarted", port_b)
        processes.append(b)
        wait_until(
            lambda: "restored state of group restarted" in log_b.read_text(),
            timeout=60,
            message="state restored",
        )
        restored = int(
            re.search(r"restored state of group restarted: (\d+) records", log_b.read_text()).group(
                1
            )
        )
        assert (
            6000 <= restored <= seen_before_kill + 5000
        )  # a snapshot from before the kill (+ a batch in flight)
        wait_until(
            lambda: stream_records(port_a) == count and stream_records(port_b) == count,
            timeout=120,
            interval=0.5,
            message="both monitors at the end of the stream",
        )
        uninterrupted, resumed = window_view(scrape(port_a)), window_view(scrape(port_b))
        assert resumed == pytest.approx(uninterrupted, rel=1e-12), (resumed, uninterrupted)
        assert producer.wait(60) == 0
        assert stop_process(b) == 0  # SIGTERM saves the final state

        # Started again with nothing new to read, it shows the full window at once: never empty.
        port_b = free_port()
        b = start_monitor(kafka, log_b, "restarted", port_b)
        processes.append(b)
        wait_until(
            lambda: stream_records(port_b) == count, timeout=60, message="final state restored"
        )
        assert window_view(scrape(port_b)) == pytest.approx(uninterrupted, rel=1e-12)
    finally:
        for process in reversed(processes):
            stop_process(process)


def serve_pages(*registries: CollectorRegistry) -> tuple[str, http.server.HTTPServer]:
    """A /metrics page holding every registry's series (one monitor per registry, as Prometheus
    federation or a shared exporter would show several models)."""
    body = b"".join(generate_latest(r) for r in registries)

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/metrics", server


def churn_reference():
    """A made-up classifier's reference: one numeric, one categorical feature, classes no/yes with probabilities."""
    from monitor.reference import Reference

    rng = np.random.default_rng(0)
    p_yes = rng.random(500)
    predicted = np.where(p_yes > 0.5, "yes", "no")
    return Reference.from_arrays(
        {"tenure": rng.exponential(10, 500)},
        {"plan": rng.choice(["1", "2"], 500)},
        predicted,
        np.where(rng.random(500) < 0.9, predicted, "no"),
        task="classification",
        probabilities={"no": 1 - p_yes, "yes": p_yes},
        classes=("no", "yes"),
    )


def test_status_prints_a_table_from_metrics(diamonds, capsys):
    """`python -m monitor status` against a metrics page served in-process (no broker)."""
    from monitor.__main__ import main
    from monitor.metrics import MonitorMetrics

    schema, reference = diamonds
    registry = CollectorRegistry()
    MonitorMetrics(registry, reference, {"predictions": "p", "labels": "l"}, model=schema.name)
    url, server = serve_pages(registry)
    try:
        assert main(["status", "--url", url]) == 0
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert out.startswith("model diamonds (regression)\n")
    assert all(re.search(rf"^{f} .* n/a .*n/a", out, re.M) for f in FEATURES), out
    assert re.search(r"^prediction +ks +n/a", out, re.M) and "p(" not in out, out
    assert re.search(r"^concept: rolling MSE n/a vs reference [\d,]+, ratio n/a", out, re.M), out
    assert "window: n/a records" in out
    assert np.isfinite(registry.get_sample_value("reference_mse", {"model": "diamonds"}))


def test_status_of_one_model_among_several_shows_its_classes(diamonds, capsys):
    from monitor.__main__ import main
    from monitor.metrics import MonitorMetrics

    schema, reference = diamonds
    regression, classification = CollectorRegistry(), CollectorRegistry()
    MonitorMetrics(regression, reference, {"predictions": "p", "labels": "l"}, model=schema.name)
    churn = churn_reference()
    MonitorMetrics(classification, churn, {"predictions": "cp", "labels": "cl"}, model="churn")
    url, server = serve_pages(regression, classification)
    try:
        assert main(["status", "--url", url]) == 2
        assert (
            "holds the models churn, diamonds: choose one with --model" in capsys.readouterr().err
        )
        assert main(["status", "--url", url, "--model", "nope"]) == 2
        assert "no model 'nope'" in capsys.readouterr().err
        assert main(["status", "--url", url, "--model", "churn"]) == 0
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert out.startswith("model churn (classification)\n")
    rows = [
        line.split()[0]
        for line in out.splitlines()[2:]
        if not line.startswith(("dataset", "concept", "window"))
    ]
    assert rows == ["tenure", "plan", "prediction", "p(no)", "p(yes)"], (
        out
    )  # diamonds' rows are not shown
    assert re.search(r"^prediction +chi2 +n/a", out, re.M), out
    assert f"rolling error rate n/a vs reference {churn.error_rate:.4f}" in out, out
